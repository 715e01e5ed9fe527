"""The one rerun rule of every stage: a marker holds the signature of what made an output.

A stage that finishes writes a marker file (``.<name>.done``) holding the *signature*
of its work: the config it ran with, the inputs it read and the options that change
what it computes.  On the next run the stage computes the signature again:

* the same signature: the output is up to date and the stage does nothing;
* another signature: the stage redoes its work, or, where redoing would destroy a
  trained model, refuses with a message that names what changed and the command
  that forces it (:meth:`Marker.refuse`).

Options that change only *how* a stage computes (``--nj``, threads, the device)
belong in no signature, so changing them never redoes anything.

A signature is a JSON object (sorted keys, one line): ``config`` (the parsed config,
so comments and key order do not count), ``inputs`` (per input file the SHA-1 of its
bytes and, for an ``.scp``, the size and mtime of each archive it points into, so
recomputed features with unchanged offsets still count as new) and ``options``.
:meth:`Marker.outputs_current` and :meth:`Marker.model_current` are the two halves
of the rule as the stages apply it.  The shell stages use the same marker through
``python -m deepspeaker.bin.stage_marker``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from .utils import DeepSpeakerError, atomic_write

MISSING = "missing"
logger = logging.getLogger(__name__)


class StageRefused(DeepSpeakerError):
    """A stage would overwrite a trained model made from another signature."""


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _archives(scp: Path) -> dict[str, list[int]]:
    """``path -> [size, mtime_ns]`` of every archive an scp points into (``path:offset``)."""
    out: dict[str, list[int]] = {}
    with open(scp, "rb") as f:
        for line in f:
            parts = line.split(maxsplit=1)
            if len(parts) < 2:
                continue
            ark = parts[1].strip().rsplit(b":", 1)[0].decode("utf-8", "surrogateescape")
            if ark in out:
                continue
            p = Path(ark) if os.path.isabs(ark) else scp.parent / ark
            try:
                st = p.stat()
                out[ark] = [st.st_size, st.st_mtime_ns]
            except OSError:
                out[ark] = [-1, -1]
    return out


def file_digest(path: str | os.PathLike) -> Any:
    """What a signature records of one input file (``"missing"`` when it does not exist)."""
    p = Path(path)
    if not p.is_file():
        return MISSING
    if p.suffix == ".scp":
        return {"sha1": _sha1(p), "archives": _archives(p)}
    return _sha1(p)


def signature(config: Mapping[str, Any] | None = None,
              inputs: Iterable[str | os.PathLike] = (),
              options: Mapping[str, Any] | None = None) -> dict:
    """The signature of a stage's work (see the module docstring)."""
    return {"config": dict(config or {}),
            "inputs": {str(p): file_digest(p) for p in inputs},
            "options": dict(options or {})}


def _canonical(sig: Mapping[str, Any]) -> str:
    return json.dumps(sig, sort_keys=True, default=str)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


class Marker:
    """The ``.done`` file of one stage output."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> dict | None:
        """The recorded signature; None when there is none (or an old, empty marker)."""
        try:
            text = self.path.read_text()
            value = json.loads(text)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def matches(self, sig: Mapping[str, Any]) -> bool:
        have = self.read()
        return have is not None and _canonical(have) == _canonical(json.loads(_canonical(sig)))

    def differences(self, sig: Mapping[str, Any]) -> list[str]:
        """Dotted keys whose values differ between the recorded signature and ``sig``."""
        have = _flatten(self.read() or {})
        want = _flatten(json.loads(_canonical(sig)))
        return sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))

    def write(self, sig: Mapping[str, Any]) -> None:
        with atomic_write(self.path) as f:
            f.write(_canonical(sig) + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def refuse(self, sig: Mapping[str, Any], what: str, force: str) -> StageRefused:
        """The error to raise when ``what`` exists but was made from another signature."""
        shown = _shown(self.differences(sig)) or "signature"
        return StageRefused(f"{what} was made from another {shown} (recorded in {self.path}); "
                            f"it is kept. To redo it: {force}")

    def outputs_current(self, sig: Mapping[str, Any], outputs: Iterable[str | os.PathLike]) -> bool:
        """The rule for derived data: True when ``outputs`` exist and this marker holds ``sig``.

        Otherwise the stage is to redo its outputs: the marker is removed first, so that
        a redo that stops half way is never mistaken for a finished one, and the caller
        writes it again (:meth:`write`) once the outputs are complete.
        """
        if self.matches(sig) and all(Path(p).exists() for p in outputs):
            return True
        if self.read() is not None:
            logger.info("%s: the outputs were made from another %s; redoing them", self.path,
                        _shown(self.differences(sig)))
        self.clear()
        return False

    def model_current(self, sig: Mapping[str, Any], outputs: Iterable[str | os.PathLike],
                      what: str, exp: str | os.PathLike) -> bool:
        """The rule for trained models: True when ``outputs`` exist and were made from ``sig``.

        False when one is missing (train it).  A model that exists but was made from
        another signature (or has no record of what made it) is not overwritten:
        StageRefused names what changed and the force command, removing ``exp``.
        """
        outputs = [Path(p) for p in outputs]
        if not all(p.exists() for p in outputs):
            self.clear()
            return False
        if self.matches(sig):
            return True
        force = f"rm -r {exp} and rerun"
        if self.read() is None:
            raise StageRefused(f"{what} exists but {self.path} does not record what made it "
                               f"(an older deepspeaker, or a run stopped between the model and "
                               f"its marker); it is kept. To redo it: {force}")
        raise self.refuse(sig, what, force)


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")


__all__ = ["MISSING", "Marker", "StageRefused", "file_digest", "signature"]
