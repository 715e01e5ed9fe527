"""Make the paper's trial lists for an evaluation data dir (paper §4.1, T8).

Writes into OUT_DIR (default: the data dir itself, as Kaldi keeps ``trials`` there):

* ``trials``: every utterance is an anchor with 1 positive and 99 negatives;
* ``trials_enroll<k>`` for each k of ``--enroll-counts`` and ``enroll2utt``: anchors
  against k-utterance enrollment models.

Only utterances that have features are used when ``feats.scp`` exists, so a trial
never names an utterance that failed feature extraction.

    python -m deepspeaker.bin.make_trials [--seed 0] [--num-negatives 99] data/eval
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..data import DataDir
from ..scoring.trials import (ENROLL_COUNTS, NUM_NEGATIVES, make_enroll_trials, make_trials,
                              write_enroll2utt, write_trials)
from ..utils import DeepSpeakerError
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.make_trials",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-negatives", type=int, default=NUM_NEGATIVES,
                   help="negatives per anchor (paper: 99)")
    p.add_argument("--enroll-counts", default=",".join(map(str, ENROLL_COUNTS)),
                   help="comma-separated k for k-utterance enrollment lists; empty for none")
    p.add_argument("data", type=Path, help="evaluation data dir")
    p.add_argument("out_dir", type=Path, nargs="?", help="where to write (default: DATA)")
    return p


def make_trial_lists(data: Path, out_dir: Path, seed: int, num_negatives: int,
                     enroll_counts: list[int]) -> None:
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


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work() -> None:
        counts = [int(k) for k in args.enroll_counts.split(",") if k.strip()]
        make_trial_lists(args.data, args.out_dir or args.data, args.seed, args.num_negatives,
                         counts)

    return run_main(work, argv, user_errors=(DeepSpeakerError, ValueError))

if __name__ == "__main__":
    sys.exit(main())
