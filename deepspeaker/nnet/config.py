"""The training config of an embedding experiment: what it learns and how it runs.

One YAML per experiment (``egs/*/conf/<model>_<stage>.yaml``) is read into
:class:`TrainConfig` by :func:`train_config_from_dict`, which refuses unknown keys at
every level.  The trainer saves the merged config as ``exp/<tag>/config.yaml``, and
extraction rebuilds the network from that file, so both import this module and
extraction never imports the training loop.

Two kinds of settings live here:

* what the experiment *learns from*: the model, the stage, chunks, batches, epochs,
  the optimizer, the loss sections, the dev check, early stopping, the seed and the
  ``init`` checkpoint.  A resume must find them unchanged
  (:meth:`TrainConfig.without_run_settings`);
* :data:`RUN_SETTINGS`, which change only *how* a run computes or reports: the
  device, bf16 autocast, channels-last, the in-memory feature limit, the loader's
  workers and the checkpoint and log cadence.  They may change between restarts.

Online augmentation (``spec_augment``, ``chunk_frames_range``) changes what is learnt,
so it is part of the signature; at its default (off) it is left out of
:meth:`TrainConfig.without_run_settings`, so that an experiment made before these
keys existed keeps its signature and resumes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from deepspeaker.nnet.data import STAGES, SpecAugment, check_chunk_range
from deepspeaker.nnet.triplet import MARGIN
from deepspeaker.utils import dataclass_from_dict

LR_START = 0.05  # paper §4.3
LR_END = 0.005  # paper §4.3
MOMENTUM = 0.99  # paper §4.3
AMP_MODES = ("auto", "bf16", "off")
# Where and how a run computes, not what it learns: free to change between restarts.
RUN_SETTINGS = ("device", "save_every_steps", "log_every_steps", "amp", "channels_last",
                "max_memory_gb", "loader")
# Learnt-from settings left out of the signature while off (see the module docstring).
OFF_BY_DEFAULT = {"spec_augment": dataclasses.asdict(SpecAugment()), "chunk_frames_range": None}


@dataclass
class ModelSection:
    name: str = "rescnn"
    options: dict = field(default_factory=dict)


@dataclass
class OptimizerSection:
    lr_start: float = LR_START
    lr_end: float = LR_END
    momentum: float = MOMENTUM
    weight_decay: float = 0.0


@dataclass
class SoftmaxSection:
    # The head sees unit-length embeddings, so W e is bounded by |W| and starts near 0
    # for every class: the softmax is almost uniform and its gradient tiny.  Multiplying
    # the embedding by a fixed scale (as in normalised-softmax / AM-softmax training)
    # gives logits a usable range from the first step.
    scale: float = 16.0


@dataclass
class TripletSection:
    margin: float = MARGIN
    scope: str = "global"
    selection: str = "hardest"


@dataclass
class DevSection:
    enabled: bool = True
    num_negatives: int = 19     # paper §4.1 uses 99; fewer keep the per-epoch check cheap
    max_frames: int = 0         # 0: the whole voiced utterance
    batch_size: int = 32


@dataclass
class LoaderSection:
    """How batches are built (:mod:`deepspeaker.nnet.loader`); a run setting."""

    num_workers: int | str = "auto"   # auto: from the cores this process may use; 0: main process
    prefetch: int = 2                 # batches built ahead per worker

    def __post_init__(self) -> None:
        n = self.num_workers
        if n != "auto" and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ValueError(f"loader.num_workers must be auto or an integer >= 0, got {n!r}")
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) or self.prefetch < 1:
            raise ValueError(f"loader.prefetch must be an integer >= 1, got {self.prefetch!r}")


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    stage: str = "softmax"
    chunk_frames: int = 160
    chunk_frames_range: list | None = None   # [min, max]: one length per global batch; None: chunk_frames
    spec_augment: SpecAugment = field(default_factory=SpecAugment)
    min_frames: int = 20
    batch_size: int = 64
    epochs: int = 10
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    softmax: SoftmaxSection = field(default_factory=SoftmaxSection)
    triplet: TripletSection = field(default_factory=TripletSection)
    dev: DevSection = field(default_factory=DevSection)
    early_stopping_patience: int = 0  # epochs without a lower dev EER before stopping; 0: never
    seed: int = 0
    init: str | None = None
    save_every_steps: int = 200
    log_every_steps: int = 10
    device: str = "auto"
    amp: str = "auto"                   # auto | bf16 | off (auto: bf16 on CUDA)
    channels_last: str | bool = "auto"  # auto | true | false (auto: ResCNN on CUDA)
    max_memory_gb: float = 8.0          # features larger than this are read from disk per batch
    loader: LoaderSection = field(default_factory=LoaderSection)

    def __post_init__(self) -> None:
        if self.amp is False:  # YAML 1.1 reads a bare `off` as false
            self.amp = "off"
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r}: expected one of {', '.join(AMP_MODES)}")
        if isinstance(self.channels_last, str) and self.channels_last.lower() in ("true", "false"):
            self.channels_last = self.channels_last.lower() == "true"
        if self.channels_last not in ("auto", True, False) or \
                (self.channels_last != "auto" and not isinstance(self.channels_last, bool)):
            raise ValueError(f"channels_last={self.channels_last!r}: expected auto, true or false")
        if isinstance(self.max_memory_gb, bool) or not isinstance(self.max_memory_gb, (int, float)) \
                or not self.max_memory_gb >= 0:
            raise ValueError(f"max_memory_gb must be a number >= 0, got {self.max_memory_gb!r}")
        if self.chunk_frames_range is not None:
            self.chunk_frames_range = list(check_chunk_range(self.chunk_frames_range))
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r}: expected one of {', '.join(STAGES)}")
        for key in ("chunk_frames", "min_frames", "batch_size", "epochs", "save_every_steps",
                    "log_every_steps"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def without_run_settings(self) -> dict:
        """The config as a dict without :data:`RUN_SETTINGS`: what a resume must find unchanged."""
        return {k: v for k, v in self.to_dict().items()
                if k not in RUN_SETTINGS and not (k in OFF_BY_DEFAULT and v == OFF_BY_DEFAULT[k])}


def train_config_from_dict(values: Mapping[str, Any] | None, where: str = "train config") -> TrainConfig:
    """Build a :class:`TrainConfig`; unknown keys at any level are a ConfigError naming them."""
    return dataclass_from_dict(TrainConfig, values, where=where)


def resolve_speed_settings(config: TrainConfig, device) -> tuple[bool, bool]:
    """(bf16 autocast on, channels_last on) for ``config`` on ``device`` (a torch.device)."""
    bf16 = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    if config.channels_last == "auto":
        channels_last = config.model.name == "rescnn" and device.type == "cuda"
    else:
        channels_last = bool(config.channels_last) and config.model.name == "rescnn"
    return bf16, channels_last


__all__ = ["AMP_MODES", "LR_END", "LR_START", "MOMENTUM", "OFF_BY_DEFAULT", "RUN_SETTINGS",
           "DevSection", "LoaderSection", "ModelSection", "OptimizerSection", "SoftmaxSection", "TrainConfig", "TripletSection",
           "resolve_speed_settings", "train_config_from_dict"]
