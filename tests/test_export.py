"""deepspeaker.nnet.export and ``python -m deepspeaker.bin.export_model``: TorchScript and
ONNX files of both networks that agree with PyTorch, carry their feature settings, and
refuse what cannot be exported with one message.

The utterances are real speech (four librispeech-mini segments from ../shared beside
the repository, as on CI; the mini recipe's synthetic voices where it is absent),
through our fbank, energy VAD and per-utterance normalisation, as stage 8 feeds the
network; the networks are tiny and untrained, with batch-norm statistics drawn at
random so that every layer matters.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from deepspeaker.bin import export_model as export_bin
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.features import (
    compute_fbank_and_energy,
    compute_vad_energy,
    prepare_features,
)
from deepspeaker.nnet.checkpoint import save_checkpoint
from deepspeaker.nnet.config import train_config_from_dict
from deepspeaker.nnet.data import pad_batch
from deepspeaker.nnet.export import export_model, read_export_metadata
from deepspeaker.nnet.extract import load_embedder
from deepspeaker.nnet.models import SequenceBatchNorm, build_model
from deepspeaker.utils import ConfigError, DeepSpeakerError, save_yaml

ROOT = Path(__file__).resolve().parents[1]
FBANK = {"num_mel_bins": 64, "dither": 0.0, "low_freq": 20.0}
VAD = {"vad_energy_threshold": 5.5, "vad_frames_context": 2, "vad_proportion_threshold": 0.12}
SECONDS = (0.8, 2.1, 1.4, 3.0)  # unequal lengths: the batch is padded
WIDTH = 0.0625
TOL = 1e-5


def _make_corpus_module():
    name = "egs_mini_make_corpus"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "egs/mini/local/make_corpus.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


REAL_SPEECH = ROOT.parent / "shared/data/librispeech-mini"


def _audio(i: int, seconds: float) -> np.ndarray:
    """Real speech (the i-th librispeech-mini speaker's first segment, its first
    ``seconds``) where ../shared has it, as CI does; else a synthetic mini voice."""
    if REAL_SPEECH.is_dir():
        import soundfile as sf

        first = sorted(sorted(REAL_SPEECH.glob("*/*.flac"))[::40])[i]
        x, rate = sf.read(first, dtype="int16", frames=int(seconds * 16000))
        assert rate == 16000
        return x.astype(np.float32)
    return _make_corpus_module().make_utterance_audio(7, "eval", i, 0, int(seconds * 16000))


@pytest.fixture(scope="module")
def utterances() -> list[np.ndarray]:
    """Network inputs of four utterances of unequal lengths (voiced frames, normalised)."""
    out = []
    for i, sec in enumerate(SECONDS):
        feats, energy = compute_fbank_and_energy(_audio(i, sec), 16000, **FBANK)
        out.append(prepare_features(feats, compute_vad_energy(energy, **VAD)))
    return out


def make_recipe_exp(root: Path, name: str, seed: int = 0) -> Path:
    """``root/exp/<name>`` trained on ``root/data/train``, laid out as a recipe leaves them."""
    torch.manual_seed(seed)
    model = build_model(name, width=WIDTH)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, SequenceBatchNorm):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
    exp = root / "exp" / f"{name}_softmax_triplet"
    exp.mkdir(parents=True)
    cfg = train_config_from_dict({"model": {"name": name, "options": {"width": WIDTH}}})
    save_yaml(exp / "config.yaml", cfg.to_dict())
    save_checkpoint(exp / "best.pt", {"model": model.state_dict(), "model_config": model.config()})
    save_yaml(exp / "system.yaml", {"kind": "deepspeaker", "model": name,
                                    "strategy": "softmax_triplet", "train_set": "data/train"})
    train = root / "data" / "train"
    if not (train / "feats.scp").exists():
        (train / "data").mkdir(parents=True)
        write_ark_scp(train / "data/raw_fbank_train.1.ark", train / "feats.scp",
                      {"a-1": np.zeros((5, 64), np.float32)})
        save_yaml(train / "data/conf_train.yaml", {"fbank": FBANK, "vad": VAD, "nj": 2})
    return exp


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipe")
    for name in ("rescnn", "gru"):
        make_recipe_exp(root, name)
    return root


def _run_exported(path: Path, fmt: str, x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    if fmt == "torchscript":
        module = torch.jit.load(str(path))
        with torch.no_grad():
            args = (torch.from_numpy(x),) + (() if lengths is None else (torch.from_numpy(lengths),))
            return module(*args).numpy()
    ort = pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime (test extra)")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if lengths is None:  # ONNX inputs are never optional: an unpadded row has all its frames
        lengths = np.full(x.shape[0], x.shape[1], dtype=np.int64)
    return session.run(["embedding"], {"features": x, "lengths": lengths})[0]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", ["rescnn", "gru"])
def test_exported_model_agrees_with_pytorch(recipe, utterances, name, fmt, one_torch_thread):
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
        pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime (test extra)")
    exp = recipe / "exp" / f"{name}_softmax_triplet"
    assert export_bin.main(["--format", fmt, str(exp)]) == 0
    out = exp / "export" / f"embedder.{'pt' if fmt == 'torchscript' else 'onnx'}"
    model, _ = load_embedder(exp)
    x, lengths = pad_batch(utterances)
    assert len(set(lengths.tolist())) == len(SECONDS) and x.shape[1] > 57  # not the traced shape
    with torch.no_grad():
        batch = model(torch.from_numpy(x), torch.from_numpy(lengths)).numpy()
        alone = np.concatenate([model(torch.from_numpy(u)[None]).numpy() for u in utterances])
    if fmt == "torchscript":  # no device of the tracing run is frozen in: runs on CUDA too
        graph = str(torch.jit.load(str(out)).net.inlined_graph)
        assert "aten::gru" in graph or name == "rescnn"
        assert "Device = prim::Constant" not in graph
    got = _run_exported(out, fmt, x, lengths)
    assert got.shape == (len(SECONDS), 512)
    assert np.abs(got - batch).max() < TOL
    assert np.abs(got - alone).max() < TOL  # padding leaks into no row
    short, short_lengths = pad_batch([u[:n] for u, n in zip(utterances, (1, 5, 3))])
    with torch.no_grad():  # down to one frame, shorter than ResCNN's total stride
        want = model(torch.from_numpy(short), torch.from_numpy(short_lengths)).numpy()
    assert np.abs(_run_exported(out, fmt, short, short_lengths) - want).max() < TOL
    one = utterances[1][None]
    assert np.abs(_run_exported(out, fmt, one, None) - alone[1:2]).max() < TOL
    # The rows differ from each other by far more than the tolerance: the test can fail.
    assert np.abs(alone[0] - alone[1]).max() > 100 * TOL


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_file_carries_the_training_feature_settings(recipe, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
    exp = recipe / "exp" / "gru_softmax_triplet"
    out = tmp_path / f"gru.{fmt}"
    written = export_model(exp, out, fmt, max_frames=1500)
    meta = read_export_metadata(out)
    assert meta == written
    assert meta["model"] == "gru" and meta["model_options"]["width"] == WIDTH
    assert meta["embedding_dim"] == 512 and meta["num_mel_bins"] == 64
    assert meta["sample_rate"] == 16000 and meta["fbank"]["low_freq"] == 20.0
    assert meta["vad"] == {"vad_energy_mean_scale": 0.5, **VAD}  # conf_train.yaml, not defaults
    assert meta["normalization"]["window"] == "utterance" and meta["output_normalized"] is True
    assert meta["chunking"]["max_frames"] == 1500
    assert meta["inputs"] == {"features": ["float32", "batch", "frames", 64],
                              "lengths": ["int64", "batch"]}
    assert meta["source"]["features"].endswith("data/train/data/conf_train.yaml")
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="reads the metadata as a user would")
        props = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
        assert json.loads(props["vad"]) == meta["vad"]


def test_feature_settings_can_be_given(recipe, tmp_path):
    exp = recipe / "exp" / "rescnn_softmax_triplet"
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({"fbank": {"num_mel_bins": 64, "low_freq": 40.0}}))
    meta = export_model(exp, tmp_path / "r.pt", "torchscript", features=conf)
    assert meta["fbank"]["low_freq"] == 40.0 and meta["vad"]["vad_energy_threshold"] == 5.0


def test_a_checkpoint_file_exports_alone(recipe, tmp_path, utterances):
    """A checkpoint beside its config, or alone (its recorded architecture), with given features."""
    exp = recipe / "exp" / "gru_softmax_triplet"
    lone = tmp_path / "lone.pt"
    lone.write_bytes((exp / "best.pt").read_bytes())
    conf = recipe / "data/train/data/conf_train.yaml"
    meta = export_model(lone, tmp_path / "lone.ts", "torchscript", features=conf)
    assert meta["source"] == {"checkpoint": str(lone), "features": str(conf)}
    assert export_model(exp / "best.pt", tmp_path / "b.ts", "torchscript")["model"] == "gru"
    x = torch.from_numpy(utterances[0])[None]
    with torch.no_grad():
        a, b = torch.jit.load(str(tmp_path / "lone.ts"))(x), torch.jit.load(str(tmp_path / "b.ts"))(x)
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="max_frames must be an integer >= 1, got 0"):
        export_model(exp, tmp_path / "c.ts", "torchscript", max_frames=0)


def test_torch_export_accepts_dynamic_batch_and_length(recipe, utterances, one_torch_thread):
    """The input check used to call bool() on tensors, which stopped torch.export.

    ResCNN only: torch.export (torch 2.13) specialises the sequence length of any nn.GRU,
    which fixes the GRU net's
    length (TorchScript and ONNX keep it dynamic).  ``min=17``: at 16 frames or fewer
    ResCNN's last map has one frame, and torch.export specialises sizes of 1.
    """
    model, _ = load_embedder(recipe / "exp" / "rescnn_softmax_triplet")
    x, lengths = pad_batch(utterances[:3])
    batch, frames = torch.export.Dim("batch"), torch.export.Dim("frames", min=17, max=100000)
    program = torch.export.export(model, (torch.from_numpy(x), torch.from_numpy(lengths)),
                                  dynamic_shapes=({0: batch, 1: frames}, {0: batch}))
    x4, l4 = pad_batch(utterances)
    with torch.no_grad():
        want = model(torch.from_numpy(x4), torch.from_numpy(l4))
    assert (program.module()(torch.from_numpy(x4), torch.from_numpy(l4)) - want).abs().max() < TOL


def test_eager_checks_still_apply(recipe):
    model, _ = load_embedder(recipe / "exp" / "gru_softmax_triplet")
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\], got \[6\]"):
        model(torch.zeros(1, 5, 64), torch.tensor([6]))


# --------------------------------------------------------------------------- bad input


def test_exp_without_checkpoint(recipe, tmp_path, capfd):
    exp = make_recipe_exp(tmp_path, "gru")
    (exp / "best.pt").unlink()
    assert export_bin.main([str(exp)]) == 1
    err = capfd.readouterr().err
    assert f"{exp}/best.pt: no checkpoint best.pt in {exp}: is it a trained embedding" in err
    assert "Traceback" not in err and not (exp / "export").exists()


def test_unknown_format(recipe, capfd):
    exp = recipe / "exp" / "gru_softmax_triplet"
    assert export_bin.main(["--format", "tflite", str(exp)]) == 1
    assert "unknown export format 'tflite'; known formats are torchscript, onnx" in capfd.readouterr().err
    with pytest.raises(ConfigError, match="unknown export format 'savedmodel'"):
        export_model(exp, exp / "x", "savedmodel")


def test_checkpoint_of_another_architecture(recipe, tmp_path, capfd):
    exp = make_recipe_exp(tmp_path, "gru")
    other = make_recipe_exp(tmp_path / "other", "rescnn")
    out = tmp_path / "gru.pt"
    rc = export_bin.main(["--format", "torchscript", "--checkpoint", str(other / "best.pt"),
                          "--out", str(out), str(exp)])
    assert rc == 1
    err = capfd.readouterr().err
    assert f"checkpoint {other}/best.pt holds rescnn(" in err and "asks for gru(" in err
    assert "differ in architecture" in err and not out.exists()


def test_ivector_system_and_missing_features_are_refused(recipe, tmp_path, capfd):
    ivec = tmp_path / "exp" / "ivector"
    ivec.mkdir(parents=True)
    save_yaml(ivec / "system.yaml", {"kind": "ivector", "train_set": "data/train"})
    assert export_bin.main([str(ivec)]) == 1
    assert (f"{ivec}/system.yaml: {ivec} is not a Deep Speaker network but a system of kind "
            "ivector: only the rescnn and gru networks" in capfd.readouterr().err)
    exp = make_recipe_exp(tmp_path / "lone", "gru")
    (exp / "system.yaml").unlink()
    with pytest.raises(DeepSpeakerError, match="feature settings are unknown; give the stage-1 "
                       r"config .* with --features"):
        export_model(exp, tmp_path / "g.pt", "torchscript")
    assert not (tmp_path / "g.pt").exists()


def test_metadata_of_a_file_not_ours(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x08\x07not a model")
    with pytest.raises(DeepSpeakerError, match="not written by deepspeaker export"):
        read_export_metadata(junk)
