"""End of evaluation: a system's thresholds and score calibration, saved beside its model.

    python -m deepspeaker.bin.save_operating_points [--scores S] [--p-target 0.01] \\
        [--prior 0.5] [--asnorm KEY=VALUE]... EXP --method METHOD --trials TRIALS

METHOD: cosine, plda (a system's back ends), score (a score fusion), or any of them +
``_asnorm`` (the same scores after AS-norm; ``--asnorm top_n=300 --asnorm cohort=...``
records its settings in the file, for ``verify`` to normalise the same way).

Reads the scores of ``--method`` over ``TRIALS`` (default ``EXP/scores/<method>_<name of
TRIALS>``, less the trials its ``.skipped`` lists), fits the EER, FAR 1%, FAR 0.1% and
minDCF thresholds and a logistic-regression calibration on one half of the anchors,
measures them on the other half, and writes ``EXP/operating_points/<method>.yaml``
(:mod:`deepspeaker.scoring.operating_points`: what is in it and how it is fitted).  The
scores and trials that made it are recorded in ``EXP/operating_points/.<method>.done``:
a rerun with the same ones does nothing.  A half without target or non-target trials,
or constant scores, is an error naming the trial list; nothing is written then.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..marker import Marker, signature
from ..scoring.operating_points import (
    ALL_METHODS,
    ASNORM_SUFFIX,
    DIR,
    P_TARGET,
    PRIOR,
    THRESHOLDS,
    OperatingPoints,
    fit_operating_points,
    operating_points_path,
    save_operating_points,
)
from ..scoring.trials import read_scores, read_skipped, read_trials, scores_for_trials
from ._cli import run_main

logger = logging.getLogger(__name__)
# Part of the signature: raise it when the fitting changes, so that a rerun refits.
FIT_VERSION = 2


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.save_operating_points",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, choices=ALL_METHODS,
                   help="the score-file prefix: the back end (a score fusion: score), "
                        "+ _asnorm for scores after AS-norm")
    p.add_argument("--trials", required=True, type=Path, help="the trial list, with labels")
    p.add_argument("--scores", type=Path,
                   help="its score file (default: EXP/scores/<method>_<name of TRIALS>)")
    p.add_argument("--p-target", type=float, default=P_TARGET, help="of the minDCF threshold")
    p.add_argument("--prior", type=float, default=PRIOR,
                   help="the effective target prior the calibration is weighted to")
    p.add_argument("--asnorm", action="append", default=[], metavar="KEY=VALUE",
                   help="an AS-norm setting of an _asnorm method's scores, to record "
                        "(repeat for each)")
    p.add_argument("exp", type=Path, help="the experiment dir (exp/<tag>)")
    return p


def measure(trials_path: Path, scores_path: Path, method: str, p_target: float,
            prior: float) -> OperatingPoints:
    """The operating points of one score file over its trial list."""
    trials = read_trials(trials_path)
    skip = read_skipped(scores_path)
    kept = [t for t in trials if (t.enroll, t.test) not in skip]
    scores = scores_for_trials(kept, read_scores(scores_path), trials_path, scores_path)
    labels = np.array([t.target for t in kept], dtype=bool)
    return fit_operating_points(scores, labels, [t.test for t in kept], method,
                                str(trials_path), p_target, prior)


def parse_settings(items: list[str]) -> dict:
    """``["top_n=300", "cohort=exp/x/train/embedding.scp"]`` -> a dict (numbers as numbers)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--asnorm {item!r}: expected KEY=VALUE")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def save(exp: Path, method: str, trials_path: Path, scores_path: Path | None = None,
         p_target: float = P_TARGET, prior: float = PRIOR, asnorm: dict | None = None) -> Path:
    """Fit and write ``exp/operating_points/<method>.yaml`` unless it is up to date."""
    scores_path = scores_path or exp / "scores" / f"{method}_{trials_path.name}"
    out = operating_points_path(exp, method)
    marker = Marker(exp / DIR / f".{method}.done")
    # {} for AS-normed scores whose settings were not given; None: not AS-normed
    asnorm = dict(asnorm or {}) if method.endswith(ASNORM_SUFFIX) else None
    sig = signature(inputs=[trials_path, scores_path, f"{scores_path}.skipped"],
                    options={"method": method, "p_target": p_target, "prior": prior,
                             "asnorm": asnorm, "version": FIT_VERSION})
    if marker.outputs_current(sig, [out]):
        logger.info("%s: up to date (%s)", out, marker.path)
        return out
    # Points of other scores must not outlive them (verify would decide with them), even
    # when these scores have none.
    out.unlink(missing_ok=True)
    points = measure(trials_path, scores_path, method, p_target, prior)
    points.asnorm = asnorm
    save_operating_points(exp, points)
    marker.write(sig)
    held = ", ".join(f"{name} {points.thresholds[name]:.4g} (FAR {100 * points.heldout[name]['far']:.2f}% "
                     f"miss {100 * points.heldout[name]['miss']:.2f}%)" for name in THRESHOLDS)
    logger.info("%s: thresholds on the held-out half: %s; Cllr %.3f -> %.3f calibrated", out,
                held, points.cllr["raw"], points.cllr["calibrated"])
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if not 0.0 < args.p_target < 1.0 or not 0.0 < args.prior < 1.0:
        get_parser().error("--p-target and --prior must be in (0, 1)")
    if args.asnorm and not args.method.endswith(ASNORM_SUFFIX):
        get_parser().error(f"--asnorm describes AS-normed scores: --method {args.method}"
                           f"{ASNORM_SUFFIX}, not {args.method}")
    try:
        asnorm = parse_settings(args.asnorm)
    except ValueError as e:
        get_parser().error(str(e))
    return run_main(lambda: save(args.exp, args.method, args.trials, args.scores,
                                 args.p_target, args.prior, asnorm), argv,
                    outputs=[args.exp])


if __name__ == "__main__":
    sys.exit(main())
