"""Versioned ``.npz`` model files shared by every i-vector model (UBM, extractor, LDA, PLDA).

A model file carries its kind, a format version and its metadata as JSON beside the
arrays, and loads with ``allow_pickle=False``: a file of another kind, of a newer
version, not ours at all, or cut short or damaged ("not a readable model file") is
refused with a message naming it, and loading can never run code.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from typing import Any, Mapping

import numpy as np

from ..utils import DeepSpeakerError, atomic_write


class ModelFileError(DeepSpeakerError, ValueError):
    """A model file that is missing, unreadable, of another kind or of an unknown version."""


def save_model_npz(path: str | os.PathLike, kind: str, version: int,
                   arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> None:
    """Write ``arrays`` with their kind, format version and a JSON ``meta`` to ``path``, atomically.

    Strings are stored as numpy unicode scalars, so the file loads with
    ``allow_pickle=False`` (a model file must not be able to run code).
    """
    reserved = {"kind", "format_version", "meta_json"} & set(arrays)
    if reserved:
        raise ValueError(f"array names {sorted(reserved)} are reserved")
    try:
        meta_json = json.dumps(dict(meta or {}), sort_keys=True)
    except TypeError as e:
        raise ValueError(f"{path}: meta must be JSON-serialisable: {e}") from e
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload.update(kind=np.array(kind), format_version=np.array(version, dtype=np.int64),
                   meta_json=np.array(meta_json))
    with atomic_write(path, "wb") as f:
        np.savez(f, **payload)


def load_model_npz(path: str | os.PathLike, kind: str,
                   versions: tuple[int, ...]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_model_npz`; refuse files of another kind or version."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except ValueError as e:
        if "object arrays" in str(e).lower():
            raise ModelFileError(f"{path}: not a deepspeaker model file (it holds object arrays, "
                                 f"which could run code); it will not be loaded") from None
        raise ModelFileError(f"{path}: {_damage(path, e)}") from None
    except (OSError, EOFError, KeyError, TypeError, AttributeError, zipfile.BadZipFile,
            zlib.error, struct.error, UnicodeDecodeError, MemoryError) as e:
        raise ModelFileError(f"{path}: {_damage(path, e)}") from None
    if "kind" not in data or "format_version" not in data:
        raise ModelFileError(f"{path}: not a deepspeaker model file (no kind/format_version); "
                             f"expected a {kind}")
    found = str(data.pop("kind"))
    if found != kind:
        raise ModelFileError(f"{path}: is a {found}, expected a {kind}")
    version = int(data.pop("format_version"))
    if version not in versions:
        raise ModelFileError(f"{path}: {kind} format version {version} is not supported "
                             f"(this code reads {', '.join(map(str, versions))})")
    try:
        meta = json.loads(str(data.pop("meta_json", "{}")))
    except ValueError as e:
        raise ModelFileError(f"{path}: damaged {kind} file: its metadata is not JSON ({e})") from None
    return data, meta


def _damage(path, error: BaseException) -> str:
    """Why numpy could not read ``path``: cut short or damaged, or not an npz at all.

    An npz is a zip archive; a copy or save cut short loses the zip's end first.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        size = os.path.getsize(path)
    except OSError as e:
        return f"cannot read the model file: {e.strerror or e}"
    if head != b"PK\x03\x04":
        return f"not a deepspeaker model file (.npz): not a zip archive ({size} bytes)"
    why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (f"not a readable model file (truncated or damaged: a zip archive of {size} bytes "
            f"that cannot be read: {why})")


def require_arrays(data: Mapping[str, np.ndarray], names: tuple[str, ...], path, kind: str) -> None:
    missing = [n for n in names if n not in data]
    if missing:
        raise ModelFileError(f"{path}: {kind} file lacks array(s) {', '.join(missing)}")
