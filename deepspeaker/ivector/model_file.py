"""Versioned ``.npz`` model files shared by every i-vector model (UBM, extractor, LDA, PLDA).

A model file carries its kind, a format version and its metadata as JSON beside the
arrays, and loads with ``allow_pickle=False``: a file of another kind, of a newer
version or not ours at all is refused with a message naming it, and loading can
never run code.
"""

from __future__ import annotations

import json
import os
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
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a deepspeaker model file (.npz): {e}") from e
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
    meta = json.loads(str(data.pop("meta_json", "{}")))
    return data, meta


def require_arrays(data: Mapping[str, np.ndarray], names: tuple[str, ...], path, kind: str) -> None:
    missing = [n for n in names if n not in data]
    if missing:
        raise ModelFileError(f"{path}: {kind} file lacks array(s) {', '.join(missing)}")
