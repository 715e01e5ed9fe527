"""Shared pieces of corpus data preparation (``egs/<corpus>/local/``).

A data prep either writes all its data dirs, whole and valid, or nothing: every set
is built in a hidden staging dir beside them, validated there, and only then moved
into place, all sets together (``publish_sets``).  A crash or Ctrl-C leaves the old
dirs, or no dirs, never a half-written one nor a new train dir beside an old eval dir
of another split; a rerun starts again from the corpus on disk, which is cheap next
to everything after it.

The official trial lists of the corpora (VoxCeleb's ``1 a.wav b.wav``, CN-Celeb's
``model test/b.flac 1``) become Kaldi trials with ``read_list``, ``trial_kind`` and
``kaldi_trials``: the corpus-specific part is only how a line names its two sides.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import soundfile as sf

from ..utils import DeepSpeakerError
from .kaldi_dir import DataDir, sorted_ids, spk2utt_from_utt2spk, validate_data_dir
from .table import iter_lines

logger = logging.getLogger(__name__)


class DataPrepError(DeepSpeakerError):
    """The corpus on disk is not in the layout (or state) a data prep needs."""


# --------------------------------------------------------------------------- data dirs

@dataclass
class PreparedSet:
    """One data dir in memory, complete and checked, waiting to be written.

    ``extra_files`` maps file names to text written verbatim beside the Kaldi files:
    ``spk2gender`` (see ``kaldi_map_text``), converted trial lists (``trials_vox1_o``).
    """

    wav_scp: dict[str, str] = field(default_factory=dict)
    utt2spk: dict[str, str] = field(default_factory=dict)
    utt2dur: dict[str, float] | None = None
    extra_files: dict[str, str] = field(default_factory=dict)


def kaldi_map_text(mapping: Mapping[str, str]) -> str:
    """``key value`` lines sorted bytewise by key: an extra file such as spk2gender."""
    return "".join(f"{key} {mapping[key]}\n" for key in sorted_ids(mapping))


def _write_checked(tmp: Path, path: Path, s: PreparedSet) -> None:
    """Write ``s`` as a data dir at ``tmp`` and validate it there.

    Messages name ``path``, where the dir is going, not the staging dir.
    """
    if not s.utt2spk:
        raise DataPrepError(f"{path}: no utterances to write")
    data = DataDir(path=tmp, wav_scp=dict(s.wav_scp), utt2spk=dict(s.utt2spk),
                   spk2utt=spk2utt_from_utt2spk(s.utt2spk),
                   utt2dur=dict(s.utt2dur) if s.utt2dur is not None else None)
    data.write(tmp)
    for name, text in s.extra_files.items():
        (tmp / name).write_text(text)
    errors = [p for p in validate_data_dir(tmp) if p.severity == "error"]
    if errors:
        shown = "\n  ".join(str(p).replace(str(tmp), str(path)) for p in errors[:10])
        raise DataPrepError(f"{path}: the prepared data dir is not valid "
                            f"({len(errors)} problem(s)), nothing written:\n  {shown}")


def publish_sets(data_dir: str | os.PathLike, sets: Mapping[str, PreparedSet],
                 remove: Sequence[str] = ()) -> None:
    """Write every set as ``data_dir/<name>``, then move them into place together.

    Writing each set straight to its final place would leave, after a failure in the
    last set, a new train dir beside an old eval dir of another split (shared
    speakers).  Here a failure (invalid dir, full disk, Ctrl-C) leaves the old dirs as
    they were, and ``data_dir`` and its parents only if they existed before; the moves
    at the end are renames within one directory.  An existing dir is replaced as a
    whole, so outputs of later stages in it go too.  ``remove`` names old dirs that
    this run does not make and that must not survive it (a dev dir that may hold
    speakers of the new train set).  Raises DataPrepError, writing nothing, when a
    set would not pass ``validate_data_dir``.
    """
    data_dir = Path(data_dir)
    created = [d for d in (data_dir, *data_dir.parents) if not d.exists()]  # deepest first
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".prepare_data.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        for name, s in sets.items():
            _write_checked(staging / name, data_dir / name, s)
        swapped: list[str] = []
        try:
            for name in [*sets, *remove]:
                if (data_dir / name).exists():
                    (data_dir / name).rename(staging / f"old.{name}")
                    if name in remove:
                        logger.info("%s: removed (this run makes no such set)", data_dir / name)
                swapped.append(name)
                if name in sets:
                    (staging / name).rename(data_dir / name)
        except BaseException:  # Ctrl-C between two renames: put the old dirs back
            for name in reversed(swapped):
                if name in sets and not (staging / name).exists():
                    (data_dir / name).rename(staging / name)
                if (staging / f"old.{name}").exists():
                    (staging / f"old.{name}").rename(data_dir / name)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for d in created:  # after a failure: the dirs this run made, if still empty
            if any(d.iterdir()):
                break
            d.rmdir()
    for name, s in sets.items():
        logger.info("%s: %d utterances of %d speakers", data_dir / name, len(s.utt2spk),
                    len(set(s.utt2spk.values())))


# --------------------------------------------------------------------------- audio and splits

def read_durations(paths: Mapping[str, str | os.PathLike], nj: int = 1) -> dict[str, float]:
    """Duration in seconds of every audio file, from its header (no decoding).

    Threads, because this is file-system latency, not CPU: the full LibriSpeech has
    ~290,000 files.  The first unreadable or empty file stops the prep, naming it.
    """
    def one(item: tuple[str, str | os.PathLike]) -> tuple[str, float]:
        utt, path = item
        try:
            info = sf.info(str(path))
        except (RuntimeError, OSError) as e:  # soundfile's LibsndfileError is a RuntimeError
            raise DataPrepError(f"{path}: cannot read the audio header: {e}") from None
        if info.frames <= 0 or info.samplerate <= 0:
            raise DataPrepError(f"{path}: no audio ({info.frames} samples)")
        return utt, info.frames / info.samplerate

    pool = ThreadPoolExecutor(max(nj, 1))
    try:
        return dict(pool.map(one, paths.items()))
    finally:
        pool.shutdown(cancel_futures=True)


def round_half_up(x: float) -> int:
    """``x`` rounded half up.

    Python's round() goes to even (round(2.5) == 2), which makes counts jump oddly as
    a fraction changes; half up is what a reader of "40 %" expects.
    """
    return math.floor(x + 0.5)


def check_split_options(eval_fraction: float, dev_fraction: float, seed: int) -> None:
    """The options of a seeded speaker split, or DataPrepError naming the one that is wrong."""
    if not 0.0 < eval_fraction < 1.0:
        raise DataPrepError(f"--eval-fraction must be in (0, 1), got {eval_fraction}")
    if not 0.0 <= dev_fraction < 1.0 or eval_fraction + dev_fraction >= 1.0:
        raise DataPrepError(f"--dev-fraction must be >= 0 and leave speakers to train "
                            f"(eval + dev < 1), got {dev_fraction} with --eval-fraction "
                            f"{eval_fraction}")
    if seed < 0:
        raise DataPrepError(f"--seed must be >= 0, got {seed}")


def split_prep_parser(doc: str, corpus_dir: str | os.PathLike, corpus_help: str,
                      eval_fraction: float, dev_fraction: float, of: str
                      ) -> argparse.ArgumentParser:
    """The options of a prep that splits a corpus' speakers itself.

    --corpus-dir, --data-dir, --eval-fraction, --dev-fraction and --seed, named as the
    arguments of the preps' functions; ``of`` says whose share a fraction is ("each
    sex's speakers"), for the help; the description is the first paragraph of ``doc``.
    """
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus-dir", default=str(corpus_dir), help=corpus_help)
    p.add_argument("--data-dir", default="data", help="writes DATA_DIR/{train,dev,eval}")
    p.add_argument("--eval-fraction", type=float, default=eval_fraction,
                   help=f"share of {of} that goes to eval")
    p.add_argument("--dev-fraction", type=float, default=dev_fraction,
                   help=f"share of {of} that goes to dev (0: no dev set)")
    p.add_argument("--seed", type=int, default=0, help="the split is a function of it")
    return p


# --------------------------------------------------------------------------- trial lists

TRIAL_LABELS = {"1": "target", "0": "nontarget"}  # the official lists' labels -> Kaldi's


def read_list(path: Path, num_fields: int, form: str, *, hint: str = "",
              at_least: bool = False) -> Iterator[tuple[str, list[str]]]:
    """``("file:line", fields)`` of each non-blank line of a corpus list.

    A missing list or a line with another number of fields than ``form`` raises
    DataPrepError naming the file (and line); ``hint`` says where the list comes from.
    ``at_least``: ``num_fields`` is the least a line may have (``spk2utt``, ``text``).
    """
    if not path.is_file():
        raise DataPrepError(f"{path}: list not found" + (f" ({hint})" if hint else ""))
    for ln in iter_lines(path):
        fields = ln.fields()
        if not fields:
            continue
        if len(fields) < num_fields if at_least else len(fields) != num_fields:
            raise DataPrepError(f"{path}:{ln.lineno}: expected {num_fields}"
                                f"{' or more' if at_least else ''} field(s) "
                                f"'{form}', found {len(fields)}: {ln.text.rstrip()!r}")
        yield f"{path}:{ln.lineno}", fields


def trial_kind(label: str, where: str) -> str:
    """``target`` or ``nontarget`` for an official 1|0 label.

    Check it before resolving the files a line names: a list in another format
    (columns swapped) is then named as such at once, not as a missing file.
    """
    kind = TRIAL_LABELS.get(label)
    if kind is None:
        raise DataPrepError(f"{where}: label must be 1 (target) or 0 (nontarget), "
                            f"found {label!r}")
    return kind


@dataclass
class TrialList:
    """An official trial list converted to Kaldi's form."""

    path: Path
    text: str  # one "enroll test target|nontarget" line per trial, in the list's order
    speakers: set[str]
    num_target: int
    num_nontarget: int


def kaldi_trials(path: Path, rows: Iterable[tuple[str, str, str, str, str]],
                 utt2spk: Mapping[str, str]) -> TrialList:
    """Kaldi trials from the lines of the official list ``path``.

    ``rows`` yields, per line, ``(where, kind, enroll, test, shown)``: "file:line",
    the kind from ``trial_kind``, the two utterance ids (the caller checks that the
    files exist: a trial the scorer later cannot score would silently change the EER)
    and the two sides as the list writes them, for messages.  The label is checked
    against the speakers of the two sides, which catches a list in another format at
    once.  A pair listed twice is kept once (Kaldi scoring wants each pair once); with
    the other label, one of the two lines fails that check.
    """
    lines: list[str] = []
    seen: set[tuple[str, str]] = set()
    speakers: set[str] = set()
    counts = {"target": 0, "nontarget": 0}
    duplicates = 0
    for where, kind, enroll, test, shown in rows:
        same = utt2spk[enroll] == utt2spk[test]
        if same != (kind == "target"):
            label = "1" if kind == "target" else "0"
            raise DataPrepError(f"{where}: label {label} ({kind}) but the files are of "
                                f"{'the same speaker' if same else 'different speakers'}: "
                                f"{shown}")
        if (enroll, test) in seen:
            duplicates += 1
            continue
        seen.add((enroll, test))
        speakers.update((utt2spk[enroll], utt2spk[test]))
        counts[kind] += 1
        lines.append(f"{enroll} {test} {kind}\n")
    if not lines:
        raise DataPrepError(f"{path}: no trials in it")
    if duplicates:
        logger.warning("%s: %d repeated trial(s) dropped (Kaldi scoring wants each pair once)",
                       path, duplicates)
    logger.info("%s: %d target and %d nontarget trials of %d speakers", path, counts["target"],
                counts["nontarget"], len(speakers))
    return TrialList(path, "".join(lines), speakers, counts["target"], counts["nontarget"])


__all__ = ["TRIAL_LABELS", "DataPrepError", "PreparedSet", "TrialList",
           "check_split_options",
           "kaldi_map_text", "kaldi_trials", "publish_sets", "read_durations", "read_list",
           "round_half_up", "split_prep_parser", "trial_kind"]
