"""Kaldi data directories in memory: read and write (validation: ``qa``; fixing: ``fix``).

A data dir is a contract between stages (see ``deepspeaker.data``): text files keyed
by utterance, speaker or recording id, sorted bytewise, with one id set.  Which files
exist and how each is read, written and filtered is the one table
:data:`deepspeaker.data.table.FILE_KINDS`; this module reads them strictly:

* ``read_kaldi_map`` / ``write_kaldi_map`` and ``DataDir.load`` / ``DataDir.write``:
  strict readers that raise ``DataDirError`` naming ``file:line`` at the first line
  they cannot parse, and writers that sort and write atomically.

The lenient reader that collects every problem is ``_scan(strict=False)``, used by
``deepspeaker.data.qa``.  Lines are split on spaces and tabs only, as Kaldi does
(``deepspeaker.data.table.iter_lines``); any other whitespace or control character
inside an id is reported by the validator.  Ids must be valid UTF-8 (the rule and its
one exception, the paths of ``wav.scp``: ``deepspeaker.data.table``): a line that is
not is an error naming ``file:line`` in both readers, and the writers refuse such an id.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..utils import DeepSpeakerError, atomic_write
from .table import (FIELD_SEP, FILE_KINDS, KNOWN_FILES, NUM_FIELDS, REQUIRED_FILES,
                    STAGE_FILES, TableError, byte_key, fmt_float, id_problem, iter_lines,
                    parse_count, parse_duration, parse_segment, segment_problem, sorted_ids)

logger = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"
_FIELD_SEP = FIELD_SEP
_fmt_float = fmt_float


class DataDirError(DeepSpeakerError):
    """A data dir file that cannot be parsed; the message names ``file:line``."""


@dataclass
class Problem:
    """One validation finding: where it is, which utterance, what is wrong."""

    file: str
    line: int | None
    utt: str | None
    message: str
    severity: str = ERROR  # or WARNING

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where] + ([self.utt] if self.utt is not None else []) + [self.message]
        return ": ".join(parts)


# --------------------------------------------------------------------------- reading

@dataclass(slots=True)
class _Entry:
    value: str
    line: int
    ok: bool = True  # False when the line is malformed; typed checks skip it


_ODD_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")


def _odd_char(s: str) -> str | None:
    """The first whitespace or control character in an id (spaces and tabs split fields)."""
    m = _ODD_CHAR.search(s)
    return None if m is None else f"U+{ord(m.group()):04X}"


def _scan(path: Path, *, num_fields: int | None = None, strict: bool,
          problems: list[Problem] | None = None) -> dict[str, _Entry]:
    """Parse one ``key value...`` file.

    ``strict``: raise DataDirError on the first line that cannot be parsed (empty line,
    missing value, wrong field count, duplicate key) and ignore cosmetic problems.
    Otherwise append every problem, cosmetic or not, to ``problems`` and go on; the
    first occurrence of a duplicated key is the one kept.
    """
    name = str(path)

    def report(lineno: int, key: str | None, msg: str, severity: str = ERROR,
               fatal: bool = False) -> None:
        if strict:
            if fatal:
                raise DataDirError(str(Problem(name, lineno, key, msg)))
            return
        assert problems is not None
        problems.append(Problem(name, lineno, key, msg, severity))

    entries: dict[str, _Entry] = {}
    prev_key: str | None = None
    unsorted_reported = False
    try:
        for ln in iter_lines(path, on_bad_line=None if strict else
                             lambda lineno, why: report(lineno, None, why)):
            lineno, line = ln.lineno, ln.text
            if ln.crlf:
                report(lineno, None, "line ends with a carriage return (DOS line ending)")
            text = line.strip(" \t")
            if not text:
                report(lineno, None, "empty line", fatal=True)
                continue
            fields = _FIELD_SEP.split(text)
            key = fields[0]
            if not strict:  # cosmetic checks, which the strict reader would ignore anyway
                if line[0] in " \t":
                    report(lineno, key, "line starts with whitespace")
                elif line[-1] in " \t":
                    report(lineno, key, "trailing whitespace", WARNING)
                odd = _odd_char(key)
                if odd:
                    report(lineno, key, f"id contains whitespace or control character {odd}")
            value = text[len(key):].strip(" \t")
            ok = True
            if len(fields) < 2:
                report(lineno, key, "missing field: a key with no value", fatal=True)
                ok = False
            elif num_fields is not None and len(fields) != num_fields:
                report(lineno, key, f"expected {num_fields} fields, found {len(fields)}",
                       fatal=True)
                ok = False
            if key in entries:
                report(lineno, key, f"duplicate id (first on line {entries[key].line})",
                       fatal=True)
            else:
                if (not strict and prev_key is not None and not unsorted_reported
                        and byte_key(key) < byte_key(prev_key)):
                    report(lineno, key, f"file is not sorted: this id comes after "
                           f"{prev_key!r} (sort with LC_ALL=C)")
                    unsorted_reported = True
                entries[key] = _Entry(value, lineno, ok)
            prev_key = key
    except TableError as e:  # the file could not be opened, or a line is not UTF-8
        raise DataDirError(str(e)) from None
    return entries


def read_kaldi_map(path: str | os.PathLike, *, num_fields: int | None = None) -> dict[str, str]:
    """Read a ``key value...`` file into ``{key: rest of line}``, in file order.

    ``num_fields`` is the number of fields a line must have, key included (2 for
    utt2spk, 4 for segments); None accepts any number >= 2.  Raises DataDirError
    ``"{path}:{lineno}: ..."`` on an empty line, a key with no value, a wrong field
    count or a duplicate key.  Unsorted files are accepted (the validator reports them).
    """
    return {k: e.value for k, e in _scan(Path(path), num_fields=num_fields, strict=True).items()}


def _check_writable_id(path: Path, s: str) -> None:
    if not s or _odd_char(s) or " " in s:
        raise DataDirError(f"{path}: refusing to write id {s!r}: ids must be non-empty and "
                           "free of whitespace")
    why = id_problem(s)
    if why:  # it would be refused when read back (table.iter_lines)
        raise DataDirError(f"{path}: refusing to write id {s!r}: {why}")


def write_kaldi_map(path: str | os.PathLike, mapping: Mapping[str, str]) -> None:
    """Write ``key value`` lines sorted bytewise by key, atomically (temp + rename).

    Refuses (DataDirError) keys with whitespace or that are not UTF-8, and empty or
    multi-line values, which would not read back as written.  Values are written as
    the bytes they were read as (a ``wav.scp`` path that is not UTF-8 stays openable).
    """
    path = Path(path)
    for key, value in mapping.items():
        _check_writable_id(path, key)
        value = str(value)
        if not value.strip(" \t") or "\n" in value or "\r" in value:
            raise DataDirError(f"{path}: refusing to write {key!r}: value {value!r} is empty "
                               "or spans several lines")
    with atomic_write(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        for key in sorted_ids(mapping):
            f.write(f"{key} {mapping[key]}\n")


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Speakers (sorted) to their utterances (sorted), both bytewise."""
    out: dict[str, list[str]] = {}
    for utt in sorted_ids(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: out[spk] for spk in sorted_ids(out)}


# --------------------------------------------------------------------------- DataDir

def _read_typed(path: Path, kind) -> dict | None:
    """``path`` read strictly as ``kind`` says (None when it does not exist)."""
    if not path.is_file():
        return None
    out = {}
    for key, e in _scan(path, num_fields=kind.num_fields, strict=True).items():
        try:
            out[key] = kind.parse(e.value)
        except ValueError as err:
            raise DataDirError(str(Problem(str(path), e.line, key, str(err)))) from None
    return out


@dataclass
class DataDir:
    """A Kaldi data dir in memory: one attribute per entry of ``FILE_KINDS`` (None: absent)."""

    path: Path
    wav_scp: dict[str, str]
    utt2spk: dict[str, str]
    spk2utt: dict[str, list[str]]
    segments: dict[str, tuple[str, float, float]] | None = None
    utt2dur: dict[str, float] | None = None
    feats_scp: dict[str, str] | None = None
    vad_scp: dict[str, str] | None = None
    utt2num_frames: dict[str, int] | None = None
    failed_utts: dict[str, str] | None = None
    cmvn_scp: dict[str, str] | None = None
    text: dict[str, str] | None = None
    spk2gender: dict[str, str] | None = None
    spk2age: dict[str, str] | None = None
    utt2lang: dict[str, str] | None = None
    utt2uniq: dict[str, str] | None = None
    utt2aug: dict[str, str] | None = None
    reco2dur: dict[str, float] | None = None
    # file name -> {key: line number on disk}; filled on demand by line_of().
    _lines: dict[str, dict[str, int]] = field(default_factory=dict, init=False, repr=False,
                                              compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataDir":
        """Read every known file of ``path``; DataDirError (file:line) if one is unparsable.

        wav.scp and utt2spk must exist; a missing spk2utt is built from utt2spk.
        Content problems (unsorted files, ids that disagree between files, bad segment
        times) are not checked here: that is validate_data_dir's job.
        """
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(f"{path}: data directory not found")
        for name in REQUIRED_FILES:
            if not (path / name).is_file():
                raise DataDirError(f"{path / name}: required file is missing")
        maps = {kind.attr: _read_typed(path / kind.name, kind) for kind in FILE_KINDS}
        if maps["spk2utt"] is None:
            maps["spk2utt"] = spk2utt_from_utt2spk(maps["utt2spk"])
        return cls(path=path, **maps)

    @property
    def utts(self) -> list[str]:
        """Utterance ids of utt2spk, sorted bytewise."""
        return sorted_ids(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        """Speaker ids of utt2spk, sorted bytewise."""
        return sorted_ids(set(self.utt2spk.values()))

    def file_maps(self) -> dict[str, dict[str, str] | None]:
        """Every known file as the ``{key: value text}`` it is written as (None: absent)."""
        out = {}
        for kind in FILE_KINDS:
            m = getattr(self, kind.attr)
            out[kind.name] = None if m is None else {k: kind.fmt(v) for k, v in m.items()}
        return out

    def write(self, path: str | os.PathLike) -> None:
        """Write every non-None file to ``path``, sorted, each atomically.

        Known files that this DataDir lacks are removed from ``path``, so that the dir
        on disk is exactly this one (a stale feats.scp beside a filtered utt2spk would
        break the contract).  Other files in ``path`` are left alone.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, mapping in self.file_maps().items():
            if mapping is None:
                if (path / name).is_file():
                    logger.info("%s: removed (not part of the data dir written)", path / name)
                    (path / name).unlink()
                continue
            write_kaldi_map(path / name, mapping)
        self._lines.clear()

    def line_of(self, name: str, key: str) -> int | None:
        """Line of ``key`` in file ``name`` of ``self.path`` as it is on disk, or None.

        Read on demand (error messages only), so loading a large dir costs no memory
        for line numbers.
        """
        if name not in self._lines:
            lines: dict[str, int] = {}
            try:
                for ln in iter_lines(self.path / name):
                    first, _ = ln.key_value()
                    if first:
                        lines.setdefault(first, ln.lineno)
            except TableError:
                pass
            self._lines[name] = lines
        return self._lines[name].get(key)


# Validation and fixing live in their own modules; their names stay importable here.
from .fix import fix_data_dir, restrict, subset_speakers  # noqa: E402
from .qa import validate_data_dir  # noqa: E402

__all__ = ["ERROR", "WARNING", "DataDir", "DataDirError", "KNOWN_FILES", "NUM_FIELDS", "Problem",
           "REQUIRED_FILES", "STAGE_FILES", "byte_key", "fix_data_dir", "parse_count",
           "parse_duration", "parse_segment", "read_kaldi_map", "restrict", "segment_problem",
           "sorted_ids", "spk2utt_from_utt2spk", "subset_speakers", "validate_data_dir",
           "write_kaldi_map"]
