"""ResCNN (paper T1) and GRU network (T2): sizes, masking, layouts, registry, checkpoints.

The full-width models are built once each (module fixtures) and only counted, never
run; everything that runs uses width 0.125 on a few short utterances.
"""

import math

import pytest
import torch

from deepspeaker.nnet import (MODELS, GRUNet, ResCNN, SequenceBatchNorm, build_model,
                              check_compatible, conv_output_length, model_from_config,
                              num_parameters)
from deepspeaker.utils import ConfigError

SMALL = 0.125


@pytest.fixture(scope="module")
def full_rescnn():
    return build_model("rescnn")


@pytest.fixture(scope="module")
def full_gru():
    return build_model("gru")


def small(name, seed=0, **options):
    torch.manual_seed(seed)
    return build_model(name, width=SMALL, **options)


def warmed_up(model, seed=0):
    """Train-mode passes so that batch-norm running statistics are far from 0 / 1."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            x = 3.0 * torch.randn(4, 45, 64, generator=g) + 1.0
            model(x.to(model.affine.weight.dtype), torch.tensor([45, 30, 17, 9]))
    return model.eval()


def as_table(n, value, unit):
    """True when ``n`` is ``value`` to within one unit of the table's last digit.

    (Not half a unit: T1 prints a res128 conv, 147,456 + 4,096 = 151,552, as 151K.)
    """
    return abs(n - value) <= unit


# ------------------------------------------------------------------ sizes (T1, T2)

def rescnn_params(width, bins=64, emb=512):
    """Independent count: bias-free convs, BN gain+shift per (channel, bin), affine."""
    total, c_in = 0, 1
    for c in (64, 128, 256, 512):
        c = max(1, round(c * width))
        bins = math.ceil(bins / 2)
        total += 25 * c_in * c + 2 * c * bins            # conv 5x5 stride 2 + BN
        total += 6 * (9 * c * c + 2 * c * bins)          # 3 ResBlocks of two 3x3 convs + BN
        c_in = c
    return total + c_in * bins * emb + emb


def gru_params(width, bins=64, emb=512):
    c, h = max(1, round(64 * width)), max(1, round(1024 * width))
    bins = math.ceil(bins / 2)
    total = 25 * c + 2 * c * bins
    for d in (c * bins, h, h):
        total += 2 * d + 3 * (d * h + h * h) + 6 * h     # input BN + GRU (two bias sets)
    return total + h * emb + emb


def test_full_width_parameter_counts(full_rescnn, full_gru):
    n_res, n_gru = num_parameters(full_rescnn), num_parameters(full_gru)
    print(f"\nrescnn width 1: {n_res:,} parameters (paper T1: 24M; asked 24.2M +-2%)")
    print(f"gru    width 1: {n_gru:,} parameters (paper T2: 23M; asked 22.6M +-2%)")
    assert abs(n_res / 24.2e6 - 1) <= 0.02
    assert abs(n_gru / 22.6e6 - 1) <= 0.02
    assert n_res == rescnn_params(1.0) == 24_266_816
    assert n_gru == gru_params(1.0) == 22_577_216


def test_rescnn_rows_match_table1(full_rescnn):
    rows = {name: num_parameters(m) for name, m in full_rescnn.table_rows()}
    # (row, T1 "# params" per layer, the table's precision, layers in the row)
    table1 = [("conv64-s", 6e3, 1e3, 1), ("res64", 41e3, 1e3, 6),
              ("conv128-s", 209e3, 1e3, 1), ("res128", 151e3, 1e3, 6),
              ("conv256-s", 823e3, 1e3, 1), ("res256", 594e3, 1e3, 6),
              ("conv512-s", 3.3e6, 0.1e6, 1), ("res512", 2.4e6, 0.1e6, 6),
              ("affine", 1e6, 1e6, 1)]
    assert list(rows) == [row for row, *_ in table1]
    for row, value, unit, layers in table1:
        assert as_table(rows[row] / layers, value, unit), (row, rows[row] / layers, value)
    assert rows["conv128-s"] == 208_896
    assert rows["res512"] // 6 == 2_363_392
    # identity shortcuts: a ResBlock is two 3x3 convs and their BNs, nothing else
    block = full_rescnn.stages[3][0]
    assert sorted(n for n, _ in block.named_parameters()) == [
        "bn1.bias", "bn1.weight", "bn2.bias", "bn2.weight", "conv1.weight", "conv2.weight"]
    assert full_rescnn.frame_dim == 2048  # 4 bins x 512 channels (T1 dim)


def test_gru_rows_match_table2(full_gru):
    rows = [(name, num_parameters(m)) for name, m in full_gru.table_rows()]
    table2 = [("conv64-s", 6e3, 1e3), ("GRU", 9.4e6, 0.1e6), ("GRU", 6.3e6, 0.1e6),
              ("GRU", 6.3e6, 0.1e6), ("affine", 500e3, 100e3)]
    assert [r for r, _ in rows] == [r for r, *_ in table2]
    for (row, n), (_, value, unit) in zip(rows, table2):
        assert as_table(n, value, unit), (row, n, value)
    for gru in full_gru.grus:
        assert gru.hidden_size == 1024 and not gru.bidirectional and gru.num_layers == 1


@pytest.mark.parametrize("width", [0.125, 0.25, 0.5])
def test_width_scales_channels_and_units(width):
    res, gru = ResCNN(width=width), GRUNet(width=width)
    assert num_parameters(res) == rescnn_params(width)
    assert num_parameters(gru) == gru_params(width)
    assert [d.conv.out_channels for d in res.downsample] == [int(c * width) for c in (64, 128, 256, 512)]
    assert gru.grus[0].hidden_size == int(1024 * width)
    assert num_parameters(res) < rescnn_params(2 * width)


def test_num_mel_bins_and_embedding_dim_options():
    model = small("rescnn", num_mel_bins=40, embedding_dim=128)
    assert num_parameters(model) == rescnn_params(SMALL, bins=40, emb=128)
    assert model.frame_dim == 64 * 3  # 512w channels, 40 -> 20 -> 10 -> 5 -> 3 bins
    assert model(torch.randn(2, 33, 40)).shape == (2, 128)
    with pytest.raises(ConfigError, match="num_mel_bins=40"):
        model(torch.randn(2, 33, 64))


# ------------------------------------------------------------------ forward

@pytest.mark.parametrize("shape, feature_shape, time_dim", [((4, 3, 9, 5), (3, 5), 2),
                                                          ((4, 9, 6), (6,), 1)])
def test_sequence_batch_norm_counts_valid_frames_only(shape, feature_shape, time_dim):
    """Per-feature statistics over batch x valid time; the fused path (no mask) agrees."""
    torch.manual_seed(0)
    x = 2.0 * torch.randn(shape, dtype=torch.float64) + 3.0
    lengths = torch.tensor([9, 7, 4, 1])
    mask_shape = [1] * len(shape)
    mask_shape[0], mask_shape[time_dim] = 4, 9
    mask = (torch.arange(9)[None, :] < lengths[:, None]).double().view(mask_shape)
    bns = [SequenceBatchNorm(feature_shape).double().train() for _ in range(3)]
    y_fused, y_ones, y_masked = bns[0](x), bns[1](x, torch.ones_like(mask)), bns[2](x, mask)
    torch.testing.assert_close(y_fused, y_ones)
    torch.testing.assert_close(bns[0].running_var, bns[1].running_var)
    torch.testing.assert_close(bns[0].running_mean, bns[1].running_mean)
    # valid frames of the masked output: zero mean, unit variance per feature
    dims = (0, time_dim)
    count = mask.sum()
    mean = (y_masked * mask).sum(dims) / count
    var = ((y_masked - mean.unsqueeze(0).unsqueeze(time_dim)) ** 2 * mask).sum(dims) / count
    torch.testing.assert_close(mean, torch.zeros(feature_shape, dtype=torch.float64))
    torch.testing.assert_close(var, torch.ones(feature_shape, dtype=torch.float64), atol=1e-4, rtol=0)
    # eval mode uses the running statistics: the padding cannot matter there either
    bns[2].eval()
    torch.testing.assert_close(bns[2](x) * mask, bns[2](x * mask) * mask)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_is_unit_embeddings(name):
    model = small(name)
    for mode in (model.train, model.eval):
        mode()
        emb = model(torch.randn(3, 40, 64), torch.tensor([40, 23, 5]))
        assert emb.shape == (3, 512)
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padding_never_changes_an_embedding(name):
    """An utterance alone == the same one padded in a batch with a longer one (eval mode)."""
    model = warmed_up(small(name))
    g = torch.Generator().manual_seed(1)
    short, long = torch.randn(1, 37, 64, generator=g), torch.randn(1, 83, 64, generator=g)
    batch = torch.full((2, 83, 64), 1e3)  # loud garbage in the padding
    batch[0, :37], batch[1] = short[0], long[0]
    with torch.no_grad():
        together = model(batch, torch.tensor([37, 83]))
        alone = torch.cat([model(short), model(long)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padding_stays_out_of_training_batch_norm(name):
    model = small(name).train()
    x = torch.randn(3, 50, 64)
    lengths = torch.tensor([50, 31, 12])
    garbage = x.clone()
    for i, n in enumerate(lengths):
        garbage[i, n:] = 50.0 * torch.randn(50 - n, 64)
    torch.testing.assert_close(model(garbage, lengths), model(x, lengths), atol=1e-5, rtol=0)


def test_length_arithmetic_for_odd_lengths():
    for n in range(1, 70):
        assert conv_output_length(n) == math.ceil(n / 2)
    lengths = torch.tensor([1, 2, 15, 16, 17, 31, 33, 47])
    torch.testing.assert_close(conv_output_length(lengths), (lengths + 1) // 2)
    # float64, so that "equal" can mean equal: in float32 the frame-level activations
    # (up to the clip, 20) differ by ~1e-5 between batch shapes from summation order.
    res, gru = warmed_up(small("rescnn").double()), warmed_up(small("gru").double())
    torch.testing.assert_close(res.output_lengths(lengths), (lengths + 15) // 16)
    torch.testing.assert_close(gru.output_lengths(lengths), (lengths + 1) // 2)
    x = torch.randn(len(lengths), 47, 64, dtype=torch.float64)
    with torch.no_grad():
        for model in (res, gru):
            frames, out_lengths = model.frame_level(x, lengths)
            torch.testing.assert_close(out_lengths, model.output_lengths(lengths))
            assert frames.shape == (len(lengths), model.output_lengths(torch.tensor(47)).item(),
                                    model.frame_dim)
            for i, n in enumerate(lengths.tolist()):
                alone, alone_len = model.frame_level(x[i:i + 1, :n])
                assert alone.shape[1] == alone_len.item() == out_lengths[i].item()
                torch.testing.assert_close(frames[i, :alone.shape[1]], alone[0], atol=1e-10, rtol=0)
                assert not frames[i, alone.shape[1]:].any()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_channels_last_gives_the_same_output(name):
    model = warmed_up(small(name))
    other = build_model(name, width=SMALL)
    other.load_state_dict(model.state_dict())
    other = other.eval().to(memory_format=torch.channels_last)
    x, lengths = torch.randn(3, 41, 64), torch.tensor([41, 26, 7])
    with torch.no_grad():
        torch.testing.assert_close(other(x, lengths), model(x, lengths), atol=1e-5, rtol=0)
        torch.testing.assert_close(other(x), model(x), atol=1e-5, rtol=0)
    model.train(), other.train()
    torch.testing.assert_close(other(x, lengths), model(x, lengths), atol=1e-5, rtol=0)
    if name == "rescnn":  # the maps really are channels_last all the way, padded or not
        for lens in (lengths, None):
            maps, _ = other.feature_maps(x, lens)
            assert maps.is_contiguous(memory_format=torch.channels_last) and not maps.is_contiguous()


def test_bad_lengths_are_refused():
    model = small("gru")
    with pytest.raises(ValueError, match="lengths must lie in"):
        model(torch.randn(2, 10, 64), torch.tensor([10, 0]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        model(torch.randn(2, 10, 64), torch.tensor([11, 3]))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(2, 10, 64), torch.tensor([10]))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_reach_every_parameter(name):
    model = small(name).train()
    x = torch.randn(4, 48, 64)
    emb = model(x, torch.tensor([48, 40, 21, 9]))
    (emb * torch.randn(4, 512)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_same_seed_same_init():
    for name in MODELS:
        a, b, c = small(name, seed=7), small(name, seed=7), small(name, seed=8)
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), key
        assert not torch.equal(a.affine.weight, c.affine.weight)


# ------------------------------------------------------------------ registry and checkpoints

def test_registry_is_one_explicit_table():
    assert MODELS == {"rescnn": ResCNN, "gru": GRUNet}
    assert isinstance(build_model("gru", width=SMALL), GRUNet)


def test_build_model_refuses_unknown_names_and_options():
    with pytest.raises(ConfigError, match="unknown model 'resnet'; known models are gru, rescnn"):
        build_model("resnet")
    with pytest.raises(ConfigError, match="unknown model 'rescnn_big'"):
        build_model("rescnn_big")  # no lookup by prefix
    with pytest.raises(ConfigError, match="unknown key.*channels"):
        build_model("rescnn", channels=32)
    with pytest.raises(ConfigError, match="width must be a positive number"):
        build_model("gru", width=0)
    with pytest.raises(ConfigError, match="num_mel_bins: expected an integer, got 64.5"):
        build_model("gru", num_mel_bins=64.5)


def test_config_round_trip():
    model = small("rescnn", clip=10.0)
    config = model.config()
    assert config == {"name": "rescnn", "options": {"num_mel_bins": 64, "embedding_dim": 512,
                                                    "width": 0.125, "clip": 10.0}}
    rebuilt = model_from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config() == config
    assert build_model("gru", width=1).config() == build_model("gru", width=1.0).config()


def test_check_compatible_names_both_architectures():
    res = {"name": "rescnn", "options": {"width": 0.25}}
    check_compatible(res, small("rescnn").config() | {"options": {"width": 0.25}}, "x.pt")
    check_compatible(res, ResCNN(width=0.25).config(), "x.pt")  # defaults fill the gaps
    with pytest.raises(ConfigError) as err:
        check_compatible(res, GRUNet(width=0.25).config(), "exp/x/best.pt")
    message = str(err.value)
    print("\n" + message)
    assert message.startswith("checkpoint exp/x/best.pt holds rescnn(")
    assert "but the config asks for gru(" in message
    assert message.count("width=0.25") == 2 and "differ in architecture" in message
    with pytest.raises(ConfigError, match=r"holds rescnn\(.*width=0.25.*asks for rescnn\(.*"
                                          r"width=0.125.*differ in width"):
        check_compatible(res, small("rescnn").config(), "exp/x/best.pt")
    with pytest.raises(ConfigError, match="checkpoint old.pt: unknown model 'tdnn'"):
        check_compatible({"name": "tdnn", "options": {}}, res, "old.pt")
