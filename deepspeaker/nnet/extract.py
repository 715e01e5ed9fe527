"""Utterance embeddings from a trained experiment (SPEC stage 8; paper §3.2, §4.1).

Whole utterances are embedded: the voiced frames, normalised per utterance exactly as
in training (:func:`deepspeaker.features.prepare_features`), through the embedding
network in eval mode, temporal average over the valid frames, affine, unit length.

* **One source of truth for the model.**  The network is rebuilt from the
  experiment's own ``config.yaml`` (the training config the trainer saved), and the
  checkpoint's recorded architecture must agree with it (:func:`check_compatible`);
  a checkpoint of another model or width is refused naming both.
* **Long utterances** (more than ``max_frames`` voiced frames) are cut into
  ``ceil(T / max_frames)`` nearly equal, contiguous chunks; the chunk embeddings are
  averaged and renormalised, so memory stays bounded and no tail chunk is a sliver.
* **Deterministic.**  Utterances are read in sorted order in fixed blocks, chunks are
  batched by length within a block, float32 throughout (no autocast), cuDNN in its
  deterministic mode: the same data dir and checkpoint give the same vectors bit for
  bit on the same device.  Another batching (``batch_size``, or other utterances in
  the dir) changes an embedding only by float rounding (the pooling is masked, so
  padding does not leak in; ~1e-7).
* **Bad utterances lose nothing else.**  One that cannot be read or has no voiced
  frame is listed with the reason in ``<out>/failed`` and skipped; the rest are
  written.  ``embedding.ark`` + ``.scp`` appear atomically (temp + rename).
* **Reruns** follow the one rerun rule (:mod:`deepspeaker.marker`): the marker
  ``<out>/.embedding.done`` holds the signature of the checkpoint, the data dir's
  feats.scp, vad.scp and utt2spk, and ``max_frames``; the same signature does
  nothing, another extracts again (nothing trained is lost by redoing it).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..data import DataDir
from ..data.ark import ArkWriter, FeatureFileError, read_utt_features
from ..features import prepare_features
from ..marker import Marker, signature
from ..utils import ConfigError, DeepSpeakerError, atomic_write, load_yaml
from .checkpoint import load_checkpoint, load_weights
from .config import train_config_from_dict
from .data import pad_batch
from .models import EmbeddingNet, model_from_config

logger = logging.getLogger(__name__)

READ_BLOCK = 256  # utterances read (and their chunks length-sorted) at a time


@dataclass
class ExtractOptions:
    checkpoint: str = "best.pt"   # file name inside the experiment dir, or a path
    max_frames: int = 3000        # voiced frames per chunk (30 s at 10 ms)
    batch_size: int = 32          # chunks per forward
    device: str = "auto"          # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.batch_size < 1:
            raise ConfigError(f"max_frames and batch_size must be >= 1, got {self.max_frames} "
                              f"and {self.batch_size}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device")
    return dev


def load_embedder(exp_dir: str | os.PathLike, checkpoint: str = "best.pt",
                  device: torch.device | None = None) -> tuple[EmbeddingNet, Path]:
    """The trained embedding network of ``exp_dir`` in eval mode, and the checkpoint path.

    The architecture comes from ``exp_dir/config.yaml``; the weights from
    ``checkpoint`` (relative to ``exp_dir`` unless absolute), whose recorded model
    config must match.
    """
    exp_dir = Path(exp_dir)
    cfg_path = exp_dir / "config.yaml"
    if not cfg_path.is_file():
        raise DeepSpeakerError(f"{cfg_path}: missing; is {exp_dir} a trained embedding experiment?")
    config = train_config_from_dict(load_yaml(cfg_path), where=str(cfg_path))
    model = model_from_config({"name": config.model.name, "options": dict(config.model.options)})
    ckpt_path = Path(checkpoint) if os.path.isabs(checkpoint) else exp_dir / checkpoint
    load_weights(model, load_checkpoint(ckpt_path), ckpt_path)
    model.eval()
    if device is not None:
        model.to(device)
    return model, ckpt_path


def split_chunks(x: np.ndarray, max_frames: int) -> list[np.ndarray]:
    """``x`` as ``ceil(T / max_frames)`` contiguous, nearly equal chunks of <= max_frames rows."""
    n = max(1, math.ceil(x.shape[0] / max_frames))
    return [x] if n == 1 else np.array_split(x, n)


def _read_utterances(data: DataDir, failed: dict[str, str]) -> Iterator[tuple[str, np.ndarray]]:
    """(utt, prepared features) in sorted order; unusable ones go to ``failed`` with a reason.

    A damaged or truncated ark costs only the utterances whose entries point into the
    damage (the reason names the scp file and line and the ark); the rest are embedded.
    """
    for utt in data.utts:
        try:
            raw, vad = read_utt_features(data, utt)
        except FeatureFileError as e:
            failed[utt] = e.listing
            logger.warning("%s; not embedded", e)
            continue
        try:
            x = prepare_features(raw, vad)
        except ValueError as e:
            line = data.line_of("feats.scp", utt)
            failed[utt] = f"{data.path}/feats.scp:{line}: {data.feats_scp[utt]}: {e}"
            continue
        if x.shape[0] == 0:
            failed[utt] = "no voiced frames"
            continue
        yield utt, np.ascontiguousarray(x, dtype=np.float32)


@torch.no_grad()
def embed_block(model: EmbeddingNet, block: list[tuple[str, np.ndarray]], opts: ExtractOptions,
                device: torch.device) -> list[np.ndarray]:
    """Unit embeddings of the utterances of ``block`` (chunked, batched by length, averaged)."""
    chunks = [(i, c) for i, (_, x) in enumerate(block) for c in split_chunks(x, opts.max_frames)]
    order = sorted(range(len(chunks)), key=lambda j: (chunks[j][1].shape[0], j))
    dim = model.options.embedding_dim
    sums = np.zeros((len(block), dim), dtype=np.float32)
    counts = np.zeros(len(block), dtype=np.int64)
    for s in range(0, len(order), opts.batch_size):
        idx = order[s:s + opts.batch_size]
        x, lengths = pad_batch([chunks[j][1] for j in idx])
        emb = model(torch.from_numpy(x).to(device), torch.from_numpy(lengths).to(device))
        emb = emb.float().cpu().numpy()
        for row, j in enumerate(idx):
            sums[chunks[j][0]] += emb[row]
            counts[chunks[j][0]] += 1
    out = []
    for i in range(len(block)):
        v = sums[i]
        if counts[i] > 1:  # one chunk: already unit length, keep its bits
            v = v / np.float32(max(float(np.linalg.norm(v)), 1e-12))
        out.append(v.astype(np.float32))
    return out


def extraction_signature(ckpt_path: Path, data_dir: Path, opts: ExtractOptions) -> dict:
    """What the embeddings are made from: the checkpoint, the data dir's files, ``max_frames``.

    ``batch_size`` and ``device`` change only float rounding and speed: not part of it.
    """
    inputs = [ckpt_path.resolve()] + [data_dir.resolve() / name
                                      for name in ("feats.scp", "vad.scp", "utt2spk")]
    return signature(inputs=inputs, options={"max_frames": opts.max_frames})


def extract_embeddings(exp_dir: str | os.PathLike, data_dir: str | os.PathLike,
                       opts: ExtractOptions | None = None, out_dir: str | os.PathLike | None = None,
                       force: bool = False) -> dict:
    """Embed every utterance of ``data_dir`` into ``<out_dir>/embedding.{ark,scp}``.

    ``out_dir`` defaults to ``exp_dir/<name of data_dir>`` (SPEC layout).  Returns a
    summary: counts, failed utterances, whether the work was skipped as done.
    """
    opts = opts or ExtractOptions()
    exp_dir, data_dir = Path(exp_dir), Path(data_dir)
    out_dir = Path(out_dir) if out_dir is not None else exp_dir / data_dir.resolve().name
    device = resolve_device(opts.device)
    model, ckpt_path = load_embedder(exp_dir, opts.checkpoint, device)
    data = DataDir.load(data_dir)
    if data.feats_scp is None:
        raise DeepSpeakerError(f"{data_dir}/feats.scp: missing; run the fbank stage first")
    sig = extraction_signature(ckpt_path, data_dir, opts)
    done = Marker(out_dir / ".embedding.done")
    scp = out_dir / "embedding.scp"
    if not force and done.outputs_current(sig, [scp]):
        logger.info("%s: up to date (%s, %s)", scp, ckpt_path, data_dir)
        return {"skipped": True, "num_done": None, "failed": {}}
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    out_dir.mkdir(parents=True, exist_ok=True)
    done.clear()
    failed: dict[str, str] = {}
    num_done = 0
    logger.info("embedding %d utterances of %s with %s (%s) on %s, chunks of <= %d frames",
                len(data.utts), data_dir, ckpt_path, model.config()["name"], device, opts.max_frames)
    with ArkWriter(out_dir / "embedding.ark", scp) as writer:
        block: list[tuple[str, np.ndarray]] = []

        def flush():
            nonlocal num_done
            for (utt, _), v in zip(block, embed_block(model, block, opts, device)):
                writer.write(utt, v)
            num_done += len(block)
            block.clear()

        for item in _read_utterances(data, failed):
            block.append(item)
            if len(block) == READ_BLOCK:
                flush()
        if block:
            flush()
        if num_done == 0:
            raise DeepSpeakerError(f"{data_dir}: no utterance could be embedded "
                                   f"({len(failed)} failed, e.g. {next(iter(failed.items()), '')})")
    failed_path = out_dir / "failed"
    if failed:
        with atomic_write(failed_path) as f:
            for utt in sorted(failed):
                f.write(f"{utt} {failed[utt]}\n")
        logger.warning("%d of %d utterances not embedded, listed with reasons in %s",
                       len(failed), len(data.utts), failed_path)
    else:
        failed_path.unlink(missing_ok=True)
    done.write(sig)
    logger.info("%s: %d embeddings", scp, num_done)
    return {"skipped": False, "num_done": num_done, "failed": failed}


__all__ = ["ExtractOptions", "embed_block", "extract_embeddings", "extraction_signature",
           "load_embedder", "resolve_device", "split_chunks"]
