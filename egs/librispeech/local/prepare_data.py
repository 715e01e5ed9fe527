#!/usr/bin/env python3
"""Kaldi data dirs for speaker recognition on LibriSpeech (stage 0 of egs/librispeech).

    python local/prepare_data.py --corpus-dir DIR [--data-dir data]
        [--train-subsets "train-clean-100 train-clean-360 train-other-500"]
        [--dev-subsets "dev-clean"] [--eval-subsets "test-clean"] [--nj 4]

reads the corpus in place, as it unpacks from openslr.org/12:
``DIR/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<idx>.flac`` beside
``DIR/LibriSpeech/SPEAKERS.TXT`` (DIR may also be the ``LibriSpeech`` folder itself),
and writes ``<data-dir>/{train,dev,eval}/`` with ``wav.scp`` (absolute flac paths:
soundfile reads FLAC itself, so no ``flac -d |`` pipe is needed), ``utt2spk``,
``spk2utt``, ``utt2dur`` (from the flac headers) and ``spk2gender`` (``spk m|f``, from
SPEAKERS.TXT).  Utterance ids are the file stems, ``<spk>-<chapter>-<idx>``, which
start with the speaker id as Kaldi expects.  Trials are made later, by stage 2.

Each set is the union of whole LibriSpeech subsets.  LibriSpeech gives every reader
to exactly one subset, so sets made of different subsets share no speaker; that is
checked anyway, because a speaker in both train and eval would make the eval
numbers meaningless and nothing downstream could notice it.  An empty subset list
(``--dev-subsets ""``) means no such set: an old dir of that name is removed, since
it may hold speakers of the new train set.

All or nothing: the whole corpus is scanned and checked (layout, file names,
SPEAKERS.TXT, durations, disjoint speakers) before anything is written; the sets
are then built with ``publish_sets`` in a hidden staging dir inside
``--data-dir`` and moved into place together, so an error leaves the previous data
dirs (or none) and no temp dir.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

if __package__ in (None, ""):  # run as a script without path.sh: find the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from deepspeaker.bin._cli import run_main  # noqa: E402
from deepspeaker.data.kaldi_dir import sorted_ids  # noqa: E402
from deepspeaker.data.prep import (DataPrepError, PreparedSet, kaldi_map_text,  # noqa: E402
                                   publish_sets, read_durations)

logger = logging.getLogger(__name__)

SETS = ("train", "dev", "eval")
DEFAULT_SUBSETS = {"train": "train-clean-100 train-clean-360 train-other-500",
                   "dev": "dev-clean", "eval": "test-clean"}
# LibriSpeech ids are numbers: reader (speaker), chapter, utterance within the chapter.
_ID = re.compile(r"[0-9]+")
_FLAC = re.compile(r"(?P<spk>[0-9]+)-(?P<chapter>[0-9]+)-(?P<idx>[0-9]+)\.flac")


@dataclass(frozen=True)
class Speaker:
    """One SPEAKERS.TXT row: what a data prep needs of it, and where it was read."""

    sex: str     # "m" or "f", as Kaldi's spk2gender
    subset: str  # the subset LibriSpeech gave this reader to
    line: int


@dataclass
class LibriSpeechSet(PreparedSet):
    """A set being prepared, with what the checks and the summary need beside the files."""

    spk2gender: dict[str, str] | None = None  # also in extra_files, when every speaker has one
    spk_subset: dict[str, str] = field(default_factory=dict)  # speaker -> subset it came from


def find_librispeech_root(corpus_dir: Path) -> Path:
    """``DIR/LibriSpeech`` when it exists, else DIR (the ``LibriSpeech`` folder itself).

    The archives of openslr.org unpack to ``LibriSpeech/``; people point at either the
    folder they unpacked into or that folder, and both are unambiguous.
    """
    if not corpus_dir.is_dir():
        raise DataPrepError(f"{corpus_dir}: corpus directory not found")
    nested = corpus_dir / "LibriSpeech"
    return nested if nested.is_dir() else corpus_dir


def read_speakers_txt(path: Path) -> dict[str, Speaker]:
    """Parse LibriSpeech's ``SPEAKERS.TXT``: ``ID | SEX | SUBSET | MINUTES | NAME``.

    Lines starting with ';' are comments.  The line is split on the first four '|'
    only, because a reader's name may itself contain '|' (reader 60 is "|CBW|Simon").
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise DataPrepError(f"{path}: not found (LibriSpeech ships SPEAKERS.TXT beside its "
                            "subset folders; --corpus-dir must be the folder holding "
                            "LibriSpeech/ or the LibriSpeech folder itself)") from None
    except OSError as e:
        raise DataPrepError(f"{path}: cannot read: {e.strerror}") from None
    speakers: dict[str, Speaker] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) != 5:
            raise DataPrepError(f"{path}:{lineno}: expected 'ID | SEX | SUBSET | MINUTES | "
                                f"NAME', found {line.strip()!r}")
        spk, sex, subset = fields[:3]
        if not _ID.fullmatch(spk):
            raise DataPrepError(f"{path}:{lineno}: speaker id {spk!r} is not a number")
        if sex.upper() not in ("M", "F"):
            raise DataPrepError(f"{path}:{lineno}: speaker {spk}: SEX must be M or F, "
                                f"found {sex!r}")
        if spk in speakers:
            raise DataPrepError(f"{path}:{lineno}: speaker {spk} listed twice (first on line "
                                f"{speakers[spk].line})")
        speakers[spk] = Speaker(sex.lower(), subset, lineno)
    if not speakers:
        raise DataPrepError(f"{path}: no speaker lines (only comments or empty lines)")
    return speakers


def _subdirs(path: Path) -> list[Path]:
    """Sub-folders of ``path`` in bytewise order; hidden ones (``.DS_Store``, ...) skipped."""
    return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name.encode("utf-8", "surrogateescape"))


def scan_subset(subset_dir: Path) -> dict[str, Path]:
    """Utterance id -> flac path for every utterance of one subset folder.

    Raises DataPrepError naming the folder or file for an empty speaker or chapter
    folder and for a flac whose name does not say the speaker and chapter of the
    folders it is in: LibriSpeech ids are read from the names, so a misplaced file
    would otherwise be given to the wrong speaker silently.  Other files (the
    ``*.trans.txt`` transcripts) are ignored.
    """
    utts: dict[str, Path] = {}
    for spk_dir in _subdirs(subset_dir):
        if not _ID.fullmatch(spk_dir.name):
            raise DataPrepError(f"{spk_dir}: not a LibriSpeech speaker folder (its name must "
                                "be the numeric speaker id)")
        chapters = _subdirs(spk_dir)
        if not chapters:
            raise DataPrepError(f"{spk_dir}: speaker folder has no chapter folder")
        for chapter_dir in chapters:
            if not _ID.fullmatch(chapter_dir.name):
                raise DataPrepError(f"{chapter_dir}: not a LibriSpeech chapter folder (its "
                                    "name must be the numeric chapter id)")
            flacs = sorted(p for p in chapter_dir.iterdir()
                           if p.suffix == ".flac" and not p.name.startswith("."))
            if not flacs:
                raise DataPrepError(f"{chapter_dir}: chapter folder has no .flac file")
            for flac in flacs:
                m = _FLAC.fullmatch(flac.name)
                if (m is None or m["spk"] != spk_dir.name
                        or m["chapter"] != chapter_dir.name):
                    raise DataPrepError(
                        f"{flac}: file name does not match its folders: expected "
                        f"{spk_dir.name}-{chapter_dir.name}-<number>.flac")
                utts[flac.stem] = flac
    if not utts:
        raise DataPrepError(f"{subset_dir}: subset folder has no speaker folder")
    return utts


def _summary(name: str, s: LibriSpeechSet) -> str:
    spks = set(s.utt2spk.values())
    sexes = ""
    if s.spk2gender is not None:
        n_f = sum(1 for spk in spks if s.spk2gender[spk] == "f")
        sexes = f" ({n_f} f, {len(spks) - n_f} m)"
    return (f"{name}: {len(spks)} speakers{sexes}, {len(s.utt2spk)} utterances, "
            f"{sum(s.utt2dur.values()) / 3600:.2f} h")


def prepare_librispeech(corpus_dir: str | os.PathLike, data_dir: str | os.PathLike,
                        subsets: Mapping[str, Sequence[str]], nj: int = 4
                        ) -> dict[str, LibriSpeechSet]:
    """Scan, check and write the data dirs; ``subsets`` maps set name -> subset names.

    Returns the sets written (those with at least one subset).
    """
    if nj < 1:
        raise DataPrepError(f"--nj must be >= 1, got {nj}")
    # wav.scp holds absolute paths (the data dir is read from anywhere); abspath
    # also removes the '..' a relative --corpus-dir may have.
    corpus_dir = Path(os.path.abspath(corpus_dir))
    data_dir = Path(data_dir)
    root = find_librispeech_root(corpus_dir)
    if re.search(r"\s", str(root)):
        raise DataPrepError(f"{root}: the corpus path contains whitespace, which a wav.scp "
                            "line cannot hold; move or symlink the corpus elsewhere")

    seen: dict[str, str] = {}  # subset -> the set that asked for it
    present = [p.name for p in _subdirs(root)]
    for name, names in subsets.items():
        for subset in names:
            if subset in seen:
                raise DataPrepError(f"subset {subset} is requested twice (for {seen[subset]} "
                                    f"and {name}): a subset belongs to one set")
            seen[subset] = name
            if not (root / subset).is_dir():
                raise DataPrepError(f"{root / subset}: requested subset not found; subsets "
                                    f"present in {root}: {', '.join(present) or '(none)'}")
    if not any(subsets.get(name) for name in SETS):
        raise DataPrepError("no subsets requested for any set")
    speakers_txt = root / "SPEAKERS.TXT"
    speakers = read_speakers_txt(speakers_txt)

    sets: dict[str, LibriSpeechSet] = {}
    for name in SETS:
        if not subsets.get(name):
            continue
        s = sets[name] = LibriSpeechSet()
        for subset in subsets[name]:
            utts = scan_subset(root / subset)
            for utt, path in utts.items():
                if utt in s.wav_scp:  # the same speaker and chapter in two subsets of one set
                    raise DataPrepError(f"{path}: utterance {utt} also in {s.wav_scp[utt]}")
                s.wav_scp[utt] = str(path)
                spk = utt.split("-", 1)[0]
                s.utt2spk[utt] = spk
                s.spk_subset.setdefault(spk, subset)
            spks = {utt.split("-", 1)[0] for utt in utts}
            logger.info("%s: %d speakers, %d chapters, %d utterances", root / subset, len(spks),
                        len({utt.rsplit("-", 1)[0] for utt in utts}), len(utts))
            elsewhere = sorted_ids(spk for spk in spks
                                   if spk in speakers and speakers[spk].subset != subset)
            if elsewhere:
                spk = elsewhere[0]
                logger.warning("%s: %d speaker(s) of %s are given to another subset there, "
                               "e.g. %s (line %d: %s)", speakers_txt, len(elsewhere), subset,
                               spk, speakers[spk].line, speakers[spk].subset)
        unknown = sorted_ids(spk for spk in s.spk_subset if spk not in speakers)
        if unknown:
            # Kaldi wants spk2gender to list exactly the speakers of spk2utt.
            logger.warning("%s: %d speaker(s) of the %s set not listed there: %s; %s is "
                           "written without spk2gender",
                           speakers_txt, len(unknown), name,
                           ", ".join(str(root / s.spk_subset[spk] / spk) for spk in unknown[:5]),
                           data_dir / name)
        else:
            s.spk2gender = {spk: speakers[spk].sex for spk in s.spk_subset}
            s.extra_files["spk2gender"] = kaldi_map_text(s.spk2gender)

    # Before the durations: on the full corpus, reading ~290,000 headers takes minutes.
    owner: dict[str, str] = {}
    for name, s in sets.items():
        for spk in sorted_ids(s.spk_subset):
            if spk in owner:
                other = sets[owner[spk]]
                raise DataPrepError(
                    f"speaker {spk} is in both {owner[spk]} "
                    f"({root / other.spk_subset[spk] / spk}) and {name} "
                    f"({root / s.spk_subset[spk] / spk}): train, dev and eval speakers "
                    "must be disjoint")
            owner[spk] = name
    for name, s in sets.items():
        logger.info("%s: reading the duration of %d flac files (%d threads)", name,
                    len(s.wav_scp), nj)
        s.utt2dur = read_durations(s.wav_scp, nj)

    publish_sets(data_dir, sets, remove=[name for name in SETS if name not in sets])
    for name, s in sets.items():
        logger.info("%s", _summary(str(data_dir / name), s))
    return sets


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus-dir", required=True,
                   help="folder holding LibriSpeech/ (or the LibriSpeech folder itself)")
    p.add_argument("--data-dir", default="data", help="writes DATA_DIR/{train,dev,eval}")
    for name in SETS:
        p.add_argument(f"--{name}-subsets", default=DEFAULT_SUBSETS[name],
                       help=f"space-separated LibriSpeech subsets that make the {name} set "
                       "(empty: no such set)")
    p.add_argument("--nj", type=int, default=4, help="threads reading the flac headers")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    subsets = {name: getattr(args, f"{name}_subsets").split() for name in SETS}
    return run_main(lambda: prepare_librispeech(args.corpus_dir, args.data_dir, subsets,
                                                nj=args.nj), argv)


if __name__ == "__main__":
    sys.exit(main())
