"""Batches built ahead of the training step, by worker processes: the data path that feeds the model.

The batch plan (:class:`~deepspeaker.nnet.data.BatchPlan`) is a pure function of
``(seed, epoch, step)``: which utterances, where their chunks start, how long they are
and how they are masked.  So batches can be built anywhere and in any order, and
:func:`batch_loader` hands the steps still to run to a torch ``DataLoader``
(``batch_size=None``: one item is one whole batch of this rank) whose ``num_workers``
processes each compute ``plan.batch(epoch, step, rank, world_size)`` for the steps
the DataLoader gives them, ``prefetch`` batches ahead per worker; the DataLoader
returns them in step order.  The workers only decide *who* builds a batch, never what
it is: the batches, and so the trained weights, are the same bit for bit for 0, 1 or
N workers, for any number of ranks, and after a resume mid-epoch (the loader starts
at the resumed step).

* ``num_workers`` 0 builds the batches in the main process, between steps, as before.
* Workers are *forked* after the features are loaded, so an in-memory feature set (one
  float32 buffer, :class:`~deepspeaker.nnet.data.FeatureSet`) is shared, not copied;
  where ``fork`` does not exist the loader falls back to 0 workers and says so.
  Each worker uses one torch thread and opens its own ark files.
* On CUDA the batches are pinned (``pin_memory``) so that the objectives' copies to
  the device (``non_blocking=True``) overlap with the step.
* An error a user can act on (:class:`~deepspeaker.utils.DeepSpeakerError`, e.g. an
  ark rewritten under a running job) raised in a worker reaches the main process as
  that error, not as a worker traceback.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import multiprocessing
import os
import time
import weakref

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from deepspeaker.nnet.data import BatchPlan
from deepspeaker.threads import core_budget
from deepspeaker.utils import DeepSpeakerError

logger = logging.getLogger(__name__)

MAX_AUTO_WORKERS = 8


def default_num_workers(cores: int | None = None) -> int:
    """``num_workers: auto``: one core is the training step's, the others build batches.

    ``cores`` defaults to this process's share of its core budget
    (:func:`deepspeaker.threads.core_budget`: ``DS_NUM_THREADS`` or the cores it may use),
    divided among the ranks torchrun started on this node (``LOCAL_WORLD_SIZE``).  With a
    single core a worker would only compete with the step: 0.  With two, one worker
    overlaps loading with the step (the main process keeps its core).
    """
    if cores is None:
        ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
        cores = max(1, core_budget()[0] // ranks_here)
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))


def resolve_num_workers(num_workers: int | str) -> int:
    """The worker count of a ``loader.num_workers`` setting (``auto`` or an integer >= 0)."""
    n = default_num_workers() if num_workers == "auto" else int(num_workers)
    if n > 0 and "fork" not in multiprocessing.get_all_start_methods():
        logger.info("loader: no fork on this platform; building batches in the main process "
                    "(num_workers 0 instead of %d)", n)
        return 0
    return n


class SharedSlots:
    """Batch buffers in memory the main process shares with its workers, reused once it is done.

    One anonymous shared mapping of ``workers x slots x capacity`` floats is made in the
    main process *before* the fork, so every worker writes its chunks into memory the
    main process already has mapped, and a batch crosses the process boundary as its
    slot number and a few small numpy arrays (labels), never as a tensor.  Passing
    tensors would make torch send a file descriptor per tensor through a socket thread
    in the worker (``multiprocessing.resource_sharer``), which prints a traceback when
    the main process is interrupted mid-transfer; and a fresh shared buffer per batch
    costs more than building the batch (31 against 8 ms for 256 x 200 x 64 chunks,
    measured here).  Pages of the mapping are committed only once written, so slots
    never used cost address space, not memory.

    ``busy`` says which slots the main process still holds: a worker marks a slot busy
    when it fills it, :func:`iterate_batches` frees it when the next batch is asked for
    (the step that used it is done; a pinned copy was made before that).  ``slots`` covers
    what can be outstanding (``prefetch`` per worker, the batch in use and one in the
    pinning thread); a worker that still finds none free after ``wait_s`` builds the
    batch in its own memory and sends it by value, so a miscount costs time, never a
    deadlock.
    """

    def __init__(self, num_workers: int, slots: int, capacity: int, wait_s: float = 5.0):
        workers = max(1, num_workers)
        self.busy = np.frombuffer(mmap.mmap(-1, workers * slots * 4), dtype=np.int32)
        self.busy = self.busy.reshape(workers, slots)
        self.capacity, self.wait_s = capacity, wait_s
        self._map = mmap.mmap(-1, max(1, workers * slots * capacity) * 4)
        self.buffers = np.frombuffer(self._map, dtype=np.float32).reshape(workers, slots, capacity)
        self.key = next(_SLOT_KEYS)
        _SLOTS[self.key] = self

    def take(self, shape) -> tuple[np.ndarray, int]:
        """(a float32 array of ``shape``, its slot or -1 for private memory) in this worker."""
        worker = get_worker_info().id
        numel = int(np.prod(shape))
        if numel <= self.capacity:
            deadline = time.monotonic() + self.wait_s
            while time.monotonic() < deadline:
                free = np.flatnonzero(self.busy[worker] == 0)
                if len(free):
                    slot = int(free[0])
                    self.busy[worker, slot] = 1
                    return self.buffers[worker, slot, :numel].reshape(shape), slot
                time.sleep(0.001)
        return np.empty(shape, dtype=np.float32), -1

    def view(self, worker: int, slot: int, shape) -> torch.Tensor:
        """The main process's view of a slot that ``worker`` filled."""
        return torch.from_numpy(self.buffers[worker, slot, :int(np.prod(shape))].reshape(shape))

    def release(self, batch: dict) -> None:
        worker, slot = batch.get("slot", (-1, -1))
        if slot >= 0:
            self.busy[worker, slot] = 0


_SLOT_KEYS = itertools.count()
_SLOTS: weakref.WeakValueDictionary[int, SharedSlots] = weakref.WeakValueDictionary()


class WorkerBatch:
    """A batch as a worker sends it: numpy arrays by value, the chunks as a slot number.

    Not a mapping, so the DataLoader's conversion in the worker leaves it alone (it would
    turn the arrays into tensors, sent by file descriptor).  In the main process
    :meth:`tensors` (or :meth:`pin_memory`, called by the DataLoader's pinning thread on
    CUDA) turns it into the dict of tensors the objectives take.  ``chunks`` is the
    chunk array itself when no slot was free (slot -1).
    """

    def __init__(self, items: dict, key: int, worker: int, slot: int, chunks: np.ndarray):
        self.items, self.key, self.worker, self.slot = items, key, worker, slot
        self.shape = chunks.shape
        self.chunks = chunks if slot < 0 else None

    def tensors(self) -> dict:
        out = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
               for k, v in self.items.items()}
        if self.slot >= 0:
            out["slot"] = (self.worker, self.slot)
            _place_chunks(out, _SLOTS[self.key].view(self.worker, self.slot, self.shape))
        else:
            _place_chunks(out, torch.from_numpy(self.chunks))
        return out

    def pin_memory(self, device=None) -> dict:
        return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v
                for k, v in self.tensors().items()}


def _place_chunks(batch: dict, chunks) -> None:
    """Put the chunks where the objective reads them: ``feats``, or ``anchor`` + ``positive``."""
    if "speakers" in batch:
        n = len(batch["speakers"])
        batch["anchor"], batch["positive"] = chunks[:n], chunks[n:]
    else:
        batch["feats"] = chunks


class StepBatches(Dataset):
    """Item ``k``: this rank's batch of the ``k``-th step from ``(epoch, step)`` on, tagged with both."""

    def __init__(self, plan: BatchPlan, epoch: int, step: int, epochs: int, rank: int = 0,
                 world_size: int = 1, slots: SharedSlots | None = None):
        self.plan, self.rank, self.world_size, self.slots = plan, rank, world_size, slots
        self.first = epoch * plan.steps_per_epoch + step
        self.total = max(0, epochs * plan.steps_per_epoch - self.first)

    def __len__(self) -> int:
        return self.total

    def step_of(self, k: int) -> tuple[int, int]:
        return divmod(self.first + k, self.plan.steps_per_epoch)

    def __getitem__(self, k: int) -> dict | WorkerBatch:
        epoch, step = self.step_of(k)
        made = []
        in_worker = get_worker_info() is not None and self.slots is not None

        def allocate(shape):
            if in_worker:
                # A slot of the shared mapping: the main process reads it where it is.
                made.append(self.slots.take(shape))
                return made[-1][0]
            # numpy's allocation, not torch.empty: glibc reuses numpy's freed 13 MB
            # blocks, while torch maps fresh pages for each batch (measured: 2 against
            # 24 ms per batch of 256 x 200 x 64 to allocate and fill).
            made.append((np.empty(shape, dtype=np.float32), -1))
            return made[-1][0]

        try:
            batch = self.plan.batch(epoch, step, self.rank, self.world_size, allocate=allocate)
        except DeepSpeakerError as e:
            # Passed back as a value: the DataLoader would re-raise it as a worker traceback.
            return {"epoch": epoch, "step": step, "error": e}
        chunks, slot = made[0]
        batch = {"epoch": epoch, "step": step, **batch}
        for key in ("feats", "anchor", "positive"):
            batch.pop(key, None)
        if in_worker:
            return WorkerBatch(batch, self.slots.key, get_worker_info().id, slot, chunks)
        _place_chunks(batch, torch.from_numpy(chunks))
        return batch


def _worker_init(_worker_id: int) -> None:
    # Batches are numpy work; the step's threads are the main process's.
    torch.set_num_threads(1)


def batch_loader(plan: BatchPlan, epoch: int, step: int, epochs: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, prefetch: int = 2,
                 pin_memory: bool = False) -> DataLoader:
    """A DataLoader over the steps from ``(epoch, step)`` to the end of epoch ``epochs - 1``.

    Iterate it with :func:`iterate_batches` (which unwraps errors raised in workers).
    """
    slots = None
    if num_workers > 0:
        frames = plan.chunk_frames_range[1] if plan.chunk_frames_range else plan.chunk_frames
        rows = plan.batch_size // world_size * (2 if plan.stage == "triplet" else 1)
        slots = SharedSlots(num_workers, prefetch + 3, rows * frames * plan.feats.num_bins)
    dataset = StepBatches(plan, epoch, step, epochs, rank, world_size, slots)
    kwargs = {}
    if num_workers > 0:
        kwargs = {"multiprocessing_context": "fork", "prefetch_factor": prefetch,
                  "worker_init_fn": _worker_init}
    # Its own generator: the DataLoader draws a base seed from it, and from torch's global
    # one otherwise, which would shift the training's random stream at every (re)start.
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(0), **kwargs)


def iterate_batches(loader: DataLoader):
    """The batches of ``loader`` in step order; a worker's DeepSpeakerError is raised here.

    The workers start now (not at the first batch), so they build while the caller sets
    up.  Asking for the next batch hands the previous one's shared buffer back to its
    worker (:class:`SharedSlots`): do not keep a batch past the next one.
    """
    slots = getattr(loader.dataset, "slots", None)
    batches = iter(loader)

    def generate():
        previous = None
        for batch in batches:
            if previous is not None and slots is not None:
                slots.release(previous)
            if isinstance(batch, WorkerBatch):
                batch = batch.tensors()
            if "error" in batch:
                raise batch["error"]
            previous = batch
            yield batch
    return generate()


__all__ = ["MAX_AUTO_WORKERS", "SharedSlots", "StepBatches", "WorkerBatch", "batch_loader",
           "default_num_workers", "iterate_batches", "resolve_num_workers"]
