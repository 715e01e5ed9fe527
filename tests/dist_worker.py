"""One torchrun worker for tests/test_distributed.py: every multi-rank check in one launch.

Run as ``python -m torch.distributed.run --nproc_per_node 2 ... tests/dist_worker.py OUT``;
each rank writes what it saw to ``OUT/rank<r>.pt`` and the test compares it with a
single-process computation of the same batch.  One launch for all checks because
starting torch in two fresh processes costs far more than the checks themselves.

The problem builders (:func:`make_pairs`, :func:`make_cross_rank_case`) and the
training step (:func:`train`) are imported by the test too, so that the 1-rank
reference runs exactly the same code with ``WORLD_SIZE`` unset.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepspeaker.nnet.data import draw_classes
from deepspeaker.nnet.distributed import (DistInfo, all_gather_with_grad, all_reduce_mean, barrier,
                                          broadcast_from_main, cleanup, init_distributed, is_main,
                                          rank_log_file)
from deepspeaker.nnet.objectives import SampledHead
from deepspeaker.nnet.triplet import GlobalTripletLoss

WORLD = 2
PAIRS = 8           # global batch of AP pairs; each rank gets PAIRS // WORLD
IN_DIM, EMB_DIM = 10, 8
LR, MOMENTUM = 0.05, 0.99   # paper §4.3
STEPS = 2
F32_VALUES = (0.1, 0.7)   # one per rank; not exact in float32



def as_floats(stats):
    """The loss's statistics (device tensors, read back on logging steps) as numbers."""
    return {k: float(v) for k, v in stats.items()}

def make_pairs(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A global batch of PAIRS (anchor, positive) inputs, float64, with speaker ids.

    Speakers repeat (0 and 1 have two pairs each, on different ranks) so that the
    same-speaker exclusion matters across ranks; the noise is large enough that some
    negatives are hard and some are not.
    """
    g = torch.Generator().manual_seed(100 + step)
    speakers = torch.tensor([0, 1, 2, 3, 0, 4, 5, 1])
    centroids = torch.randn(6, IN_DIM, generator=g, dtype=torch.float64)
    noise = 0.9
    x_a = centroids[speakers] + noise * torch.randn(PAIRS, IN_DIM, generator=g, dtype=torch.float64)
    x_p = centroids[speakers] + noise * torch.randn(PAIRS, IN_DIM, generator=g, dtype=torch.float64)
    return x_a, x_p, speakers


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(IN_DIM, EMB_DIM).double()


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.normalize(model(x), dim=1)


def local_slice(info: DistInfo, n: int) -> slice:
    per = n // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


def train(info: DistInfo, selection: str = "hardest") -> tuple[dict[str, torch.Tensor], list[dict]]:
    """STEPS of SGD (momentum 0.99) on this rank's half of each global batch; DDP when distributed."""
    model = make_model()
    net = nn.parallel.DistributedDataParallel(model) if info.distributed else model
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    crit = GlobalTripletLoss(selection=selection, seed=7)
    history = []
    for step in range(STEPS):
        x_a, x_p, spk = make_pairs(step)
        sl = local_slice(info, PAIRS)
        # One forward for anchors and positives together, as a trainer would do.
        emb = embed(net, torch.cat([x_a[sl], x_p[sl]]))
        n = emb.shape[0] // 2
        loss, stats = crit(emb[:n], emb[n:], spk[sl], info)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(as_floats(stats))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, history


def train_sampled(info: DistInfo) -> dict[str, torch.Tensor]:
    """STEPS of a partial softmax (10 of 20 classes, weight decay on): DDP for the embedder,
    :class:`SampledHead` for the head, as the trainer runs them."""
    model = make_model()
    net = nn.parallel.DistributedDataParallel(model) if info.distributed else model
    torch.manual_seed(1)
    head = nn.Linear(EMB_DIM, 20).double()
    sampled = SampledHead(head, MOMENTUM, 0.01, info)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    for step in range(STEPS + 1):
        gen = torch.Generator().manual_seed(100 + step)
        x = torch.randn(PAIRS, IN_DIM, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, 20, (PAIRS,), generator=gen).numpy()
        classes = draw_classes(labels, 20, 10, np.random.default_rng(step))
        targets = torch.as_tensor(np.searchsorted(classes, labels))
        sl = local_slice(info, PAIRS)
        logits = F.linear(16 * embed(net, x[sl]), *sampled.take(torch.as_tensor(classes)))
        opt.zero_grad()
        F.cross_entropy(logits, targets[sl]).backward()
        opt.step()
        sampled.update(LR)
    return {**{k: v.detach().clone() for k, v in model.state_dict().items()},
            **{f"head.{k}": v.clone() for k, v in head.state_dict().items()},
            **{f"momentum.{k}": v.clone() for k, v in sampled.state_dict().items()}}


def fixed_embeddings(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit embeddings (leaf tensors) of a global batch for the gradient check."""
    g = torch.Generator().manual_seed(seed)
    x_a, x_p, spk = make_pairs(0)
    w = torch.randn(EMB_DIM, IN_DIM, generator=g, dtype=torch.float64)
    return F.normalize(x_a @ w.T, dim=1), F.normalize(x_p @ w.T, dim=1), spk


def make_cross_rank_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4 pairs (2 per rank) where the only negative violating the margin for anchor 0
    (rank 0) is rank 1's anchor 2: it is nearly parallel to anchor 0, while rank 0's other
    pair is orthogonal to it."""
    e = torch.eye(4, dtype=torch.float64)
    anchors = torch.stack([e[0], e[1], F.normalize(e[0] + 0.2 * e[2], dim=0), e[3]])
    positives = torch.stack([F.normalize(e[0] + 0.3 * e[3], dim=0), F.normalize(e[1] + 0.3 * e[3], dim=0),
                             F.normalize(e[2] + 0.5 * e[0], dim=0), F.normalize(e[3] + 0.3 * e[1], dim=0)])
    speakers = torch.tensor([10, 11, 12, 13])
    return anchors, positives, speakers


def main(out_dir: str) -> None:
    info = init_distributed(device="cpu")
    out: dict = {"rank": info.rank, "world_size": info.world_size, "backend": info.backend,
                 "device": str(info.device), "is_main": is_main(info),
                 "log_file": str(rank_log_file(out_dir, info))}

    # all_reduce_mean of the rank ids: (0 + 1) / 2.
    out["mean_rank"] = all_reduce_mean(torch.tensor(float(info.rank)), info)
    # Of float32 losses (what the trainer logs): summed in float64, then / world_size.
    out["mean_f32"] = all_reduce_mean(torch.tensor(F32_VALUES[info.rank], dtype=torch.float32), info)
    out["mean_f64"] = all_reduce_mean(torch.tensor(F32_VALUES[info.rank], dtype=torch.float64), info)
    out["mean_py"] = all_reduce_mean(F32_VALUES[info.rank], info)
    # broadcast_from_main: what rank 0 alone computed (the dev EER), on every rank.
    out["broadcast"] = broadcast_from_main(0.25 if is_main(info) else float("nan"), info)

    # all_gather_with_grad with uneven row counts (2 on rank 0, 3 on rank 1): the gathered
    # tensor is every rank's rows in order; d(sum(w * y))/dx is w on the local rows only.
    x = (10.0 * info.rank + torch.arange(2 + info.rank, dtype=torch.float64)).requires_grad_()
    y = all_gather_with_grad(x[:, None], info)
    w = torch.arange(1.0, y.shape[0] + 1.0, dtype=torch.float64)[:, None]
    (w * y).sum().backward()
    out["gathered"], out["gather_grad"] = y.detach().squeeze(1), x.grad.clone()

    # (a) a rank-0 anchor whose negative sits on rank 1.
    a, p, spk = make_cross_rank_case()
    sl = local_slice(info, a.shape[0])
    for scope in ("global", "local"):
        crit = GlobalTripletLoss(scope=scope)
        mined = crit.mine_batch(a[sl], p[sl], spk[sl], info)
        _, stats = crit(a[sl], p[sl], spk[sl], info)
        out[f"cross_{scope}"] = {"negative_index": mined.result.negative_index,
                                 "negative_ranks": mined.negative_ranks, "hard": mined.result.hard,
                                 "pool_speakers": mined.pool_speakers, "stats": as_floats(stats)}

    # Gradient of the loss w.r.t. this rank's embeddings, for both selections.
    e_a, e_p, spk = fixed_embeddings()
    sl = local_slice(info, e_a.shape[0])
    for selection in ("hardest", "random_hard"):
        la, lp = e_a[sl].clone().requires_grad_(), e_p[sl].clone().requires_grad_()
        crit = GlobalTripletLoss(selection=selection, seed=11)
        mined = crit.mine_batch(la, lp, spk[sl], info)
        crit.generator.manual_seed(11)     # same stream for the forward as for mine_batch
        loss, stats = crit(la, lp, spk[sl], info)
        loss.backward()
        out[f"grad_{selection}"] = {"loss": loss.detach(), "stats": as_floats(stats), "grad_a": la.grad,
                                    "grad_p": lp.grad, "negative_index": mined.result.negative_index}

    # (b) two DDP training steps.
    out["params"], out["history"] = train(info)
    out["sampled"] = train_sampled(info)

    barrier(info)
    torch.save(out, Path(out_dir) / f"rank{info.rank}.pt")
    cleanup(info)


if __name__ == "__main__":
    main(sys.argv[1])
