"""Cosine triplet loss with hard negatives searched over the whole batch, across ranks (SPEC L2, L3).

Paper §3.3: a batch is N anchor-positive (AP) pairs, each pair two utterances of one
speaker, split over M ranks (N/M pairs each).  Embeddings are length-normalised, so
the cosine similarity of Eq. 4 is a dot product.  Every pair is used; each anchor's
negative is an utterance of another speaker taken from the same *batch*, not only
the same minibatch (rank), because hard negatives (those that break
``s_ap - alpha > s_an``, Eq. 5) become rare as training goes on and scanning more
rows finds more of them (Table 3: Prob(hard) 29% scanning 1 GPU, 51% scanning 16).
The loss of Eq. 6 is ``sum_i [s_an - s_ap + alpha]_+``.

How the global search stays exactly the single-process computation
------------------------------------------------------------------
Every rank gathers all anchors, positives and speaker ids (:func:`all_gather_with_grad`:
the other ranks' rows are constants here, the gradient flows only into this rank's
rows), mines a negative for *every* anchor of the global batch, and evaluates the
*full* global loss ``L``.  The search is deterministic and identical on every rank:
the gathered tensors are the same bits everywhere, "hardest" is an argmax (first
index on ties), and "random_hard" draws from a CPU generator seeded identically on
every rank and advanced by the same calls.  So every rank holds the same ``L`` with
the same triplets, and rank ``r`` back-propagates ``dL/de`` for its own embeddings
``e`` -- including the terms where its row is the *negative* of another rank's
anchor, which a scheme that only evaluates local anchors would lose.  Each embedding
lives on exactly one rank, so the sum over ranks of the per-rank parameter gradients
is ``dL/dtheta``, the single-process gradient.

DistributedDataParallel *averages* gradients over ranks.  We undo that by returning
``world_size * L`` as the loss to back-propagate (rather than registering a summing
comm hook, which every trainer would have to remember): after DDP's all-reduce each
rank holds exactly ``dL/dtheta``.  ``stats["loss"]`` is ``L`` itself, the number a
single process reports for the same batch; log that, not ``loss.item()``.  The
price is that every rank evaluates all N triplets instead of N/M: an N x 2N
similarity matrix, negligible beside the network.

``scope="local"`` searches only this rank's pairs (the "1 GPU" column of Table 3);
its loss, also scaled by ``world_size``, gives the gradient of the sum of the ranks'
local losses, and its stats are all-reduced so both scopes log the same quantities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from deepspeaker.nnet.distributed import DistInfo, all_gather_cat, all_gather_with_grad
from deepspeaker.utils import DeepSpeakerError

MARGIN = 0.1  # paper §4.3 / §3.3: alpha of Eq. 5 and 6

SCOPES = ("global", "local")
SELECTIONS = ("hardest", "random_hard")


class MiningError(DeepSpeakerError):
    """A batch in which some anchor has no utterance of another speaker to be its negative."""


@dataclass
class MiningResult:
    """One negative per anchor, and the similarities that chose it (no gradient).

    ``negative_index`` indexes the searched pool; ``hard[i]`` is True when some candidate
    of anchor ``i`` violates Eq. 5 (``s_an > s_ap - margin``), so ``hard.float().mean()``
    is Table 3's Prob(hard); ``s_ap`` and ``s_an`` are the similarities of the chosen triplet.
    """

    negative_index: torch.Tensor
    hard: torch.Tensor
    s_ap: torch.Tensor
    s_an: torch.Tensor

    @property
    def prob_hard(self) -> float:
        return float(self.hard.float().mean()) if self.hard.numel() else 0.0


class HardNegativeMiner:
    """Pick each anchor's negative among the pool rows of other speakers.

    ``selection="hardest"``: the candidate most similar to the anchor (the paper's hard
    negative; deterministic).  ``"random_hard"``: uniform among the candidates that
    violate the margin, falling back to the hardest when none does.  ``scope`` records
    which pool the caller searches ("global": the whole batch gathered from every rank;
    "local": this rank's pairs); :meth:`mine` searches whatever pool it is given.
    ``generator`` (CPU) drives "random_hard"; seed it identically on every rank when
    the scope is global, so that every rank draws the same negatives.
    """

    def __init__(self, margin: float = MARGIN, scope: str = "global", selection: str = "hardest",
                 generator: torch.Generator | None = None):
        if scope not in SCOPES:
            raise ValueError(f"scope={scope!r}: expected one of {', '.join(SCOPES)}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection={selection!r}: expected one of {', '.join(SELECTIONS)}")
        if margin < 0:
            raise ValueError(f"margin={margin}: must be >= 0")
        self.margin = float(margin)
        self.scope = scope
        self.selection = selection
        self.generator = generator

    @torch.no_grad()
    def mine(self, anchors: torch.Tensor, positives: torch.Tensor, pool: torch.Tensor,
             pool_speakers: torch.Tensor, anchor_speakers: torch.Tensor) -> MiningResult:
        """anchors, positives: (A, D) unit vectors; pool: (P, D) with speaker ids (P,); anchor ids (A,)."""
        if anchors.shape != positives.shape or anchors.dim() != 2:
            raise ValueError(f"anchors {tuple(anchors.shape)} and positives {tuple(positives.shape)}: "
                             f"expected the same (A, D) shape")
        if pool.dim() != 2 or pool.shape[1] != anchors.shape[1]:
            raise ValueError(f"pool {tuple(pool.shape)}: expected (P, {anchors.shape[1]})")
        if pool_speakers.shape != (pool.shape[0],) or anchor_speakers.shape != (anchors.shape[0],):
            raise ValueError(f"speaker ids {tuple(pool_speakers.shape)} / {tuple(anchor_speakers.shape)}: "
                             f"expected ({pool.shape[0]},) / ({anchors.shape[0]},)")
        anchors, positives, pool = anchors.detach(), positives.detach(), pool.detach()
        s_ap = (anchors * positives).sum(dim=1)
        sims = anchors @ pool.T                                           # (A, P)
        candidate = pool_speakers[None, :] != anchor_speakers[:, None]    # other speakers only
        lonely = ~candidate.any(dim=1)
        if lonely.device.type != "cpu":
            # On an accelerator, reading the flag back would stop the step for the host;
            # the check runs on the device (the batch plan already avoids such batches).
            torch._assert_async(~lonely.any(), "an anchor has no pool row of another speaker")
        elif lonely.any():
            i = int(lonely.nonzero()[0])
            raise MiningError(f"anchor {i} (speaker {int(anchor_speakers[i])}): no pool row of another "
                              f"speaker to be its negative; a batch needs at least two speakers"
                              + (" per rank with scope='local'" if self.scope == "local" else ""))
        masked = sims.masked_fill(~candidate, float("-inf"))
        hardest = masked.argmax(dim=1)   # first index on ties, the same on every rank
        violating = candidate & (sims > (s_ap - self.margin)[:, None])
        hard = violating.any(dim=1)
        if self.selection == "hardest":
            index = hardest
        else:
            # Uniform among violators: the argmax of i.i.d. uniforms restricted to them.
            # Drawn on the CPU generator so that the stream does not depend on the device.
            u = torch.rand(sims.shape, generator=self.generator, dtype=torch.float64).to(sims.device)
            pick = u.masked_fill(~violating, -1.0).argmax(dim=1)
            index = torch.where(hard, pick, hardest)
        s_an = sims.gather(1, index[:, None]).squeeze(1)
        return MiningResult(negative_index=index, hard=hard, s_ap=s_ap, s_an=s_an)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = MARGIN, reduction: str = "sum") -> torch.Tensor:
    """Paper Eq. 6: ``sum_i [s_an - s_ap + margin]_+`` with s the dot product of unit vectors.

    ``reduction``: "sum" (the paper's), "mean", or "none" for the per-triplet terms.
    """
    s_ap = (anchor * positive).sum(dim=-1)
    s_an = (anchor * negative).sum(dim=-1)
    # relu, not clamp: a triplet that meets the margin exactly gets no gradient (clamp passes 1).
    terms = torch.relu(s_an - s_ap + margin)
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.mean()
    if reduction == "none":
        return terms
    raise ValueError(f"reduction={reduction!r}: expected sum, mean or none")


@dataclass
class BatchMining:
    """The searched batch as this rank sees it, and the negatives mined in it.

    Rows ``0..A-1`` of ``pool`` are the anchors, rows ``A..2A-1`` the positives (same
    order); ``pool_ranks`` says which rank computed each row.  With global scope ``A``
    is the whole batch (every rank's anchors); with local scope, this rank's.
    """

    anchors: torch.Tensor
    positives: torch.Tensor
    speakers: torch.Tensor
    anchor_ranks: torch.Tensor
    pool: torch.Tensor
    pool_speakers: torch.Tensor
    pool_ranks: torch.Tensor
    result: MiningResult

    @property
    def negative_ranks(self) -> torch.Tensor:
        return self.pool_ranks[self.result.negative_index]


class GlobalTripletLoss(nn.Module):
    """Triplet loss of paper §3.3 with the negatives searched over the whole batch on all ranks.

    ``forward(anchor (n, D), positive (n, D), speakers (n,), info)`` with this rank's n
    pairs returns ``(loss, stats)``: ``loss`` is ``world_size * L`` (see the module
    docstring: DDP's averaging then yields exactly the single-process gradient of L),
    and ``stats`` holds floats for the whole batch, identical on every rank: ``loss``
    (L, Eq. 6 summed over the batch's anchors), ``prob_hard`` (Table 3), ``s_ap`` and
    ``s_an`` (means over anchors of the chosen triplets), ``remote_negative_frac``
    (share of anchors whose negative was computed on another rank) and ``num_anchors``.

    ``generator`` holds the "random_hard" stream; save its ``get_state()`` with a
    checkpoint for an exact resume.
    """

    def __init__(self, margin: float = MARGIN, scope: str = "global", selection: str = "hardest",
                 seed: int = 0):
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)
        self.miner = HardNegativeMiner(margin=margin, scope=scope, selection=selection,
                                       generator=self.generator)

    @property
    def margin(self) -> float:
        return self.miner.margin

    @property
    def scope(self) -> str:
        return self.miner.scope

    def extra_repr(self) -> str:
        return f"margin={self.margin}, scope={self.scope}, selection={self.miner.selection}"

    def mine_batch(self, anchor: torch.Tensor, positive: torch.Tensor, speakers: torch.Tensor,
                   info: DistInfo) -> BatchMining:
        """Gather the batch (global scope, several ranks) and mine one negative per anchor in it."""
        if anchor.dim() != 2 or anchor.shape != positive.shape:
            raise ValueError(f"anchor {tuple(anchor.shape)} and positive {tuple(positive.shape)}: "
                             f"expected the same (n, D) shape")
        if speakers.shape != (anchor.shape[0],):
            raise ValueError(f"speakers {tuple(speakers.shape)}: expected ({anchor.shape[0]},)")
        speakers = speakers.to(device=anchor.device, dtype=torch.long)
        ranks = torch.full_like(speakers, info.rank)
        if self.scope == "global" and info.distributed:
            dim = anchor.shape[1]
            # One collective for both halves of the pairs, one for the labels.
            pairs = all_gather_with_grad(torch.cat([anchor, positive], dim=1), info)
            anchor, positive = pairs[:, :dim], pairs[:, dim:]
            labels = all_gather_cat(torch.stack([speakers, ranks], dim=1), info)
            speakers, ranks = labels[:, 0], labels[:, 1]
        pool = torch.cat([anchor, positive], dim=0)
        pool_speakers = torch.cat([speakers, speakers])
        pool_ranks = torch.cat([ranks, ranks])
        result = self.miner.mine(anchor, positive, pool, pool_speakers, speakers)
        return BatchMining(anchors=anchor, positives=positive, speakers=speakers, anchor_ranks=ranks,
                           pool=pool, pool_speakers=pool_speakers, pool_ranks=pool_ranks,
                           result=result)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, speakers: torch.Tensor,
                info: DistInfo) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = self.mine_batch(anchor, positive, speakers, info)
        res = batch.result
        negative = batch.pool[res.negative_index]     # gradient reaches it only if it is local
        batch_loss = triplet_loss(batch.anchors, batch.positives, negative, self.margin, "sum")
        remote = (batch.negative_ranks != batch.anchor_ranks).sum()
        # Sums first; with local scope they are summed over ranks so both scopes log the batch.
        sums = torch.stack([batch_loss.detach().double(), res.hard.sum().double(),
                            res.s_ap.sum().double(), res.s_an.sum().double(), remote.double(),
                            torch.tensor(float(res.hard.numel()), dtype=torch.float64,
                                         device=res.hard.device)])
        if self.scope == "local" and info.distributed:
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        # Device tensors: the trainer reads them back only on logging steps.
        total, n_hard, s_ap, s_an, n_remote, count = sums.unbind()
        stats = {"loss": total, "prob_hard": n_hard / count, "s_ap": s_ap / count,
                 "s_an": s_an / count, "remote_negative_frac": n_remote / count,
                 "num_anchors": count}
        return batch_loss * info.world_size, stats
