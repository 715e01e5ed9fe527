"""Atomic ark/scp writing with kaldiio: readers never see a half-written ark.

Each ark is written under a temp name beside its final name and renamed only when
complete; the scp (whose lines already point at the final name, as absolute paths
like Kaldi's make_*.sh write them) is written atomically after the rename.  A crash
leaves either nothing or a complete, consistent pair.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..utils import WriteError, atomic_write, temp_name


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


def write_ark_scp(ark, scp, arrays: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> None:
    """Write all ``arrays`` (float32 kept as is) to ``ark`` + ``scp`` atomically, keys sorted."""
    items = arrays.items() if isinstance(arrays, Mapping) else arrays
    with ArkWriter(ark, scp) as w:
        for key, value in sorted(items, key=lambda kv: kv[0]):
            w.write(key, np.asarray(value))


def read_vectors(scp: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{key: float64 vector}`` of an i-vector or embedding scp."""
    import kaldiio

    from ..utils import DeepSpeakerError

    scp = Path(scp)
    if not scp.is_file():
        raise DeepSpeakerError(f"{scp} not found: extract vectors for that set first")
    return {k: np.asarray(v, dtype=np.float64).reshape(-1)
            for k, v in kaldiio.load_scp(str(scp)).items()}
