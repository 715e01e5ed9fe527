"""Training data for the Deep Speaker networks: features in memory or on disk, chunks, batch plans.

Paper §4.3: 64-d fbank, voiced frames only (same VAD as the i-vector baseline),
zero mean and unit variance (per utterance, :func:`prepare_features`); training
pairs re-shuffled each epoch.

* :class:`FeatureSet` reads every utterance of a data dir once at load time and keeps
  the prepared (voiced, normalised) float32 matrices in memory when they fit in
  ``max_memory_gb`` (estimated before loading, from ``utt2num_frames`` when present,
  else from the size of the ark files feats.scp points to).  In memory they live in
  ONE contiguous float32 buffer (rows of every utterance, one after the other) and
  an offsets array, so that the loader's worker processes, forked after loading,
  share its pages: nothing ever writes to them, so copy-on-write never copies them
  (a list of 100,000 arrays would be touched by the workers' reference counts).
* Otherwise :class:`DiskFeatures` keeps, per utterance, where its raw matrix lies in
  its ark (file, data offset, rows, cols, float32/float64: Kaldi's binary ``\\0B`` +
  ``FM ``/``DM `` layout, parsed once), its voiced frames as runs, and the mean and
  standard deviation of its voiced frames computed exactly as
  :func:`~deepspeaker.features.normalize_utterance` does.  A chunk is then one
  ``os.pread`` of the rows it spans, the voiced rows among them, and the same float64
  normalisation: bit for bit ``crop(prepare_features(feats, vad), start, T)``.
  Compressed matrices (``CM``) and pipes are read again with kaldiio (today's path).
* :func:`crop` cuts a fixed window.  Utterances with fewer voiced frames than
  ``min_frames`` are dropped when loading (logged); those between ``min_frames`` and
  the chunk length are padded by repeating themselves (wrap), so every chunk has the
  same length and the networks need no mask during training.
* :class:`BatchPlan` says which utterances (softmax) or anchor-positive pairs
  (triplet) make each *global* batch of an epoch, where each chunk starts, how long
  the chunks of that batch are (``chunk_frames_range``) and which SpecAugment masks
  they get (:class:`SpecAugment`).  Everything is drawn from generators seeded by
  ``(seed, epoch)`` for the order and ``(seed, epoch, step, k)`` for the rest, so that
  (a) every rank computes the same plan without communicating, (b) a restart at
  ``(epoch, step)`` gets exactly the batch it would have got, without saving any
  sampler state, and (c) the global batch is the same whatever the number of ranks
  and of loader workers (:mod:`deepspeaker.nnet.loader`), which only choose *who*
  computes ``batch(epoch, step)``, never what it is.

Rank split: rank ``r`` of ``W`` takes the *contiguous block* ``[r*n/W, (r+1)*n/W)``
of the global batch (``n`` utterances or pairs; ``n`` must be divisible by ``W``).
Contiguous blocks are what :class:`~deepspeaker.nnet.triplet.GlobalTripletLoss`
gathers in rank order, so the gathered batch is the single-process batch, row for
row.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import kaldiio
import numpy as np

from deepspeaker.data import DataDir
from deepspeaker.data.ark import FeatureFileError, load_entry, require_readable_features
from deepspeaker.features import prepare_features
from deepspeaker.utils import DeepSpeakerError

logger = logging.getLogger(__name__)

STAGES = ("softmax", "triplet")
NORM_EPS = 1e-5  # normalize_utterance's default floor of the standard deviation
# Kaldi binary matrices / vectors we read ourselves: token -> numpy dtype
_MATRIX_TOKENS = {b"FM ": np.float32, b"DM ": np.float64}
_VECTOR_TOKENS = {b"FV ": np.float32, b"DV ": np.float64}
_ARK_ENTRY = re.compile(r"^(?P<path>.+):(?P<offset>\d+)$")
TIMED_PARTS = ("read", "vad", "normalise", "crop", "collate")


class TrainingDataError(DeepSpeakerError):
    """A data dir that cannot feed training (no features, too few speakers or utterances)."""


# --------------------------------------------------------------------------- augmentation


@dataclass
class SpecAugment:
    """SpecAugment time and frequency masks on training chunks (Park et al. 2019); off by default.

    Each chunk gets ``time_masks`` masks of a width drawn uniformly in
    ``[0, time_mask_max_frames]`` frames and ``freq_masks`` masks of up to
    ``freq_mask_max_bins`` bins, at uniform positions; masked values are set to 0, the
    mean of the per-utterance normalised features.  Dev and eval embedding never mask.
    """

    time_masks: int = 0
    time_mask_max_frames: int = 0
    freq_masks: int = 0
    freq_mask_max_bins: int = 0

    def __post_init__(self) -> None:
        for key in ("time_masks", "time_mask_max_frames", "freq_masks", "freq_mask_max_bins"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"spec_augment.{key} must be an integer >= 0, got {value!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.time_masks and self.time_mask_max_frames) or \
            bool(self.freq_masks and self.freq_mask_max_bins)

    def masks(self, n: int, frames: int, bins: int,
              rng: np.random.Generator) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Boolean masks, (n, frames) over time and (n, bins) over frequency (None: no such masks).

        Drawn for every chunk of the *global* batch, so a rank or a worker that builds
        only some of its rows masks them as a single process would.
        """
        out = []
        for count, max_width, size in ((self.time_masks, self.time_mask_max_frames, frames),
                                       (self.freq_masks, self.freq_mask_max_bins, bins)):
            if not (count and max_width):
                out.append(None)
                continue
            width = rng.integers(0, min(max_width, size) + 1, size=(n, count))
            start = (rng.random((n, count)) * (size - width + 1)).astype(np.int64)
            pos = np.arange(size)
            out.append(((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(axis=1))
        return out[0], out[1]

    def apply_rows(self, chunks: np.ndarray, rows: np.ndarray, global_shape: tuple[int, int, int],
                   rng: np.random.Generator) -> np.ndarray:
        """Zero the masked values of ``chunks`` (rows ``rows`` of a global batch of ``global_shape``)."""
        time_mask, freq_mask = self.masks(*global_shape, rng)
        if time_mask is not None:
            chunks[time_mask[rows]] = 0.0
        if freq_mask is not None:
            chunks.transpose(0, 2, 1)[freq_mask[rows]] = 0.0
        return chunks


def check_chunk_range(chunk_range) -> tuple[int, int] | None:
    """``chunk_frames_range`` as (lo, hi) with 1 <= lo <= hi, or None; a ValueError otherwise."""
    if chunk_range is None:
        return None
    if not isinstance(chunk_range, (list, tuple)) or len(chunk_range) != 2 or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in chunk_range):
        raise ValueError(f"chunk_frames_range must be two integers [min, max], got {chunk_range!r}")
    lo, hi = chunk_range
    if not 1 <= lo <= hi:
        raise ValueError(f"chunk_frames_range={list(chunk_range)}: expected 1 <= min <= max")
    return int(lo), int(hi)


# --------------------------------------------------------------------------- the feature set


@dataclass
class FeatureSet:
    """Prepared features of one data dir: ``get(i)`` is the (frames, bins) float32 matrix of ``utts[i]``.

    ``speakers`` is the sorted speaker list and ``labels[i]`` the index of the speaker of
    ``utts[i]`` in it: the softmax stage's class ids.  In memory, ``buffer`` (rows, bins)
    holds every matrix and ``buffer[offsets[i]:offsets[i + 1]]`` is that of ``utts[i]``
    (``feats[i]`` is that view; a list of matrices given as ``feats`` is packed into
    one buffer).  From disk, ``disk`` reads it (``sources[i]`` is its (feats.scp, vad.scp
    or None) entry).  ``lengths[i]`` is its frame count either way.
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
    buffer: np.ndarray | None = field(default=None, repr=False)
    offsets: np.ndarray | None = field(default=None, repr=False)
    disk: DiskFeatures | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.buffer is None and self.feats is not None:
            self.buffer, self.offsets = pack_matrices(self.feats)
        if self.buffer is not None:
            self.lengths = np.diff(self.offsets).astype(np.int64)
            self.bins = int(self.buffer.shape[1])
            self.feats = [self.buffer[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]
        elif self.disk is None:
            if self.sources is None or self.lengths is None or self.bins is None:
                raise ValueError("a FeatureSet without feats needs disk, or sources, lengths and bins")
            self.disk = DiskFeatures.from_sources(self.sources, self.max_frames)
        elif self.disk.sources is None:
            self.disk.sources = self.sources

    @property
    def in_memory(self) -> bool:
        return self.buffer is not None

    def get(self, i: int) -> np.ndarray:
        """The prepared matrix of ``utts[i]`` (a view of the buffer, or read again from disk)."""
        if self.buffer is not None:
            return self.buffer[self.offsets[i]:self.offsets[i + 1]]
        x = self.disk.read(i, int(self.lengths[i]))
        self._check_length(i, x.shape[0])
        return x

    def chunks(self, idx: np.ndarray, starts: np.ndarray, chunk_frames: int,
               timer: dict | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """(n, chunk_frames, bins) float32: ``crop(get(i), s, chunk_frames)`` for each ``i, s``.

        Written into ``out`` when given (e.g. shared memory a loader worker returns as
        it is); ``timer`` (optional) accumulates seconds per :data:`TIMED_PARTS`.
        """
        idx, starts = np.asarray(idx, dtype=np.int64), np.asarray(starts, dtype=np.int64)
        if out is None:
            out = np.empty((len(idx), chunk_frames, self.num_bins), dtype=np.float32)
        if self.buffer is None:
            return self.disk.chunks(idx, starts, self.lengths[idx], chunk_frames, out, timer)
        t0 = time.perf_counter()
        rows = self.offsets[idx][:, None] + chunk_positions(self.lengths[idx], starts, chunk_frames)
        t1 = time.perf_counter()
        # mode="clip": the rows are valid, and "raise" with ``out`` buffers a second copy
        np.take(self.buffer, rows.reshape(-1), axis=0, out=out.reshape(-1, self.num_bins), mode="clip")
        if timer is not None:
            timer["crop"] = timer.get("crop", 0.0) + t1 - t0
            timer["collate"] = timer.get("collate", 0.0) + time.perf_counter() - t1
        return out

    def _check_length(self, i: int, frames: int) -> None:
        if frames != self.lengths[i]:
            rx = self.sources[i][0] if self.sources else self.utts[i]
            raise TrainingDataError(f"{self.utts[i]}: {rx} now gives {frames} frames, "
                                    f"{self.lengths[i]} when loaded (features changed on disk?)")

    @classmethod
    def load(cls, data_dir, min_frames: int = 1, max_frames: int | None = None,
             max_memory_gb: float | None = None) -> FeatureSet:
        """Read feats.scp (and vad.scp when present) of ``data_dir``; keep utts with >= min_frames voiced.

        ``max_frames`` keeps only the first frames of each prepared utterance (to bound
        dev embedding time); None keeps all.  ``max_memory_gb``: keep the features in
        memory only when their estimated size is within it (None: always in memory);
        otherwise read them from disk per batch.  A feats.scp or vad.scp entry whose ark
        is cut short or damaged stops it (FeatureFileError naming the utterance, the
        scp file and line, and the ark) before anything is read.
        """
        data = DataDir.load(data_dir)
        if data.feats_scp is None:
            raise TrainingDataError(f"{data.path}/feats.scp: missing; run the fbank stage first")
        # A damaged ark stops training before any work, naming the first bad entry:
        # training on silently missing utterances would be a wrong answer, not a warning.
        require_readable_features(data, data.utts)
        in_memory, why = True, "no memory limit"
        if max_memory_gb is not None:
            size, how = estimate_feature_bytes(data)
            in_memory = size <= max_memory_gb * 2 ** 30
            why = (f"estimated {size / 2 ** 30:.3g} GB ({how}) "
                   f"{'<=' if in_memory else '>'} max_memory_gb={max_memory_gb:g}")
        nframes = data.utt2num_frames or {}
        packer = MatrixPacker(sum(int(v) for v in nframes.values()) if in_memory else 0)
        disk = DiskIndexBuilder(max_frames or None)
        utts, lengths, sources, dropped, bins = [], [], [], {}, None
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
            feats_rx = data.feats_scp[utt]
            raw, vad, where = _read_raw(disk, data, utt, feats_rx, vad_rx)
            try:
                x = prepare_features(raw, vad)
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
                packer.add(np.asarray(x, dtype=np.float32))
            else:
                sources.append((feats_rx, vad_rx))
                disk.add(raw, vad, where, feats_rx, vad_rx)
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
                    "in memory (one buffer)" if in_memory else
                    f"read from disk per batch ({disk.describe()})", why)
        common = {"utts": utts, "speakers": speakers, "labels": labels, "utt2spk": utt2spk,
                      "lengths": np.array(lengths, dtype=np.int64), "max_frames": max_frames or None,
                      "bins": bins}
        if in_memory:
            buffer, offsets = packer.finish()
            return cls(feats=None, buffer=buffer, offsets=offsets, **common)
        return cls(feats=None, sources=sources, disk=disk.finish(), **common)

    @property
    def num_bins(self) -> int:
        return int(self.bins)

    def by_speaker(self) -> list[np.ndarray]:
        """Utterance indices of each speaker (in ``speakers`` order)."""
        return [np.flatnonzero(self.labels == k) for k in range(len(self.speakers))]


def chunk_positions(lengths: np.ndarray, starts: np.ndarray, chunk_frames: int) -> np.ndarray:
    """(n, chunk_frames) frame positions :func:`crop` takes from utterances of ``lengths``."""
    lengths = np.asarray(lengths, dtype=np.int64)[:, None]
    t = np.arange(chunk_frames, dtype=np.int64)[None, :]
    return np.where(lengths >= chunk_frames, np.asarray(starts, dtype=np.int64)[:, None] + t,
                    t % np.maximum(lengths, 1))


def pack_matrices(mats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One contiguous float32 buffer holding ``mats`` one after the other, and the offsets."""
    packer = MatrixPacker(sum(m.shape[0] for m in mats))
    for m in mats:
        packer.add(np.asarray(m, dtype=np.float32))
    return packer.finish()


class MatrixPacker:
    """Appends (frames, bins) float32 matrices to one growing buffer (doubled when full).

    ``capacity`` (rows) is a first guess, e.g. ``utt2num_frames`` (an upper bound of the
    voiced frames); the buffer is trimmed to the rows written by :meth:`finish`
    (``ndarray.resize``, a realloc: no second copy of the features).
    """

    def __init__(self, capacity: int = 0):
        self.capacity = max(int(capacity), 1024)
        self.buffer: np.ndarray | None = None
        self.rows = 0
        self.offsets = [0]

    def add(self, x: np.ndarray) -> None:
        if self.buffer is None:
            self.buffer = np.empty((self.capacity, x.shape[1]), dtype=np.float32)
        if x.shape[1] != self.buffer.shape[1]:
            raise TrainingDataError(f"a matrix of {x.shape[1]} bins among matrices of "
                                    f"{self.buffer.shape[1]}")
        need = self.rows + x.shape[0]
        if need > self.buffer.shape[0]:
            self.buffer.resize((max(need, 2 * self.buffer.shape[0]), self.buffer.shape[1]),
                               refcheck=False)
        self.buffer[self.rows:need] = x
        self.rows = need
        self.offsets.append(need)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self.buffer is None:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(1, dtype=np.int64)
        self.buffer.resize((self.rows, self.buffer.shape[1]), refcheck=False)
        return self.buffer, np.asarray(self.offsets, dtype=np.int64)


# --------------------------------------------------------------------------- disk


def parse_ark_entry(rxfile: str) -> tuple[str, int] | None:
    """(ark path, offset) of a ``path:offset`` scp entry; None for pipes, slices, bare files."""
    if rxfile.rstrip().endswith("|") or rxfile.endswith("]"):
        return None
    m = _ARK_ENTRY.match(rxfile)
    return (m.group("path"), int(m.group("offset"))) if m else None


class ArkFiles:
    """File descriptors of ark files, opened on first use in each process (workers open their own)."""

    def __init__(self):
        self.paths: list[str] = []
        self._ids: dict[str, int] = {}
        self._fds: dict[int, int] = {}
        self._pid: int | None = None

    def id(self, path: str) -> int:
        if path not in self._ids:
            self._ids[path] = len(self.paths)
            self.paths.append(path)
        return self._ids[path]

    def pread(self, file_id: int, nbytes: int, offset: int) -> bytes:
        if self._pid != os.getpid():   # a forked worker: its own descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(file_id)
        if fd is None:
            fd = self._fds[file_id] = os.open(self.paths[file_id], os.O_RDONLY)
        data = os.pread(fd, nbytes, offset)
        if len(data) != nbytes:
            raise TrainingDataError(f"{self.paths[file_id]}: {nbytes} bytes at offset {offset} "
                                    f"expected, {len(data)} read (ark truncated or rewritten?)")
        return data

    def __getstate__(self):
        return {"paths": self.paths, "_ids": self._ids, "_fds": {}, "_pid": None}


def read_header(files: ArkFiles, file_id: int, offset: int, tokens: dict):
    """(data offset, rows, cols, dtype) of a binary Kaldi object at ``offset``, or None.

    Layout: ``\\0B``, a 3-byte token (``FM `` ...), then for a matrix ``\\4`` int32 rows
    ``\\4`` int32 cols, for a vector ``\\4`` int32 size, then the values row by row.
    """
    head = files.pread(file_id, 15, offset) if tokens is _MATRIX_TOKENS else \
        files.pread(file_id, 10, offset)
    if head[:2] != b"\0B" or head[2:5] not in tokens or head[5] != 4:
        return None
    dtype = tokens[head[2:5]]
    rows = int.from_bytes(head[6:10], "little", signed=True)
    if tokens is _VECTOR_TOKENS:
        return offset + 10, 1, rows, dtype
    if head[10] != 4:
        return None
    cols = int.from_bytes(head[11:15], "little", signed=True)
    return offset + 15, rows, cols, dtype


def voiced_runs(vad: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Runs of voiced frames (vad > 0.5, as select_voiced): (raw start, voiced frames before)."""
    if vad is None:
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    voiced = np.asarray(vad).reshape(-1) > 0.5
    edges = np.diff(np.concatenate([[False], voiced, [False]]).astype(np.int8))
    begin, end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    cum = np.concatenate([[0], np.cumsum(end - begin)[:-1]]) if len(begin) else np.zeros(0)
    return begin.astype(np.int64), cum.astype(np.int64)


def normalization_stats(voiced: np.ndarray, eps: float = NORM_EPS) -> tuple[np.ndarray, np.ndarray]:
    """(mean, floored std) of the voiced frames, float64: the very operations of normalize_utterance.

    A chunk normalised with these, ``((rows.astype(float64) - mean) / std).astype(float32)``,
    is bit for bit the chunk of the normalised utterance (the same element-wise ops).
    """
    x = np.asarray(voiced).astype(np.float64)
    mean = x.mean(axis=0)
    x -= mean
    std = np.sqrt(np.mean(x * x, axis=0))
    return mean, np.maximum(std, eps)


class DiskIndexBuilder:
    """Parses each feats.scp / vad.scp entry once while :meth:`FeatureSet.load` reads it."""

    def __init__(self, max_frames: int | None):
        self.max_frames = max_frames
        self.files = ArkFiles()
        self.cols = {"file": [], "data": [], "rows": [], "cols": [], "dtype": []}
        self.means, self.stds, self.runs, self.fallback, self.voiced = [], [], [], [], []
        self.bins = 0

    def _locate(self, rxfile: str, tokens: dict):
        entry = parse_ark_entry(rxfile)
        if entry is None or not os.path.isfile(entry[0]):
            return None
        file_id = self.files.id(entry[0])
        head = read_header(self.files, file_id, entry[1], tokens)
        return None if head is None else (file_id, *head)

    def _read(self, where) -> np.ndarray:
        file_id, data, rows, cols, dtype = where
        nbytes = rows * cols * np.dtype(dtype).itemsize
        return np.frombuffer(self.files.pread(file_id, nbytes, data), dtype=dtype).reshape(rows, cols)

    def read_raw(self, feats_rx: str, vad_rx: str | None):
        """(raw features, VAD or None, where the features lie or None): our reader, else kaldiio."""
        where = self._locate(feats_rx, _MATRIX_TOKENS)
        raw = self._read(where) if where is not None else kaldiio.load_mat(feats_rx)
        vad = None
        if vad_rx is not None:
            vwhere = self._locate(vad_rx, _VECTOR_TOKENS)
            vad = self._read(vwhere).reshape(-1) if vwhere is not None else kaldiio.load_mat(vad_rx)
        return raw, vad, where

    def add(self, raw: np.ndarray, vad, where, feats_rx: str, vad_rx: str | None) -> None:
        self.fallback.append(where is None)
        self.bins = int(raw.shape[1])
        file_id, data, rows, cols, dtype = where if where is not None else (-1, 0, 0, 0, np.float32)
        for key, value in zip(self.cols, (file_id, data, rows, cols, int(dtype == np.float64))):
            self.cols[key].append(value)
        self.runs.append(voiced_runs(vad) if where is not None else
                         (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        if where is None:
            self.means.append(None)
            self.stds.append(None)
            self.voiced.append(0)
            return
        voiced = raw[np.asarray(vad).reshape(-1) > 0.5] if vad is not None else raw
        self.voiced.append(voiced.shape[0])
        mean, std = normalization_stats(voiced)
        self.means.append(mean)
        self.stds.append(std)

    def describe(self) -> str:
        n = len(self.fallback)
        return f"{n - sum(self.fallback)} of {n} by offset, {sum(self.fallback)} through kaldiio"

    def finish(self) -> DiskFeatures:
        zero = np.zeros(self.bins)
        voiced_ptr = np.concatenate([[0], np.cumsum(self.voiced)]).astype(np.int64)
        seg_raw = np.concatenate([np.zeros(0)] + [r[0] for r in self.runs]).astype(np.int64)
        seg_key = np.concatenate([np.zeros(0)] + [r[1] + voiced_ptr[i]
                                                  for i, r in enumerate(self.runs)]).astype(np.int64)
        return DiskFeatures(
            files=self.files, sources=None, max_frames=self.max_frames,
            file_id=np.asarray(self.cols["file"], dtype=np.int32),
            data_offset=np.asarray(self.cols["data"], dtype=np.int64),
            rows=np.asarray(self.cols["rows"], dtype=np.int64),
            cols=np.asarray(self.cols["cols"], dtype=np.int64),
            is_double=np.asarray(self.cols["dtype"], dtype=bool),
            # kaldiio-read utterances come prepared: mean 0, std 1 leave them as they are
            mean=np.stack([zero if m is None else m for m in self.means]),
            std=np.stack([zero + 1 if s is None else s for s in self.stds]),
            voiced_ptr=voiced_ptr, seg_raw=seg_raw, seg_key=seg_key)


@dataclass
class DiskFeatures:
    """Where each utterance's raw matrix lies in its ark, its voiced runs and its statistics.

    Per utterance ``i`` (numpy arrays, so that forked workers touch no Python objects):
    ``file_id[i]`` (-1: read through kaldiio, ``sources[i]``), ``data_offset``, ``rows``,
    ``cols``, ``is_double``; ``mean[i]`` / ``std[i]`` (float64) of its voiced frames.
    Voiced frames are numbered over the whole set (utterance ``i``'s from
    ``voiced_ptr[i]``); each voiced run starts at raw frame ``seg_raw[k]`` of its
    utterance and at voiced number ``seg_key[k]`` (sorted: one search finds the runs
    of a whole batch, :meth:`voiced_to_raw`).
    """

    files: ArkFiles
    sources: list | None
    max_frames: int | None
    file_id: np.ndarray
    data_offset: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    is_double: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    voiced_ptr: np.ndarray
    seg_raw: np.ndarray
    seg_key: np.ndarray

    @classmethod
    def from_sources(cls, sources, max_frames) -> DiskFeatures:
        """Index built from (feats.scp, vad.scp) entries (a FeatureSet made by hand)."""
        builder = DiskIndexBuilder(max_frames)
        for feats_rx, vad_rx in sources:
            raw, vad, where = builder.read_raw(feats_rx, vad_rx)
            builder.add(raw, vad, where, feats_rx, vad_rx)
        disk = builder.finish()
        disk.sources = list(sources)
        return disk

    def fallback(self, i: int) -> bool:
        return self.file_id[i] < 0

    def read_rows(self, i: int, lo: int, hi: int) -> np.ndarray:
        """Raw rows ``[lo, hi)`` of utterance ``i``: one pread."""
        dtype = np.float64 if self.is_double[i] else np.float32
        cols = int(self.cols[i])
        size = np.dtype(dtype).itemsize * cols
        data = self.files.pread(int(self.file_id[i]), (hi - lo) * size,
                                int(self.data_offset[i]) + lo * size)
        return np.frombuffer(data, dtype=dtype).reshape(hi - lo, cols)

    def read(self, i: int, length: int) -> np.ndarray:
        """The whole prepared utterance ``i`` (its first ``length`` voiced frames)."""
        if self.fallback(i):
            return self._read_fallback(i, length)
        out = np.empty((1, length, int(self.mean.shape[1])), dtype=np.float32)
        return self.chunks(np.array([i]), np.array([0]), np.array([length]), int(length), out)[0]

    def voiced_to_raw(self, idx: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Raw frames of voiced ``positions`` (n, T) of utterances ``idx`` (n,): one search for all.

        ``seg_key`` (voiced frames before each run, counted over the whole set) is sorted,
        so the run holding each position is one ``searchsorted`` over the batch.
        """
        key = self.voiced_ptr[idx][:, None] + positions
        k = np.searchsorted(self.seg_key, key, side="right") - 1
        return self.seg_raw[k] + key - self.seg_key[k]

    def chunks(self, idx: np.ndarray, starts: np.ndarray, lengths: np.ndarray, chunk_frames: int,
               out: np.ndarray, timer: dict | None = None) -> np.ndarray:
        """Prepared chunks into ``out`` (n, chunk_frames, bins) float32; see :meth:`FeatureSet.chunks`.

        Per chunk: one pread of the raw rows it spans, the voiced ones among them, and
        the normalisation of :func:`normalization_stats` in float64 while they are in cache.
        """
        clock = time.perf_counter
        parts = dict.fromkeys(TIMED_PARTS, 0.0)
        t = clock()
        positions = chunk_positions(lengths, starts, chunk_frames)
        parts["crop"] += clock() - t
        t = clock()
        fast = self.file_id[idx] >= 0
        rows = np.zeros_like(positions)
        if fast.any():
            rows[fast] = self.voiced_to_raw(idx[fast], positions[fast])
        lo, hi = rows.min(axis=1), rows.max(axis=1) + 1
        contiguous = (hi - lo) == chunk_frames     # then rows are lo, lo + 1, ... (sorted)
        tmp = np.empty((chunk_frames, out.shape[2]), dtype=np.float64)
        parts["vad"] += clock() - t
        for j, i in enumerate(idx):
            t0 = clock()
            if not fast[j]:
                x = self._read_fallback(i, int(lengths[j]))
                out[j] = x[positions[j]]
                parts["read"] += clock() - t0
                continue
            span = self.read_rows(i, int(lo[j]), int(hi[j]))
            t1 = clock()
            if not contiguous[j]:
                span = span[rows[j] - lo[j]]
            t2 = clock()
            # f32 - f64 is computed in f64 after an exact widening: normalize_utterance's ops
            np.subtract(span, self.mean[i], out=tmp)
            np.divide(tmp, self.std[i], out=tmp)
            t3 = clock()
            out[j] = tmp                                # into the batch, rounded to float32
            parts["read"] += t1 - t0
            parts["vad"] += t2 - t1
            parts["normalise"] += t3 - t2
            parts["collate"] += clock() - t3
        if timer is not None:
            for k, v in parts.items():
                timer[k] = timer.get(k, 0.0) + v
        return out

    def _read_fallback(self, i: int, length: int) -> np.ndarray:
        """A kaldiio-read utterance (compressed, a pipe), prepared as before."""
        feats_rx, vad_rx = self.sources[i]
        x = _read_prepared(feats_rx, vad_rx, self.max_frames)
        if x.shape[0] != length:
            raise TrainingDataError(f"{feats_rx} now gives {x.shape[0]} frames, {length} when "
                                    f"loaded (features changed on disk?)")
        return x


def _read_prepared(feats_rx: str, vad_rx: str | None, max_frames: int | None) -> np.ndarray:
    """kaldiio-read one utterance (and its VAD), :func:`prepare_features`, first ``max_frames``."""
    raw = kaldiio.load_mat(feats_rx)
    vad = kaldiio.load_mat(vad_rx) if vad_rx is not None else None
    x = prepare_features(raw, vad)
    if max_frames:
        x = x[:max_frames]
    return np.ascontiguousarray(x, dtype=np.float32)


# What reading a feats.scp / vad.scp entry raises on a file that is not what it should
# be (kaldiio's checks are bare asserts; ours are TrainingDataError).
_READ_ERRORS = (TrainingDataError, AssertionError, ValueError, RuntimeError, OSError, EOFError,
                IndexError, KeyError, TypeError, struct.error, UnicodeDecodeError)


def _read_raw(disk: DiskIndexBuilder, data: DataDir, utt: str, feats_rx: str,
              vad_rx: str | None):
    """``disk.read_raw`` of one utterance; a damaged entry is a FeatureFileError naming it.

    :func:`require_readable_features` has already checked every entry it can size;
    this catches the rest (text arks, pipes, damage inside compressed matrices).
    """
    try:
        return disk.read_raw(feats_rx, vad_rx)
    except _READ_ERRORS as e:
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise FeatureFileError(utt, f"cannot read its features or VAD ({what})",
                               scp=str(data.path / "feats.scp"),
                               line=data.line_of("feats.scp", utt), entry=feats_rx) from None


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
        first = next(iter(scp))
        bins = load_entry(scp[first], utt=first, scp=data.path / "feats.scp",
                          line=data.line_of("feats.scp", first)).shape[1]
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

    ``sample_classes=K`` (softmax, K > 0): each batch also carries the classes of a
    partial softmax (:func:`draw_classes`) and the labels as positions among them, the
    same on every rank, drawn from ``(seed, epoch, step)`` alone.
    """

    def __init__(self, feats: FeatureSet, stage: str, batch_size: int, chunk_frames: int,
                 seed: int = 0, chunk_frames_range: Sequence[int] | None = None,
                 spec_augment: SpecAugment | None = None, sample_classes: int = 0):
        if stage not in STAGES:
            raise ValueError(f"stage={stage!r}: expected one of {', '.join(STAGES)}")
        if batch_size < 1 or chunk_frames < 1:
            raise ValueError(f"batch_size={batch_size} and chunk_frames={chunk_frames} must be >= 1")
        self.feats = feats
        self.stage = stage
        self.batch_size = batch_size
        self.chunk_frames = chunk_frames
        self.chunk_frames_range = check_chunk_range(chunk_frames_range)
        self.spec_augment = spec_augment if spec_augment is not None and spec_augment.enabled else None
        self.seed = seed
        self.sample_classes = sample_classes if stage == "softmax" else 0
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

    def chunk_length(self, epoch: int, step: int) -> int:
        """Frames per chunk of global batch ``step``: ``chunk_frames``, or one draw in the range.

        One length per global batch (every rank draws the same), from its own generator,
        so that the offsets and masks drawn after it are those of a fixed-length run.
        """
        if self.chunk_frames_range is None:
            return self.chunk_frames
        lo, hi = self.chunk_frames_range
        return int(np.random.default_rng([self.seed, epoch, step, 2]).integers(lo, hi + 1))

    def batch(self, epoch: int, step: int, rank: int = 0, world_size: int = 1,
              timer: dict | None = None, allocate=None) -> dict:
        """This rank's part of global batch ``step`` of ``epoch`` as numpy arrays.

        softmax: ``{"feats": (b, T, D), "labels": (b,)}``;
        triplet: ``{"anchor": (b, T, D), "positive": (b, T, D), "speakers": (b,)}`` (the
        two halves, in that order, of one (2b, T, D) array).  ``allocate(shape)``
        (optional) returns the float32 array the chunks are written into (the loader's
        shared memory); ``timer`` (optional) accumulates seconds per :data:`TIMED_PARTS`.
        """
        idx = self.indices(epoch, step)
        frames = self.chunk_length(epoch, step)
        # Offsets (and masks) for the whole global batch, so that they do not depend on world_size.
        rng = np.random.default_rng([self.seed, epoch, step, 1])
        flat = idx.reshape(-1)
        lens = self.feats.lengths[flat]
        starts = (rng.random(len(flat)) * np.maximum(lens - frames + 1, 1)).astype(np.int64)
        part = rank_slice(len(idx), rank, world_size)
        # Rows of the global (flat) batch this rank builds: its anchors, then its positives.
        rows = np.arange(len(flat)).reshape(idx.shape)[part].T.reshape(-1)
        shape = (len(rows), frames, self.feats.num_bins)
        out = allocate(shape) if allocate is not None else np.empty(shape, dtype=np.float32)
        chunks = self.feats.chunks(flat[rows], starts[rows], frames, timer, out=out)
        if self.spec_augment is not None:
            t = time.perf_counter()
            masks = np.random.default_rng([self.seed, epoch, step, 3])
            self.spec_augment.apply_rows(chunks, rows, (len(flat), *shape[1:]), masks)
            if timer is not None:
                timer["augment"] = timer.get("augment", 0.0) + time.perf_counter() - t
        if self.stage == "softmax":
            labels = self.feats.labels[idx[part]]
            if not self.sample_classes:
                return {"feats": chunks, "labels": labels}
            classes = draw_classes(self.feats.labels[idx], len(self.feats.speakers),
                                   self.sample_classes, np.random.default_rng([self.seed, epoch, step, 4]))
            return {"feats": chunks, "labels": labels, "classes": classes,
                    "targets": np.searchsorted(classes, labels)}
        idx = idx[part]
        n = len(idx)
        return {"anchor": chunks[:n], "positive": chunks[n:], "speakers": self.feats.labels[idx[:, 0]]}


def draw_classes(labels: np.ndarray, num_classes: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """The sorted classes of one partial-softmax step: every class in ``labels`` (the global
    batch's), then others drawn uniformly without replacement up to ``k`` in all.

    The batch's own classes must be there (their logits are the targets); more than ``k``
    of them keep them all.  The others are the j-th classes not in ``labels``, for ``j``
    drawn from ``range(num_classes - len(positives))``, so nothing is drawn twice and the
    cost is that of the draw, not of ``num_classes``.
    """
    positives = np.unique(labels).astype(np.int64)
    extra = min(k, num_classes) - len(positives)
    if extra <= 0:
        return positives
    j = np.sort(rng.choice(num_classes - len(positives), size=extra, replace=False))
    # the j-th non-positive class is j plus the positives at or below it
    others = j + np.searchsorted(positives - np.arange(len(positives)), j, side="right")
    return np.union1d(positives, others)


def pad_batch(mats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``mats`` to the longest; return (B, T, D) and the lengths (B,)."""
    lengths = np.array([m.shape[0] for m in mats], dtype=np.int64)
    out = np.zeros((len(mats), int(lengths.max()), mats[0].shape[1]), dtype=np.float32)
    for i, m in enumerate(mats):
        out[i, : m.shape[0]] = m
    return out, lengths
