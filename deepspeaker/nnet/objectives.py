"""What a training stage optimises: one objective per stage behind one small interface.

The training loop (:mod:`deepspeaker.nnet.trainer`) knows nothing of softmax or
triplets; it asks the stage's :class:`Objective` (looked up by name in
:data:`OBJECTIVES`) for:

* :meth:`~Objective.build`: the network to train around the embedding model;
* :meth:`~Objective.compute`: the loss of one batch, its named statistics (means over
  all ranks, what a single process would log for the same global batch), the
  embeddings (for the collapse check) and the utterances the step consumed;
* :meth:`~Objective.at_margin` and :meth:`~Objective.end_of_epoch`: what the epoch's
  statistics say (the prob_hard column of ``train_log.tsv``, warnings);
* :meth:`~Objective.step`: the update of what the optimizer does not hold (a
  partial softmax's head), after the optimizer's step;
* :meth:`~Objective.state_dict`, :meth:`~Objective.check_resume` and
  :meth:`~Objective.load_state_dict`: its own part of a checkpoint.

Stages (paper §3.4, §3.3; SPEC L1-L3):

* ``softmax``: the embedding network plus a scaled linear classification layer over
  the training speakers, cross-entropy; its checkpoint state is the head and the
  speaker list, and a resume must see the same speakers.  With
  ``softmax.sample_classes`` a step sees only the rows of the classes its batch
  carries (:class:`SampledHead`), and the head's momentum is checkpointed too;
* ``triplet``: the cosine triplet loss with hard negatives searched over the whole
  batch on all ranks (:class:`~deepspeaker.nnet.triplet.GlobalTripletLoss`); its
  checkpoint state is the miner's generator ("random_hard" draws).

The forward runs under the caller's autocast (``forward`` passed to ``compute``); the
losses and the negative mining run in float32 outside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from deepspeaker.nnet.checkpoint import EpochStats
from deepspeaker.nnet.config import TrainConfig
from deepspeaker.nnet.data import FeatureSet
from deepspeaker.nnet.distributed import DistInfo
from deepspeaker.nnet.triplet import GlobalTripletLoss
from deepspeaker.utils import ConfigError

logger = logging.getLogger(__name__)

# Per-anchor triplet loss within 5% of the margin: s_an ~ s_ap, nothing separates.
AT_MARGIN_TOL = 0.05


class SoftmaxClassifier(nn.Module):
    """Embedding network + scaled linear classification layer over the training speakers (§3.4)."""

    def __init__(self, embedder: nn.Module, num_speakers: int, scale: float):
        super().__init__()
        self.embedder = embedder
        self.scale = scale
        self.head = nn.Linear(embedder.options.embedding_dim, num_speakers)

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embeddings); ``weight`` and ``bias``: some rows of the head instead of all."""
        emb = self.embedder(x)
        # Under a caller's autocast the embedder may run in bf16; the head is float32.
        with torch.autocast(emb.device.type, enabled=False):
            emb = emb.float()
            if weight is None:
                return self.head(self.scale * emb), emb
            return F.linear(self.scale * emb, weight, bias), emb


class SampledHead:
    """The rows of a softmax head one step uses, and their SGD update with sparse momentum.

    A full head costs every step O(speakers) three times over: its matmuls, its gradient
    and the optimizer's pass over its momentum (4,000 -> 16,000 speakers: 19 -> 67 ms a
    step on one core, beside a ~255 ms step of the study's GRU).  Here the head's parameters are taken
    out of autograd (so neither DDP nor the optimizer sees them): :meth:`take` copies the
    step's rows into leaf tensors for the forward, and :meth:`update` averages their
    gradients over ranks (what DDP does for the rest) and applies torch's SGD rule to those
    rows only, momentum included.  The momentum of the other rows stays where it was
    (PartialFC's choice): a row moves only in the steps that see it.  When every class is
    drawn every step this is exactly the full softmax with torch's SGD (tested).
    """

    def __init__(self, head: nn.Linear, momentum: float, weight_decay: float, info: DistInfo):
        self.params = (head.weight, head.bias)
        for p in self.params:
            p.requires_grad_(False)
        self._momenta: list[torch.Tensor] | None = None   # made where the head is, when used
        self.momentum, self.weight_decay, self.info = momentum, weight_decay, info
        self._taken: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def take(self, classes: torch.Tensor) -> list[torch.Tensor]:
        """Leaf copies of the rows of ``classes`` (weight, bias), to pass to the forward."""
        rows = [p[classes].requires_grad_(True) for p in self.params]
        self._taken = (classes, rows)
        return rows

    def update(self, lr: float) -> None:
        """One SGD step of the rows :meth:`take` gave, from their gradients."""
        classes, rows = self._taken
        self._taken = None
        for param, buf, row in zip(self.params, self.momenta, rows):
            grad = row.grad
            if self.info.distributed:
                dist.all_reduce(grad, op=dist.ReduceOp.SUM)
                grad /= self.info.world_size
            value = row.detach()
            if self.weight_decay:
                grad = grad.add(value, alpha=self.weight_decay)
            moved = buf[classes].mul_(self.momentum).add_(grad)
            buf[classes] = moved
            param[classes] = value.add(moved, alpha=-lr)

    @property
    def momenta(self) -> list[torch.Tensor]:
        """The momentum of every row (weight, bias), zero until a step moves it."""
        if self._momenta is None:
            self._momenta = [torch.zeros_like(p) for p in self.params]
        return self._momenta

    def state_dict(self) -> dict:
        return dict(zip(("weight", "bias"), self.momenta))

    def load_state_dict(self, saved: Mapping[str, torch.Tensor]) -> None:
        self._momenta = [saved[k].to(p.device, copy=True) for k, p in zip(("weight", "bias"), self.params)]


class TripletNet(nn.Module):
    """Anchor and positive chunks through one forward (one DDP reduction per step)."""

    def __init__(self, embedder: nn.Module):
        super().__init__()
        self.embedder = embedder

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor):
        emb = self.embedder(torch.cat([anchor, positive], dim=0))
        return emb[: anchor.shape[0]], emb[anchor.shape[0]:]


@dataclass
class Step:
    """One batch through an objective: what to back-propagate and what to log."""

    loss: torch.Tensor          # back-propagate this
    stats: dict[str, Any]       # named, for the whole global batch, in log order (floats or
                                # device scalars, read only on logging steps)
    embeddings: torch.Tensor    # this rank's unit embeddings (the collapse check)
    utterances: int             # utterances the global batch consumed


class Objective:
    """The interface of a stage; subclasses set ``stage`` and ``unit`` and implement it."""

    stage: str = ""
    unit: str = ""   # what a global batch counts: "utterances" or "pairs"

    def __init__(self, config: TrainConfig, train_set: FeatureSet, info: DistInfo):
        self.config = config
        self.train_set = train_set
        self.info = info

    def build(self, embedder: nn.Module) -> nn.Module:
        """The network to train (it holds ``embedder``); called once, before the optimizer."""
        raise NotImplementedError

    def compute(self, forward: Callable[..., Any], batch: Mapping[str, Any]) -> Step:
        """The :class:`Step` of ``batch`` (a BatchPlan batch); ``forward`` runs the network."""
        raise NotImplementedError

    def at_margin(self, stats: Mapping[str, float]) -> bool:
        """Whether a step's loss sat at the margin (counted in :class:`EpochStats`)."""
        return False

    def end_of_epoch(self, stats: EpochStats, epoch: int) -> float | None:
        """The epoch's prob_hard column (None: not this objective's); warns on what it shows."""
        return None

    def state_dict(self) -> dict:
        """This objective's part of a checkpoint (tensors and plain values)."""
        return {"stage": self.stage}

    def check_resume(self, saved: Mapping[str, Any], path: Path, train_dir) -> None:
        """Refuse to continue checkpoint ``path`` if its state does not fit ``train_dir``."""

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""

    def step(self, lr: float) -> None:
        """After the optimizer's step: update what it does not hold (nothing by default)."""

    def _tensor(self, array) -> torch.Tensor:
        # A pinned batch (the loader's on CUDA) is copied while the host goes on.
        return torch.as_tensor(array).to(self.info.device, non_blocking=True)

    def _mean_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """The float64 mean over ranks of a scalar, as a device tensor (no host sync)."""
        t = value.detach().to(torch.float64).reshape(1)
        if self.info.distributed:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t = t / self.info.world_size
        return t[0]


class SoftmaxObjective(Objective):
    """Cross-entropy over the training speakers (paper §3.4)."""

    stage = "softmax"
    unit = "utterances"

    def build(self, embedder: nn.Module) -> nn.Module:
        self.net = SoftmaxClassifier(embedder, len(self.train_set.speakers),
                                     self.config.softmax.scale)
        self.sampled = None
        if self.config.softmax.sample_classes:
            opt = self.config.optimizer
            self.sampled = SampledHead(self.net.head, opt.momentum, opt.weight_decay, self.info)
        return self.net

    def compute(self, forward, batch) -> Step:
        x = self._tensor(batch["feats"])
        if self.sampled is None:
            y = self._tensor(batch["labels"])
            logits, emb = forward(x)  # the head inside runs in float32 (SoftmaxClassifier)
        else:  # the loss and accuracy are over the step's classes
            y = self._tensor(batch["targets"])
            logits, emb = forward(x, *self.sampled.take(self._tensor(batch["classes"])))
        loss = F.cross_entropy(logits.float(), y)
        # Device tensors: read only on logging steps (EpochStats, the trainer's log line).
        stats = {"loss": self._mean_over_ranks(loss),
                 "acc": self._mean_over_ranks((logits.argmax(1) == y).double().mean())}
        return Step(loss, stats, emb, x.shape[0] * self.info.world_size)

    def step(self, lr: float) -> None:
        if self.sampled is not None:
            self.sampled.update(lr)

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "head": self.net.head.state_dict(),
                 "speakers": list(self.train_set.speakers)}
        if self.sampled is not None:
            state["head_momentum"] = self.sampled.state_dict()
        return state

    def check_resume(self, saved, path, train_dir) -> None:
        if list(saved["speakers"]) != self.train_set.speakers:
            raise ConfigError(f"{path} was trained on other speakers than {train_dir} "
                              f"({len(saved['speakers'])} vs {len(self.train_set.speakers)})")

    def load_state_dict(self, saved) -> None:
        self.net.head.load_state_dict(saved["head"])
        if self.sampled is not None:
            self.sampled.load_state_dict(saved["head_momentum"])


class TripletObjective(Objective):
    """Cosine triplet loss, hard negatives over the whole batch on all ranks (paper §3.3)."""

    stage = "triplet"
    unit = "pairs"

    def __init__(self, config: TrainConfig, train_set: FeatureSet, info: DistInfo):
        super().__init__(config, train_set, info)
        t = config.triplet
        self.criterion = GlobalTripletLoss(margin=t.margin, scope=t.scope, selection=t.selection,
                                           seed=config.seed)

    def build(self, embedder: nn.Module) -> nn.Module:
        return TripletNet(embedder)

    def compute(self, forward, batch) -> Step:
        a, p = self._tensor(batch["anchor"]), self._tensor(batch["positive"])
        spk = self._tensor(batch["speakers"])
        ea, ep = forward(a, p)
        # Negative mining and the triplet loss in float32.
        ea, ep = ea.float(), ep.float()
        loss, stats = self.criterion(ea, ep, spk, self.info)
        # Per anchor, so the number does not grow with the batch size.
        stats = {"loss": stats["loss"] / stats["num_anchors"], "prob_hard": stats["prob_hard"]}
        return Step(loss, stats, ea, 2 * a.shape[0] * self.info.world_size)

    def at_margin(self, stats) -> bool:
        margin = self.config.triplet.margin
        return abs(stats["loss"] - margin) < AT_MARGIN_TOL * margin

    def end_of_epoch(self, stats: EpochStats, epoch: int) -> float | None:
        stats.sync()
        if stats.steps_at_margin == stats.steps:
            logger.warning("epoch %d: the triplet loss sat at the margin (%.3g) for the whole "
                           "epoch: s_an == s_ap, the embeddings do not separate speakers",
                           epoch + 1, self.config.triplet.margin)
        return stats.mean_prob_hard()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.criterion.generator.get_state()}

    def load_state_dict(self, saved) -> None:
        self.criterion.generator.set_state(saved["generator"])


OBJECTIVES: dict[str, type[Objective]] = {o.stage: o for o in (SoftmaxObjective, TripletObjective)}


def build_objective(config: TrainConfig, train_set: FeatureSet, info: DistInfo) -> Objective:
    """The objective of ``config.stage`` (every name of ``data.STAGES`` has one)."""
    return OBJECTIVES[config.stage](config, train_set, info)


__all__ = ["AT_MARGIN_TOL", "OBJECTIVES", "Objective", "SampledHead", "SoftmaxClassifier", "SoftmaxObjective",
           "Step", "TripletNet", "TripletObjective", "build_objective"]
