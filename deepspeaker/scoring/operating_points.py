"""The decisions a trained system makes: its thresholds and score calibration, saved beside it.

A score alone means nothing to a user (is 0.43 a match?).  So evaluation measures, on
the system's own trials, where its operating points lie and saves them in
``exp/<tag>/operating_points/<method>.yaml`` (``method``: the scoring back end,
``cosine`` or ``plda``; ``score`` for a score fusion; any of them + ``_asnorm`` for the
same scores after AS-norm; the score-file prefix in ``exp/<tag>/scores/``):

=================  ==========================================================
``thresholds``     score thresholds by name (:data:`THRESHOLDS`): the EER point,
                   false-accept rates of 1% and 0.1%, the minDCF point
``calibration``    ``llr = scale * score + offset``: a linear map of scores to
                   log-likelihood ratios fitted by logistic regression, and what
                   it was fitted on
``heldout``        per threshold, the false-accept and miss rates measured on the
                   trials it was *not* fitted on
``cllr``           Cllr of the held-out trials before and after calibration
``asnorm``         the AS-norm settings the scores were normalised with (``_asnorm``
                   methods; None for the others)
=================  ==========================================================

:func:`load_operating_points` is what ``deepspeaker.load(...).verify`` reads;
:func:`fit_operating_points` measures them (``python -m deepspeaker.bin.save_operating_points``
at the end of every scoring stage).

How they are measured.  A threshold or a calibration measured on the trials it is then
judged on looks better than it is, so the trials are split in two halves by their
*anchor* (the test column of our lists, :mod:`deepspeaker.scoring.metrics`): every trial
of one anchor falls in the same half, so that the half the numbers are reported on shares
no test utterance with the half they were fitted on.  The split ranks the anchors by the
SHA-1 of their id and takes the first half of the ranking (half A) to fit on: it depends
on nothing but the ids, so it is the same on every machine and in every run, and equal
in size to within one anchor.  On half A:

* ``eer``: the threshold of the interpolated EER (``metrics.compute_eer``);
* ``far_1pct``, ``far_0.1pct``: the smallest threshold (among the scores of half A) whose
  false-accept rate is at most 1% / 0.1%;
* ``min_dcf``: the threshold of minDCF at ``p_target`` (``metrics.compute_min_dcf``);
  where that is the trivial "reject all" (a weak system at p_target 0.01), the threshold
  just above the highest score, so that every saved threshold is a finite number;
* the calibration: prior-weighted logistic regression, as BOSARIS' ``train_linear_fusion``
  and Kaldi's ``logistic-regression`` tools fit it: targets and non-targets weighted to an
  effective prior (0.5 unless told), minimising the cross-entropy whose value is Cllr.

On half B (held out): the false-accept and miss rates each threshold really gives, and
Cllr of the raw scores read as LLRs (as BOSARIS reports it; for cosine scores this is
large, as they are not LLRs) and of the calibrated ones.  A trial is accepted when
``score >= threshold``, as everywhere in :mod:`deepspeaker.scoring.metrics`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils import ConfigError, dataclass_from_dict, load_yaml, save_yaml
from .metrics import ScoringError, compute_eer, compute_min_dcf, error_rates

logger = logging.getLogger(__name__)

DIR = "operating_points"
THRESHOLDS = ("eer", "far_1pct", "far_0.1pct", "min_dcf")
DEFAULT_THRESHOLD = "far_1pct"
# The score-file prefixes (exp/<tag>/scores/<method>_<list>) that have operating points:
# the back ends of a single system, the embedding fusion (what a fusion's verify scores
# with) and the score fusion.
METHODS = ("cosine", "plda", "embedding", "score")
# The same scores after AS-norm (deepspeaker/scoring/asnorm.py) are <method>_asnorm_<list>;
# their operating points are <method>_asnorm.yaml, with the AS-norm settings in ``asnorm``.
ASNORM_SUFFIX = "_asnorm"
ALL_METHODS = METHODS + tuple(m + ASNORM_SUFFIX for m in METHODS)
# The false-accept rate each "far_" threshold names.
FAR_TARGETS = {"far_1pct": 0.01, "far_0.1pct": 0.001}
P_TARGET = 0.01  # minDCF's, as the report's (NIST SRE / Kaldi's compute_min_dcf.py)
PRIOR = 0.5      # the calibration's effective prior (BOSARIS' default)


@dataclass
class Calibration:
    """``llr = scale * score + offset`` (natural log), fitted as ``fitted_on`` says."""

    scale: float
    offset: float
    fitted_on: str = ""
    prior: float = PRIOR  # the prior the fit weighted the classes to; the llr itself is prior-free

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
    fitted_on: str = ""   # the trials the thresholds and the calibration were fitted on
    heldout_on: str = ""  # the trials ``heldout`` and ``cllr`` were measured on
    p_target: float = P_TARGET  # of the min_dcf threshold

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


# ----------------------------------------------------------------------------- fitting

def split_halves(groups: Sequence[str]) -> np.ndarray:
    """True for the trials of half A (fit), False for half B (held out), by anchor id.

    The anchors are ranked by the SHA-1 of their id (Python's ``hash`` of a str changes
    from one process to the next) and the first ``ceil(n / 2)`` form half A.
    """
    ids, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    digests = [hashlib.sha1(g.encode("utf-8", "surrogateescape")).digest() for g in ids]
    order = sorted(range(len(ids)), key=digests.__getitem__)
    in_a = np.zeros(len(ids), dtype=bool)
    in_a[order[:(len(ids) + 1) // 2]] = True
    return in_a[inverse.ravel()]


def threshold_at_far(scores, labels, far: float) -> float:
    """The smallest threshold among the scores whose false-accept rate is <= ``far``.

    When every threshold at a score accepts too many (the highest score is a non-target
    and fewer than 1 / ``far`` non-targets exist), the threshold just above the highest
    score: it accepts no trial that was seen.
    """
    thr, _, p_fa = error_rates(scores, labels)
    k = int(np.argmax(p_fa <= far))       # p_fa falls as the threshold rises
    return finite_threshold(thr[k], scores)


def finite_threshold(threshold: float, scores) -> float:
    """``threshold`` as a number a file can hold and a user can read: the metrics' trivial
    operating points (``+inf``: reject all, ``-inf``: accept all) become the threshold just
    above the highest score and the lowest score, which decide the same on these scores."""
    if threshold == np.inf:
        return float(np.nextafter(np.max(scores), np.inf))
    if threshold == -np.inf:
        return float(np.min(scores))
    return float(threshold)


def rates_at(scores, labels, threshold: float) -> tuple[float, float]:
    """``(false-accept rate, miss rate)`` of accepting ``score >= threshold``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    accept = scores >= threshold
    return float(np.mean(accept[~labels])), float(np.mean(~accept[labels]))


def cllr(llrs, labels) -> float:
    """Cllr in bits (BOSARIS): the cross-entropy of LLRs at prior 0.5; 1 for a system that
    always says "don't know" (llr 0), 0 for a perfect and calibrated one."""
    llrs = np.asarray(llrs, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    c_tar = np.mean(np.logaddexp(0.0, -llrs[labels]))
    c_non = np.mean(np.logaddexp(0.0, llrs[~labels]))
    return float((c_tar + c_non) / (2.0 * math.log(2.0)))


# A weak ridge on the slope of the standardised scores: it keeps the slope finite when
# half A's scores separate the classes perfectly, and changes nothing measurable otherwise.
_RIDGE = 1e-6


def _weighted_cross_entropy(w: np.ndarray, z: np.ndarray, y: np.ndarray, weight: np.ndarray,
                            logit_prior: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The objective, gradient and Hessian of the logistic regression in ``(slope, offset)``."""
    eta = y * (w[0] * z + w[1] + logit_prior)
    value = float(np.sum(weight * np.logaddexp(0.0, -eta)) + _RIDGE * w[0] ** 2)
    p_wrong = 0.5 * (1.0 - np.tanh(0.5 * eta))   # sigmoid(-eta), without overflow
    x = np.stack([z, np.ones_like(z)])
    grad = -x @ (weight * y * p_wrong) + np.array([2 * _RIDGE * w[0], 0.0])
    hess = (x * (weight * p_wrong * (1.0 - p_wrong))) @ x.T + np.diag([2 * _RIDGE, 0.0])
    return value, grad, hess


def fit_calibration(scores, labels, prior: float = PRIOR) -> tuple[float, float]:
    """``(scale, offset)`` of ``llr = scale * score + offset`` by prior-weighted logistic
    regression (BOSARIS ``train_linear_fusion``, Kaldi ``logistic-regression``).

    Minimises ``prior * mean_tar log(1 + e^-(llr + logit prior)) + (1 - prior) * mean_non
    log(1 + e^(llr + logit prior))``: each class weighs its prior whatever its trial count
    (a 1 + 99 list would otherwise calibrate to 1% targets).  The problem is convex in two
    unknowns, so Newton's method with a backtracking line search finds it in a few steps;
    the scores are standardised first so that one tolerance suits PLDA (tens) and cosine
    (tenths) alike.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    mu, sd = float(np.mean(scores)), float(np.std(scores))
    z = (scores - mu) / sd
    y = np.where(labels, 1.0, -1.0)
    weight = np.where(labels, prior / labels.sum(), (1.0 - prior) / (~labels).sum())
    logit_prior = math.log(prior / (1.0 - prior))
    w = np.zeros(2)
    value, grad, hess = _weighted_cross_entropy(w, z, y, weight, logit_prior)
    for _ in range(100):
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking: Newton's full step can overshoot far from the optimum
            w_new = w - t * step
            v_new, g_new, h_new = _weighted_cross_entropy(w_new, z, y, weight, logit_prior)
            if v_new <= value - 1e-4 * t * float(grad @ step) or t < 1e-10:
                break
            t *= 0.5
        w, value, grad, hess = w_new, v_new, g_new, h_new
        if float(np.max(np.abs(t * step))) < 1e-10:
            break
    scale = w[0] / sd
    return float(scale), float(w[1] - scale * mu)


def _half_text(trials: str, half: str, labels: np.ndarray, groups: np.ndarray) -> str:
    return (f"{trials}, half {half} of its anchors (test ids, split by SHA-1 of the id): "
            f"{len(np.unique(groups))} anchors, {int(labels.sum())} target + "
            f"{int((~labels).sum())} non-target trials")


def _check_half(trials: str, half: str, scores: np.ndarray, labels: np.ndarray) -> None:
    """Half ``half`` can be fitted on / measured on, or a ScoringError naming the list."""
    n_tar, n_non = int(labels.sum()), int((~labels).sum())
    if n_tar == 0 or n_non == 0:
        raise ScoringError(f"half {half} of the anchors has {n_tar} target and {n_non} "
                           "non-target trials: operating points need both in each half "
                           "(a list with targets for more anchors)", path=trials)
    if np.ptp(scores) == 0:
        raise ScoringError(f"every score of half {half} of the anchors is {scores[0]:g}: "
                           "constant scores have no operating points (is the scorer or its "
                           "model broken?)", path=trials)


def fit_operating_points(scores, labels, groups: Sequence[str], method: str, trials: str,
                         p_target: float = P_TARGET, prior: float = PRIOR) -> OperatingPoints:
    """The thresholds and calibration of ``method``'s scores, fitted on half A of ``trials``
    and measured on half B (the module docstring says how).

    ``scores``, ``labels`` (True: target) and ``groups`` (each trial's anchor id) are in
    trial order; ``trials`` names the list in ``fitted_on`` and in the errors (a half
    without targets or non-targets, constant scores, NaN).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    groups = np.asarray(groups, dtype=str).ravel()
    if not scores.size == labels.size == groups.size:
        raise ScoringError(f"{scores.size} scores, {labels.size} labels and {groups.size} "
                           "anchors do not match", path=trials)
    if not np.all(np.isfinite(scores)):
        raise ScoringError(f"{int(np.sum(~np.isfinite(scores)))} scores are NaN or infinite",
                           path=trials)
    in_a = split_halves(groups)
    halves = {"A": in_a, "B": ~in_a}
    for half, mask in halves.items():
        _check_half(trials, half, scores[mask], labels[mask])
    s_fit, l_fit = scores[in_a], labels[in_a]
    s_out, l_out = scores[~in_a], labels[~in_a]
    for name, far in FAR_TARGETS.items():
        if (~l_fit).sum() * far < 1:
            logger.warning("%s: half A has %d non-target trials, too few to estimate a "
                           "false-accept rate of %g (%s is a guess)", trials,
                           int((~l_fit).sum()), far, name)
    # minDCF at p_target 0.01 of a weak system is the trivial one (reject all: +inf)
    thresholds = {"eer": finite_threshold(compute_eer(s_fit, l_fit)[1], s_fit),
                  **{name: threshold_at_far(s_fit, l_fit, far) for name, far in FAR_TARGETS.items()},
                  "min_dcf": finite_threshold(compute_min_dcf(s_fit, l_fit, p_target)[1], s_fit)}
    if s_fit[~l_fit].max() < s_fit[l_fit].min():
        logger.warning("%s: the scores of half A separate targets from non-targets perfectly; "
                       "the calibration's slope is held finite only by its ridge", trials)
    scale, offset = fit_calibration(s_fit, l_fit, prior)
    fitted_on = _half_text(trials, "A", l_fit, groups[in_a])
    heldout = {}
    for name, thr in thresholds.items():
        far, miss = rates_at(s_out, l_out, thr)
        heldout[name] = {"far": far, "miss": miss}
    return OperatingPoints(
        method=method, trials=str(trials),
        thresholds={k: float(v) for k, v in thresholds.items()},
        calibration=Calibration(scale, offset, fitted_on, prior),
        heldout=heldout,
        cllr={"raw": cllr(s_out, l_out), "calibrated": cllr(scale * s_out + offset, l_out)},
        fitted_on=fitted_on, heldout_on=_half_text(trials, "B", l_out, groups[~in_a]),
        p_target=p_target)


__all__ = ["ALL_METHODS", "ASNORM_SUFFIX", "DEFAULT_THRESHOLD", "DIR", "FAR_TARGETS", "METHODS", "PRIOR", "P_TARGET", "THRESHOLDS",
           "Calibration", "OperatingPoints", "cllr", "finite_threshold", "fit_calibration", "fit_operating_points",
           "load_operating_points", "operating_points_path", "rates_at", "save_operating_points",
           "split_halves", "threshold_at_far"]
