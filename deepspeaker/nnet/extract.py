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
* **Deterministic, whatever ``--nj``.**  The sorted utterance list is cut into fixed
  blocks of ``block_size`` (256) *listed* utterances, a plan known before any feature
  is read (:func:`plan_blocks`); the chunks of a block's usable utterances are batched
  by length, float32 throughout (no autocast), cuDNN in its deterministic mode.  A
  block is computed the same in one process or in any of ``--nj`` jobs, whose shares
  are whole blocks (:mod:`deepspeaker.nnet.extract_jobs`), so the same data dir and
  checkpoint give the same files byte for byte on the same device, whatever ``--nj``
  (the forward's bits were checked not to depend on torch's thread count, 1 vs 2).
  Another batching (``batch_size``, ``block_size``, or other utterances in the dir)
  changes an embedding only by float rounding (the pooling is masked, so padding does
  not leak in; ~1e-7).
* **Bad utterances lose nothing else.**  One that cannot be read or has no voiced
  frame is listed with the reason in ``<out>/failed`` and skipped; the rest are
  written.  ``embedding.ark`` + ``.scp`` appear atomically (temp + rename).
* **Reruns** follow the one rerun rule (:mod:`deepspeaker.marker`): the marker
  ``<out>/.embedding.done`` holds the signature of the checkpoint, the data dir's
  feats.scp, vad.scp and utt2spk, and ``max_frames``; the same signature does
  nothing, another extracts again (nothing trained is lost by redoing it).  ``--nj``
  is how, not what: a finished set is not redone when only it changes.
* **One job runs here.**  With ``nj`` 1 (or a set of one block) the stage embeds in
  its own process: a job would cost a second interpreter and torch import (3-4 s
  measured on the 2-core machine) for nothing.
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
from ..devices import resolve_device
from ..data.ark import ArkWriter, FeatureFileError, read_utt_features
from ..features import prepare_features
from ..jobs import JobProgress, prepare_outputs
from ..marker import Marker, signature
from ..utils import ConfigError, DeepSpeakerError, atomic_write, load_yaml
from .checkpoint import load_checkpoint, load_weights
from .config import train_config_from_dict
from .data import pad_batch
from .models import EmbeddingNet, model_from_config

logger = logging.getLogger(__name__)

READ_BLOCK = 256  # listed utterances read (and their chunks length-sorted) at a time


@dataclass
class ExtractOptions:
    checkpoint: str = "best.pt"   # file name inside the experiment dir, or a path
    max_frames: int = 3000        # voiced frames per chunk (30 s at 10 ms)
    batch_size: int = 32          # chunks per forward
    device: str = "auto"          # auto | cpu | cuda | cuda:N
    block_size: int = READ_BLOCK  # listed utterances read, batched and given to a job together

    def __post_init__(self) -> None:
        if min(self.max_frames, self.batch_size, self.block_size) < 1:
            raise ConfigError(f"max_frames, batch_size and block_size must be >= 1, got "
                              f"{self.max_frames}, {self.batch_size} and {self.block_size}")



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


def plan_blocks(utts: list[str], block_size: int = READ_BLOCK) -> list[list[str]]:
    """The sorted utterances as consecutive blocks of ``block_size``: the unit of batching
    and of the split into jobs, fixed before any feature is read, so that which
    utterances share a batch (and so an embedding's rounding) does not depend on ``--nj``
    or on which utterances turn out unusable in other blocks."""
    return [utts[i:i + block_size] for i in range(0, len(utts), block_size)]


def _read_utterances(data: DataDir, utts: list[str],
                     failed: dict[str, str]) -> Iterator[tuple[str, np.ndarray]]:
    """(utt, prepared features) of ``utts``; unusable ones go to ``failed`` with a reason.

    A damaged or truncated ark costs only the utterances whose entries point into the
    damage (the reason names the scp file and line and the ark); the rest are embedded.
    """
    for utt in utts:
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


def embed_blocks(model: EmbeddingNet, data: DataDir, blocks: list[list[str]],
                 opts: ExtractOptions, device: torch.device, writer: ArkWriter,
                 failed: dict[str, str], progress: JobProgress | None = None) -> int:
    """Embed the utterances of ``blocks`` (of :func:`plan_blocks`) into ``writer`` in order.

    Unusable utterances go to ``failed``; returns the number written.  One block is
    read and embedded at a time, so memory stays that of one block.
    """
    num = 0
    for utts in blocks:
        block = list(_read_utterances(data, utts, failed))
        if block:
            for (utt, _), v in zip(block, embed_block(model, block, opts, device)):
                writer.write(utt, v)
        num += len(block)
        if progress is not None:
            progress.add(len(utts))
    return num


def use_deterministic_kernels(device: torch.device) -> None:
    """cuDNN's deterministic algorithms, no autotuning: the same bits in every run."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def nothing_embedded(data_dir: Path, failed: dict[str, str]) -> DeepSpeakerError:
    return DeepSpeakerError(f"{data_dir}: no utterance could be embedded ({len(failed)} "
                            f"failed, e.g. {next(iter(sorted(failed.items())), '')})")


def write_failed(path: Path, failed: dict[str, str], keep_empty: bool = False) -> None:
    """``utt reason`` lines, sorted; with nothing failed the file is removed (or, with
    ``keep_empty``, a job's empty list is written)."""
    if not failed and not keep_empty:
        path.unlink(missing_ok=True)
        return
    with atomic_write(path) as f:
        for utt in sorted(failed):
            f.write(f"{utt} {failed[utt]}\n")


def read_failed(path: Path) -> dict[str, str]:
    """What :func:`write_failed` wrote, byte for byte (a reason keeps its spaces)."""
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split(" ", 1) for line in f)


def extraction_signature(ckpt_path: Path, data_dir: Path, opts: ExtractOptions) -> dict:
    """What the embeddings are made from: the checkpoint, the data dir's files, ``max_frames``.

    ``batch_size``, ``block_size``, ``device`` and ``--nj`` change only float rounding
    (the first three) and speed: not part of it.
    """
    inputs = [ckpt_path.resolve()] + [data_dir.resolve() / name
                                      for name in ("feats.scp", "vad.scp", "utt2spk")]
    return signature(inputs=inputs, options={"max_frames": opts.max_frames})


def extract_embeddings(exp_dir: str | os.PathLike, data_dir: str | os.PathLike,
                       opts: ExtractOptions | None = None, out_dir: str | os.PathLike | None = None,
                       force: bool = False, nj: int = 1) -> dict:
    """Embed every utterance of ``data_dir`` into ``<out_dir>/embedding.{ark,scp}``.

    ``out_dir`` defaults to ``exp_dir/<name of data dir>`` (SPEC layout).  ``nj`` > 1
    runs that many jobs (at most one per block; :mod:`deepspeaker.nnet.extract_jobs`),
    with the same files as a result.  Returns a summary: counts, failed utterances,
    whether the work was skipped as done.
    """
    opts = opts or ExtractOptions()
    exp_dir, data_dir = Path(exp_dir), Path(data_dir)
    out_dir = Path(out_dir) if out_dir is not None else exp_dir / data_dir.resolve().name
    device = resolve_device(opts.device)
    data = DataDir.load(data_dir)
    if data.feats_scp is None:
        raise DeepSpeakerError(f"{data_dir}/feats.scp: missing; run the fbank stage first")
    nj = max(1, min(nj, len(plan_blocks(data.utts, opts.block_size))))
    # With jobs the network is loaded here only to refuse a wrong checkpoint before any
    # job starts: on the CPU, leaving the GPUs to the jobs.
    model, ckpt_path = load_embedder(exp_dir, opts.checkpoint, device if nj == 1 else None)
    sig = extraction_signature(ckpt_path, data_dir, opts)
    done = Marker(out_dir / ".embedding.done")
    scp = out_dir / "embedding.scp"
    if not force and done.outputs_current(sig, [scp]):
        logger.info("%s: up to date (%s, %s)", scp, ckpt_path, data_dir)
        return {"skipped": True, "num_done": None, "failed": {}}
    prepare_outputs([out_dir], temps_in=[out_dir])
    done.clear()
    logger.info("embedding %d utterances of %s with %s (%s) on %s, chunks of <= %d frames%s",
                len(data.utts), data_dir, ckpt_path, model.config()["name"], device,
                opts.max_frames, f", in {nj} jobs" if nj > 1 else "")
    from . import extract_jobs  # here: it imports this module

    if nj == 1:
        num_done, failed = _extract_here(model, data, opts, device, out_dir)
    else:
        num_done, failed = extract_jobs.extract_in_jobs(exp_dir, data, ckpt_path, opts,
                                                        out_dir, sig, nj, force)
    write_failed(out_dir / "failed", failed)
    if failed:
        logger.warning("%d of %d utterances not embedded, listed with reasons in %s",
                       len(failed), len(data.utts), out_dir / "failed")
    done.write(sig)
    extract_jobs.remove_job_outputs(out_dir)
    logger.info("%s: %d embeddings", scp, num_done)
    return {"skipped": False, "num_done": num_done, "failed": failed}


def _extract_here(model: EmbeddingNet, data: DataDir, opts: ExtractOptions,
                  device: torch.device, out_dir: Path) -> tuple[int, dict[str, str]]:
    """All blocks in this process, straight into ``embedding.{ark,scp}``; progress lines
    in the stage's own log (:class:`~deepspeaker.jobs.JobProgress`)."""
    use_deterministic_kernels(device)
    failed: dict[str, str] = {}
    progress = JobProgress(len(data.utts))
    with ArkWriter(out_dir / "embedding.ark", out_dir / "embedding.scp") as writer:
        num = embed_blocks(model, data, plan_blocks(data.utts, opts.block_size), opts, device,
                           writer, failed, progress)
        if num == 0:
            raise nothing_embedded(data.path, failed)
    progress.finish()
    return num, failed


__all__ = ["ExtractOptions", "embed_block", "embed_blocks", "extract_embeddings",
           "extraction_signature", "load_embedder", "plan_blocks", "read_failed",
           "resolve_device", "split_chunks", "write_failed"]
