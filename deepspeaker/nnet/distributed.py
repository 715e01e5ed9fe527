"""torch.distributed as torchrun launches it, with one code path for 1 or N ranks (SPEC D1).

The paper trains with synchronous SGD on 16 GPUs (paper §4.3); we follow WeSpeaker:
``torchrun --nproc_per_node M -m deepspeaker.bin.X ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in every worker, and
:func:`init_distributed` reads them.  With ``WORLD_SIZE`` unset (a plain ``python -m``)
or 1 there is no process group and nothing is spawned, and every helper here
degrades to the identity, so a trainer never branches on the number of ranks.

Backends: ``nccl`` when the rank runs on CUDA (one GPU per rank, ``cuda:LOCAL_RANK``),
``gloo`` on CPU.  Only rank 0 writes shared outputs (:func:`is_main`); every rank logs
to its own file (:func:`rank_log_file`) so that logs never interleave.

:func:`all_gather_with_grad` is what the global hard-negative search of the triplet
loss (paper §3.3) is built on: every rank sees the whole batch, and gradients flow
back only into the rows this rank computed.  See ``deepspeaker/nnet/triplet.py`` for
why that, summed over ranks, is exactly the single-process gradient.

:func:`all_reduce_mean` is the one mean over ranks (float64 sum / world_size) of the
statistics the trainer logs; :func:`broadcast_from_main` hands every rank what rank 0
alone computed (the dev EER).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from deepspeaker.utils import DeepSpeakerError

logger = logging.getLogger(__name__)

# What torchrun exports; all of them or none (WORLD_SIZE alone may say 1).
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(DeepSpeakerError):
    """A launch environment that cannot be right (half-set torchrun variables, bad device)."""


@dataclass
class DistInfo:
    """Where this process sits: its rank among ``world_size`` and the device it computes on.

    ``backend`` is None exactly when no process group was created (one rank).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r}: expected an integer (torchrun sets it)") from None


def _resolve_device(device: str | torch.device, local_rank: int) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError(f"device {device!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        if dev.index >= torch.cuda.device_count():
            raise DistributedError(f"device {dev}: only {torch.cuda.device_count()} CUDA device(s) "
                                   f"visible (LOCAL_RANK={local_rank})")
    return dev


def init_distributed(device: str | torch.device = "auto",
                     timeout: datetime.timedelta | None = None) -> DistInfo:
    """Read torchrun's environment; create the process group when there is more than one rank.

    ``device``: "auto" (``cuda:LOCAL_RANK`` when CUDA is available, else CPU), "cpu",
    "cuda" (``cuda:LOCAL_RANK``) or an explicit ``cuda:i``.  The backend follows the
    device: nccl for CUDA, gloo for CPU.  Calling it again in a process whose group
    already exists returns the same answer without creating a second group.
    """
    present = [k for k in TORCHRUN_ENV if k in os.environ]
    world_size = _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1
    if world_size < 1:
        raise DistributedError(f"WORLD_SIZE={world_size}: must be >= 1")

    if world_size == 1:
        # Plain `python -m ...`: same code path, no group.  A RANK/LOCAL_RANK without
        # WORLD_SIZE means someone half-copied a torchrun environment; refuse to guess.
        if "WORLD_SIZE" not in os.environ and ({"RANK", "LOCAL_RANK"} & set(present)):
            raise DistributedError(
                f"torchrun environment half set: {', '.join(present)} set but WORLD_SIZE is not; "
                f"launch with torchrun or unset {', '.join(sorted({'RANK', 'LOCAL_RANK'} & set(present)))}")
        rank = _env_int("RANK") if "RANK" in os.environ else 0
        local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
        if rank != 0:
            raise DistributedError(f"RANK={rank} with WORLD_SIZE=1: the only rank is 0")
        dev = _resolve_device(device, local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistInfo(rank=0, world_size=1, local_rank=local_rank, device=dev, backend=None)

    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise DistributedError(
            f"torchrun environment half set: WORLD_SIZE={world_size} but {', '.join(missing)} "
            f"not set; launch with `torchrun --nproc_per_node N -m ...`")
    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK")
    if not 0 <= rank < world_size:
        raise DistributedError(f"RANK={rank}: must be in [0, WORLD_SIZE={world_size})")
    if local_rank < 0:
        raise DistributedError(f"LOCAL_RANK={local_rank}: must be >= 0")
    dev = _resolve_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)

    if dist.is_initialized():
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise DistributedError(
                f"a process group already exists with rank {dist.get_rank()} of "
                f"{dist.get_world_size()}, but the environment says {rank} of {world_size}")
        backend = dist.get_backend()
    else:
        kwargs = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                world_size=world_size, **kwargs)
        logger.info("rank %d/%d (local %d) on %s: process group up (%s, %s:%s)", rank, world_size,
                    local_rank, dev, backend, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev,
                    backend=backend)


def is_main(info: DistInfo) -> bool:
    """True on the one rank that writes shared outputs (checkpoints, config.yaml, results)."""
    return info.rank == 0


def barrier(info: DistInfo) -> None:
    """Wait for every rank (e.g. while rank 0 writes); a no-op with one rank."""
    if not info.distributed:
        return
    if info.backend == "nccl":
        dist.barrier(device_ids=[info.device.index])
    else:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Tear the process group down at the end of a run; a no-op with one rank."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _gather_sizes(n: int, info: DistInfo) -> list[int]:
    size = torch.tensor([n], dtype=torch.long, device=info.device)
    sizes = [torch.empty_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _all_gather_cat(x: torch.Tensor, info: DistInfo) -> tuple[torch.Tensor, list[int]]:
    """Every rank's ``x`` concatenated along dim 0 in rank order, and the per-rank row counts.

    Ranks may hold different numbers of rows (a last, short batch): the collective
    needs equal shapes, so rows are padded to the largest count and trimmed after.
    """
    if x.device != info.device:
        raise DistributedError(f"tensor on {x.device} but this rank computes on {info.device}")
    x = x.contiguous()
    sizes = _gather_sizes(x.shape[0], info)
    longest = max(sizes)
    if x.shape[0] < longest:
        pad = x.new_zeros((longest - x.shape[0],) + tuple(x.shape[1:]))
        x = torch.cat([x, pad], dim=0)
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0), sizes


def all_gather_cat(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order, without gradient.

    For labels and bookkeeping (speaker ids, rank ids).  Identity with one rank.
    """
    if not info.distributed:
        return x
    with torch.no_grad():
        return _all_gather_cat(x, info)[0]


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: gather and concatenate.  Backward: keep this rank's slice of the gradient.

    No all-reduce in the backward on purpose: the other ranks' rows are constants here.
    Each rank back-propagates the gradient of the loss it computed with respect to its
    own rows only; summing over ranks (what DDP's gradient all-reduce does, up to its
    1/world_size) then gives the gradient of that loss with respect to every row once.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, info: DistInfo) -> torch.Tensor:  # type: ignore[override]
        gathered, sizes = _all_gather_cat(x, info)
        ctx.start = sum(sizes[:info.rank])
        ctx.stop = ctx.start + sizes[info.rank]
        return gathered

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        return grad_output[ctx.start:ctx.stop].contiguous(), None


def all_gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (rank order); gradient flows to the local slice only.

    With one rank ``x`` itself comes back, so the caller's graph is unchanged.
    """
    if not info.distributed:
        return x
    return _AllGatherWithGrad.apply(x, info)


def all_reduce_mean(value: float | torch.Tensor, info: DistInfo) -> float:
    """The mean over ranks of a scalar (a loss or a statistic to log); the value itself with one rank."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"all_reduce_mean: expected a scalar, got shape {tuple(value.shape)}")
        value = value.detach()
    if not info.distributed:
        return float(value)
    t = torch.as_tensor(value, dtype=torch.float64).reshape(1).to(info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size


def broadcast_from_main(value, info: DistInfo):
    """Rank 0's ``value`` (any picklable object) on every rank; ``value`` itself with one rank.

    For results only rank 0 computes, such as the dev EER, that every rank must act on
    the same way (best checkpoint, early stopping).
    """
    if not info.distributed:
        return value
    obj = [value]
    dist.broadcast_object_list(obj, src=0)
    return obj[0]


def rank_log_file(log_dir: str | os.PathLike, info: DistInfo, name: str = "train") -> Path:
    """``log_dir/<name>.rank<r>.log``: one log per rank, so lines of different ranks never interleave."""
    return Path(log_dir) / f"{name}.rank{info.rank}.log"
