#!/usr/bin/env python3
"""Kaldi data dirs for CN-Celeb1 (and CN-Celeb2) from the corpus' own layout on disk.

    python local/prepare_data.py --cnceleb1-dir DIR [--cnceleb2-dir DIR2] --data-dir data

Layout read (the release tarballs unpacked; ``DIR`` may be the folder that holds
``CN-Celeb_flac/`` or ``CN-Celeb/``, or that folder itself):

* ``data/<spk>/<genre>-<session>-<nnn>.flac`` (``.wav`` in the older release): every
  speaker's utterances, the evaluation speakers' included;
* ``dev/dev.lst``: the training speakers, one id a line;
* ``eval/enroll/<spk>-enroll.flac`` and ``eval/test/<spk>-<genre>-<session>-<nnn>.flac``,
  listed by ``eval/lists/enroll.lst`` (``<spk>-enroll enroll/<spk>-enroll.flac``),
  ``eval/lists/test.lst`` (``test/<file>``) and ``eval/lists/trials.lst``
  (``<spk>-enroll test/<file> 1|0``);
* CN-Celeb2 (optional, training only): ``DIR2/data/<spk>/*.flac`` or
  ``DIR2/CN-Celeb2_flac/data/<spk>/*.flac``.

Data dirs written (absolute paths in wav.scp):

* ``data/train``: the speakers of dev/dev.lst (or, without it, every speaker of data/
  that is not an evaluation speaker), utterances ``<spk>-<genre>-<session>-<nnn>``,
  plus every CN-Celeb2 speaker;
* ``data/eval``: the enrollment utterances (id ``<spk>-enroll``, the enrollment model
  id of trials.lst: CN-Celeb enrolls each speaker with one concatenated utterance) and
  the test utterances (id = file stem, which starts with the speaker), with
  ``trials_cnceleb``: trials.lst in Kaldi's form ``enroll test target|nontarget``, in
  its order (not ``trials``: that name is the paper's 1 + 99 list of stage 2).

Every check (layout, lists, each file a list names, empty speaker folders) is done
before anything is written, and the two data dirs are published together, each
whole (deepspeaker.data.prep.publish_sets), so a failed run leaves data/ as it was.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

if __package__ in (None, ""):  # run as a script without path.sh: find the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from deepspeaker.bin._cli import run_main  # noqa: E402
from deepspeaker.data.kaldi_dir import sorted_ids  # noqa: E402
from deepspeaker.data.prep import (DataPrepError, PreparedSet, TrialList,  # noqa: E402
                                   kaldi_trials, publish_sets, read_list, trial_kind)

logger = logging.getLogger(__name__)

CNC1_LAYOUTS = ("CN-Celeb_flac", "CN-Celeb", ".")
CNC2_LAYOUTS = ("CN-Celeb2_flac/data", "data")
AUDIO_SUFFIXES = (".flac", ".wav")  # flac since the 2020 release, wav before


def find_root(corpus_dir: Path, layouts: Sequence[str], marker: str, name: str,
              flag: str) -> Path:
    """The first ``corpus_dir/<layout>`` that holds ``marker``."""
    if not corpus_dir.is_dir():
        raise DataPrepError(f"{corpus_dir}: {name} directory not found (given as {flag})")
    for lay in layouts:
        root = (corpus_dir / lay) if lay != "." else corpus_dir
        if (root / marker).is_dir():
            return root
    wanted = " or ".join(f"{corpus_dir / lay if lay != '.' else corpus_dir}/{marker}/"
                         for lay in layouts)
    raise DataPrepError(f"{corpus_dir}: not a {name} release: expected {wanted}")


def read_cnceleb_list(path: Path, num_fields: int, form: str
                      ) -> Iterator[tuple[str, list[str]]]:
    """deepspeaker.data.prep.read_list, saying where a missing list comes from."""
    return read_list(path, num_fields, form, hint="it is part of the CN-Celeb1 release")


def _speaker_of(utt: str, where: str) -> str:
    """CN-Celeb names eval files ``<spk>-...``: the speaker is what comes before the '-'."""
    spk, sep, rest = utt.partition("-")
    if not (spk and sep and rest):
        raise DataPrepError(f"{where}: cannot tell the speaker of {utt!r} (expected "
                            "<spk>-<rest>)")
    return spk


@dataclass
class EvalSet:
    utt2path: dict[str, Path]
    utt2spk: dict[str, str]
    trials: TrialList  # trials.lst in Kaldi's form


def read_eval(root: Path) -> EvalSet:
    """Enrollment and test utterances from the eval lists, and trials.lst converted.

    Each file a list names must exist: a trial the scorer cannot score would silently
    change the EER.  The label is checked against the speakers of the two sides
    (deepspeaker.data.prep.kaldi_trials).
    """
    lists = root / "eval" / "lists"
    utt2path: dict[str, Path] = {}
    utt2spk: dict[str, str] = {}
    utt2where: dict[str, str] = {}

    def add(utt: str, rel: str, where: str) -> None:
        path = root / "eval" / rel
        if not path.is_file():
            raise DataPrepError(f"{where}: {rel}: no such file ({path})")
        if utt in utt2path:
            raise DataPrepError(f"{where}: utterance {utt} is already listed at "
                                f"{utt2where[utt]}")
        utt2path[utt], utt2spk[utt], utt2where[utt] = path, _speaker_of(utt, where), where

    enroll: dict[str, str] = {}  # model -> enroll/<file>
    for where, (model, rel) in read_cnceleb_list(lists / "enroll.lst", 2,
                                                 "<spk>-enroll enroll/<file>"):
        add(model, rel, where)
        enroll[model] = rel
    test_rel2utt: dict[str, str] = {}
    for where, (rel,) in read_cnceleb_list(lists / "test.lst", 1, "test/<file>"):
        utt = Path(rel).stem
        add(utt, rel, where)
        test_rel2utt[rel] = utt
    if not enroll:
        raise DataPrepError(f"{lists / 'enroll.lst'}: no enrollment utterance in it")
    if not test_rel2utt:
        raise DataPrepError(f"{lists / 'test.lst'}: no test utterance in it")

    def rows():
        for where, (model, rel, label) in read_cnceleb_list(lists / "trials.lst", 3,
                                                            "<enroll model> test/<file> 1|0"):
            kind = trial_kind(label, where)
            if model not in enroll:
                raise DataPrepError(f"{where}: enrollment model {model} is not in "
                                    f"{lists / 'enroll.lst'}")
            test = test_rel2utt.get(rel)
            if test is None:
                path = root / "eval" / rel
                if not path.is_file():
                    raise DataPrepError(f"{where}: {rel}: no such file ({path})")
                raise DataPrepError(f"{where}: {rel} is on disk but not in {lists / 'test.lst'}")
            yield where, kind, model, test, f"{enroll[model]} {rel}"

    trials = kaldi_trials(lists / "trials.lst", rows(), utt2spk)
    logger.info("eval: %d enrollment and %d test utterances of %d speakers", len(enroll),
                len(test_rel2utt), len(set(utt2spk.values())))
    return EvalSet(utt2path, utt2spk, trials)


def scan_speaker(spk_dir: Path, spk: str, utt2path: dict[str, Path],
                 utt2spk: dict[str, str]) -> None:
    """Add ``<spk>-<stem>`` for each audio file of one speaker folder.

    An empty folder is an error rather than a silent gap: it is usually a download or
    unpack that stopped half way.
    """
    if not spk or any(c.isspace() for c in spk):
        raise DataPrepError(f"{spk_dir}: speaker folder name {spk!r} cannot be a Kaldi id")
    found = 0
    with os.scandir(spk_dir) as it:
        for e in it:
            stem, suffix = os.path.splitext(e.name)
            if e.name.startswith(".") or suffix not in AUDIO_SUFFIXES or not e.is_file():
                continue
            if any(c.isspace() for c in stem):
                raise DataPrepError(f"{e.path}: file name has whitespace; it cannot be part "
                                    "of a Kaldi id")
            utt = f"{spk}-{stem}"
            if utt in utt2path:
                raise DataPrepError(f"{e.path}: utterance id {utt} is also that of "
                                    f"{utt2path[utt]}")
            utt2path[utt], utt2spk[utt] = Path(e.path), spk
            found += 1
    if not found:
        raise DataPrepError(f"{spk_dir}: speaker folder holds no "
                            f"{' or '.join(AUDIO_SUFFIXES)} file; an unfinished download or "
                            "unpack?")


def _speaker_dirs(data: Path) -> list[str]:
    with os.scandir(data) as it:
        return sorted_ids(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def training_speakers(root: Path, eval_spk: set[str]) -> list[str]:
    """dev/dev.lst's speakers, or every speaker of data/ but the eval ones without it."""
    dev_lst = root / "dev" / "dev.lst"
    if not dev_lst.is_file():
        speakers = [s for s in _speaker_dirs(root / "data") if s not in eval_spk]
        logger.warning("%s not found: training on every speaker folder of %s that is not an "
                       "evaluation speaker (%d speakers)", dev_lst, root / "data", len(speakers))
        return speakers
    speakers: dict[str, str] = {}
    for where, (spk,) in read_cnceleb_list(dev_lst, 1, "<spk>"):
        if spk in eval_spk:
            raise DataPrepError(f"{where}: training speaker {spk} is also an evaluation speaker")
        if not (root / "data" / spk).is_dir():
            raise DataPrepError(f"{where}: speaker {spk} has no folder {root / 'data' / spk}")
        speakers.setdefault(spk, where)
    if not speakers:
        raise DataPrepError(f"{dev_lst}: no speaker in it")
    logger.info("%s: %d training speakers", dev_lst, len(speakers))
    return sorted_ids(speakers)


def prepare_cnceleb(cnc1_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
                    cnc2_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Scan, check, convert; then publish data/train and data/eval.  Utterances per set."""
    root = find_root(Path(cnc1_dir).absolute(), CNC1_LAYOUTS, "eval", "CN-Celeb1",
                     "--cnceleb1-dir")
    if not (root / "data").is_dir():
        raise DataPrepError(f"{root}: no data/ folder (expected data/<spk>/<file>.flac)")
    data_dir = Path(data_dir)
    evalset = read_eval(root)
    eval_spk = set(evalset.utt2spk.values())

    utt2path: dict[str, Path] = {}
    utt2spk: dict[str, str] = {}
    cnc1_spk = training_speakers(root, eval_spk)
    for spk in cnc1_spk:
        scan_speaker(root / "data" / spk, spk, utt2path, utt2spk)
    if not cnc1_spk:
        logger.warning("%s: no training speaker besides the evaluation ones", root / "data")
    if cnc2_dir is not None:
        cnc2_dir = Path(cnc2_dir).absolute()
        if not cnc2_dir.is_dir():
            raise DataPrepError(f"{cnc2_dir}: CN-Celeb2 directory not found (given as "
                                "--cnceleb2-dir)")
        data2 = next((cnc2_dir / lay for lay in CNC2_LAYOUTS if (cnc2_dir / lay).is_dir()), None)
        if data2 is None:
            raise DataPrepError(f"{cnc2_dir}: not a CN-Celeb2 release: expected "
                                + " or ".join(f"{cnc2_dir / lay}/" for lay in CNC2_LAYOUTS))
        cnc2_spk = _speaker_dirs(data2)
        if not cnc2_spk:
            raise DataPrepError(f"{data2}: no speaker folder in it")
        for spk in cnc2_spk:
            if spk in eval_spk or spk in cnc1_spk:
                raise DataPrepError(f"{data2 / spk}: speaker {spk} is also a CN-Celeb1 "
                                    f"{'evaluation' if spk in eval_spk else 'training'} speaker")
            scan_speaker(data2 / spk, spk, utt2path, utt2spk)
        logger.info("%s: %d CN-Celeb2 speakers", data2, len(cnc2_spk))
    if not utt2spk:
        raise DataPrepError(f"{data_dir / 'train'}: no training utterances")

    # The official list is trials_cnceleb: stage 2 writes the paper's 1 + 99 list as
    # trials, and scores every trials_<name> beside it.
    publish_sets(data_dir, {
        "train": PreparedSet({u: str(p) for u, p in utt2path.items()}, utt2spk),
        "eval": PreparedSet({u: str(p) for u, p in evalset.utt2path.items()}, evalset.utt2spk,
                            extra_files={"trials_cnceleb": evalset.trials.text})})
    logger.info("CN-Celeb data prep done: %s (%d utterances), %s (%d utterances, %d trials)",
                data_dir / "train", len(utt2spk), data_dir / "eval", len(evalset.utt2spk),
                evalset.trials.num_target + evalset.trials.num_nontarget)
    return {"train": len(utt2spk), "eval": len(evalset.utt2spk)}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cnceleb1-dir", required=True,
                   help="holds CN-Celeb_flac/ or CN-Celeb/ (or is that folder)")
    p.add_argument("--cnceleb2-dir", default=None,
                   help="CN-Celeb2 (optional, training only): holds data/<spk>/ or "
                        "CN-Celeb2_flac/data/<spk>/")
    p.add_argument("--data-dir", required=True, help="writes DATA_DIR/{train,eval}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: prepare_cnceleb(args.cnceleb1_dir, args.data_dir,
                                            cnc2_dir=args.cnceleb2_dir), argv)


if __name__ == "__main__":
    sys.exit(main())
