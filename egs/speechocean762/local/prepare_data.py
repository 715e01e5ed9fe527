#!/usr/bin/env python3
"""Kaldi data dirs for the speechocean762 corpus (stage 0 of egs/speechocean762).

    python local/prepare_data.py [--corpus-dir ../../../shared/data/speechocean762]
        [--data-dir data] [--eval-fraction 0.2] [--dev-fraction 0.08] [--seed 0]

reads the corpus in place, in its own layout (no audio is copied):
``DIR/train/{wav.scp,utt2spk,spk2utt,spk2age,spk2gender,text}``, the same six lists in
``DIR/test/`` when the official test split is there, and the audio they name,
``DIR/WAVE/SPEAKER<spk>/<utt>.{flac,wav}`` (paths in wav.scp relative to DIR; the
extension in any case: the official download has ``.WAV``, ours FLAC).  A wav.scp
line whose file is not on disk but whose folder holds the same name with the other
audio extension (a tree converted to FLAC with its lists unchanged) uses that file.

Writes ``<data-dir>/{train,dev,eval}/`` with ``wav.scp`` (absolute paths),
``utt2spk``, ``spk2utt``, ``utt2dur`` (from the audio headers), ``spk2gender``,
``spk2age`` and ``text``.  The corpus' utterance ids do not start with the speaker
id, which Kaldi's sorting convention wants (utt2spk and spk2utt in one order), so
every id becomes ``<spk>-<utt>``.

Splits.  When ``DIR/test`` exists it is the eval set, and the train speakers are
split into train and dev (--dev-fraction of them; --eval-fraction is not used).
Otherwise (the official train split alone, as in ../shared) its speakers are split
into train / dev / eval.  Either way the split is speaker-disjoint, a function of
--seed and the speaker list only, and stratified by age group and gender: the corpus
mixes children and adults, whose voices differ more than any two adults', so a draw
that put most children in eval would measure another task.  The age groups are child
(age <= 12), teen (13-17) and adult (>= 18).  Each of the six (group, gender) strata
gives ``fraction x its size`` speakers, rounded by largest remainders so that the set
holds exactly ``round(fraction x all speakers)``; each stratum is shuffled by its own
generator (seed, stratum), so a change in one stratum does not reshuffle the others.

All or nothing: every list and audio header is read and checked before anything is
written (a bad line stops the prep with one message naming ``file:line``); the sets
are built with ``publish_sets`` in a hidden staging dir and moved into place together.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
if __package__ in (None, ""):  # run as a script without path.sh: find the package
    sys.path.insert(0, str(REPO))

from deepspeaker.bin._cli import run_main
from deepspeaker.data.kaldi_dir import sorted_ids
from deepspeaker.data.prep import (
    DataPrepError,
    PreparedSet,
    check_split_options,
    kaldi_map_text,
    publish_sets,
    read_durations,
    read_list,
    round_half_up,
    split_prep_parser,
)

logger = logging.getLogger(__name__)

DEFAULT_CORPUS_DIR = REPO.parent / "shared" / "data" / "speechocean762"
SETS = ("train", "dev", "eval")
GENDERS = ("f", "m")
AGE_GROUPS = (("child", 0, 12), ("teen", 13, 17), ("adult", 18, 150))  # inclusive bounds
STRATA = tuple((group, gender) for group, _, _ in AGE_GROUPS for gender in GENDERS)
AUDIO_SUFFIXES = (".flac", ".wav")  # compared in lower case
# file name -> (fields a line has, at least if True, the form named in messages)
LISTS = {
    "wav.scp": (2, False, "utt path"),
    "utt2spk": (2, False, "utt spk"),
    "spk2utt": (1, True, "spk utt..."),
    "spk2gender": (2, False, "spk f|m"),
    "spk2age": (2, False, "spk age"),
    "text": (2, True, "utt word..."),
}


@dataclass(frozen=True)
class Row:
    """One line of a corpus list: the fields after the key, and where it was read."""

    where: str  # "file:line"
    values: list[str]


@dataclass(frozen=True)
class Speaker:
    gender: str       # "f" or "m", as Kaldi's spk2gender
    age: int
    utts: list[str]   # the corpus' utterance ids, sorted

    @property
    def stratum(self) -> tuple[str, str]:
        return age_group(self.age), self.gender


@dataclass
class CorpusSplit:
    """One official split (train or test), read and checked."""

    name: str
    speakers: dict[str, Speaker]
    audio: dict[str, Path]  # the corpus' utterance id -> audio file
    text: dict[str, str]


def age_group(age: int) -> str:
    return next(name for name, low, high in AGE_GROUPS if low <= age <= high)


def read_table(path: Path) -> dict[str, Row]:
    """A corpus list as ``{key: Row}``; a duplicate key or an empty list stops the prep."""
    num_fields, at_least, form = LISTS[path.name]
    rows: dict[str, Row] = {}
    for where, fields in read_list(path, num_fields, form, at_least=at_least,
                                   hint=f"every split of the corpus has {', '.join(LISTS)}"):
        if fields[0] in rows:
            raise DataPrepError(f"{where}: {fields[0]} listed twice (first at "
                                f"{rows[fields[0]].where})")
        rows[fields[0]] = Row(where, fields[1:])
    if not rows:
        raise DataPrepError(f"{path}: empty list")
    return rows


def find_audio(corpus_dir: Path, utt: str, row: Row) -> Path:
    """The file a wav.scp line names, or the same name with the other audio extension."""
    path = corpus_dir / row.values[0]  # an absolute path stays as it is
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise DataPrepError(f"{row.where}: {utt}: {path.name} is not a .flac or .wav file")
    if path.is_file():
        return path
    if path.parent.is_dir():
        others = [p for p in path.parent.iterdir() if p.stem == path.stem
                  and p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()]
        if len(others) == 1:
            return others[0]
    raise DataPrepError(f"{row.where}: {utt}: audio file not found: {path}")


def check_utterances(split_dir: Path, tables: Mapping[str, dict[str, Row]]) -> None:
    """wav.scp, utt2spk, spk2utt and text name the same utterances, of the same speakers."""
    wav, utt2spk, spk2utt, text = (tables[n] for n in ("wav.scp", "utt2spk", "spk2utt", "text"))
    for utt, row in utt2spk.items():
        if utt not in wav:
            raise DataPrepError(f"{row.where}: utterance {utt} has no audio: not in "
                                f"{split_dir / 'wav.scp'}")
        spk = row.values[0]
        if spk not in spk2utt or utt not in spk2utt[spk].values:
            raise DataPrepError(f"{row.where}: utterance {utt} of speaker {spk} is not among "
                                f"that speaker's in {split_dir / 'spk2utt'}")
        if utt not in text:
            raise DataPrepError(f"{row.where}: utterance {utt} has no line in "
                                f"{split_dir / 'text'}")
    for name in ("wav.scp", "text"):
        for utt, row in tables[name].items():
            if utt not in utt2spk:
                raise DataPrepError(f"{row.where}: utterance {utt} has no speaker in "
                                    f"{split_dir / 'utt2spk'}")
    for spk, row in spk2utt.items():
        if not row.values:
            raise DataPrepError(f"{row.where}: speaker {spk} has no utterances")
        for utt in row.values:
            if utt not in utt2spk or utt2spk[utt].values[0] != spk:
                raise DataPrepError(f"{row.where}: utterance {utt} of speaker {spk} is not "
                                    f"that speaker's in {split_dir / 'utt2spk'}")


def _parse_gender(value: str) -> str | None:
    return value.lower() if value.lower() in GENDERS else None


def _parse_age(value: str) -> int | None:
    return int(value) if re.fullmatch(r"[0-9]{1,3}", value) and 0 < int(value) < 150 else None


def speaker_values(split_dir: Path, tables: Mapping[str, dict[str, Row]], name: str,
                   parse: Callable[[str], object], expected: str) -> dict[str, object]:
    """``spk2gender`` or ``spk2age`` parsed, for exactly the speakers of spk2utt.

    A speaker listed here without utterances is an empty speaker; one with utterances
    but not listed here could not be stratified.  Both stop the prep, naming the line.
    """
    spk2utt = tables["spk2utt"]
    out = {}
    for spk, row in tables[name].items():
        if spk not in spk2utt:
            raise DataPrepError(f"{row.where}: speaker {spk} has no utterances (not in "
                                f"{split_dir / 'spk2utt'})")
        value = parse(row.values[0])
        if value is None:
            raise DataPrepError(f"{row.where}: speaker {spk}: {name[4:]} must be {expected}, "
                                f"found {row.values[0]!r}")
        out[spk] = value
    for spk, row in spk2utt.items():
        if spk not in out:
            raise DataPrepError(f"{row.where}: speaker {spk} has no line in {split_dir / name}")
    return out


def read_split(corpus_dir: Path, name: str) -> CorpusSplit:
    """Read and check the six lists of ``corpus_dir/name`` and find the audio they name."""
    split_dir = corpus_dir / name
    if not split_dir.is_dir():
        raise DataPrepError(f"{split_dir}: split dir not found (the corpus keeps its "
                            f"{name} lists there)")
    tables = {file: read_table(split_dir / file) for file in LISTS}
    check_utterances(split_dir, tables)
    genders = speaker_values(split_dir, tables, "spk2gender", _parse_gender, "f or m")
    ages = speaker_values(split_dir, tables, "spk2age", _parse_age, "a whole number of years")
    speakers = {spk: Speaker(genders[spk], ages[spk], sorted_ids(row.values))
                for spk, row in tables["spk2utt"].items()}
    audio = {utt: find_audio(corpus_dir, utt, row) for utt, row in tables["wav.scp"].items()}
    text = {utt: " ".join(row.values) for utt, row in tables["text"].items()}
    return CorpusSplit(name, speakers, audio, text)


def stratum_quotas(sizes: Sequence[int], fraction: float) -> list[int]:
    """How many speakers of each stratum a set takes: largest remainders.

    Rounding each stratum on its own would make the set's size drift with the strata
    (six strata of 0.4 speakers each round to none); here the total is
    ``round(fraction x sum)`` and the strata with the largest remainders (ties: the
    first in STRATA) get the speakers left over by rounding down.
    """
    exact = [fraction * n for n in sizes]
    quotas = [math.floor(x + 1e-9) for x in exact]  # 1e-9: 0.29 * 100 is 28.999...
    left = round_half_up(fraction * sum(sizes)) - sum(quotas)
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[:max(left, 0)]:
        quotas[i] += 1
    return quotas


def split_speakers(speakers: Mapping[str, Speaker], fractions: Sequence[tuple[str, float]],
                   seed: int) -> dict[str, str]:
    """Speaker -> set name: ``fractions`` (set, fraction) drawn in turn, the rest train."""
    groups = [sorted_ids(spk for spk, s in speakers.items() if s.stratum == key)
              for key in STRATA]
    orders = [[g[i] for i in np.random.default_rng([seed, k]).permutation(len(g))]
              for k, g in enumerate(groups)]
    taken = [0] * len(STRATA)
    assignment: dict[str, str] = {}
    for name, fraction in fractions:
        for k, want in enumerate(stratum_quotas([len(g) for g in groups], fraction)):
            take = orders[k][taken[k]:taken[k] + want]
            assignment.update((spk, name) for spk in take)
            taken[k] += len(take)
    assignment.update((spk, "train") for spk in speakers if spk not in assignment)
    return assignment


def kaldi_set(split: CorpusSplit, spks: Sequence[str], utt2dur: Mapping[str, float]
              ) -> PreparedSet:
    """The data dir of speakers ``spks`` of ``split``, with ids ``<spk>-<utt>``."""
    speakers = {spk: split.speakers[spk] for spk in spks}
    utt2spk = {f"{spk}-{utt}": spk for spk, s in speakers.items() for utt in s.utts}
    utt = {kaldi_id: kaldi_id.split("-", 1)[1] for kaldi_id in utt2spk}
    extra = {"spk2gender": {spk: s.gender for spk, s in speakers.items()},
             "spk2age": {spk: str(s.age) for spk, s in speakers.items()},
             "text": {k: split.text[u] for k, u in utt.items()}}
    return PreparedSet(wav_scp={k: str(split.audio[u]) for k, u in utt.items()},
                       utt2spk=utt2spk, utt2dur={k: utt2dur[u] for k, u in utt.items()},
                       extra_files={name: kaldi_map_text(m) for name, m in extra.items()})


def summary(split: CorpusSplit, s: PreparedSet) -> str:
    """``25 speakers (child f 5, ...), 500 utterances, 35.1 min``."""
    spks = set(s.utt2spk.values())
    counts = {key: sum(1 for spk in spks if split.speakers[spk].stratum == key) for key in STRATA}
    strata = ", ".join(f"{group} {gender} {n}" for (group, gender), n in counts.items() if n)
    return (f"{len(spks)} speakers ({strata}), {len(s.utt2spk)} utterances, "
            f"{sum(s.utt2dur.values()) / 60:.1f} min")


def read_corpus(corpus_dir: Path) -> tuple[CorpusSplit, CorpusSplit | None]:
    """The train split and, when on disk, the official test split, with disjoint speakers."""
    if not corpus_dir.is_dir():
        raise DataPrepError(f"{corpus_dir}: corpus directory not found")
    if re.search(r"\s", str(corpus_dir)):
        raise DataPrepError(f"{corpus_dir}: the corpus path contains whitespace, which a "
                            "wav.scp line cannot hold; move or symlink the corpus elsewhere")
    train = read_split(corpus_dir, "train")
    test = read_split(corpus_dir, "test") if (corpus_dir / "test").exists() else None
    if test is not None:
        shared = sorted_ids(set(train.speakers) & set(test.speakers))
        if shared:
            raise DataPrepError(f"{corpus_dir}: speaker(s) {', '.join(shared[:5])} in both "
                                "train/ and test/; the official splits are speaker-disjoint")
        shared = sorted_ids(set(train.audio) & set(test.audio))
        if shared:
            raise DataPrepError(f"{corpus_dir}: utterance(s) {', '.join(shared[:5])} in both "
                                "train/wav.scp and test/wav.scp")
    return train, test


def prepare_speechocean762(corpus_dir: str | os.PathLike, data_dir: str | os.PathLike,
                           eval_fraction: float = 0.2, dev_fraction: float = 0.08,
                           seed: int = 0) -> dict[str, PreparedSet]:
    """Read, check, split and write the data dirs; returns the sets written."""
    check_split_options(eval_fraction, dev_fraction, seed)
    # wav.scp holds absolute paths (the data dir is read from anywhere); abspath
    # also removes the '..' of the default and of a relative --corpus-dir.
    corpus_dir = Path(os.path.abspath(corpus_dir))
    train, test = read_corpus(corpus_dir)
    fractions = [("dev", dev_fraction)] if test else [("eval", eval_fraction),
                                                      ("dev", dev_fraction)]
    if test:
        logger.info("%s: the official test split is the eval set (--eval-fraction unused)",
                    corpus_dir / "test")
    assignment = split_speakers(train.speakers, fractions, seed)
    members = {name: sorted_ids(spk for spk, n in assignment.items() if n == name)
               for name in SETS}
    source = {"train": train, "dev": train, "eval": test or train}
    if test:
        members["eval"] = sorted_ids(test.speakers)
    if len(members["eval"]) < 2:
        raise DataPrepError(f"{corpus_dir}: fewer than 2 eval speakers with --eval-fraction "
                            f"{eval_fraction}; eval trials need other speakers as negatives")
    if dev_fraction > 0 and not members["dev"]:
        raise DataPrepError(f"{corpus_dir}: no dev speaker with --dev-fraction {dev_fraction}; "
                            "raise it or set it to 0 to make no dev set")
    utt2dur = read_durations({**train.audio, **(test.audio if test else {})}, nj=4)
    sets = {name: kaldi_set(source[name], members[name], utt2dur)
            for name in SETS if members[name]}
    publish_sets(data_dir, sets, remove=[name for name in SETS if name not in sets])
    for name, s in sets.items():
        logger.info("%s: %s", Path(data_dir) / name, summary(source[name], s))
    return sets


def get_parser() -> argparse.ArgumentParser:
    # --eval-fraction is not used when DIR/test exists (the official test split is eval).
    return split_prep_parser(__doc__, DEFAULT_CORPUS_DIR,
                             "the speechocean762 folder (read in place)", 0.2, 0.08,
                             "each age group x gender stratum of the train split")


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: prepare_speechocean762(**vars(args)), argv)


if __name__ == "__main__":
    sys.exit(main())
