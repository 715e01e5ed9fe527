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

import logging
import multiprocessing
import os

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from deepspeaker.nnet.data import BatchPlan
from deepspeaker.utils import DeepSpeakerError

logger = logging.getLogger(__name__)

MAX_AUTO_WORKERS = 8


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_num_workers(cores: int | None = None) -> int:
    """``num_workers: auto``: one core is the training step's, the others build batches.

    With a single core a worker would only compete with the step: 0.  With two, one
    worker overlaps loading with the step (the main process keeps its core).
    """
    cores = available_cores() if cores is None else cores
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))


def resolve_num_workers(num_workers: int | str) -> int:
    """The worker count of a ``loader.num_workers`` setting (``auto`` or an integer >= 0)."""
    n = default_num_workers() if num_workers == "auto" else int(num_workers)
    if n > 0 and "fork" not in multiprocessing.get_all_start_methods():
        logger.info("loader: no fork on this platform; building batches in the main process "
                    "(num_workers 0 instead of %d)", n)
        return 0
    return n


class StepBatches(Dataset):
    """Item ``k``: this rank's batch of the ``k``-th step from ``(epoch, step)`` on, tagged with both."""

    def __init__(self, plan: BatchPlan, epoch: int, step: int, epochs: int, rank: int = 0,
                 world_size: int = 1):
        self.plan, self.rank, self.world_size = plan, rank, world_size
        self.first = epoch * plan.steps_per_epoch + step
        self.total = max(0, epochs * plan.steps_per_epoch - self.first)

    def __len__(self) -> int:
        return self.total

    def step_of(self, k: int) -> tuple[int, int]:
        return divmod(self.first + k, self.plan.steps_per_epoch)

    def __getitem__(self, k: int) -> dict:
        epoch, step = self.step_of(k)
        made = []

        def allocate(shape):
            # In a worker, shared memory from the start: the DataLoader then passes the
            # batch to the main process as it is, without a copy into shared memory.
            t = torch.empty(shape, dtype=torch.float32)
            made.append(t.share_memory_() if get_worker_info() is not None else t)
            return made[-1].numpy()

        try:
            batch = self.plan.batch(epoch, step, self.rank, self.world_size, allocate=allocate)
        except DeepSpeakerError as e:
            # Passed back as a value: the DataLoader would re-raise it as a worker traceback.
            return {"epoch": epoch, "step": step, "error": e}
        chunks = made[0]
        if "feats" in batch:
            batch["feats"] = chunks
        else:
            n = batch["anchor"].shape[0]
            batch["anchor"], batch["positive"] = chunks[:n], chunks[n:]
        return {"epoch": epoch, "step": step, **batch}


def _worker_init(_worker_id: int) -> None:
    # Batches are numpy work; the step's threads are the main process's.
    torch.set_num_threads(1)


def batch_loader(plan: BatchPlan, epoch: int, step: int, epochs: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, prefetch: int = 2,
                 pin_memory: bool = False) -> DataLoader:
    """A DataLoader over the steps from ``(epoch, step)`` to the end of epoch ``epochs - 1``.

    Iterate it with :func:`iterate_batches` (which unwraps errors raised in workers).
    """
    dataset = StepBatches(plan, epoch, step, epochs, rank, world_size)
    kwargs = {}
    if num_workers > 0:
        kwargs = {"multiprocessing_context": "fork", "prefetch_factor": prefetch,
                  "worker_init_fn": _worker_init}
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory, **kwargs)


def iterate_batches(loader: DataLoader):
    """The batches of ``loader`` in step order; a worker's DeepSpeakerError is raised here."""
    for batch in loader:
        if "error" in batch:
            raise batch["error"]
        yield batch


__all__ = ["MAX_AUTO_WORKERS", "StepBatches", "available_cores", "batch_loader",
           "default_num_workers", "iterate_batches", "resolve_num_workers"]
