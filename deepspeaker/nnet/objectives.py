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
* :meth:`~Objective.state_dict`, :meth:`~Objective.check_resume` and
  :meth:`~Objective.load_state_dict`: its own part of a checkpoint.

Stages (paper §3.4, §3.3; SPEC L1-L3):

* ``softmax``: the embedding network plus a scaled linear classification layer over
  the training speakers, cross-entropy; its checkpoint state is the head and the
  speaker list, and a resume must see the same speakers;
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embedder(x)
        # Under a caller's autocast the embedder may run in bf16; the head is float32.
        with torch.autocast(emb.device.type, enabled=False):
            emb = emb.float()
            return self.head(self.scale * emb), emb


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
        return self.net

    def compute(self, forward, batch) -> Step:
        x, y = self._tensor(batch["feats"]), self._tensor(batch["labels"])
        logits, emb = forward(x)  # the head inside runs in float32 (SoftmaxClassifier)
        loss = F.cross_entropy(logits.float(), y)
        # Device tensors: read only on logging steps (EpochStats, the trainer's log line).
        stats = {"loss": self._mean_over_ranks(loss),
                 "acc": self._mean_over_ranks((logits.argmax(1) == y).double().mean())}
        return Step(loss, stats, emb, x.shape[0] * self.info.world_size)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "head": self.net.head.state_dict(),
                "speakers": list(self.train_set.speakers)}

    def check_resume(self, saved, path, train_dir) -> None:
        if list(saved["speakers"]) != self.train_set.speakers:
            raise ConfigError(f"{path} was trained on other speakers than {train_dir} "
                              f"({len(saved['speakers'])} vs {len(self.train_set.speakers)})")

    def load_state_dict(self, saved) -> None:
        self.net.head.load_state_dict(saved["head"])


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


__all__ = ["AT_MARGIN_TOL", "OBJECTIVES", "Objective", "SoftmaxClassifier", "SoftmaxObjective",
           "Step", "TripletNet", "TripletObjective", "build_objective"]
