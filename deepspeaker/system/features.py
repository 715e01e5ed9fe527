"""Stage 1's fbank + energy VAD for a trained system, from the config the recipe used.

A system's models only mean something on the features they were trained on, so the
config is never guessed: it is, in this order,

1. ``feature_config=`` given to :func:`deepspeaker.load` (a YAML file or a dict);
2. ``exp/<tag>/feature.yaml``, the stage-1 config copied beside the model (what a
   moved or downloaded experiment carries with it);
3. the config stage 1 saved for the system's training set,
   ``<recipe>/data/<set>/data/conf_<set>.yaml`` (``train_set`` of ``system.yaml``;
   the recipe is ``exp_dir/../..``);
4. for a training set that was combined from others (no stage 1 of its own), the
   saved configs of the recipe's sets, ``<recipe>/data/*/data/conf_*.yaml``, if they
   all agree (one recipe, one front end); if they differ, none is chosen.

Anything else is a :class:`~deepspeaker.utils.ConfigError` saying where it looked.
Dither is switched off (extraction is deterministic: the same file, the same vector).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from collections.abc import Mapping

import numpy as np

from ..bin.compute_fbank_vad import FeatureConfig
from ..scoring.experiment import FEATURE_FILE, locate_feature_config
from ..features import compute_fbank_batch, compute_vad_energy
from ..utils import ConfigError, DeepSpeakerError, load_yaml

logger = logging.getLogger(__name__)

_NOT_CONFIG = ("nj",)  # saved beside the config by stage 1, not part of it


def _parse(values: Mapping, where: str) -> FeatureConfig:
    cfg = FeatureConfig.from_dict({k: v for k, v in values.items() if k not in _NOT_CONFIG}, where)
    if cfg.fbank.dither:
        logger.info("%s: dither %g switched off (extraction is deterministic)", where,
                    cfg.fbank.dither)
        cfg.fbank = dataclasses.replace(cfg.fbank, dither=0.0)
    return cfg


def find_feature_config(exp_dir: Path, train_set: str | None,
                        given: str | os.PathLike | Mapping | None = None) -> tuple[FeatureConfig, str]:
    """(the stage-1 config of the system in ``exp_dir``, where it came from); see module doc."""
    if isinstance(given, Mapping):
        return _parse(given, "feature_config"), "feature_config"
    if given is not None:
        return _parse(load_yaml(given), str(given)), str(given)
    path, looked = locate_feature_config(exp_dir, train_set)
    if path is not None:
        logger.info("%s: feature config %s", exp_dir, path)
        return _parse(load_yaml(path), str(path)), str(path)
    found = list(exp_dir.resolve().parent.parent.glob("data/*/data/conf_*.yaml"))
    why = "they differ" if found else "none found"
    raise ConfigError(f"{exp_dir}: no feature config for this system ({why}); looked for "
                      f"{', '.join(map(str, looked))}; pass feature_config= (the YAML given to "
                      f"stage 1, compute_fbank_vad --config)")


def compute_features(samples: np.ndarray, cfg: FeatureConfig, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(fbank (T, 64) float32, vad (T,) 0/1) of mono int16-scale samples, as stage 1 makes them."""
    try:
        ((fbank, log_energy),) = compute_fbank_batch([samples], cfg.fbank)
    except ValueError as e:
        why = str(e).removeprefix("batch item 0: ")
        raise DeepSpeakerError(f"{name}: {why}") from None
    if not np.all(np.isfinite(fbank)):
        raise DeepSpeakerError(f"{name}: fbank has NaN or infinite values")
    vad = compute_vad_energy(log_energy, **dataclasses.asdict(cfg.vad))
    if not vad.any():
        raise DeepSpeakerError(f"{name}: no voiced frames ({len(vad)} frames, "
                               f"{len(samples) / cfg.fbank.sample_rate:.2f} s): silent or too "
                               f"quiet for the energy VAD")
    return fbank.astype(np.float32, copy=False), vad.astype(np.float32, copy=False)


__all__ = ["FEATURE_FILE", "compute_features", "find_feature_config"]
