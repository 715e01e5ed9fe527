"""Write ``EXP/RESULTS.md``: EER, minDCF and ACC of every score file of an experiment.

    python -m deepspeaker.bin.summarize_scores [--title T] EXP TRIALS_DIR

Score files are ``EXP/scores/<system>_<trials-name>`` (e.g. ``plda_trials_enroll3``);
each is evaluated against ``TRIALS_DIR/<trials-name>``, for every list
:func:`deepspeaker.scoring.experiment.trial_lists` finds there, with the report's
evaluation (:func:`deepspeaker.scoring.report.evaluate`).  Trials a scoring stage
left out on purpose (listed in ``<score file>.skipped``) are excluded and counted;
any other trial without a score is an error, as is a score that is not a finite number
(naming ``file:line``; RESULTS.md is then not written).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
from pathlib import Path

from ..scoring.experiment import trial_lists
from ..scoring.report import evaluate, git_commit
from ..scoring.trials import read_trials
from ..utils import DeepSpeakerError, atomic_write
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.summarize_scores",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--title", default=None)
    p.add_argument("exp", type=Path)
    p.add_argument("trials_dir", type=Path)
    return p


def summarize(exp: Path, trials_dir: Path, title: str | None = None) -> Path:
    rows = []
    names = trial_lists(trials_dir)
    if not names:
        raise DeepSpeakerError(f"{trials_dir}: no trials files")
    # Each method's AS-normed scores (<method>_asnorm_<list>) in the row after its own.
    score_files = sorted((exp / "scores").glob("*"),
                         key=lambda f: f.name.replace("_asnorm_", "\x7f_")) \
        if (exp / "scores").is_dir() else []
    for name in names:
        trials = read_trials(trials_dir / name)
        for sf in score_files:
            if not sf.name.endswith("_" + name) or sf.suffix == ".skipped":
                continue
            m, _, _, n_skip = evaluate(sf, trials_dir / name, trials)
            rows.append((sf.name[: -len(name) - 1], name, m, n_skip))
    if not rows:
        raise DeepSpeakerError(f"{exp}/scores: no score file matches a trials file of {trials_dir}")
    lines = [f"# {title or exp.name}", "",
             f"Trials from `{trials_dir}`; scores in `{exp}/scores`; commit {git_commit()}; "
             f"{datetime.datetime.now():%Y-%m-%d %H:%M}.", "",
             "| system | trials | EER [%] | minDCF (p=0.01) | ACC [%] | target / non-target | skipped |",
             "|---|---|---|---|---|---|---|"]
    for system, name, m, n_skip in rows:
        acc = "n/a" if m.acc is None else f"{100 * m.acc:.2f}"
        lines.append(f"| {system} | {name} | {100 * m.eer:.2f} | {m.min_dcf:.4f} | {acc} | "
                     f"{m.num_target} / {m.num_nontarget} | {n_skip} |")
    out = exp / "RESULTS.md"
    with atomic_write(out) as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: summarize(args.exp, args.trials_dir, args.title), argv)


if __name__ == "__main__":
    sys.exit(main())
