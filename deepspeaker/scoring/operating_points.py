"""The decisions a trained system makes: its thresholds and score calibration, saved beside it.

A score alone means nothing to a user (is 0.43 a match?).  So evaluation measures, on
the system's own trials, where its operating points lie and saves them in
``exp/<tag>/operating_points/<method>.yaml`` (``method``: the scoring back end,
``cosine`` or ``plda``; ``score`` for a score fusion):

=================  ==========================================================
``thresholds``     score thresholds by name (:data:`THRESHOLDS`): the EER point,
                   false-accept rates of 1% and 0.1%, the minDCF point
``calibration``    ``llr = scale * score + offset``: a linear map of scores to
                   log-likelihood ratios fitted by logistic regression, and what
                   it was fitted on
``heldout``        per threshold, the false-accept and miss rates measured on the
                   trials it was *not* fitted on
``cllr``           Cllr of the held-out trials before and after calibration
``asnorm``         the AS-norm settings the scores were normalised with, if any
=================  ==========================================================

:func:`load_operating_points` is what ``deepspeaker.load(...).verify`` reads.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..utils import ConfigError, dataclass_from_dict, load_yaml, save_yaml

DIR = "operating_points"
THRESHOLDS = ("eer", "far_1pct", "far_0.1pct", "min_dcf")
DEFAULT_THRESHOLD = "far_1pct"


@dataclass
class Calibration:
    """``llr = scale * score + offset`` (natural log), fitted as ``fitted_on`` says."""

    scale: float
    offset: float
    fitted_on: str = ""
    prior: float = 0.5

    def llr(self, score: float) -> float:
        return self.scale * float(score) + self.offset


@dataclass
class OperatingPoints:
    method: str
    trials: str
    thresholds: dict = field(default_factory=dict)
    calibration: Calibration | None = None
    heldout: dict = field(default_factory=dict)
    cllr: dict = field(default_factory=dict)
    asnorm: dict | None = None

    def threshold(self, name: str = DEFAULT_THRESHOLD) -> float:
        """The score threshold ``name`` (one of :data:`THRESHOLDS`), or a clear error."""
        if name not in self.thresholds:
            known = ", ".join(sorted(self.thresholds)) or "none saved"
            raise ConfigError(f"no threshold {name!r} for the {self.method} scores "
                              f"(known: {known})")
        return float(self.thresholds[name])


def operating_points_path(exp_dir: str | os.PathLike, method: str) -> Path:
    return Path(exp_dir) / DIR / f"{method}.yaml"


def save_operating_points(exp_dir: str | os.PathLike, points: OperatingPoints) -> Path:
    """Write ``exp_dir/operating_points/<method>.yaml`` atomically."""
    path = operating_points_path(exp_dir, points.method)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_yaml(path, dataclasses.asdict(points))
    return path


def load_operating_points(exp_dir: str | os.PathLike, method: str) -> OperatingPoints | None:
    """The saved operating points of ``method`` in ``exp_dir``; None when none were saved."""
    path = operating_points_path(exp_dir, method)
    if not path.is_file():
        return None
    return dataclass_from_dict(OperatingPoints, load_yaml(path), where=str(path))


__all__ = ["DEFAULT_THRESHOLD", "DIR", "THRESHOLDS", "Calibration", "OperatingPoints",
           "load_operating_points", "operating_points_path", "save_operating_points"]
