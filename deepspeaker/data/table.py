"""Kaldi table files: the one line reader, and the one table of files a data dir may hold.

Every ``key value...`` text file we read (data-dir files, trials, scores, ``enroll2utt``,
``.skipped`` lists, the corpora's own lists) goes through :func:`iter_lines`, so
they all agree on what a line is: bytes split at ``\\n``, decoded as UTF-8, a
trailing ``\\r`` reported rather than silently kept, and fields split on spaces and
tabs only, as Kaldi does.

The UTF-8 rule.  Kaldi ids are byte strings, but kaldiio writes every ark key as UTF-8,
Python compares and sorts text, and an id that is not UTF-8 would only fail later, in
the middle of a job (stage 1 died in kaldiio with ``UnicodeEncodeError``, losing the
job's other utterances).  So every id (utterance, speaker, recording, trial, model)
must be valid UTF-8: a line that is not is refused when it is read, before any work
starts, naming ``file:line``, the byte and its column (:data:`NOT_UTF8`).  The one
exception is the *value* of ``wav.scp`` (an audio path or a ``command |``) and of the
lists of failures (``failed_utts``, a stage-1 job's ``failed_utts_<set>.<job>``, a source
list's ``failed``: a reason that quotes such a path), :func:`has_byte_values`: a path is
not an id, and a file on disk may be named in any bytes, so there only the key must
be UTF-8 and the value is kept as read (undecodable bytes as surrogates, which
``open()`` and ``subprocess`` turn back into the same bytes, and which the writers
write back as the same bytes).  ``feats.scp`` and ``vad.scp`` are read by kaldiio,
which reads UTF-8 only, so their values follow the general rule.  Writers refuse an id
that is not UTF-8 (``kaldi_dir.write_kaldi_map``) for the same reason.

:data:`FILE_KINDS` lists every file a data dir may hold, in the order they are
written, with what is needed to read, write, filter and check it.  Loading,
writing, restricting to a subset, fixing and validating all loop over this table;
nothing else names the files (Kaldi's ``utils/fix_data_dir.sh`` filters in one loop
over its file list in the same way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..utils import DeepSpeakerError

FIELD_SEP = re.compile(r"[ \t]+")
# Plain decimal numbers only: float() would also take "nan", "inf" and "1_000".
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_COUNT = re.compile(r"\d+")


class TableError(DeepSpeakerError):
    """A table file that cannot be opened or read."""


def byte_key(s: str) -> bytes:
    """Sort key that orders ids as ``LC_ALL=C sort`` does (by their bytes)."""
    return s.encode("utf-8", "surrogateescape")


def sorted_ids(ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=byte_key)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a table file: its number, its text and how it ended."""

    lineno: int
    text: str       # without the line end; a trailing "\r" removed (see ``crlf``)
    crlf: bool      # the line ended in "\r\n" (a DOS file)

    @property
    def stripped(self) -> str:
        return self.text.strip(" \t")

    def fields(self) -> list[str]:
        """Fields split on spaces and tabs ([] for a blank line)."""
        s = self.stripped
        return FIELD_SEP.split(s) if s else []

    def key_value(self) -> tuple[str, str]:
        """(first field, the rest of the line with its inner spacing kept)."""
        s = self.stripped
        key = FIELD_SEP.split(s, 1)[0] if s else ""
        return key, s[len(key):].strip(" \t")


NOT_UTF8 = "not valid UTF-8 (byte 0x{byte:02x} at column {col}); Kaldi ids here must be UTF-8"
_KEY_END = re.compile(rb"[ \t]")


def id_problem(s: str) -> str | None:
    """Why the id ``s`` (as read with surrogateescape) is not valid UTF-8, or None."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        c = ord(s[e.start])
        byte = c - 0xDC00 if 0xDC80 <= c <= 0xDCFF else c  # a surrogate stands for its byte
        col = len(s[:e.start].encode("utf-8", "surrogateescape")) + 1
        return NOT_UTF8.format(byte=byte, col=col)
    return None


def has_byte_values(path: str | Path) -> bool:
    """Whether only the keys of ``path`` must be UTF-8 (the module docstring): wav.scp and
    the lists of failures, whose names start with ``failed``."""
    name = Path(path).name
    return name in BYTE_VALUE_FILES or name.startswith("failed")


def _decode(raw: bytes, bytes_after_key: bool) -> tuple[str | None, str | None]:
    """(text, None) for a line that keeps the UTF-8 rule, (None, why) for one that does not."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        if bytes_after_key:
            body = raw.lstrip(b" \t")
            m = _KEY_END.search(body)
            key_end = len(raw) - len(body) + (m.start() if m else len(body))
            if e.start >= key_end:  # the key decodes; the value is a path: keep its bytes
                return raw.decode("utf-8", "surrogateescape"), None
        return None, NOT_UTF8.format(byte=raw[e.start], col=e.start + 1)


def iter_lines(path: str | Path, *, bytes_after_key: bool | None = None,
               on_bad_line: Callable[[int, str], None] | None = None) -> Iterator[Line]:
    """Every line of ``path`` (see the module docstring); TableError if it cannot be read.

    A line that is not valid UTF-8 raises TableError naming ``path:line`` (the UTF-8
    rule), or, with ``on_bad_line``, is passed to it as ``(lineno, why)`` and left out:
    the validator reports every such line and goes on.  ``bytes_after_key``: only the
    first field must be UTF-8; default: :func:`has_byte_values`.
    """
    if bytes_after_key is None:
        bytes_after_key = has_byte_values(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise TableError(f"{path}: file not found") from None
    except OSError as e:
        raise TableError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            text, why = _decode(raw, bytes_after_key)
            if text is None:
                if on_bad_line is None:
                    raise TableError(why, path=path, line=lineno)
                on_bad_line(lineno, why)
                continue
            crlf = text.endswith("\r")
            yield Line(lineno, text.rstrip("\r") if crlf else text, crlf)


# --------------------------------------------------------------------------- typed values
# Each raises ValueError with a message meant for the user (the caller adds file:line).

def parse_segment(value: str) -> tuple[str, float, float]:
    """``rec start end`` -> (rec, start, end); numbers must be plain decimals."""
    fields = FIELD_SEP.split(value.strip(" \t"))
    if len(fields) != 3:
        raise ValueError(f"expected 'recording start end', found {value!r}")
    rec, start, end = fields
    for what, s in (("start", start), ("end", end)):
        if not _NUMBER.fullmatch(s):
            raise ValueError(f"segment {what} time {s!r} is not a number")
    return rec, float(start), float(end)


def segment_problem(start: float, end: float) -> str | None:
    """Why ``start end`` cannot be a segment (end -1 means 'to the end'), or None."""
    if start < 0:
        return f"segment start {start:g} is negative"
    if end != -1 and start >= end:
        return f"segment start {start:g} is not before its end {end:g}"
    return None


def parse_duration(value: str) -> float:
    if not _NUMBER.fullmatch(value):
        raise ValueError(f"duration {value!r} is not a number")
    return float(value)


def parse_count(value: str) -> int:
    if not _COUNT.fullmatch(value):
        raise ValueError(f"frame count {value!r} is not a non-negative integer")
    return int(value)


def parse_list(value: str) -> list[str]:
    return FIELD_SEP.split(value) if value else []


def fmt_float(x: float) -> str:
    """Shortest text that reads back as ``x``; whole numbers without '.0' (Kaldi's -1)."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def _fmt_segment(s: tuple[str, float, float]) -> str:
    return f"{s[0]} {fmt_float(s[1])} {fmt_float(s[2])}"


def _fmt_list(us: list[str]) -> str:
    return " ".join(sorted_ids(us))


# --------------------------------------------------------------------------- the table

UTT, SPK, REC = "utterance", "speaker", "recording"


@dataclass(frozen=True)
class FileKind:
    """One file a data dir may hold.

    ``keyed_by``: what its keys are (utterance; speaker; recording, i.e. wav.scp keys
    when ``segments`` exists).  ``num_fields``: fields per line, key included, where
    fixed (scp values may be pipes with spaces, so theirs is not).  ``parse`` / ``fmt``:
    the value's type on reading and its text on writing.  ``required``: must exist.
    ``stage_output``: written by the feature stage (an utterance it lacks failed).
    ``restricts``: fix_data_dir keeps only utterances this file has (Kaldi's rule for
    the per-utterance files every later stage needs).  ``derived``: rebuilt, never
    filtered (spk2utt from utt2spk).  ``byte_values``: its values (audio paths, commands,
    reasons quoting them) may hold bytes that are not UTF-8 (the module docstring).
    """

    name: str
    attr: str
    keyed_by: str
    num_fields: int | None = None
    parse: Callable[[str], Any] = str
    fmt: Callable[[Any], str] = str
    required: bool = False
    stage_output: bool = False
    restricts: bool = False
    derived: bool = False
    byte_values: bool = False


FILE_KINDS: tuple[FileKind, ...] = (
    # keyed by recording with segments
    FileKind("wav.scp", "wav_scp", UTT, required=True, byte_values=True),
    FileKind("segments", "segments", UTT, 4, parse_segment, _fmt_segment, restricts=True),
    FileKind("utt2spk", "utt2spk", UTT, 2, required=True, restricts=True),
    FileKind("spk2utt", "spk2utt", SPK, None, parse_list, _fmt_list, derived=True),
    FileKind("utt2dur", "utt2dur", UTT, 2, parse_duration, fmt_float, restricts=True),
    FileKind("feats.scp", "feats_scp", UTT, stage_output=True, restricts=True),
    FileKind("vad.scp", "vad_scp", UTT, stage_output=True, restricts=True),
    FileKind("utt2num_frames", "utt2num_frames", UTT, 2, parse_count, str, stage_output=True,
             restricts=True),
    FileKind("failed_utts", "failed_utts", UTT, byte_values=True),
    FileKind("cmvn.scp", "cmvn_scp", SPK),
    FileKind("text", "text", UTT),
    FileKind("spk2gender", "spk2gender", SPK, 2),
    FileKind("spk2age", "spk2age", SPK, 2),
    FileKind("utt2lang", "utt2lang", UTT, 2),
    FileKind("utt2uniq", "utt2uniq", UTT, 2),
    FileKind("utt2aug", "utt2aug", UTT),   # augmented copies: what was done (kind=... seed=...)
    FileKind("reco2dur", "reco2dur", REC, 2, parse_duration, fmt_float),
)
KINDS_BY_NAME = {k.name: k for k in FILE_KINDS}
KNOWN_FILES = tuple(k.name for k in FILE_KINDS)
REQUIRED_FILES = tuple(k.name for k in FILE_KINDS if k.required)
STAGE_FILES = tuple(k.name for k in FILE_KINDS if k.stage_output)
NUM_FIELDS = {k.name: k.num_fields for k in FILE_KINDS if k.num_fields is not None}
# Files whose values may hold any bytes; only their keys must be UTF-8 (the module docstring).
BYTE_VALUE_FILES = frozenset(k.name for k in FILE_KINDS if k.byte_values)


__all__ = ["BYTE_VALUE_FILES", "FIELD_SEP", "FILE_KINDS", "FileKind", "KINDS_BY_NAME",
           "KNOWN_FILES", "Line", "NOT_UTF8", "NUM_FIELDS", "REC", "REQUIRED_FILES", "SPK",
           "STAGE_FILES", "TableError", "UTT", "byte_key", "fmt_float", "has_byte_values",
           "id_problem", "iter_lines", "parse_count", "parse_duration", "parse_list",
           "parse_segment", "segment_problem", "sorted_ids"]
