"""Export a trained embedding network to TorchScript or ONNX, carrying its feature settings.

    export_model("exp/gru_softmax_triplet", "gru.onnx", "onnx")

The exported graph is the network of stage 8 (:mod:`deepspeaker.nnet.extract`) in
eval mode: ``features`` float32 (batch, frames, num_mel_bins) and ``lengths`` int64
(batch,), the valid frames of each row (padding after them is ignored), give
``embedding`` float32 (batch, embedding_dim), unit length (the length
normalisation of paper §3.2 is inside the graph).  Batch and length are dynamic.
What stage 8 does around the network is not in the graph, and the file says so in
its metadata (:func:`read_export_metadata`):

* **before**: the fbank of the audio (``fbank`` options), the energy VAD (``vad``
  options), only the voiced frames, each of the 64 bins normalised to zero mean and
  unit variance over the voiced frames of the utterance (``normalization``);
* **after**: an utterance of more than ``max_frames`` voiced frames is cut into
  ``ceil(T / max_frames)`` nearly equal contiguous chunks, and the chunk embeddings
  are averaged and renormalised (``chunking``).

Choices, and why:

* **Tracing, not scripting.**  Both formats are made by tracing a wrapper that always
  passes ``lengths``; while tracing, the network leaves out its checks of tensor
  values and always takes the padded path (:func:`deepspeaker.nnet.models.exporting`),
  so a batch of full rows gives the unpadded embedding up to float rounding, and
  builds its frame indices and GRU state on the device of its input, so that the
  graph holds no device constant of the tracing run (a TorchScript file can be moved
  with ``.to(device)``).  The graph checks no values: ``lengths`` must lie in
  [1, frames], as :func:`~deepspeaker.nnet.data.pad_batch` makes them.  The
  TorchScript file wraps the traced graph in a scripted module whose ``lengths`` may
  be omitted (every frame valid); ONNX inputs cannot be optional, so there
  ``lengths`` is required (pass the number of frames for an unpadded utterance).
* **ONNX by torch's TorchScript-based exporter** (``dynamo=False``, opset
  :data:`ONNX_OPSET`): it needs only the ``onnx`` package, where the dynamo exporter
  needs ``onnxscript`` too.  The forward-only GRU exports as ONNX ``GRU`` without
  sequence lengths; that is exact here, because a valid frame never sees the padding
  after it and the padding is masked before pooling.
* **Metadata travels in the file**: ONNX ``metadata_props`` (one entry per key, its
  value JSON), TorchScript ``_extra_files`` (``deepspeaker.json``).  Reading it back
  needs neither onnx nor torch's loader (:func:`read_export_metadata`).
* **The feature settings are the training features'**: those saved beside the arks
  of the training set's feats.scp (stage 1 writes ``conf_<set>.yaml`` there), found
  from ``system.yaml``'s ``train_set``; or given (``features=``).
* Written atomically (temp + rename): a failed export leaves no file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import time
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..bin.compute_fbank_vad import FeatureConfig
from ..data.kaldi_dir import read_kaldi_map
from ..utils import ConfigError, DeepSpeakerError, atomic_write, load_yaml
from .checkpoint import load_checkpoint, load_weights
from .extract import ExtractOptions, load_embedder
from .models import EmbeddingNet, model_from_config

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}
INPUT_NAMES = ("features", "lengths")
OUTPUT_NAME = "embedding"
ONNX_OPSET = 17
METADATA_FILE = "deepspeaker.json"  # TorchScript _extra_files entry
METADATA_VERSION = 1
NORMALIZATION = {"frames": "voiced", "mean": True, "variance": True, "window": "utterance",
                 "std_floor": 1e-5}  # deepspeaker.features.cmvn.prepare_features
EXAMPLE_FRAMES = (57, 40, 23)  # the traced example batch: padded rows of unequal length


def default_export_path(exp_dir: str | os.PathLike, fmt: str) -> Path:
    """``EXP/export/embedder.{pt,onnx}``: where ``deepspeaker export EXP`` writes."""
    return Path(exp_dir) / "export" / f"embedder{SUFFIXES[check_format(fmt)]}"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; known formats are {', '.join(FORMATS)}")
    return fmt


# --------------------------------------------------------------------------- model


def load_exportable(source: str | os.PathLike, checkpoint: str = "best.pt"
                    ) -> tuple[EmbeddingNet, Path, Path]:
    """(network in eval mode on the CPU, checkpoint path, experiment dir) of ``source``.

    ``source`` is an experiment dir (its ``config.yaml`` and ``checkpoint``) or a
    checkpoint file.  A file beside a ``config.yaml`` must hold that architecture
    (:func:`~deepspeaker.nnet.models.check_compatible`); a lone file is rebuilt from
    the architecture it records.
    """
    source = Path(source)
    if source.is_dir():
        exp_dir = source
        _refuse_non_network(exp_dir)
        ckpt = Path(checkpoint) if os.path.isabs(checkpoint) else exp_dir / checkpoint
        if not ckpt.is_file():
            raise DeepSpeakerError(f"no checkpoint {ckpt.name} in {exp_dir}: is it a trained "
                                   "embedding experiment (stage 6/7 writes best.pt)?", path=ckpt)
        model, ckpt = load_embedder(exp_dir, str(ckpt.resolve()))
        return model, ckpt, exp_dir
    if not source.exists():
        raise DeepSpeakerError("no such experiment dir or checkpoint", path=source)
    exp_dir = source.parent
    if (exp_dir / "config.yaml").is_file():
        model, ckpt = load_embedder(exp_dir, str(source.resolve()))
        return model, ckpt, exp_dir
    state = load_checkpoint(source)
    if not isinstance(state, Mapping) or "model_config" not in state:
        raise DeepSpeakerError("not a training checkpoint (no 'model' / 'model_config')",
                               path=source)
    model = model_from_config(state["model_config"])
    load_weights(model, state, source)
    return model.eval(), source, exp_dir


def _refuse_non_network(exp_dir: Path) -> None:
    """An experiment that says it is not a Deep Speaker network gets a message of its own."""
    info = exp_dir / "system.yaml"
    kind = load_yaml(info).get("kind") if info.is_file() else None
    if kind not in (None, "deepspeaker"):
        raise DeepSpeakerError(f"{exp_dir} is not a Deep Speaker network but a system of kind "
                               f"{kind}: only the rescnn and gru networks are exported to "
                               "TorchScript or ONNX", path=info)
    if not (exp_dir / "config.yaml").is_file():
        raise DeepSpeakerError(f"{exp_dir} is not a trained embedding experiment "
                               "(no config.yaml, the training config stage 6/7 saves)",
                               path=exp_dir / "config.yaml")


class _Traced(nn.Module):
    """The network with ``lengths`` always given: the one signature tracing records."""

    def __init__(self, model: EmbeddingNet):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(features, lengths)


class _OptionalLengths(nn.Module):
    """Scripted around the traced graph, so that TorchScript users may omit ``lengths``."""

    def __init__(self, traced: torch.jit.ScriptModule):
        super().__init__()
        self.net = traced

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full([features.shape[0]], features.shape[1], dtype=torch.long,
                                 device=features.device)
        return self.net(features, lengths)


def example_batch(num_mel_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch to trace with; its values do not matter, its unequal lengths do."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(EXAMPLE_FRAMES), max(EXAMPLE_FRAMES), num_mel_bins, generator=gen)
    return x, torch.tensor(EXAMPLE_FRAMES, dtype=torch.long)


def _trace(model: EmbeddingNet) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # torch 2.x calls tracing deprecated; it is what both exporters here build on.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*deprecated")
        return torch.jit.trace(_Traced(model).eval(), example_batch(model.options.num_mel_bins),
                               check_trace=False)


def _torchscript_bytes(model: EmbeddingNet, metadata: Mapping[str, Any]) -> bytes:
    module = torch.jit.script(_OptionalLengths(_trace(model)))
    buf = io.BytesIO()
    torch.jit.save(module, buf, _extra_files={METADATA_FILE: json.dumps(metadata, sort_keys=True)})
    return buf.getvalue()


def _onnx_bytes(model: EmbeddingNet, metadata: Mapping[str, Any]) -> bytes:
    try:
        import onnx
    except ImportError:
        raise DeepSpeakerError("ONNX export needs the onnx package (torch.onnx.export "
                               "imports it): pip install onnx") from None
    buf = io.BytesIO()
    dynamic_axes = {"features": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
                    OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings():
        # The legacy-exporter notice, and the GRU note on variable lengths (exact here:
        # see the module docstring).
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.onnx.export(_Traced(model).eval(), example_batch(model.options.num_mel_bins), buf,
                          dynamo=False, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET)
    proto = onnx.load_model_from_string(buf.getvalue())
    for key, value in sorted(metadata.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value, sort_keys=True)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


# --------------------------------------------------------------------------- features


def _feature_config(path: Path) -> FeatureConfig:
    values = dict(load_yaml(path))
    values.pop("nj", None)  # how stage 1 ran, not what it computed
    return FeatureConfig.from_dict(values, where=str(path))


def training_feature_config(exp_dir: str | os.PathLike) -> tuple[FeatureConfig, list[Path]]:
    """The fbank + VAD config the experiment's training features were made with.

    ``system.yaml`` names the training set (relative to the recipe dir, two levels
    above ``exp/<tag>``); stage 1 saved its config as ``conf_<set>.yaml`` beside the
    arks that set's feats.scp points into (a combined set points into several dirs:
    their configs must agree).  Returns the config and the files it was read from.
    """
    exp_dir = Path(exp_dir)
    info = exp_dir / "system.yaml"
    hint = "give the stage-1 config (data/<set>/data/conf_<set>.yaml) with --features"
    if not info.is_file() or not load_yaml(info).get("train_set"):
        raise DeepSpeakerError(f"no training set recorded (system.yaml with train_set), so "
                               f"the feature settings are unknown; {hint}", path=info)
    recipe = exp_dir.resolve().parent.parent
    train_set = recipe / load_yaml(info)["train_set"]
    scp = train_set / "feats.scp"
    if not scp.is_file():
        raise DeepSpeakerError(f"the training set's features are gone; {hint}", path=scp)
    ark_dirs = sorted({_ark_dir(spec, recipe) for spec in read_kaldi_map(scp).values()})
    confs = sorted(c for d in ark_dirs for c in d.glob("conf_*.yaml"))
    if not confs:
        raise DeepSpeakerError(f"no conf_*.yaml beside the arks of {scp} "
                               f"({', '.join(map(str, ark_dirs))}); {hint}", path=scp)
    configs = [(c, _feature_config(c)) for c in confs]
    for path, cfg in configs[1:]:
        if cfg != configs[0][1]:
            raise DeepSpeakerError(f"the training features were made with two configs, "
                                   f"{configs[0][0]} and {path}; {hint}", path=scp)
    return configs[0][1], confs


def _ark_dir(spec: str, recipe: Path) -> Path:
    """The dir of the ark an scp entry (``path.ark:offset``) points into."""
    ark = Path(spec.rsplit(":", 1)[0])
    return (ark if ark.is_absolute() else recipe / ark).resolve().parent


def resolve_features(exp_dir: Path, features) -> tuple[FeatureConfig, str]:
    """``features`` (None: the training features', a YAML path, a FeatureConfig or dict)
    as a config, and where it came from."""
    if features is None:
        cfg, confs = training_feature_config(exp_dir)
        return cfg, str(confs[0])
    if isinstance(features, FeatureConfig):
        return features, "given"
    if isinstance(features, Mapping):
        return FeatureConfig.from_dict(dict(features), where="features"), "given"
    path = Path(features)
    if not path.is_file():
        raise DeepSpeakerError("feature config not found", path=path)
    return _feature_config(path), str(path)


# --------------------------------------------------------------------------- metadata


def export_metadata(model: EmbeddingNet, features: FeatureConfig, fmt: str,
                    source: Mapping[str, str], max_frames: int) -> dict:
    """What a user of the file needs to feed it and read its output (module docstring)."""
    opts = model.options
    if features.fbank.num_mel_bins != opts.num_mel_bins:
        raise ConfigError(f"the feature config has {features.fbank.num_mel_bins} mel bins but "
                          f"the {model.name} network takes {opts.num_mel_bins}")
    return {
        "deepspeaker_export_version": METADATA_VERSION,
        "format": fmt,
        "model": model.name,
        "model_options": dataclasses.asdict(opts),
        "num_mel_bins": opts.num_mel_bins,
        "embedding_dim": opts.embedding_dim,
        "sample_rate": features.fbank.sample_rate,
        "fbank": dataclasses.asdict(features.fbank),
        "vad": dataclasses.asdict(features.vad),
        "normalization": dict(NORMALIZATION),
        "chunking": {"max_frames": max_frames, "combine": "mean of chunk embeddings, "
                     "renormalised to unit length"},
        "inputs": {"features": ["float32", "batch", "frames", opts.num_mel_bins],
                   "lengths": ["int64", "batch"]},
        "outputs": {OUTPUT_NAME: ["float32", "batch", opts.embedding_dim]},
        "output_normalized": True,
        "source": dict(source),
        "torch_version": torch.__version__,
    }


def read_export_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict :func:`export_model` wrote into a TorchScript or ONNX file."""
    path = Path(path)
    if not path.is_file():
        raise DeepSpeakerError("exported model not found", path=path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(f"/extra/{METADATA_FILE}")]
            if not names:
                raise DeepSpeakerError("a TorchScript file without deepspeaker metadata "
                                       "(not written by deepspeaker export)", path=path)
            return json.loads(z.read(names[0]))
    props = _onnx_metadata_props(path)
    if "deepspeaker_export_version" not in props:
        raise DeepSpeakerError("neither a TorchScript file nor an ONNX model with deepspeaker "
                               "metadata (not written by deepspeaker export)", path=path)
    return {k: json.loads(v) for k, v in props.items()}


def _onnx_metadata_props(path: Path) -> dict[str, str]:
    """``metadata_props`` (field 14 of ModelProto) read from the protobuf wire format.

    A hand-read of the top-level fields, so that reading the settings needs no onnx
    package: varints, fixed 32/64-bit fields and length-delimited fields are skipped,
    each field-14 entry is a StringStringEntryProto (key = 1, value = 2).  Bytes that
    are not protobuf give an empty dict.
    """
    data = memoryview(path.read_bytes())  # slices of a memoryview copy nothing (the weights)
    props: dict[str, str] = {}
    try:
        for number, value in _fields(data):
            if number == 14 and isinstance(value, memoryview):
                entry = {n: bytes(v) for n, v in _fields(value) if isinstance(v, memoryview)}
                props[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    except (ValueError, IndexError, UnicodeDecodeError):
        return {}
    return props


def _fields(data: memoryview):
    """(field number, int or memoryview) of each field of one protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos:pos + 8].tobytes(), "little"), pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("field runs past the end")
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = int.from_bytes(data[pos:pos + 4].tobytes(), "little"), pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


# --------------------------------------------------------------------------- export


def export_model(source: str | os.PathLike, out_path: str | os.PathLike, fmt: str = "onnx", *,
                 checkpoint: str = "best.pt", features=None,
                 max_frames: int = ExtractOptions.max_frames) -> dict:
    """Write the network of ``source`` (an experiment dir or a checkpoint) to ``out_path``.

    ``fmt`` is ``torchscript`` or ``onnx``; ``features`` the feature settings to
    record (None: the training features', see :func:`training_feature_config`; or a
    stage-1 YAML, a ``FeatureConfig`` or its dict); ``max_frames`` the chunk length
    stage 8 embeds with.  Returns the metadata written into the file.
    """
    check_format(fmt)
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ConfigError(f"max_frames must be an integer >= 1, got {max_frames!r}")
    model, ckpt, exp_dir = load_exportable(source, checkpoint)
    feature_cfg, feature_source = resolve_features(exp_dir, features)
    metadata = export_metadata(model, feature_cfg, fmt, {"checkpoint": str(ckpt),
                                                         "features": feature_source},
                               max_frames)
    start = time.perf_counter()
    with torch.no_grad():
        data = (_torchscript_bytes if fmt == "torchscript" else _onnx_bytes)(model, metadata)
    with atomic_write(out_path, "wb") as f:
        f.write(data)
    logger.info("%s: %s %s network (%d parameters) from %s, %.1f MB in %.1f s", out_path, fmt,
                model.name, sum(p.numel() for p in model.parameters()), ckpt, len(data) / 1e6,
                time.perf_counter() - start)
    return metadata


__all__ = ["FORMATS", "INPUT_NAMES", "ONNX_OPSET", "OUTPUT_NAME", "default_export_path",
           "export_metadata", "export_model", "load_exportable", "read_export_metadata",
           "training_feature_config"]
