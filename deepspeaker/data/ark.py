"""Atomic ark/scp writing with kaldiio: readers never see a half-written ark.

Each ark is written under a temp name beside its final name and renamed only when
complete; the scp (whose lines already point at the final name, as absolute paths
like Kaldi's make_*.sh write them) is written atomically after the rename.  A crash
leaves either nothing or a complete, consistent pair.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..utils import DeepSpeakerError, WriteError, atomic_write, temp_name


class ArkWriter:
    """Append matrices/vectors to ``ark``; ``commit`` makes ``ark`` + ``scp`` appear at once.

    The ark is written under ``.<ark name>.tmp<pid>`` (:func:`~deepspeaker.utils.temp_name`).
    A failed write (a full disk, a read-only dir) is a :class:`~deepspeaker.utils.WriteError`
    naming the ark and the OS reason; the temp file is removed then and on any other
    error or interrupt (:meth:`abort`), and only a kill leaves it, for the rerun to remove
    (:func:`~deepspeaker.utils.remove_stale_temps`).
    """

    def __init__(self, ark: str | os.PathLike, scp: str | os.PathLike):
        import kaldiio

        self._kaldiio = kaldiio
        self.ark, self.scp = Path(ark), Path(scp)
        self.tmp = temp_name(self.ark)
        try:
            self.ark.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(self.tmp, "wb")
        except OSError as e:
            raise WriteError.from_os_error(self.ark, e) from None
        self.lines: list[str] = []

    def write(self, key: str, array: np.ndarray) -> None:
        pos = self.f.tell()
        try:
            self._kaldiio.save_ark(self.f, {key: array})
        except OSError as e:
            raise WriteError.from_os_error(self.ark, e) from None
        # The scp offset points just past "key " (Kaldi's convention).
        self.lines.append(f"{key} {self.ark.resolve()}:{pos + len(key.encode()) + 1}\n")

    def commit(self) -> None:
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.ark)
        except OSError as e:
            self.abort()
            raise WriteError.from_os_error(self.ark, e) from None
        with atomic_write(self.scp) as f:
            f.writelines(sorted(self.lines))

    def abort(self) -> None:
        """Close and remove the temp ark; a close that fails again (full disk) is ignored."""
        try:
            self.f.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ArkWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def concat_arks(parts: Iterable[tuple[Path, Path]], ark: str | os.PathLike,
                scp: str | os.PathLike) -> int:
    """Concatenate the ``(ark, scp)`` parts into one ``ark`` + ``scp``; the number of entries.

    Byte for byte what one :class:`ArkWriter` writing the parts' entries in that order
    writes (an ark entry does not depend on where it starts), so the outputs of jobs
    merged here equal those of one process.  Each part's offsets are shifted by the
    bytes before its ark; a part scp line that points anywhere but into its own ark is
    refused.  Atomic as ``ArkWriter``: the temp ark is renamed, then the scp written.
    """
    ark, scp = Path(ark), Path(scp)
    target, tmp, lines = ark.resolve(), temp_name(ark), []
    try:
        with open(tmp, "wb") as out:
            for part_ark, part_scp in parts:
                lines += _shifted_lines(Path(part_scp), Path(part_ark), target, out.tell())
                with open(part_ark, "rb") as f:
                    shutil.copyfileobj(f, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, ark)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError.from_os_error(ark, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with atomic_write(scp) as f:
        f.writelines(sorted(lines))
    return len(lines)


def _shifted_lines(part_scp: Path, part_ark: Path, target: Path, base: int) -> list[str]:
    """The lines of ``part_scp`` pointing into ``target`` at their offset + ``base``."""
    own, out = str(part_ark.resolve()), []
    with open(part_scp, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            key, _, entry = line.rstrip("\n").partition(" ")
            path, _, offset = entry.rpartition(":")
            if path != own or not offset.isdigit():
                raise DeepSpeakerError(f"{part_scp}:{n}: {entry!r} does not point into {own}")
            out.append(f"{key} {target}:{int(offset) + base}\n")
    return out


def write_ark_scp(ark, scp, arrays: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> None:
    """Write all ``arrays`` (float32 kept as is) to ``ark`` + ``scp`` atomically, keys sorted."""
    items = arrays.items() if isinstance(arrays, Mapping) else arrays
    with ArkWriter(ark, scp) as w:
        for key, value in sorted(items, key=lambda kv: kv[0]):
            w.write(key, np.asarray(value))


def read_vectors(scp: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{key: float64 vector}`` of an i-vector or embedding scp."""
    from ..utils import DeepSpeakerError

    scp = Path(scp)
    if not scp.is_file():
        raise DeepSpeakerError(f"{scp} not found: extract vectors for that set first")
    table = load_scp_table(scp)
    return {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in table.items()}


def load_scp_table(scp: str | os.PathLike):
    """kaldiio's lazy table of ``scp``; a line that is not UTF-8 (kaldiio decodes every key
    as UTF-8) is a TableError naming ``scp:line`` and the byte, not a UnicodeDecodeError."""
    import kaldiio

    from ..utils import DeepSpeakerError

    try:
        return kaldiio.load_scp(str(scp))
    except UnicodeDecodeError as e:
        from .table import iter_lines

        for _ in iter_lines(scp):   # a TableError naming scp:line and the byte
            pass
        raise DeepSpeakerError(f"{scp}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


# --------------------------------------------------------------------------- reading features
#
# A feats.scp / vad.scp entry ``path.ark:offset`` points at a binary Kaldi object:
# ``\0B``, a token, then its sizes and values.  kaldiio reads it with bare ``assert``s,
# so an ark cut short (a full disk, a copy stopped half way) or overwritten gives an
# ``AssertionError`` naming nothing.  These helpers check the entry against the file
# first (a header read: cheap enough to do for every utterance before a stage starts)
# and turn whatever the reader raises into a :class:`FeatureFileError` that names the
# utterance, the scp file and line, and the ark.

# token -> (header bytes after "\0B<token> ", bytes of data as a function of rows, cols)
_SIZES = {
    b"FM": (10, lambda r, c: 4 * r * c), b"DM": (10, lambda r, c: 8 * r * c),
    b"FV": (5, lambda r, c: 4 * r), b"DV": (5, lambda r, c: 8 * r),
    # compressed: global header (min, range, rows, cols), per-column headers (CM), values
    b"CM": (16, lambda r, c: 8 * c + r * c), b"CM2": (16, lambda r, c: 2 * r * c),
    b"CM3": (16, lambda r, c: r * c),
}
_HEAD_BYTES = 2 + 4 + 16   # "\0B", the longest token with its space, the largest header


def _object_size(head: bytes) -> int | str:
    """Bytes of the binary Kaldi object starting with ``head`` (after "\0B"), or why not known."""
    if head[:1] == b"\4":   # an int32 vector: \4 size, then \4 value per element
        if len(head) < 5:
            return "ends inside the header"
        return 2 + 5 * (int.from_bytes(head[1:5], "little", signed=True) + 1)
    token, space, _ = head[:4].partition(b" ")
    if not space or token not in _SIZES:
        return f"unknown object type {token[:3]!r}"
    header, nbytes = _SIZES[token]
    body = head[len(token) + 1:]
    if len(body) < header:
        return "ends inside the header"
    if header == 16:
        rows, cols = (int.from_bytes(body[k:k + 4], "little", signed=True) for k in (8, 12))
    elif body[0] == 4 and (header == 5 or body[5] == 4):
        rows = int.from_bytes(body[1:5], "little", signed=True)
        cols = int.from_bytes(body[6:10], "little", signed=True) if header == 10 else 1
    else:
        return "malformed header"
    if rows < 0 or cols < 0:
        return f"negative size {rows} x {cols}"
    return 2 + len(token) + 1 + header + nbytes(rows, cols)


class FeatureFileError(DeepSpeakerError):
    """One utterance whose feats.scp (or vad.scp) entry cannot be read.

    ``str()`` is ``"{scp}:{line}: {utt}: {reason} (ark: {entry})"``; :attr:`listing`
    is the same without the utterance, for a ``failed`` file whose lines start with it.
    Not a ValueError on purpose: code that skips unusable data (no voiced frames) must
    not quietly skip a damaged file too.
    """

    def __init__(self, utt: str, reason: str, *, scp: str, line: int | None,
                 entry: str | None = None):
        self.utt, self.reason, self.scp, self.line_no, self.entry = utt, reason, scp, line, entry
        where = scp if line is None else f"{scp}:{line}"
        ark = "" if entry is None else f" (ark: {entry})"
        self.listing = f"{where}: {reason}{ark}"
        super().__init__(f"{where}: {utt}: {reason}{ark}")


def split_entry(entry: str) -> tuple[str, int] | None:
    """(ark path, byte offset) of an scp value ``path:offset``; None for pipes, slices, files."""
    entry = entry.strip()
    if entry.endswith(("|", "]")):
        return None
    path, sep, offset = entry.rpartition(":")
    return (path, int(offset)) if sep and path and offset.isdigit() else None


def entry_problem(entry: str, arks: dict | None = None) -> str | None:
    """Why the binary object an scp value points at is not all there, or None.

    Checks that the ark exists, that the offset lies inside it, and, for the binary
    matrices and vectors Kaldi writes (float, double, compressed), that the file
    holds every byte the object's header declares.  Entries it cannot size (pipes,
    text arks, slices) give None: the reader decides.  ``arks`` (optional, a dict the
    caller closes with :func:`close_arks`) keeps each ark open across calls.
    """
    where = split_entry(entry)
    if where is None:
        return None
    path, offset = where
    try:
        head, size = _read_head(path, offset, arks)
    except FileNotFoundError:
        return "archive not found"
    except OSError as e:
        return f"cannot read the archive: {e.strerror or e}"
    if offset >= size:
        return f"offset {offset} is past the end of the archive ({size} bytes): truncated?"
    if head[:2] != b"\0B":
        # a text matrix (" [ ..."), or audio kept in an ark: the reader decides
        if head[:1] in (b" ", b"\t", b"\n", b"[") or head[:4] == b"RIFF":
            return None
        return f"no Kaldi object at offset {offset} (archive overwritten or damaged?)"
    need = _object_size(head[2:])
    if isinstance(need, str):
        return f"{need} at offset {offset} (archive truncated or damaged?)"
    if offset + need > size:
        return (f"truncated: the object at offset {offset} needs {need} bytes, the archive "
                f"holds {size - offset} from there")
    return None


def _read_head(path: str, offset: int, arks: dict | None) -> tuple[bytes, int]:
    """The first bytes at ``offset`` of ark ``path`` and the ark's size (kept open in ``arks``)."""
    # unbuffered: one small pread per entry, not a block of every matrix read ahead
    if arks is None:
        with open(path, "rb", buffering=0) as f:
            return os.pread(f.fileno(), _HEAD_BYTES, offset), os.fstat(f.fileno()).st_size
    if path not in arks:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 -- kept open, closed by close_arks
        arks[path] = (f, os.fstat(f.fileno()).st_size)
    f, size = arks[path]
    return os.pread(f.fileno(), _HEAD_BYTES, offset), size


def close_arks(arks: dict) -> None:
    for f, _ in arks.values():
        f.close()
    arks.clear()


def load_entry(entry: str, *, utt: str, scp: str | os.PathLike, line: int | None) -> np.ndarray:
    """The matrix or vector ``entry`` of ``utt`` (line ``line`` of ``scp``); FeatureFileError if damaged."""
    import kaldiio

    why = entry_problem(entry)
    if why is None:
        try:
            return np.asarray(kaldiio.load_mat(entry))
        # Anything kaldiio raises here comes from the bytes it was given (its checks
        # are bare asserts, and garbage can fail in numpy or struct): the file's fault.
        except Exception as e:  # noqa: BLE001
            why = f"cannot read it ({type(e).__name__}{': ' + str(e) if str(e) else ''})"
    raise FeatureFileError(utt, why, scp=str(scp), line=line, entry=entry)


def read_utt_features(data, utt: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(features, VAD or None) of ``utt`` in DataDir ``data``; FeatureFileError naming the entry.

    The VAD is read when the dir has a vad.scp; a missing entry in either file is a
    FeatureFileError too (``reason`` "no entry").
    """
    out = []
    for name, table in (("feats.scp", data.feats_scp), ("vad.scp", data.vad_scp)):
        if table is None and name == "vad.scp":
            out.append(None)
            continue
        scp = str(Path(data.path) / name)
        if table is None or utt not in table:
            raise FeatureFileError(utt, f"no entry in {name}", scp=scp, line=None)
        out.append(load_entry(table[utt], utt=utt, scp=scp, line=data.line_of(name, utt)))
    return out[0], out[1]


def scan_feature_entries(data, utts=None, names=("feats.scp", "vad.scp")) -> dict[str, FeatureFileError]:
    """``{utt: error}`` for the entries of ``names`` whose arks are cut short or damaged.

    A header read per entry (:func:`entry_problem`), no data: cheap enough to run over
    a whole set before a stage starts, so that training stops before any work and
    extraction lists the bad utterances instead of dying on the first.  Entries it
    cannot size are left to the reader.
    """
    bad: dict[str, FeatureFileError] = {}
    arks: dict = {}
    try:
        _scan(data, utts, names, bad, arks)
    finally:
        close_arks(arks)
    return dict(sorted(bad.items()))


def _scan(data, utts, names, bad: dict, arks: dict) -> None:
    for name in names:
        table = getattr(data, name.replace(".", "_"), None)
        if table is None:
            continue
        scp = str(Path(data.path) / name)
        for utt in (table if utts is None else [u for u in utts if u in table]):
            if utt in bad:
                continue
            why = entry_problem(table[utt], arks)
            if why is not None:
                bad[utt] = FeatureFileError(utt, why, scp=scp, line=data.line_of(name, utt),
                                            entry=table[utt])


def require_readable_features(data, utts=None) -> None:
    """Stop (FeatureFileError of the first, with the count) if any feature entry is damaged.

    For training stages: learning from a set with silently missing utterances is worse
    than stopping, and this runs before any work.  ``data``: a DataDir or its path.
    """
    if isinstance(data, (str, os.PathLike)):
        from .kaldi_dir import DataDir

        data = DataDir.load(data)
    bad = scan_feature_entries(data, utts)
    if bad:
        first = next(iter(bad.values()))
        more = f"; {len(bad) - 1} more damaged entries" if len(bad) > 1 else ""
        raise FeatureFileError(first.utt, first.reason + more, scp=first.scp,
                               line=first.line_no, entry=first.entry)
