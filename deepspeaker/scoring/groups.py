"""EER by speaker group on the main trial list: children and adults, same and other gender.

A corpus with children and adults of both genders (speechocean762) can hide a system
that works on adults only behind one pooled EER, and a pooled EER counts every
cross-gender non-target, which is easy.  So the report splits the main list
(``trials``, utterance against utterance) by what the eval data dir says of its
speakers (``spk2age``, ``spk2gender``):

* ``under 13`` / ``13 and over``: the trials whose two speakers are both in the group
  (its speakers' targets, and the non-targets between two of them);
* ``across ages``: every target trial, and the non-targets between a speaker under 13
  and one of 13 or over;
* ``same gender``: every target trial and the non-targets within one gender (NIST's
  same-gender condition);
* ``other gender``: every target trial and the cross-gender non-targets.

The split is by *age at recording* as ``spk2age`` gives it, 13 the boundary (a speaker
aged 12 is a child).  A condition that has no target or no non-target trial is shown
as ``n/a``, never computed from one class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.kaldi_dir import read_kaldi_map
from ..utils import DeepSpeakerError
from .metrics import compute_eer

AGE_LIMIT = 13   # under 13: a child


@dataclass(frozen=True)
class Speakers:
    """What the eval dir says of its speakers: utterance -> speaker, age group, gender."""

    utt2spk: dict[str, str]
    child: dict[str, bool] | None      # speaker -> under AGE_LIMIT (None: no spk2age)
    gender: dict[str, str] | None      # speaker -> m | f (None: no spk2gender)

    @property
    def any(self) -> bool:
        return self.child is not None or self.gender is not None


def _ages(path: Path) -> dict[str, bool]:
    """speaker -> under 13, from ``spk2age``; an age that is not a number names its line."""
    out = {}
    for lineno, (spk, text) in enumerate(read_kaldi_map(path, num_fields=2).items(), 1):
        try:
            age = float(text)
        except ValueError:
            raise DeepSpeakerError(f"speaker {spk}: age '{text}' is not a number", path=path,
                                   line=lineno) from None
        out[spk] = age < AGE_LIMIT
    return out


def read_speakers(eval_dir: Path) -> Speakers:
    """The speakers of ``eval_dir`` (``utt2spk``, and ``spk2age`` / ``spk2gender`` if there)."""
    eval_dir = Path(eval_dir)
    age, gender = eval_dir / "spk2age", eval_dir / "spk2gender"
    if not age.is_file() and not gender.is_file():
        return Speakers({}, None, None)
    return Speakers(read_kaldi_map(eval_dir / "utt2spk", num_fields=2),
                    _ages(age) if age.is_file() else None,
                    read_kaldi_map(gender, num_fields=2) if gender.is_file() else None)


def conditions(trials, labels: np.ndarray, spk: Speakers) -> dict[str, np.ndarray]:
    """The trial masks of every condition the eval dir allows, in the table's order.

    A trial naming an utterance that ``utt2spk`` does not know belongs to no condition.
    """
    labels = np.asarray(labels, dtype=bool)
    if not spk.any or len(trials) == 0:
        return {}
    pairs = [(spk.utt2spk.get(t.enroll), spk.utt2spk.get(t.test)) for t in trials]
    known = np.array([a is not None and b is not None for a, b in pairs], dtype=bool)
    out = {}
    if spk.child is not None:
        # 1: under 13, 0: 13 or over, -1: no age
        ka, kb = (np.array([-1 if x not in spk.child else int(spk.child[x]) for x in side])
                  for side in zip(*pairs, strict=True))
        out["under 13"] = known & (ka == 1) & (kb == 1)
        out["13 and over"] = known & (ka == 0) & (kb == 0)
        out["across ages"] = known & (labels | ((ka >= 0) & (kb >= 0) & (ka != kb)))
    if spk.gender is not None:
        g = [(spk.gender.get(a), spk.gender.get(b)) for a, b in pairs]
        same = np.array([x is not None and x == y for x, y in g], dtype=bool)
        other = np.array([x is not None and y is not None and x != y for x, y in g], dtype=bool)
        out["same gender"] = known & (labels | same)
        out["other gender"] = known & (labels | other)
    return out


def group_eers(scores, labels, masks: dict[str, np.ndarray]) -> dict[str, float | None]:
    """EER (a fraction) of each condition; None where it lacks targets or non-targets."""
    scores, labels = np.asarray(scores), np.asarray(labels, dtype=bool)
    out = {}
    for name, m in masks.items():
        lab = labels[m]
        out[name] = compute_eer(scores[m], lab)[0] if lab.any() and (~lab).any() else None
    return out


def counts(labels, masks: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """(targets, non-targets) of each condition."""
    labels = np.asarray(labels, dtype=bool)
    return {name: (int((labels & m).sum()), int((~labels & m).sum())) for name, m in masks.items()}


__all__ = ["AGE_LIMIT", "Speakers", "conditions", "counts", "group_eers", "read_speakers"]
