"""The training config of an embedding experiment: what it learns and how it runs.

One YAML per experiment (``egs/*/conf/<model>_<stage>.yaml``) is read into
:class:`TrainConfig` by :func:`train_config_from_dict`, which refuses unknown keys at
every level and checks every value against its type and range
(:mod:`deepspeaker.config_types`), naming the file and the dotted key.  The trainer
saves the merged config as ``exp/<tag>/config.yaml``, and extraction rebuilds the
network from that file, so both import this module and extraction never imports the
training loop.

Two kinds of settings live here:

* what the experiment *learns from*: the model, the stage, chunks, batches, epochs,
  the optimizer, the loss sections, the dev check, early stopping, the seed and the
  ``init`` checkpoint.  A resume must find them unchanged
  (:meth:`TrainConfig.without_run_settings`);
* :data:`RUN_SETTINGS`, which change only *how* a run computes or reports: the
  device, bf16 autocast, channels-last, the in-memory feature limit, the loader's
  workers and the checkpoint and log cadence.  They may change between restarts.

Online augmentation (``spec_augment``, ``chunk_frames_range``) and the partial softmax
(``softmax.sample_classes``) change what is learnt, so they are part of the signature;
at their default (off) they are left out of
:meth:`TrainConfig.without_run_settings`, so that an experiment made before these
keys existed keeps its signature and resumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from deepspeaker.config_types import (
    Count,
    NonNegative,
    NonNegativeInt,
    Parse,
    Positive,
    Range,
    Seed,
    check_value,
)
from deepspeaker.nnet.data import STAGES, SpecAugment, check_chunk_range
from deepspeaker.nnet.models import MODELS, ModelOptions
from deepspeaker.nnet.triplet import MARGIN, SCOPES, SELECTIONS
from deepspeaker.utils import dataclass_from_dict

LR_START = 0.05  # paper §4.3
LR_END = 0.005  # paper §4.3
MOMENTUM = 0.99  # paper §4.3
AMP_MODES = ("auto", "bf16", "off")
MODEL_NAMES = tuple(sorted(MODELS))
# Where and how a run computes, not what it learns: free to change between restarts.
RUN_SETTINGS = ("device", "save_every_steps", "log_every_steps", "amp", "channels_last",
                "max_memory_gb", "loader")
# Learnt-from settings left out of the signature while off (see the module docstring).
# A dotted name is a key of a section.
OFF_BY_DEFAULT = {"spec_augment": dataclasses.asdict(SpecAugment()), "chunk_frames_range": None,
                  "softmax.sample_classes": 0}


def _model_options(value: Any) -> Any:
    """Check ``model.options`` against :class:`ModelOptions` now, not when the trainer builds it.

    The mapping keeps the keys and values as written (a string number becomes the number
    it reads as), so the saved config and the experiment's signature are those of the file.
    """
    if not isinstance(value, Mapping):
        return value  # None (an empty section) or refused as "expected a mapping"
    opts = check_value(ModelOptions, value, "model.options")
    return {k: getattr(opts, k) if isinstance(v, str) else v for k, v in value.items()}


@dataclass
class ModelSection:
    name: Literal[MODEL_NAMES] = "rescnn"
    options: Annotated[dict, Parse(_model_options)] = field(default_factory=dict)


@dataclass
class OptimizerSection:
    lr_start: Positive = LR_START
    lr_end: Positive = LR_END
    momentum: Annotated[float, Range(ge=0, lt=1)] = MOMENTUM
    weight_decay: NonNegative = 0.0


@dataclass
class SoftmaxSection:
    # The head sees unit-length embeddings, so W e is bounded by |W| and starts near 0
    # for every class: the softmax is almost uniform and its gradient tiny.  Multiplying
    # the embedding by a fixed scale (as in normalised-softmax / AM-softmax training)
    # gives logits a usable range from the first step.
    scale: Positive = 16.0
    # 0: every training speaker's row in every step (the paper's softmax).  K > 0: a
    # partial softmax over K classes per step, the global batch's own speakers plus
    # others drawn at random (PartialFC's scheme), with the momentum of only those rows
    # updated, so a step costs O(K) and not O(speakers): what keeps training per epoch
    # linear in the data when the speakers grow (objectives.SampledHead).
    sample_classes: NonNegativeInt = 0


@dataclass
class TripletSection:
    margin: NonNegative = MARGIN
    scope: Literal[SCOPES] = "global"
    selection: Literal[SELECTIONS] = "hardest"


@dataclass
class DevSection:
    enabled: bool = True
    num_negatives: Count = 19      # paper §4.1 uses 99; fewer keep the per-epoch check cheap
    max_frames: NonNegativeInt = 0  # 0: the whole voiced utterance
    batch_size: Count = 32


@dataclass
class LoaderSection:
    """How batches are built (:mod:`deepspeaker.nnet.loader`); a run setting."""

    # auto: from the cores this process may use; 0: the main process
    num_workers: Literal["auto"] | NonNegativeInt = "auto"
    prefetch: Count = 2             # batches built ahead per worker


@dataclass
class TrainConfig:
    """What ``conf/<model>_<stage>.yaml`` may hold; types and ranges are checked when read."""

    model: ModelSection = field(default_factory=ModelSection)
    stage: Literal[STAGES] = "softmax"
    chunk_frames: Count = 160
    # [min, max]: one length per global batch; None: chunk_frames
    chunk_frames_range: list[int] | None = None
    spec_augment: SpecAugment = field(default_factory=SpecAugment)
    min_frames: Count = 20
    batch_size: Count = 64
    epochs: Count = 10
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    softmax: SoftmaxSection = field(default_factory=SoftmaxSection)
    triplet: TripletSection = field(default_factory=TripletSection)
    dev: DevSection = field(default_factory=DevSection)
    early_stopping_patience: NonNegativeInt = 0  # epochs without a lower dev EER; 0: never stop
    seed: Seed = 0
    init: str | None = None
    save_every_steps: Count = 200
    log_every_steps: Count = 10
    device: str = "auto"
    amp: Literal[AMP_MODES] = "auto"    # auto: bf16 on CUDA (a bare YAML `off` is "off")
    # auto: ResCNN on CUDA; the quoted words are accepted as what they say
    channels_last: Literal["auto", "true", "false"] | bool = "auto"
    max_memory_gb: NonNegative = 8.0  # features larger than this are read from disk per batch
    loader: LoaderSection = field(default_factory=LoaderSection)

    def __post_init__(self) -> None:
        if self.channels_last in ("true", "false"):
            self.channels_last = self.channels_last == "true"
        if self.chunk_frames_range is not None:
            self.chunk_frames_range = list(check_chunk_range(self.chunk_frames_range))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def without_run_settings(self) -> dict:
        """The config as a dict without :data:`RUN_SETTINGS`: what a resume must find unchanged."""
        values = {k: v for k, v in self.to_dict().items() if k not in RUN_SETTINGS}
        for name, off in OFF_BY_DEFAULT.items():
            *section, key = name.split(".")
            holder = values[section[0]] if section else values
            if key in holder and holder[key] == off:
                del holder[key]
        return values


def train_config_from_dict(values: Mapping[str, Any] | None, where: str | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig`; an unknown key or a value of the wrong type or range is
    a ConfigError naming ``where`` (default: the file ``values`` was read from) and the key."""
    return dataclass_from_dict(TrainConfig, values, where=where)


def resolve_speed_settings(config: TrainConfig, device) -> tuple[bool, bool]:
    """(bf16 autocast on, channels_last on) for ``config`` on ``device`` (a torch.device)."""
    bf16 = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    if config.channels_last == "auto":
        channels_last = config.model.name == "rescnn" and device.type == "cuda"
    else:
        channels_last = bool(config.channels_last) and config.model.name == "rescnn"
    return bf16, channels_last


__all__ = ["AMP_MODES", "LR_END", "LR_START", "MODEL_NAMES", "MOMENTUM", "OFF_BY_DEFAULT", "RUN_SETTINGS",
           "DevSection", "LoaderSection", "ModelSection", "OptimizerSection", "SoftmaxSection", "TrainConfig", "TripletSection",
           "resolve_speed_settings", "train_config_from_dict"]
