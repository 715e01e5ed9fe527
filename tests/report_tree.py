"""A fake recipe ``exp/`` tree for the report tests: seeded scores, every experiment described.

Each experiment dir gets its ``system.yaml`` (what ``describe_system`` writes in the
recipes) and score files whose target scores are shifted by a per-system separation,
so that the tables and the claims come out in a known order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepspeaker.scoring.experiment import SystemInfo, write_system_info
from deepspeaker.scoring.trials import (Trial, make_enroll_trials, make_trials, write_scores,
                                        write_trials)

SPEAKERS, UTTS = 12, 8
FUSED = ["rescnn_softmax_triplet", "gru_softmax_triplet"]

# tag -> (what it is, {score-file prefix: separation}); a bigger separation is better.
# GRU's triplet-only beats its softmax-only the wrong way round, so one claim fails.
SYSTEMS = {
    "ivector": (SystemInfo("ivector", train_set="data/train"), {"plda": 1.0, "cosine": 0.7}),
    "mfcc_stats": (SystemInfo("reference"), {"cosine": 0.3}),
    "rescnn_softmax": (SystemInfo("deepspeaker", "rescnn", "softmax"), {"cosine": 1.5}),
    "rescnn_triplet": (SystemInfo("deepspeaker", "rescnn", "triplet"), {"cosine": 2.0}),
    "rescnn_softmax_triplet": (SystemInfo("deepspeaker", "rescnn", "softmax_triplet"),
                               {"cosine": 2.5}),
    "gru_softmax": (SystemInfo("deepspeaker", "gru", "softmax"), {"cosine": 2.2}),
    "gru_triplet": (SystemInfo("deepspeaker", "gru", "triplet"), {"cosine": 1.8}),
    "gru_softmax_triplet": (SystemInfo("deepspeaker", "gru", "softmax_triplet"), {"cosine": 2.4}),
    "fusion": (SystemInfo("fusion", members=FUSED), {"embedding": 2.6, "score": 3.0}),
}
# Stages 11 and 12 (T7, T9/T10), scored on the main list only.  rescnn_softmax_spk25 is
# the softmax half of a subset's softmax + triplet: described, never scored.
STUDIES = {
    "rescnn_softmax_triplet_spk25": (SystemInfo("deepspeaker", "rescnn", "softmax_triplet",
                                                fraction=0.25), {"cosine": 1.0}),
    "rescnn_softmax_triplet_spk50": (SystemInfo("deepspeaker", "rescnn", "softmax_triplet",
                                                fraction=0.5), {"cosine": 1.8}),
    "rescnn_softmax_spk25": (SystemInfo("deepspeaker", "rescnn", "softmax", fraction=0.25), {}),
    "gru_source_only": (SystemInfo("deepspeaker", "gru", "source_only",
                                   source="../mini/exp/gru_softmax_triplet"), {"cosine": 0.5}),
    "gru_transfer": (SystemInfo("deepspeaker", "gru", "transfer",
                                init="exp/gru_source_only/best.pt"), {"cosine": 3.0}),
}
# A list as corpora publish them (VoxCeleb1-O): plain pairs, not 1 + N per anchor.
VOX1_O = [("s00-u0", "s00-u1", True), ("s01-u0", "s00-u1", False), ("s02-u0", "s00-u1", False),
          ("s01-u1", "s01-u2", True), ("s01-u1", "s03-u0", False), ("s00-u2", "s03-u0", False)]


def _write_system(exp: Path, tag: str, info: SystemInfo, seps: dict, lists: dict,
                  rng: np.random.Generator) -> None:
    (exp / tag).mkdir(parents=True, exist_ok=True)
    write_system_info(exp / tag, info)
    for prefix, sep in seps.items():
        for name, trials in lists.items():
            k = int(name[-1]) if name.startswith("trials_enroll") else 1
            # more enrollment utterances: better separation, as T8 expects
            s = [rng.standard_normal() + (sep * (1 + 0.3 * (k - 1)) if t.target else 0.0)
                 for t in trials]
            write_scores(exp / tag / "scores" / f"{prefix}_{name}", trials, s)


# --nnet-backends "cosine plda": every Deep Speaker system also has PLDA scores, better
# than its cosine ones; GRU softmax + triplet with PLDA is the best Deep Speaker row.
PLDA_GAIN = 0.5
BEST_PLDA = ("gru_softmax_triplet", 3.5)
# The ablation twin of GRU softmax + triplet, trained without augmentation: worse.
NOAUG = {"gru_softmax_triplet_noaug": (SystemInfo("deepspeaker", "gru", "softmax_triplet",
                                                  augmented=False),
                                       {"cosine": 1.6, "plda": 2.0})}


def _with_plda(seps: dict, tag: str, info: SystemInfo) -> dict:
    if info.kind != "deepspeaker" or "cosine" not in seps:
        return seps
    best = BEST_PLDA[1] if tag == BEST_PLDA[0] else seps["cosine"] + PLDA_GAIN
    return {**seps, "plda": best}


def build_tree(root: Path, studies: bool = False, vox1_o: bool = False,
               skipped: int = 0, plda: bool = False,
               noaug: bool = False) -> tuple[Path, Path, dict[str, list[Trial]]]:
    """``root/data/eval`` with its trial lists and ``root/exp`` with every system's scores.

    ``studies``: add the T7 and T9/T10 experiments; ``vox1_o``: add ``trials_vox1_o``;
    ``skipped``: leave that many trials out of ``gru_triplet``'s main scores and list
    them in its ``.skipped``, as a scorer does for utterances without a vector;
    ``plda``: PLDA scores for every Deep Speaker system (stage 9's plda back end);
    ``noaug``: add ``gru_softmax_triplet_noaug`` (its cosine and, with ``plda``, PLDA scores).
    """
    data, exp = root / "data", root / "exp"
    ev = data / "eval"
    ev.mkdir(parents=True)
    utt2spk = {f"s{s:02d}-u{u}": f"s{s:02d}" for s in range(SPEAKERS) for u in range(UTTS)}
    (ev / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    (ev / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in sorted(utt2spk)))
    lists = {"trials": make_trials(utt2spk, num_negatives=9)}
    _, by_k = make_enroll_trials(utt2spk, num_negatives=9)
    lists.update({f"trials_enroll{k}": t for k, t in by_k.items()})
    for name, trials in lists.items():
        write_trials(ev / name, trials)
    rng = np.random.default_rng(0)
    systems = {**SYSTEMS, **(NOAUG if noaug else {})}
    for tag, (info, seps) in systems.items():
        seps = _with_plda(seps, tag, info) if plda else {p: v for p, v in seps.items()
                                                          if p != "plda" or info.kind != "deepspeaker"}
        _write_system(exp, tag, info, seps, lists, rng)
    if vox1_o:  # scores of their own, so that the other lists' stay the same
        lists["trials_vox1_o"] = [Trial(*t) for t in VOX1_O]
        write_trials(ev / "trials_vox1_o", lists["trials_vox1_o"])
        rng_vox = np.random.default_rng(1)
        for tag, (info, seps) in SYSTEMS.items():
            _write_system(exp, tag, info, seps, {"trials_vox1_o": lists["trials_vox1_o"]}, rng_vox)
    if studies:
        for tag, (info, seps) in STUDIES.items():
            _write_system(exp, tag, info, seps, {"trials": lists["trials"]}, rng)
    (exp / "gru_softmax/config.yaml").write_text("model: {name: gru}\n")
    if skipped:
        path = exp / "gru_triplet/scores/cosine_trials"
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[skipped:]))
        Path(f"{path}.skipped").write_text(
            "".join(f"{' '.join(x.split()[:2])} no embedding for {x.split()[1]}\n"
                    for x in lines[:skipped]))
    return exp, data, lists
