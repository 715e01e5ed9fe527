"""Kaldi data directories: read, write, validate and fix.

A data dir is a contract between stages (see ``deepspeaker.data``): a handful of
two-column text files keyed by utterance (or recording) id, sorted bytewise, with
one id set.  Three kinds of function live here:

* ``read_kaldi_map`` / ``write_kaldi_map`` and ``DataDir.load`` / ``DataDir.write``:
  strict readers that raise ``DataDirError`` naming ``file:line`` at the first line
  they cannot parse, and writers that sort and write atomically;
* ``validate_data_dir``: a lenient reader that never raises for content problems and
  returns every ``Problem`` it finds, so a user fixes a dir in one pass;
* ``fix_data_dir``: filters a dir to the utterances every file agrees on and writes
  the result to a new dir, as Kaldi's ``utils/fix_data_dir.sh`` does (but never in place).

Lines are split on spaces and tabs only, as Kaldi does; any other whitespace or
control character inside an id is reported by the validator.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..utils import DeepSpeakerError, atomic_write

logger = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"

# Every file a DataDir knows, in the order DataDir.write writes them.
KNOWN_FILES = ("wav.scp", "segments", "utt2spk", "spk2utt", "utt2dur", "feats.scp", "vad.scp",
               "utt2num_frames", "failed_utts")
REQUIRED_FILES = ("wav.scp", "utt2spk")
# Fields per line (key included) where the count is fixed.  The scp files may hold
# Kaldi rxfilenames such as pipes, whose value contains spaces, so they are not fixed.
NUM_FIELDS = {"utt2spk": 2, "segments": 4, "utt2dur": 2, "utt2num_frames": 2}
# Per-utterance files written by the feature stage: an utterance they lack is a
# warning (it failed, see failed_utts), one they name that utt2spk lacks is an error.
STAGE_FILES = ("feats.scp", "vad.scp", "utt2num_frames")

_FIELD_SEP = re.compile(r"[ \t]+")
# Plain decimal numbers only: float() would also take "nan", "inf" and "1_000".
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_COUNT = re.compile(r"\d+")


class DataDirError(DeepSpeakerError):
    """A data dir file that cannot be parsed; the message names ``file:line``."""


def byte_key(s: str) -> bytes:
    """Sort key that orders ids as ``LC_ALL=C sort`` does (by UTF-8 bytes)."""
    return s.encode("utf-8", "surrogateescape")


def sorted_ids(ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=byte_key)


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
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataDirError(f"{name}: file not found") from None
    except OSError as e:
        raise DataDirError(f"{name}: cannot read: {e.strerror}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            line = raw.decode("utf-8", "surrogateescape")
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                report(lineno, None, "line ends with a carriage return (DOS line ending)")
                line = line.rstrip("\r")
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


def write_kaldi_map(path: str | os.PathLike, mapping: Mapping[str, str]) -> None:
    """Write ``key value`` lines sorted bytewise by key, atomically (temp + rename).

    Refuses (DataDirError) keys with whitespace and empty or multi-line values, which
    would not read back as written.
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


# Typed values.  Each raises ValueError with a message meant for the user.

def parse_segment(value: str) -> tuple[str, float, float]:
    """``rec start end`` -> (rec, start, end); numbers must be plain decimals."""
    fields = _FIELD_SEP.split(value.strip(" \t"))
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


def _fmt_float(x: float) -> str:
    """Shortest text that reads back as ``x``; whole numbers without '.0' (Kaldi's -1)."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


# --------------------------------------------------------------------------- DataDir

@dataclass
class DataDir:
    """A Kaldi data dir in memory.  Optional files that do not exist are None."""

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

        def scan(name: str) -> dict[str, _Entry] | None:
            if not (path / name).is_file():
                return None
            return _scan(path / name, num_fields=NUM_FIELDS.get(name), strict=True)

        def typed(name: str, parse):
            entries = scan(name)
            if entries is None:
                return None
            out = {}
            for key, e in entries.items():
                try:
                    out[key] = parse(e.value)
                except ValueError as err:
                    raise DataDirError(str(Problem(str(path / name), e.line, key,
                                                   str(err)))) from None
            return out

        def plain(name: str) -> dict[str, str] | None:
            return typed(name, str)

        utt2spk = plain("utt2spk")
        spk2utt = typed("spk2utt", lambda v: _FIELD_SEP.split(v))
        return cls(path=path, wav_scp=plain("wav.scp"), utt2spk=utt2spk,
                   spk2utt=spk2utt if spk2utt is not None else spk2utt_from_utt2spk(utt2spk),
                   segments=typed("segments", parse_segment),
                   utt2dur=typed("utt2dur", parse_duration),
                   feats_scp=plain("feats.scp"), vad_scp=plain("vad.scp"),
                   utt2num_frames=typed("utt2num_frames", parse_count),
                   failed_utts=plain("failed_utts"))

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
        def text(m, fmt):
            return None if m is None else {k: fmt(v) for k, v in m.items()}

        return {
            "wav.scp": dict(self.wav_scp),
            "segments": text(self.segments,
                              lambda s: f"{s[0]} {_fmt_float(s[1])} {_fmt_float(s[2])}"),
            "utt2spk": dict(self.utt2spk),
            "spk2utt": text(self.spk2utt, lambda us: " ".join(sorted_ids(us))),
            "utt2dur": text(self.utt2dur, _fmt_float),
            "feats.scp": text(self.feats_scp, str),
            "vad.scp": text(self.vad_scp, str),
            "utt2num_frames": text(self.utt2num_frames, str),
            "failed_utts": text(self.failed_utts, str),
        }

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
                with open(self.path / name, "rb") as f:
                    for lineno, raw in enumerate(f, 1):
                        fields = _FIELD_SEP.split(
                            raw.decode("utf-8", "surrogateescape").strip(" \t\r\n"), 1)
                        if fields[0]:
                            lines.setdefault(fields[0], lineno)
            except OSError:
                pass
            self._lines[name] = lines
        return self._lines[name].get(key)


# --------------------------------------------------------------------------- validation

def validate_data_dir(path: str | os.PathLike, *, need: Iterable[str] = ()) -> list[Problem]:
    """Every problem of the data dir ``path``, errors and warnings, in file order.

    Never raises for content problems.  ``need`` names files that must exist besides
    wav.scp and utt2spk (e.g. ``("feats.scp", "vad.scp")`` before training).  A dir
    with no error loads with DataDir.load.
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

    for name in dict.fromkeys([*REQUIRED_FILES, *need]):
        if not (d / name).is_file():
            add(name, None, None, "required file is missing")

    files: dict[str, dict[str, _Entry]] = {}
    for name in KNOWN_FILES:
        if (d / name).is_file():
            try:
                files[name] = _scan(d / name, num_fields=NUM_FIELDS.get(name), strict=False,
                                    problems=problems)
            except DataDirError as e:  # unreadable (permissions...)
                add(name, None, None, str(e).split(": ", 1)[-1])

    utt2spk = files.get("utt2spk")
    if utt2spk is not None:
        _check_utt2spk(d, utt2spk, files.get("spk2utt"), add)
        if not utt2spk:
            add("utt2spk", None, None, "no utterances (file is empty)")
    if "wav.scp" in files and utt2spk is not None:
        _check_audio_sources(files["wav.scp"], files.get("segments"), utt2spk, add)
    if "utt2dur" in files:
        for utt, e in files["utt2dur"].items():
            if not e.ok:
                continue
            try:
                dur = parse_duration(e.value)
            except ValueError as err:
                add("utt2dur", e.line, utt, str(err))
                continue
            if not dur > 0:
                add("utt2dur", e.line, utt, f"duration must be > 0, found {e.value}")
    if "utt2num_frames" in files:
        for utt, e in files["utt2num_frames"].items():
            if e.ok:
                try:
                    parse_count(e.value)
                except ValueError as err:
                    add("utt2num_frames", e.line, utt, str(err))
    if utt2spk is not None:
        failed = files.get("failed_utts", {})
        for name in ("utt2dur", *STAGE_FILES):
            if name in files:
                _check_same_utts(name, files[name], utt2spk, failed, add)
        if "feats.scp" in files:
            for utt, e in failed.items():
                if utt in files["feats.scp"]:
                    add("failed_utts", e.line, utt, "listed as failed but feats.scp has it",
                        WARNING)
    return problems


def _check_utt2spk(d: Path, utt2spk: dict[str, _Entry], spk2utt: dict[str, _Entry] | None,
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


def _check_audio_sources(wav_scp: dict[str, _Entry], segments: dict[str, _Entry] | None,
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


def _check_same_utts(name: str, entries: dict[str, _Entry], utt2spk: dict[str, _Entry],
                     failed: dict[str, _Entry], add) -> None:
    for utt, e in entries.items():
        if utt not in utt2spk:
            add(name, e.line, utt, "not in utt2spk")
    for utt, e in utt2spk.items():
        if utt not in entries:
            why = (f"; failed_utts line {failed[utt].line}: {failed[utt].value}"
                   if utt in failed else "")
            add(name, None, utt, f"missing (utt2spk line {e.line} has it){why}", WARNING)


# --------------------------------------------------------------------------- fixing

def _restrict(data: DataDir, keep: set[str], dst: Path, *, filter_failed: bool) -> DataDir:
    """``data`` with only the utterances ``keep``, as a new DataDir at ``dst`` (not written).

    Every per-utterance map is filtered, recordings no kept segment uses are dropped
    and spk2utt is rebuilt from the filtered utt2spk.
    """
    def only(m):
        return None if m is None else {k: v for k, v in m.items() if k in keep}

    segments = only(data.segments)
    if segments is not None:
        recs = {seg[0] for seg in segments.values()}
        wav_scp = {r: v for r, v in data.wav_scp.items() if r in recs}
    else:
        wav_scp = only(data.wav_scp)
    utt2spk = only(data.utt2spk)
    failed = only(data.failed_utts) if filter_failed else (
        None if data.failed_utts is None else dict(data.failed_utts))
    return DataDir(path=dst, wav_scp=wav_scp, utt2spk=utt2spk,
                   spk2utt=spk2utt_from_utt2spk(utt2spk), segments=segments,
                   utt2dur=only(data.utt2dur), feats_scp=only(data.feats_scp),
                   vad_scp=only(data.vad_scp), utt2num_frames=only(data.utt2num_frames),
                   failed_utts=failed)


def fix_data_dir(src: str | os.PathLike, dst: str | os.PathLike) -> DataDir:
    """Write to ``dst`` the part of ``src`` that every per-utterance file agrees on.

    Keeps the utterances present in utt2spk, wav.scp (or segments, with a valid
    recording and times), feats.scp, vad.scp, utt2num_frames and utt2dur (> 0), for
    those of these files that exist; drops recordings no kept segment uses; rebuilds
    spk2utt from utt2spk; copies failed_utts unchanged (it is the record of what an
    earlier stage dropped).  ``src`` is not modified; ``dst`` must be another dir.
    Logs how many utterances each file made it drop.  Returns the new DataDir.
    """
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise DataDirError(f"{dst}: fix_data_dir writes a new dir; destination must differ "
                           f"from source {src}")
    data = DataDir.load(src)

    # (reason an utterance is dropped, the utterances that pass)
    keeps: list[tuple[str, set[str]]] = [("not in utt2spk", set(data.utt2spk))]
    universe = set(data.utt2spk)
    if data.segments is not None:
        universe |= set(data.segments)
        keeps.append(("not in segments", set(data.segments)))
        keeps.append(("whose segment names a recording not in wav.scp",
                      {u for u, s in data.segments.items() if s[0] in data.wav_scp}))
        keeps.append(("with invalid segment times",
                      {u for u, s in data.segments.items() if not segment_problem(s[1], s[2])}))
    else:
        universe |= set(data.wav_scp)
        keeps.append(("not in wav.scp", set(data.wav_scp)))
    for name, m in (("feats.scp", data.feats_scp), ("vad.scp", data.vad_scp),
                    ("utt2num_frames", data.utt2num_frames), ("utt2dur", data.utt2dur)):
        if m is not None:
            universe |= set(m)
            keeps.append((f"not in {name}", set(m)))
    if data.utt2dur is not None:
        keeps.append(("with utt2dur <= 0", {u for u, x in data.utt2dur.items() if x > 0}))

    keep = set(universe)
    for reason, ok in keeps:
        dropped = universe - ok
        if dropped:
            logger.warning("%s: dropped %d utterance(s) %s (e.g. %s)", src, len(dropped),
                           reason, sorted_ids(dropped)[0])
        keep &= ok
    if not keep:
        raise DataDirError(f"{src}: no utterance is present in every file; nothing to write")

    # failed_utts is copied whole: it is the record of what an earlier stage dropped.
    fixed = _restrict(data, keep, dst, filter_failed=False)
    if len(fixed.wav_scp) < len(data.wav_scp) and data.segments is not None:
        logger.warning("%s: dropped %d recording(s) no kept segment uses", src,
                       len(data.wav_scp) - len(fixed.wav_scp))
    unknown = sorted(p.name for p in src.iterdir()
                     if p.is_file() and p.name not in KNOWN_FILES and not p.name.startswith("."))
    if unknown:
        logger.warning("%s: not copied to %s (fix_data_dir does not know how to filter "
                       "them): %s", src, dst, ", ".join(unknown))
    fixed.write(dst)
    logger.info("%s -> %s: kept %d of %d utterance(s), %d speaker(s)", src, dst, len(keep),
                len(universe), len(fixed.spk2utt))
    return fixed


def subset_speakers(src: str | os.PathLike, dst: str | os.PathLike, fraction: float,
                    seed: int = 0) -> DataDir:
    """Write to ``dst`` the utterances of a seeded ``fraction`` of the speakers of ``src``.

    The speakers are one seeded permutation of the sorted speaker list, cut at
    ``round(fraction * n)`` (at least 1): the subsets for 0.25, 0.5 and 1.0 are nested,
    so a training-size study (paper T7) compares like with like.  Every per-utterance
    file (features included) is filtered, nothing is recomputed; ``src`` is untouched.
    """
    src, dst = Path(src), Path(dst)
    if not 0 < fraction <= 1:
        raise DataDirError(f"speaker fraction must be in (0, 1], got {fraction}")
    if dst.resolve() == src.resolve():
        raise DataDirError(f"{dst}: subset_speakers writes a new dir; it must differ from {src}")
    import numpy as np

    data = DataDir.load(src)
    speakers = data.speakers
    n = max(1, int(round(fraction * len(speakers))))
    order = np.random.default_rng([seed, 7, len(speakers)]).permutation(len(speakers))
    keep_spk = {speakers[i] for i in order[:n]}
    keep = {u for u, s in data.utt2spk.items() if s in keep_spk}

    out = _restrict(data, keep, dst, filter_failed=True)
    out.write(dst)
    logger.info("%s: %d of %d speakers (fraction %g, seed %d), %d of %d utterances", dst, n,
                len(speakers), fraction, seed, len(keep), len(data.utt2spk))
    return out
