"""Training data for the Deep Speaker networks: features in memory, chunks, batch plans.

Paper §4.3: 64-d fbank, voiced frames only (same VAD as the i-vector baseline),
zero mean and unit variance (per utterance, :func:`prepare_features`); training
pairs re-shuffled each epoch.

* :class:`FeatureSet` reads every utterance of a data dir once with kaldiio and keeps
  the prepared (voiced, normalised) float32 matrices in memory when they fit in
  ``max_memory_gb`` (estimated before loading, from ``utt2num_frames`` when present,
  else from the size of the ark files feats.scp points to).  Otherwise it keeps only
  the feats.scp / vad.scp entries and the prepared length of each utterance (one
  streaming pass at load time, so the same utterances are dropped), and
  :meth:`FeatureSet.get` reads an utterance again with kaldiio each time a batch
  needs it.  Batches are identical either way: the chunk offsets depend only on the
  lengths.
* :func:`crop` cuts a fixed ``chunk_frames`` window.  Utterances with fewer voiced
  frames than ``min_frames`` are dropped when loading (logged); those between
  ``min_frames`` and ``chunk_frames`` are padded by repeating themselves (wrap), so
  every chunk has the same length and the networks need no mask during training.
* :class:`BatchPlan` says which utterances (softmax) or anchor-positive pairs
  (triplet) make each *global* batch of an epoch, and where each chunk starts.
  Everything is drawn from generators seeded by ``(seed, epoch)`` for the order and
  ``(seed, epoch, step)`` for the chunk offsets, so that (a) every rank computes the
  same plan without communicating, (b) a restart at ``(epoch, step)`` gets exactly
  the batch it would have got, without saving any sampler state, and (c) the global
  batch is the same whatever the number of ranks.

Rank split: rank ``r`` of ``W`` takes the *contiguous block* ``[r*n/W, (r+1)*n/W)``
of the global batch (``n`` utterances or pairs; ``n`` must be divisible by ``W``).
Contiguous blocks are what :class:`~deepspeaker.nnet.triplet.GlobalTripletLoss`
gathers in rank order, so the gathered batch is the single-process batch, row for
row.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import kaldiio
import numpy as np

from deepspeaker.data import DataDir
from deepspeaker.features import prepare_features
from deepspeaker.utils import DeepSpeakerError

logger = logging.getLogger(__name__)

STAGES = ("softmax", "triplet")


class TrainingDataError(DeepSpeakerError):
    """A data dir that cannot feed training (no features, too few speakers or utterances)."""


@dataclass
class FeatureSet:
    """Prepared features of one data dir: ``get(i)`` is the (frames, bins) float32 matrix of ``utts[i]``.

    ``speakers`` is the sorted speaker list and ``labels[i]`` the index of the speaker of
    ``utts[i]`` in it: the softmax stage's class ids.  In memory, ``feats[i]`` holds the
    matrix; from disk (``feats`` None), ``sources[i]`` is its (feats.scp, vad.scp or None)
    entry and ``get(i)`` reads and prepares it again.  ``lengths[i]`` is its frame count
    either way.
    """

    utts: list[str]
    feats: list[np.ndarray] | None
    speakers: list[str]
    labels: np.ndarray
    utt2spk: dict[str, str]
    lengths: np.ndarray | None = None
    sources: list[tuple[str, str | None]] | None = None
    max_frames: int | None = None
    bins: int | None = None

    def __post_init__(self) -> None:
        if self.feats is None and (self.sources is None or self.lengths is None or self.bins is None):
            raise ValueError("a FeatureSet without feats needs sources, lengths and bins")
        if self.lengths is None:
            self.lengths = np.array([f.shape[0] for f in self.feats], dtype=np.int64)
        if self.bins is None:
            self.bins = int(self.feats[0].shape[1])

    @property
    def in_memory(self) -> bool:
        return self.feats is not None

    def get(self, i: int) -> np.ndarray:
        """The prepared matrix of ``utts[i]`` (from memory, or read again from disk)."""
        if self.feats is not None:
            return self.feats[i]
        feats_rx, vad_rx = self.sources[i]
        x = _read_prepared(feats_rx, vad_rx, self.max_frames)
        if x.shape[0] != self.lengths[i]:
            raise TrainingDataError(f"{self.utts[i]}: {feats_rx} now gives {x.shape[0]} frames, "
                                    f"{self.lengths[i]} when loaded (features changed on disk?)")
        return x

    @classmethod
    def load(cls, data_dir, min_frames: int = 1, max_frames: int | None = None,
             max_memory_gb: float | None = None) -> "FeatureSet":
        """Read feats.scp (and vad.scp when present) of ``data_dir``; keep utts with >= min_frames voiced.

        ``max_frames`` keeps only the first frames of each prepared utterance (to bound
        dev embedding time); None keeps all.  ``max_memory_gb``: keep the features in
        memory only when their estimated size is within it (None: always in memory);
        otherwise read them from disk per batch.
        """
        data = DataDir.load(data_dir)
        if data.feats_scp is None:
            raise TrainingDataError(f"{data.path}/feats.scp: missing; run the fbank stage first")
        in_memory, why = True, "no memory limit"
        if max_memory_gb is not None:
            size, how = estimate_feature_bytes(data)
            in_memory = size <= max_memory_gb * 2 ** 30
            why = (f"estimated {size / 2 ** 30:.3g} GB ({how}) "
                   f"{'<=' if in_memory else '>'} max_memory_gb={max_memory_gb:g}")
        utts, feats, lengths, sources, dropped, bins = [], [], [], [], {}, None
        for utt in data.utts:
            if utt not in data.feats_scp:
                dropped[utt] = "no entry in feats.scp"
                continue
            vad_rx = None
            if data.vad_scp is not None:
                if utt not in data.vad_scp:
                    dropped[utt] = "no entry in vad.scp"
                    continue
                vad_rx = data.vad_scp[utt]
            try:
                x = _read_prepared(data.feats_scp[utt], vad_rx, None)
            except ValueError as e:
                dropped[utt] = str(e)
                continue
            if x.shape[0] < min_frames:
                dropped[utt] = f"{x.shape[0]} voiced frames < min_frames={min_frames}"
                continue
            if max_frames:
                x = x[:max_frames]
            utts.append(utt)
            lengths.append(x.shape[0])
            bins = int(x.shape[1])
            if in_memory:
                feats.append(np.ascontiguousarray(x, dtype=np.float32))
            else:
                sources.append((data.feats_scp[utt], vad_rx))
        if dropped:
            shown = "; ".join(f"{u}: {why}" for u, why in list(dropped.items())[:5])
            logger.warning("%s: dropped %d of %d utterances (%s%s)", data.path, len(dropped),
                           len(data.utts), shown, "; ..." if len(dropped) > 5 else "")
        if not utts:
            raise TrainingDataError(f"{data.path}: no usable utterance (min_frames={min_frames})")
        utt2spk = {u: data.utt2spk[u] for u in utts}
        speakers = sorted(set(utt2spk.values()))
        index = {s: i for i, s in enumerate(speakers)}
        labels = np.array([index[utt2spk[u]] for u in utts], dtype=np.int64)
        logger.info("%s: %d utterances of %d speakers, %d voiced frames %s (%s)", data.path,
                    len(utts), len(speakers), sum(lengths),
                    "in memory" if in_memory else "read from disk per batch", why)
        return cls(utts=utts, feats=feats if in_memory else None, speakers=speakers,
                   labels=labels, utt2spk=utt2spk, lengths=np.array(lengths, dtype=np.int64),
                   sources=None if in_memory else sources, max_frames=max_frames or None,
                   bins=bins)

    @property
    def num_bins(self) -> int:
        return int(self.bins)

    def by_speaker(self) -> list[np.ndarray]:
        """Utterance indices of each speaker (in ``speakers`` order)."""
        return [np.flatnonzero(self.labels == k) for k in range(len(self.speakers))]


def _read_prepared(feats_rx: str, vad_rx: str | None, max_frames: int | None) -> np.ndarray:
    """kaldiio-read one utterance (and its VAD), :func:`prepare_features`, first ``max_frames``."""
    raw = kaldiio.load_mat(feats_rx)
    vad = kaldiio.load_mat(vad_rx) if vad_rx is not None else None
    x = prepare_features(raw, vad)
    if max_frames:
        x = x[:max_frames]
    return np.ascontiguousarray(x, dtype=np.float32)


def _ark_path(rxfile: str) -> str:
    """The file of a feats.scp entry ``path.ark:offset`` (or ``path`` alone)."""
    head, sep, tail = rxfile.rpartition(":")
    return head if sep and tail.isdigit() else rxfile


def estimate_feature_bytes(data: DataDir) -> tuple[int, str]:
    """Upper estimate of the in-memory size (float32) of the features of ``data``, and how.

    From ``utt2num_frames`` (frames x bins x 4 bytes; bins from the first matrix) when it
    covers every utterance of feats.scp, else the total size of the ark files feats.scp
    points to (exact for uncompressed float32 arks, low for compressed ones).
    """
    scp = data.feats_scp or {}
    if not scp:
        return 0, "empty feats.scp"
    nframes = data.utt2num_frames
    if nframes and all(u in nframes for u in scp):
        bins = kaldiio.load_mat(next(iter(scp.values()))).shape[1]
        return sum(int(nframes[u]) for u in scp) * bins * 4, "utt2num_frames"
    files = {_ark_path(rx) for rx in scp.values()}
    try:
        return sum(os.path.getsize(f) for f in files), "size of the feats.scp ark files"
    except OSError as e:
        logger.warning("cannot size the feature files (%s); assuming they fit in memory", e)
        return 0, "unknown size"


def crop(x: np.ndarray, start: int, chunk_frames: int) -> np.ndarray:
    """``chunk_frames`` frames of ``x`` from ``start``; a shorter ``x`` is repeated (wrapped)."""
    n = x.shape[0]
    if n >= chunk_frames:
        return x[start:start + chunk_frames]
    return x[np.arange(chunk_frames) % n]


def rank_slice(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous block of a global batch of ``n`` rows."""
    if n % world_size:
        raise TrainingDataError(f"global batch of {n} is not divisible by {world_size} ranks")
    per = n // world_size
    return slice(rank * per, (rank + 1) * per)


class BatchPlan:
    """The global batches of every epoch, reproducible from ``(seed, epoch, step)``.

    ``stage="softmax"``: a batch is ``batch_size`` utterances (a random permutation of
    all utterances, cut into batches; the incomplete tail is dropped).
    ``stage="triplet"``: a batch is ``batch_size`` anchor-positive pairs (the paper's N
    of §3.3).  Each epoch, every speaker's utterances are shuffled and paired off
    consecutively (so every utterance with a partner appears once per epoch as anchor
    or positive), and all pairs are shuffled and cut into batches.
    """

    def __init__(self, feats: FeatureSet, stage: str, batch_size: int, chunk_frames: int,
                 seed: int = 0):
        if stage not in STAGES:
            raise ValueError(f"stage={stage!r}: expected one of {', '.join(STAGES)}")
        if batch_size < 1 or chunk_frames < 1:
            raise ValueError(f"batch_size={batch_size} and chunk_frames={chunk_frames} must be >= 1")
        self.feats = feats
        self.stage = stage
        self.batch_size = batch_size
        self.chunk_frames = chunk_frames
        self.seed = seed
        self._epoch: int | None = None
        self._order: np.ndarray | None = None
        groups = [g for g in feats.by_speaker() if len(g) >= 2]
        if stage == "triplet":
            if len(groups) < 2:
                raise TrainingDataError("triplet training needs >= 2 speakers with >= 2 utterances")
            num_units = sum(len(g) // 2 for g in groups)
        else:
            num_units = len(feats.utts)
        self.steps_per_epoch = num_units // batch_size
        if self.steps_per_epoch < 1:
            raise TrainingDataError(f"{num_units} {'pairs' if stage == 'triplet' else 'utterances'}"
                                    f" make no full batch of {batch_size}")

    def _units(self, epoch: int) -> np.ndarray:
        """Utterance indices (softmax, shape (U,)) or pairs (triplet, (P, 2)) of ``epoch`` in order."""
        if self._epoch == epoch:
            return self._order
        rng = np.random.default_rng([self.seed, epoch])
        if self.stage == "softmax":
            order = rng.permutation(len(self.feats.utts))
        else:
            pairs = []
            for group in self.feats.by_speaker():
                g = rng.permutation(group)
                pairs.extend(g[: len(g) // 2 * 2].reshape(-1, 2))
            pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
            order = pairs[rng.permutation(len(pairs))]
        self._epoch, self._order = epoch, order
        return order

    def indices(self, epoch: int, step: int) -> np.ndarray:
        """Utterance indices of the global batch: (n,) for softmax, (n, 2) anchor/positive for triplet."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside [0, {self.steps_per_epoch})")
        return self._units(epoch)[step * self.batch_size:(step + 1) * self.batch_size]

    def batch(self, epoch: int, step: int, rank: int = 0, world_size: int = 1) -> dict:
        """This rank's part of global batch ``step`` of ``epoch`` as numpy arrays.

        softmax: ``{"feats": (b, T, D), "labels": (b,)}``;
        triplet: ``{"anchor": (b, T, D), "positive": (b, T, D), "speakers": (b,)}``.
        """
        idx = self.indices(epoch, step)
        # Offsets for the whole global batch, so that they do not depend on world_size.
        rng = np.random.default_rng([self.seed, epoch, step, 1])
        flat = idx.reshape(-1)
        lens = self.feats.lengths[flat]
        starts = (rng.random(len(flat)) * np.maximum(lens - self.chunk_frames + 1, 1)).astype(np.int64)
        starts = starts.reshape(idx.shape)
        part = rank_slice(len(idx), rank, world_size)
        idx, starts = idx[part], starts[part]

        def chunks(col_idx, col_starts):
            return np.stack([crop(self.feats.get(i), s, self.chunk_frames)
                             for i, s in zip(col_idx, col_starts)])

        if self.stage == "softmax":
            return {"feats": chunks(idx, starts), "labels": self.feats.labels[idx]}
        return {"anchor": chunks(idx[:, 0], starts[:, 0]),
                "positive": chunks(idx[:, 1], starts[:, 1]),
                "speakers": self.feats.labels[idx[:, 0]]}


def pad_batch(mats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``mats`` to the longest; return (B, T, D) and the lengths (B,)."""
    lengths = np.array([m.shape[0] for m in mats], dtype=np.int64)
    out = np.zeros((len(mats), int(lengths.max()), mats[0].shape[1]), dtype=np.float32)
    for i, m in enumerate(mats):
        out[i, : m.shape[0]] = m
    return out, lengths
