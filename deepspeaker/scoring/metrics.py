"""Verification and identification metrics: EER, minDCF and the paper's ACC.

Conventions (shared by every system we score, so numbers are comparable):

* A higher score means "more likely the same speaker".
* A trial is accepted when ``score >= threshold``.
* EER is interpolated: the miss and false-alarm curves are piecewise linear between
  consecutive distinct scores and the EER is where they cross.  Taking the nearest
  operating point instead would make the EER of small trial lists jump by a whole
  trial's worth.
* minDCF follows NIST SRE / Kaldi's ``compute_min_dcf.py``: the minimum over
  thresholds of ``c_miss * p_target * P_miss + c_fa * (1 - p_target) * P_fa``,
  normalised by the cost of the best trivial system ``min(c_miss * p, c_fa * (1 - p))``.
* ACC is the paper's 1-of-100 identification (paper §4.1): trials are grouped by
  their anchor (the *test* column of our trial lists, see
  :mod:`deepspeaker.scoring.trials`); an anchor counts as correct when its single
  positive scores strictly higher than every negative of its group.  A tie is an
  error: a system that gives everything the same score must not look perfect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..utils import DeepSpeakerError


class ScoringError(DeepSpeakerError, ValueError):
    """Trials and scores that do not fit together (names the trial, file and line).

    Also a ValueError: the metrics raised ValueError for bad scores and labels before
    they raised this, and callers that catch that keep working.
    """


def _as_arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if not np.all(np.isfinite(scores)):
        raise ScoringError(f"{int(np.sum(~np.isfinite(scores)))} scores are NaN or infinite")
    n_tar, n_non = int(labels.sum()), int((~labels).sum())
    if n_tar == 0 or n_non == 0:
        raise ScoringError(f"need both target and non-target trials (got {n_tar} target, {n_non} non-target)")
    return scores, labels


def error_rates(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every distinct threshold.

    Returns ``(thresholds, p_miss, p_fa)``, thresholds ascending, with the two
    trivial operating points added: ``-inf`` (accept all: p_miss 0, p_fa 1) and
    ``+inf`` (reject all: p_miss 1, p_fa 0).  Ties are handled as one threshold,
    because a threshold cannot separate equal scores.
    """
    scores, labels = _as_arrays(scores, labels)
    order = np.argsort(scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    n_tar, n_non = lab.sum(), (~lab).sum()
    # Index of the first element of each group of equal scores.
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    tar_below = np.r_[0, np.cumsum(lab)]        # targets with index < i
    non_below = np.r_[0, np.cumsum(~lab)]
    # Threshold at a group's score: everything below the group is rejected.
    p_miss = tar_below[starts] / n_tar
    p_fa = 1.0 - non_below[starts] / n_non
    thresholds = np.r_[-np.inf, s[starts], np.inf]
    p_miss = np.r_[0.0, p_miss, 1.0]
    p_fa = np.r_[1.0, p_fa, 0.0]
    return thresholds, p_miss, p_fa


def compute_eer(scores, labels) -> tuple[float, float]:
    """Interpolated equal error rate (a fraction) and the threshold where it is reached."""
    thr, p_miss, p_fa = error_rates(scores, labels)
    diff = p_miss - p_fa                     # rises from -1 to +1
    k = int(np.argmax(diff >= 0))            # first point where misses catch up
    if diff[k] == 0:
        return float(p_miss[k]), float(thr[k])
    d0, d1 = diff[k - 1], diff[k]
    a = -d0 / (d1 - d0)                      # where the linear pieces cross, in [0, 1)
    eer = p_fa[k - 1] + a * (p_fa[k] - p_fa[k - 1])
    t0, t1 = thr[k - 1], thr[k]
    if math.isinf(t0):
        threshold = t1
    elif math.isinf(t1):
        threshold = t0
    else:
        threshold = t0 + a * (t1 - t0)
    return float(eer), float(threshold)


def compute_min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0,
                    c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised minimum detection cost and its threshold (NIST SRE definition)."""
    if not 0.0 < p_target < 1.0:
        raise ScoringError(f"p_target must be in (0, 1), got {p_target}")
    thr, p_miss, p_fa = error_rates(scores, labels)
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    k = int(np.argmin(dcf))
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(dcf[k] / norm), float(thr[k])


def compute_acc(anchors: Sequence[str], scores, labels) -> tuple[float, int]:
    """The paper's identification accuracy over anchor groups (paper §4.1).

    ``anchors[i]`` names the anchor of trial i.  Every anchor must have exactly one
    target trial and at least one non-target.  Returns ``(acc, num_anchors)``.
    """
    scores, labels = _as_arrays(scores, labels)
    anchors = np.asarray(anchors)
    if anchors.shape != scores.shape:
        raise ValueError(f"{anchors.size} anchors but {scores.size} scores")
    uniq, inv = np.unique(anchors, return_inverse=True)
    n = len(uniq)
    n_tar = np.bincount(inv, weights=labels, minlength=n)
    n_non = np.bincount(inv, weights=~labels, minlength=n)
    bad = np.flatnonzero((n_tar != 1) | (n_non == 0))
    if bad.size:
        a = uniq[bad[0]]
        raise ScoringError(f"anchor {a} has {int(n_tar[bad[0]])} target and {int(n_non[bad[0]])} "
                         f"non-target trials; ACC needs exactly 1 target and >= 1 non-target "
                         f"per anchor ({bad.size} anchors affected)")
    pos = np.empty(n)
    pos[inv[labels]] = scores[labels]
    best_neg = np.full(n, -np.inf)
    np.maximum.at(best_neg, inv[~labels], scores[~labels])
    return float(np.mean(pos > best_neg)), n


@dataclass
class Metrics:
    """Everything we report for one trial list (rates as fractions)."""

    eer: float
    eer_threshold: float
    min_dcf: float
    min_dcf_threshold: float
    p_target: float
    acc: float | None
    num_anchors: int | None
    num_target: int
    num_nontarget: int

    def format(self) -> str:
        lines = [f"EER: {100 * self.eer:.2f}% (threshold {self.eer_threshold:.4f})",
                 f"minDCF(p_target={self.p_target:g}): {self.min_dcf:.4f} "
                 f"(threshold {self.min_dcf_threshold:.4f})"]
        if self.acc is None:
            lines.append("ACC: n/a (trials are not groups of 1 positive + negatives per anchor)")
        else:
            lines.append(f"ACC: {100 * self.acc:.2f}% ({self.num_anchors} anchors)")
        lines.append(f"trials: {self.num_target} target, {self.num_nontarget} non-target")
        return "\n".join(lines)


def has_anchor_groups(anchors: Sequence[str], labels) -> bool:
    """True when every anchor has exactly one target and some non-targets (ACC is defined)."""
    anchors = np.asarray(anchors)
    labels = np.asarray(labels).astype(bool)
    _, inv = np.unique(anchors, return_inverse=True)
    n_tar = np.bincount(inv, weights=labels)
    n_non = np.bincount(inv, weights=~labels)
    return bool(np.all(n_tar == 1) and np.all(n_non > 0))


def compute_metrics(scores, labels, anchors: Sequence[str] | None = None,
                    p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> Metrics:
    """EER, minDCF and (when the trials form anchor groups) ACC in one call."""
    scores, labels = _as_arrays(scores, labels)
    eer, eer_thr = compute_eer(scores, labels)
    dcf, dcf_thr = compute_min_dcf(scores, labels, p_target, c_miss, c_fa)
    acc = n_anchors = None
    if anchors is not None and has_anchor_groups(anchors, labels):
        acc, n_anchors = compute_acc(anchors, scores, labels)
    return Metrics(eer, eer_thr, dcf, dcf_thr, p_target, acc, n_anchors,
                   int(labels.sum()), int((~labels).sum()))
