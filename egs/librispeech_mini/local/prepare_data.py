#!/usr/bin/env python3
"""Kaldi data dirs for the librispeech-mini corpus (stage 0 of egs/librispeech_mini).

    python local/prepare_data.py [--corpus-dir ../../../shared/data/librispeech-mini]
        [--data-dir data] [--eval-fraction 0.4] [--dev-fraction 0.0] [--seed 0]

reads the corpus in place (no audio is copied): ``DIR/<spk>/<spk>-<chapter>-<idx>_seg<k>.flac``
and ``DIR/SPEAKERS.tsv`` (one row per speaker; its header names the columns, of which
``speaker``, ``gender`` (or ``sex``) and ``n_utts`` are used).  The default DIR is
``shared/data/librispeech-mini`` beside the repository.  Writes
``<data-dir>/{train,dev,eval}/`` with ``wav.scp`` (absolute flac paths; soundfile reads
FLAC itself), ``utt2spk``, ``spk2utt``, ``utt2dur`` (from the flac headers) and
``spk2gender``.  Utterance ids are the file stems, which start with the speaker id.

The corpus has no split of its own (all 251 speakers come from LibriSpeech
train-clean-100), so the speakers are split here: disjointly, reproducibly (a
function of --seed and the speaker list only) and stratified by sex, so that eval
holds as many women as men whatever the seed and the numbers do not move with the
sex ratio of a draw.  Only speakers with at least two segments can go to eval or dev:
every eval utterance is a trial anchor that needs a same-speaker positive (paper
§4.1), and dev trials are built the same way for early stopping.  Speakers with one
segment always train.  With --dev-fraction 0 no dev set is made, and an old
``<data-dir>/dev`` is removed, since it may hold speakers of the new train set.

All or nothing: the corpus is scanned and checked (names, SPEAKERS.tsv, durations)
before anything is written; the sets are built with ``publish_sets`` in a hidden
staging dir inside --data-dir and moved into place together.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[3]
if __package__ in (None, ""):  # run as a script without path.sh: find the package
    sys.path.insert(0, str(REPO))

from deepspeaker.bin._cli import run_main  # noqa: E402
from deepspeaker.data.kaldi_dir import sorted_ids  # noqa: E402
from deepspeaker.data.prep import (DataPrepError, PreparedSet,  # noqa: E402
                                   check_split_options, kaldi_map_text, publish_sets,
                                   read_durations, round_half_up, split_prep_parser)

logger = logging.getLogger(__name__)

DEFAULT_CORPUS_DIR = REPO.parent / "shared" / "data" / "librispeech-mini"
SETS = ("train", "dev", "eval")
SEXES = ("f", "m")
_SEX_COLUMNS = ("gender", "sex")
_SEGMENT = re.compile(r"(?P<spk>[0-9]+)-[0-9]+-[0-9]+_seg[0-9]+\.flac")


@dataclass(frozen=True)
class Speaker:
    """One SPEAKERS.tsv row: what the split needs, and where it was read."""

    sex: str     # "m" or "f", as Kaldi's spk2gender
    n_utts: int  # segments the corpus says this speaker has
    line: int


def read_speakers_tsv(path: Path) -> dict[str, Speaker]:
    """Parse SPEAKERS.tsv by its header, so added or reordered columns do not matter."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataPrepError(f"{path}: not found (the corpus lists its speakers there)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataPrepError(f"{path}: cannot read: {e}") from None
    if not lines:
        raise DataPrepError(f"{path}: empty file, expected a header line")
    header = lines[0].split("\t")
    sex_col = next((c for c in _SEX_COLUMNS if c in header), None)
    missing = [c for c in ("speaker", "n_utts") if c not in header]
    if sex_col is None:
        missing.append(" or ".join(_SEX_COLUMNS))
    if missing:
        raise DataPrepError(f"{path}:1: header lacks column(s) {', '.join(missing)}; "
                            f"found {', '.join(header)}")
    col = {name: header.index(name) for name in ("speaker", sex_col, "n_utts")}
    speakers: dict[str, Speaker] = {}
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataPrepError(f"{path}:{lineno}: expected {len(header)} tab-separated "
                                f"fields as the header, found {len(fields)}")
        spk, sex, n_utts = (fields[col[c]].strip() for c in ("speaker", sex_col, "n_utts"))
        if not re.fullmatch(r"[0-9]+", spk):
            raise DataPrepError(f"{path}:{lineno}: speaker id {spk!r} is not a number")
        if sex.lower() not in SEXES:
            raise DataPrepError(f"{path}:{lineno}: speaker {spk}: {sex_col} must be F or M, "
                                f"found {sex!r}")
        if not re.fullmatch(r"[0-9]+", n_utts) or int(n_utts) < 1:
            raise DataPrepError(f"{path}:{lineno}: speaker {spk}: n_utts must be a positive "
                                f"integer, found {n_utts!r}")
        if spk in speakers:
            raise DataPrepError(f"{path}:{lineno}: speaker {spk} listed twice (first on line "
                                f"{speakers[spk].line})")
        speakers[spk] = Speaker(sex.lower(), int(n_utts), lineno)
    if not speakers:
        raise DataPrepError(f"{path}: no speaker rows below the header")
    return speakers


def scan_corpus(corpus_dir: Path, speakers: Mapping[str, Speaker], speakers_tsv: Path
                ) -> dict[str, Path]:
    """Utterance id -> flac path, checked against SPEAKERS.tsv.

    A speaker folder SPEAKERS.tsv does not list, or a count that differs from its
    n_utts, means a damaged or hand-edited copy; the split (by sex, by segment count)
    would then rest on wrong numbers, so it stops here naming the folder or line.
    """
    utts: dict[str, Path] = {}
    folders = sorted((p for p in corpus_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name.encode("utf-8", "surrogateescape"))
    for spk_dir in folders:
        spk = spk_dir.name
        if spk not in speakers:
            raise DataPrepError(f"{spk_dir}: speaker folder not listed in {speakers_tsv}")
        flacs = sorted(p for p in spk_dir.iterdir()
                       if p.suffix == ".flac" and not p.name.startswith("."))
        if not flacs:
            raise DataPrepError(f"{spk_dir}: speaker folder has no .flac file")
        for flac in flacs:
            m = _SEGMENT.fullmatch(flac.name)
            if m is None or m["spk"] != spk:
                raise DataPrepError(f"{flac}: file name does not match its folder: expected "
                                    f"{spk}-<chapter>-<idx>_seg<k>.flac")
            utts[flac.stem] = flac
        if len(flacs) != speakers[spk].n_utts:
            raise DataPrepError(f"{speakers_tsv}:{speakers[spk].line}: speaker {spk} has "
                                f"n_utts {speakers[spk].n_utts} but {spk_dir} holds "
                                f"{len(flacs)} .flac file(s)")
    found = {p.name for p in folders}
    for spk in sorted_ids(speakers):
        if spk not in found:
            raise DataPrepError(f"{speakers_tsv}:{speakers[spk].line}: speaker {spk} has no "
                                f"folder {corpus_dir / spk}")
    return utts


def split_speakers(speakers: Mapping[str, Speaker], segments: Mapping[str, int],
                   eval_fraction: float, dev_fraction: float, seed: int) -> dict[str, str]:
    """Speaker -> set name, stratified by sex.

    In each sex group, ``round(fraction * group size)`` speakers go to eval (then dev),
    drawn from those with >= 2 segments in a seeded shuffle of their sorted ids; the
    rest train.  Each sex has its own generator (seed, sex), so a change among the
    women does not reshuffle the men.  When too few speakers have two segments, the
    set gets all of them and a warning says so.
    """
    assignment: dict[str, str] = {}
    for k, sex in enumerate(SEXES):
        group = sorted_ids(spk for spk, s in speakers.items() if s.sex == sex)
        eligible = [spk for spk in group if segments[spk] >= 2]
        order = [eligible[i] for i in np.random.default_rng([seed, k]).permutation(len(eligible))]
        start = 0
        for name, fraction in (("eval", eval_fraction), ("dev", dev_fraction)):
            want = round_half_up(fraction * len(group))
            take = order[start:start + want]
            if len(take) < want:
                logger.warning("%s: wanted %d %s speakers, only %d with >= 2 segments left",
                               name, want, sex, len(take))
            assignment.update((spk, name) for spk in take)
            start += len(take)
        assignment.update((spk, "train") for spk in group if spk not in assignment)
    return assignment


def prepare_librispeech_mini(corpus_dir: str | os.PathLike, data_dir: str | os.PathLike,
                             eval_fraction: float = 0.4, dev_fraction: float = 0.0,
                             seed: int = 0) -> dict[str, PreparedSet]:
    """Scan, check, split and write the data dirs; returns the sets written."""
    check_split_options(eval_fraction, dev_fraction, seed)
    # wav.scp holds absolute paths (the data dir is read from anywhere); abspath
    # also removes the '..' of the default and of a relative --corpus-dir.
    corpus_dir = Path(os.path.abspath(corpus_dir))
    data_dir = Path(data_dir)
    if not corpus_dir.is_dir():
        raise DataPrepError(f"{corpus_dir}: corpus directory not found")
    if re.search(r"\s", str(corpus_dir)):
        raise DataPrepError(f"{corpus_dir}: the corpus path contains whitespace, which a "
                            "wav.scp line cannot hold; move or symlink the corpus elsewhere")
    speakers_tsv = corpus_dir / "SPEAKERS.tsv"
    speakers = read_speakers_tsv(speakers_tsv)
    flacs = scan_corpus(corpus_dir, speakers, speakers_tsv)
    utt2spk = {utt: utt.split("-", 1)[0] for utt in flacs}
    segments = {spk: 0 for spk in speakers}
    for spk in utt2spk.values():
        segments[spk] += 1
    utt2dur = read_durations(flacs)

    assignment = split_speakers(speakers, segments, eval_fraction, dev_fraction, seed)
    if sum(1 for name in assignment.values() if name == "eval") < 2:
        raise DataPrepError(f"{corpus_dir}: fewer than 2 eval speakers with --eval-fraction "
                            f"{eval_fraction}; eval trials need other speakers as negatives")
    if dev_fraction > 0 and "dev" not in assignment.values():
        raise DataPrepError(f"{corpus_dir}: no dev speaker with --dev-fraction {dev_fraction}; "
                            "raise it or set it to 0 to make no dev set")
    sets: dict[str, PreparedSet] = {}
    spk2gender: dict[str, dict[str, str]] = {}
    for name in SETS:
        if name not in assignment.values():
            continue
        genders = spk2gender[name] = {spk: speakers[spk].sex
                                      for spk, n in assignment.items() if n == name}
        if name != "train":  # by construction; checked because eval anchors depend on it
            assert all(segments[spk] >= 2 for spk in genders), name
        s = sets[name] = PreparedSet(extra_files={"spk2gender": kaldi_map_text(genders)})
        s.utt2spk = {utt: spk for utt, spk in utt2spk.items() if assignment[spk] == name}
        s.wav_scp = {utt: str(flacs[utt]) for utt in s.utt2spk}
        s.utt2dur = {utt: utt2dur[utt] for utt in s.utt2spk}

    publish_sets(data_dir, sets, remove=[name for name in SETS if name not in sets])
    for name, s in sets.items():
        genders = spk2gender[name]
        n_f = sum(1 for sex in genders.values() if sex == "f")
        logger.info("%s: %d speakers (%d f, %d m), %d utterances, %.1f min", data_dir / name,
                    len(genders), n_f, len(genders) - n_f, len(s.utt2spk),
                    sum(s.utt2dur.values()) / 60)
    return sets


def get_parser() -> argparse.ArgumentParser:
    return split_prep_parser(__doc__, DEFAULT_CORPUS_DIR, "the librispeech-mini folder (read in "
                             "place)", 0.4, 0.0, "each sex's speakers")


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: prepare_librispeech_mini(args.corpus_dir, args.data_dir,
                                                     args.eval_fraction, args.dev_fraction,
                                                     args.seed), argv)


if __name__ == "__main__":
    sys.exit(main())
