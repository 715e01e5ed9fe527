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
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..utils import ConfigError, dataclass_from_dict, load_yaml

KINDS = ("reverb", "noise", "music", "babble")


@dataclass
class ReverbConfig:
    fraction: float = 1.0


@dataclass
class NoiseConfig:
    snrs: list[float] = field(default_factory=lambda: [15.0, 10.0, 5.0, 0.0])
    fraction: float = 1.0
    interval: float = 1.0  # seconds between foreground events (Kaldi's --fg-interval)


@dataclass
class MusicConfig:
    snrs: list[float] = field(default_factory=lambda: [15.0, 10.0, 8.0, 5.0])
    fraction: float = 1.0


@dataclass
class BabbleConfig:
    snrs: list[float] = field(default_factory=lambda: [20.0, 17.0, 15.0, 13.0])
    speakers: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7])
    fraction: float = 1.0


@dataclass
class AugmentConfig:
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    reverb: ReverbConfig = field(default_factory=ReverbConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    music: MusicConfig = field(default_factory=MusicConfig)
    babble: BabbleConfig = field(default_factory=BabbleConfig)
    speed: list[float] = field(default_factory=list)
    reverb_prob: float = 0.0
    sample_rate: int = 16000

    def section(self, kind: str):
        return getattr(self, kind)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _number(value, key: str, where: str, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: {key}: expected {what}, got {value!r}")
    return int(value) if integer else float(value)


def parse_list(value, key: str, where: str, integer: bool = False) -> list:
    """A YAML list, one number or Kaldi's ``"15:10:5:0"`` as a non-empty list of numbers."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(":")]
        try:
            items = [int(p) if integer else float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{where}: {key}: cannot parse {value!r} as a list of "
                              f"{'integers' if integer else 'numbers'} (a YAML list or "
                              f"Kaldi's colon form such as \"15:10:5:0\")") from None
    elif isinstance(value, (list, tuple)):
        items = [_number(v, key, where, integer) for v in value]
    else:
        items = [_number(value, key, where, integer)]
    return items


def _check(obj, prefix: str, where: str) -> None:
    """Convert and check every field of ``obj`` against its type hint, in place."""
    for name, hint in typing.get_type_hints(type(obj)).items():
        key = f"{prefix}{name}"
        value = getattr(obj, name)
        if dataclasses.is_dataclass(hint):
            _check(value, f"{key}.", where)
        elif hint in (list[float], list[int]):
            setattr(obj, name, parse_list(value, key, where, integer=hint == list[int]))
        elif hint is list[str]:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key}: expected a list of names, got {value!r}")
            setattr(obj, name, value)
        elif hint in (float, int):
            setattr(obj, name, _number(value, key, where, integer=hint is int))


def _validate(cfg: AugmentConfig, where: str) -> None:
    unknown = [k for k in cfg.kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"{where}: kinds: unknown kind(s) {', '.join(unknown)}; "
                          f"known kinds are {', '.join(KINDS)}")
    for kind in KINDS:
        sec = cfg.section(kind)
        if not 0.0 <= sec.fraction <= 1.0:
            raise ConfigError(f"{where}: {kind}.fraction: must be within [0, 1], "
                              f"got {sec.fraction}")
        if hasattr(sec, "snrs") and not sec.snrs:
            raise ConfigError(f"{where}: {kind}.snrs: must list at least one SNR")
    if not cfg.babble.speakers or min(cfg.babble.speakers) < 1:
        raise ConfigError(f"{where}: babble.speakers: counts must be >= 1, "
                          f"got {cfg.babble.speakers}")
    if cfg.noise.interval < 0:
        raise ConfigError(f"{where}: noise.interval: must be >= 0, got {cfg.noise.interval}")
    if not 0.0 <= cfg.reverb_prob <= 1.0:
        raise ConfigError(f"{where}: reverb_prob: must be within [0, 1], got {cfg.reverb_prob}")
    bad = [f for f in cfg.speed if f <= 0 or f == 1.0]
    if bad:
        raise ConfigError(f"{where}: speed: factors must be > 0 and not 1.0, got {bad}")
    if cfg.sample_rate <= 0:
        raise ConfigError(f"{where}: sample_rate: must be > 0, got {cfg.sample_rate}")


def augment_config_from_dict(values: dict | None, where: str = "config") -> AugmentConfig:
    """The parsed, checked config; ConfigError names ``where`` and the dotted key."""
    cfg = dataclass_from_dict(AugmentConfig, values or {}, where)
    _check(cfg, "", where)
    _validate(cfg, where)
    return cfg


def load_augment_config(path: str | Path | None) -> AugmentConfig:
    """Read ``path`` (None: the defaults)."""
    if path is None:
        return AugmentConfig()
    return augment_config_from_dict(load_yaml(path), str(path))


__all__ = ["KINDS", "AugmentConfig", "BabbleConfig", "MusicConfig", "NoiseConfig",
           "ReverbConfig", "augment_config_from_dict", "load_augment_config", "parse_list"]
