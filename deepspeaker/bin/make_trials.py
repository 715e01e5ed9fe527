"""Make the paper's trial lists for an evaluation data dir (paper §4.1, T8).

Writes into OUT_DIR (default: the data dir itself, as Kaldi keeps ``trials`` there):

* ``trials``: every utterance is an anchor with 1 positive and 99 negatives;
* ``trials_enroll<k>`` for each k of ``--enroll-counts`` and ``enroll2utt``: anchors
  against k-utterance enrollment models.

Only utterances that have features are used when ``feats.scp`` exists, so a trial
never names an utterance that failed feature extraction.

Rerunning: the marker ``OUT_DIR/.trials.done`` records the seed, the options, the
data dir's ``utt2spk`` and which of its utterances have features.  The same again
does nothing (the lists stay byte for byte what they were); anything else writes
the lists again, removing ``trials_enroll<k>`` lists of counts no longer asked for.

    python -m deepspeaker.bin.make_trials [--seed 0] [--num-negatives 99] data/eval
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
from pathlib import Path

from ..data import DataDir
from ..marker import Marker, signature
from ..scoring.trials import (ENROLL_COUNTS, NUM_NEGATIVES, make_enroll_trials, make_trials,
                              write_enroll2utt, write_trials)
from ._cli import run_main

logger = logging.getLogger(__name__)

MARKER = ".trials.done"


def enroll_counts(text: str) -> list[int]:
    """``--enroll-counts``: comma-separated k >= 1 (sorted, each once); empty for none."""
    try:
        counts = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if counts and counts[0] < 1:
        raise argparse.ArgumentTypeError(f"enrollment counts must be >= 1, got {text!r}")
    return counts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.make_trials",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-negatives", type=int, default=NUM_NEGATIVES,
                   help="negatives per anchor (paper: 99)")
    p.add_argument("--enroll-counts", type=enroll_counts, default=list(ENROLL_COUNTS),
                   help="comma-separated k for k-utterance enrollment lists; empty for none")
    p.add_argument("data", type=Path, help="evaluation data dir")
    p.add_argument("out_dir", type=Path, nargs="?", help="where to write (default: DATA)")
    return p


def usable_utt2spk(data: Path) -> dict[str, str]:
    """utt2spk of the utterances that have features (all of them before stage 1)."""
    d = DataDir.load(data)
    utt2spk = dict(d.utt2spk)
    if d.feats_scp is not None:
        keep = set(d.feats_scp)
        if d.vad_scp is not None:
            keep &= set(d.vad_scp)
        dropped = sorted(set(utt2spk) - keep)
        if dropped:
            logger.warning("%s: %d utterances have no features and get no trials (e.g. %s)",
                           data, len(dropped), dropped[0])
        utt2spk = {u: s for u, s in utt2spk.items() if u in keep}
    return utt2spk


def list_names(enroll_counts: list[int]) -> list[str]:
    """The files make_trial_lists writes."""
    if not enroll_counts:
        return ["trials"]
    return ["trials", "enroll2utt"] + [f"trials_enroll{k}" for k in enroll_counts]


def make_trial_lists(data: Path, out_dir: Path, seed: int, num_negatives: int,
                     enroll_counts: list[int]) -> None:
    utt2spk = usable_utt2spk(data)
    usable = hashlib.sha1("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items()))
                          .encode("utf-8", "surrogateescape")).hexdigest()
    sig = signature(inputs=[(data / "utt2spk").resolve()],
                    options={"seed": seed, "num_negatives": num_negatives,
                             "enroll_counts": sorted(set(enroll_counts)), "usable_utt2spk": usable})
    marker = Marker(out_dir / MARKER)
    names = list_names(enroll_counts)
    if marker.outputs_current(sig, [out_dir / n for n in names]):
        logger.info("%s: the trial lists are up to date (same seed, options and utterances, "
                    "%s); nothing to do", out_dir, marker.path)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = make_trials(utt2spk, num_negatives=num_negatives, seed=seed)
    write_trials(out_dir / "trials", trials)
    n_tar = sum(t.target for t in trials)
    logger.info("%s: %d anchors, %d target + %d non-target trials", out_dir / "trials", n_tar,
                n_tar, len(trials) - n_tar)
    if enroll_counts:
        enroll2utt, by_k = make_enroll_trials(utt2spk, enroll_counts, num_negatives, seed)
        write_enroll2utt(out_dir / "enroll2utt", enroll2utt)
        for k, tr in by_k.items():
            write_trials(out_dir / f"trials_enroll{k}", tr)
            n_tar = sum(t.target for t in tr)
            logger.info("%s: %d anchors, %d trials", out_dir / f"trials_enroll{k}", n_tar, len(tr))
    _remove_stale_lists(out_dir, names)
    marker.write(sig)


def _remove_stale_lists(out_dir: Path, names: list[str]) -> None:
    """Enrollment lists of an earlier run with other counts: later stages score every list."""
    stale = [p for p in out_dir.iterdir()
             if (re.fullmatch(r"trials_enroll\d+", p.name) or p.name == "enroll2utt")
             and p.name not in names]
    for p in stale:
        logger.info("%s: not asked for any more; removed", p)
        p.unlink()


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work() -> None:
        make_trial_lists(args.data, args.out_dir or args.data, args.seed, args.num_negatives,
                         args.enroll_counts)

    return run_main(work, argv)


if __name__ == "__main__":
    sys.exit(main())
