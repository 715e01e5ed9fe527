"""Validation of a Kaldi data dir: every problem at once, with file:line.

One checker per object, in the manner of lhotse's ``qa.py``: each takes the entries it
checks and an ``add(file, line, utt, message, severity)`` callback and never raises
for content problems, so a user fixes a dir in one pass.  ``validate_data_dir`` reads
every file of the one table ``FILE_KINDS`` leniently and runs the checkers:

* ``check_utt2spk``: speaker ids, the utt2spk / spk2utt agreement;
* ``check_audio_sources``: wav.scp against utt2spk, or segments against both;
* ``check_values``: typed values (durations > 0, frame counts);
* ``check_same_utts``: the per-utterance files against utt2spk (a stage output that
  lacks an utterance is a warning naming its failed_utts reason);
* ``check_speaker_files``: per-speaker files (spk2gender, spk2age, cmvn.scp) name
  only speakers of utt2spk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .kaldi_dir import (_FIELD_SEP, ERROR, WARNING, DataDirError, Problem, _Entry, _odd_char,
                        _scan)
from .table import (FILE_KINDS, KINDS_BY_NAME, KNOWN_FILES, REQUIRED_FILES, SPK, STAGE_FILES,
                    parse_segment, segment_problem, sorted_ids)


def validate_data_dir(path: str | os.PathLike, *, need: Iterable[str] = (),
                      skip: Iterable[str] = ()) -> list[Problem]:
    """Every problem of the data dir ``path``, errors and warnings, in file order.

    Never raises for content problems.  ``need`` names files that must exist besides
    wav.scp and utt2spk (e.g. ``("feats.scp", "vad.scp")`` before training); ``skip``
    names files that are not required but still checked when present (Kaldi's
    ``--no-feats``, ``--no-text``, ``--no-wav``).  A dir with no error loads with DataDir.load.
    """
    d = Path(path)
    if isinstance(need, str):  # "feats.scp,vad.scp" as the CLI takes it
        need = [n for n in need.split(",") if n]
    problems: list[Problem] = []
    if not d.is_dir():
        return [Problem(str(d), None, None, "data directory not found")]

    def add(name: str, line: int | None, utt: str | None, msg: str,
            severity: str = ERROR) -> None:
        problems.append(Problem(str(d / name), line, utt, msg, severity))

    skip = set(skip)
    for name in dict.fromkeys([*REQUIRED_FILES, *need]):
        if name not in skip and not (d / name).is_file():
            add(name, None, None, "required file is missing")

    files: dict[str, dict[str, _Entry]] = {}
    for name in KNOWN_FILES:
        if (d / name).is_file():
            try:
                files[name] = _scan(d / name, num_fields=KINDS_BY_NAME[name].num_fields,
                                    strict=False, problems=problems)
            except DataDirError as e:  # unreadable (permissions...)
                add(name, None, None, str(e).split(": ", 1)[-1])

    utt2spk = files.get("utt2spk")
    if utt2spk is not None:
        check_utt2spk(d, utt2spk, files.get("spk2utt"), add)
        if not utt2spk:
            add("utt2spk", None, None, "no utterances (file is empty)")
    if "wav.scp" in files and utt2spk is not None:
        check_audio_sources(files["wav.scp"], files.get("segments"), utt2spk, add)
    for name, entries in files.items():
        check_values(name, entries, add)
    if utt2spk is not None:
        failed = files.get("failed_utts", {})
        for name in ("utt2dur", *STAGE_FILES):
            if name in files:
                check_same_utts(name, files[name], utt2spk, failed, add)
        check_speaker_files(files, utt2spk, add)
        if "feats.scp" in files:
            for utt, e in failed.items():
                if utt in files["feats.scp"]:
                    add("failed_utts", e.line, utt, "listed as failed but feats.scp has it",
                        WARNING)
    return problems


def check_utt2spk(d: Path, utt2spk: dict[str, _Entry], spk2utt: dict[str, _Entry] | None,
                   add) -> None:
    for utt, e in utt2spk.items():
        if not e.ok:
            continue
        odd = _odd_char(e.value)
        if odd:
            add("utt2spk", e.line, utt, f"speaker id contains whitespace or control "
                f"character {odd}")
        elif not utt.startswith(e.value):
            add("utt2spk", e.line, utt, f"speaker id {e.value!r} is not a prefix of the "
                "utterance id (Kaldi recommends it, so that sorting utterances groups speakers)",
                WARNING)
    if spk2utt is None:
        add("spk2utt", None, None, "missing (fix_data_dir builds it from utt2spk)", WARNING)
        return
    listed: dict[str, int] = {}  # utt -> spk2utt line
    for spk, e in spk2utt.items():
        utts = _FIELD_SEP.split(e.value) if e.value else []
        if utts != sorted_ids(utts):
            add("spk2utt", e.line, None, f"utterances of speaker {spk!r} are not sorted",
                WARNING)
        for utt in utts:
            if utt in listed:
                add("spk2utt", e.line, utt, f"utterance listed twice (also on line "
                    f"{listed[utt]})")
                continue
            listed[utt] = e.line
            if utt not in utt2spk:
                add("spk2utt", e.line, utt, f"listed under speaker {spk!r} but not in utt2spk")
            elif utt2spk[utt].ok and utt2spk[utt].value != spk:
                add("spk2utt", e.line, utt, f"listed under speaker {spk!r} but utt2spk "
                    f"(line {utt2spk[utt].line}) maps it to {utt2spk[utt].value!r}")
    for utt, e in utt2spk.items():
        if e.ok and utt not in listed:
            add("utt2spk", e.line, utt, f"speaker {e.value!r} in utt2spk but spk2utt does "
                "not list this utterance")


def check_audio_sources(wav_scp: dict[str, _Entry], segments: dict[str, _Entry] | None,
                         utt2spk: dict[str, _Entry], add) -> None:
    for key, e in wav_scp.items():
        if e.ok and not e.value.endswith("|") and _FIELD_SEP.search(e.value):
            add("wav.scp", e.line, key, "value has spaces but does not end in '|': it is "
                "read as one file name, not run as a command", WARNING)
    if segments is None:
        for utt, e in utt2spk.items():
            if utt not in wav_scp:
                add("utt2spk", e.line, utt, "no wav.scp entry for this utterance")
        for utt, e in wav_scp.items():
            if utt not in utt2spk:
                add("wav.scp", e.line, utt, "not in utt2spk")
        return
    used: set[str] = set()
    for utt, e in segments.items():
        if utt not in utt2spk:
            add("segments", e.line, utt, "not in utt2spk")
        if not e.ok:
            continue
        try:
            rec, start, end = parse_segment(e.value)
        except ValueError as err:
            add("segments", e.line, utt, str(err))
            continue
        used.add(rec)
        if rec not in wav_scp:
            add("segments", e.line, utt, f"recording {rec!r} is not in wav.scp")
        why = segment_problem(start, end)
        if why:
            add("segments", e.line, utt, why)
    for utt, e in utt2spk.items():
        if utt not in segments:
            add("utt2spk", e.line, utt, "no segments entry for this utterance")
    for rec, e in wav_scp.items():
        if rec not in used:
            add("wav.scp", e.line, rec, "recording used by no segment", WARNING)


def check_same_utts(name: str, entries: dict[str, _Entry], utt2spk: dict[str, _Entry],
                     failed: dict[str, _Entry], add) -> None:
    for utt, e in entries.items():
        if utt not in utt2spk:
            add(name, e.line, utt, "not in utt2spk")
    for utt, e in utt2spk.items():
        if utt not in entries:
            why = (f"; failed_utts line {failed[utt].line}: {failed[utt].value}"
                   if utt in failed else "")
            add(name, None, utt, f"missing (utt2spk line {e.line} has it){why}", WARNING)




def check_values(name: str, entries: dict[str, _Entry], add) -> None:
    """Typed values of ``name`` (its kind's parser); durations must also be > 0."""
    kind = KINDS_BY_NAME[name]
    if kind.parse is str or name in ("segments", "spk2utt"):
        return  # segments: check_audio_sources; spk2utt: check_utt2spk
    for key, e in entries.items():
        if not e.ok:
            continue
        try:
            value = kind.parse(e.value)
        except ValueError as err:
            add(name, e.line, key, str(err))
            continue
        if name in ("utt2dur", "reco2dur") and not value > 0:
            add(name, e.line, key, f"duration must be > 0, found {e.value}")


def check_speaker_files(files: dict[str, dict[str, _Entry]], utt2spk: dict[str, _Entry],
                        add) -> None:
    """Per-speaker files other than spk2utt name only speakers that utt2spk has."""
    speakers = {e.value for e in utt2spk.values() if e.ok}
    for kind in FILE_KINDS:
        if kind.keyed_by != SPK or kind.derived or kind.name not in files:
            continue
        for spk, e in files[kind.name].items():
            if spk not in speakers:
                add(kind.name, e.line, spk, "speaker not in utt2spk", WARNING)


__all__ = ["check_audio_sources", "check_same_utts", "check_speaker_files", "check_utt2spk",
           "check_values", "validate_data_dir"]


def require_valid_data_dir(path: str | os.PathLike) -> None:
    """Log every error of the data dir and stop before a stage starts its jobs on it."""
    import logging

    from ..utils import DeepSpeakerError
    problems = [p for p in validate_data_dir(path) if p.severity == ERROR]
    if problems:
        log = logging.getLogger(__name__)
        for p in problems:
            log.error("%s", p)
        raise DeepSpeakerError(f"{path}: {len(problems)} problem(s) in the data dir; "
                               f"fix them (utils/fix_data_dir.sh) and rerun")
