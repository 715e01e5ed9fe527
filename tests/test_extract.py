"""Embedding extraction (stage 8): determinism, chunking, failed utterances, model checks."""

import kaldiio
import numpy as np
import pytest
import torch

from builders import make_exp

from deepspeaker.bin import extract_embeddings as extract_bin
from deepspeaker.features import prepare_features
from deepspeaker.nnet.extract import ExtractOptions, extract_embeddings, load_embedder, split_chunks
from deepspeaker.utils import ConfigError

LENGTHS = {"s1-a": 120, "s1-b": 37, "s2-a": 80, "s2-b": 95, "s2-c": 12}


@pytest.fixture()
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(1)
    feats = {u: rng.standard_normal((n, 64)).astype(np.float32) for u, n in LENGTHS.items()}
    vad = {u: (rng.random(n) > 0.2).astype(np.float32) for u, n in LENGTHS.items()}
    vad["s2-c"][:] = 0  # no voiced frame: must be listed as failed, others still embedded
    kaldiio.save_ark(str(d / "feats.ark"), feats, scp=str(d / "feats.scp"))
    kaldiio.save_ark(str(d / "vad.ark"), vad, scp=str(d / "vad.scp"))
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in LENGTHS))
    (d / "utt2spk").write_text("".join(f"{u} {u[:2]}\n" for u in LENGTHS))
    (d / "spk2utt").write_text("s1 s1-a s1-b\ns2 s2-a s2-b s2-c\n")
    return d, feats, vad


def test_split_chunks_nearly_equal():
    x = np.arange(100)[:, None]
    parts = split_chunks(x, 30)
    assert [len(p) for p in parts] == [25, 25, 25, 25]
    assert np.array_equal(np.concatenate(parts), x)
    assert len(split_chunks(x, 100)) == 1 and [len(p) for p in split_chunks(x, 99)] == [50, 50]


def test_extraction_deterministic_unit_and_equal_to_single_utterance(tmp_path, data):
    d, feats, vad = data
    exp = make_exp(tmp_path / "exp")
    opts = ExtractOptions(batch_size=2, device="cpu")
    extract_embeddings(exp, d, opts)
    first = (exp / "data/embedding.ark").read_bytes()
    emb = kaldiio.load_scp(str(exp / "data/embedding.scp"))
    assert sorted(emb) == ["s1-a", "s1-b", "s2-a", "s2-b"]
    failed = (exp / "data/failed").read_text()
    assert failed.startswith(f"s2-c {d}/feats.scp:5: ") and "the VAD rejects all 12 frames" in failed
    # Bit for bit on a second run; the up-to-date record makes a plain rerun a no-op.
    assert extract_embeddings(exp, d, opts)["skipped"]
    extract_embeddings(exp, d, opts, force=True)
    assert (exp / "data/embedding.ark").read_bytes() == first
    # Another batching changes nothing but rounding; each equals the utterance alone.
    model, _ = load_embedder(exp, device=torch.device("cpu"))
    other = tmp_path / "other"
    extract_embeddings(exp, d, ExtractOptions(batch_size=5, device="cpu"), out_dir=other)
    emb5 = kaldiio.load_scp(str(other / "embedding.scp"))
    for u, v in emb.items():
        assert v.shape == (512,) and abs(np.linalg.norm(v) - 1) < 1e-5
        x = torch.from_numpy(prepare_features(feats[u], vad[u]).astype(np.float32))[None]
        with torch.no_grad():
            alone = model(x, torch.tensor([x.shape[1]]))[0].numpy()
        np.testing.assert_allclose(v, alone, atol=2e-6)
        np.testing.assert_allclose(emb5[u], v, atol=2e-6)


def test_long_utterances_are_chunked_and_averaged(tmp_path, data):
    d, feats, vad = data
    exp = make_exp(tmp_path / "exp")
    extract_embeddings(exp, d, ExtractOptions(max_frames=30, device="cpu"))
    emb = kaldiio.load_scp(str(exp / "data/embedding.scp"))
    model, _ = load_embedder(exp, device=torch.device("cpu"))
    x = prepare_features(feats["s1-a"], vad["s1-a"]).astype(np.float32)
    assert x.shape[0] > 60
    parts = split_chunks(x, 30)
    with torch.no_grad():
        each = [model(torch.from_numpy(p)[None], torch.tensor([len(p)]))[0].numpy() for p in parts]
    mean = np.mean(each, axis=0)
    np.testing.assert_allclose(emb["s1-a"], mean / np.linalg.norm(mean), atol=2e-6)
    assert abs(np.linalg.norm(emb["s1-a"]) - 1) < 1e-6


def test_checkpoint_of_another_width_is_refused(tmp_path, data, capfd):
    d, _, _ = data
    exp = make_exp(tmp_path / "exp", width=0.0625, ckpt_width=0.125)
    with pytest.raises(ConfigError, match=r"holds gru\(.*width=0.125.*asks for gru\(.*width=0.0625"):
        extract_embeddings(exp, d, ExtractOptions(device="cpu"))
    assert extract_bin.main([str(exp), str(d), "--device", "cpu"]) == 1
    assert not (exp / "data/embedding.scp").exists()
    assert extract_bin.main([str(tmp_path / "nowhere"), str(d)]) == 1
    assert "config.yaml: missing" in capfd.readouterr().err
