"""The augmentation config (``conf/augment.yaml``): which copies, at which SNRs, how many.

The defaults are Kaldi's ``egs/voxceleb/v2`` (``run.sh``, stage 2):

* reverb: one reverberated copy of every utterance (``reverberate_data_dir.py``);
* noise: foreground MUSAN noise events, 1 s apart, SNR 15:10:5:0 dB;
* music: one background music track, SNR 15:10:8:5 dB;
* babble: 3 to 7 other speakers summed, each at SNR 20:17:15:13 dB.

``fraction`` is the share of the source utterances that get a copy of that kind (1.0
is Kaldi's full copy; Kaldi v2 then subsamples the combined set, which a fraction
below 1 does up front).  An SNR or count list is a YAML list, one number, or Kaldi's
colon form ``"15:10:5:0"``.  Speed perturbation is off by default; ``speed: [0.9,
1.1]`` makes Kaldi's / WeSpeaker's copies as new speakers ``sp0.9-<spk>``.
``reverb_prob`` is the probability that a noise, music or babble copy is also
reverberated (0: Kaldi v2's copies are either reverberant or noisy).

Unknown keys and wrong types are errors naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ..config_types import Fraction, NonNegative, Parse, Range, describe_value
from ..utils import ConfigError, dataclass_from_dict, load_yaml

KINDS = ("reverb", "noise", "music", "babble")


def _number(value, integer: bool):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        raise ValueError(f"expected {'an integer' if integer else 'a number'}, "
                         f"got {describe_value(value)}")
    return int(value) if integer else float(value)


def _numbers(value, integer: bool) -> list:
    """A YAML list, one number or Kaldi's ``"15:10:5:0"`` as a list of numbers (ValueError if not)."""
    if isinstance(value, str):
        try:
            return [int(p) if integer else float(p) for p in (p.strip() for p in value.split(":"))]
        except ValueError:
            raise ValueError(f"cannot parse {value!r} as a list of "
                             f"{'integers' if integer else 'numbers'} (a YAML list or "
                             f"Kaldi's colon form such as \"15:10:5:0\")") from None
    if isinstance(value, (list, tuple)):
        return [_number(v, integer) for v in value]
    return [_number(value, integer)]


def _names(value):
    """``kinds``: a YAML list or one string of names separated by spaces or commas."""
    return value.replace(",", " ").split() if isinstance(value, str) else value


# Lists as YAML lists, one number or Kaldi's colon form.
Numbers = Annotated[list[float], Parse(lambda v: _numbers(v, integer=False))]
Integers = Annotated[list[int], Parse(lambda v: _numbers(v, integer=True))]


@dataclass
class ReverbConfig:
    fraction: Fraction = 1.0


@dataclass
class NoiseConfig:
    snrs: Numbers = field(default_factory=lambda: [15.0, 10.0, 5.0, 0.0])
    fraction: Fraction = 1.0
    interval: NonNegative = 1.0  # seconds between foreground events (Kaldi's --fg-interval)


@dataclass
class MusicConfig:
    snrs: Numbers = field(default_factory=lambda: [15.0, 10.0, 8.0, 5.0])
    fraction: Fraction = 1.0


@dataclass
class BabbleConfig:
    snrs: Numbers = field(default_factory=lambda: [20.0, 17.0, 15.0, 13.0])
    speakers: Integers = field(default_factory=lambda: [3, 4, 5, 6, 7])
    fraction: Fraction = 1.0


@dataclass
class AugmentConfig:
    kinds: Annotated[list[str], Parse(_names)] = field(default_factory=lambda: list(KINDS))
    reverb: ReverbConfig = field(default_factory=ReverbConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    music: MusicConfig = field(default_factory=MusicConfig)
    babble: BabbleConfig = field(default_factory=BabbleConfig)
    speed: Numbers = field(default_factory=list)
    reverb_prob: Fraction = 0.0
    sample_rate: Annotated[int, Range(gt=0)] = 16000

    def section(self, kind: str):
        return getattr(self, kind)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _validate(cfg: AugmentConfig, where: str) -> None:
    """What the types and ranges of the fields do not say (they are checked when read)."""
    unknown = [k for k in cfg.kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"{where}: kinds: unknown kind(s) {', '.join(unknown)}; "
                          f"known kinds are {', '.join(KINDS)}")
    for kind in KINDS:
        if hasattr(cfg.section(kind), "snrs") and not cfg.section(kind).snrs:
            raise ConfigError(f"{where}: {kind}.snrs: must list at least one SNR")
    if not cfg.babble.speakers or min(cfg.babble.speakers) < 1:
        raise ConfigError(f"{where}: babble.speakers: counts must be >= 1, "
                          f"got {cfg.babble.speakers}")
    bad = [f for f in cfg.speed if f <= 0 or f == 1.0]
    if bad:
        raise ConfigError(f"{where}: speed: factors must be > 0 and not 1.0, got {bad}")


def augment_config_from_dict(values: dict | None, where: str | None = None) -> AugmentConfig:
    """The parsed, checked config; ConfigError names ``where`` (default: the file) and the key."""
    where = where or getattr(values, "source", None) or "config"
    cfg = dataclass_from_dict(AugmentConfig, values, where)
    _validate(cfg, where)
    return cfg


def load_augment_config(path: str | Path | None) -> AugmentConfig:
    """Read ``path`` (None: the defaults)."""
    if path is None:
        return AugmentConfig()
    return augment_config_from_dict(load_yaml(path), str(path))


__all__ = ["KINDS", "AugmentConfig", "BabbleConfig", "MusicConfig", "NoiseConfig",
           "ReverbConfig", "augment_config_from_dict", "load_augment_config"]
