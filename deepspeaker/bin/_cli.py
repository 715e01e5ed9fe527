"""What every stage entry point does the same way: log setup, command echo, error exit, rerun rule.

A user error (bad input, missing file, config mismatch: a ``DeepSpeakerError``) is
printed by :func:`run_main` as one message, ``file:line: message`` where the error
names its file (see ``DeepSpeakerError.path``), with exit code 1 and no traceback;
anything else is a bug and keeps its traceback.  Library code raises; no stage
prints its own errors.

The rerun rule (``deepspeaker.marker``) as the stages apply it: a stage's marker
holds the signature of what made its outputs.  :func:`outputs_are_current` is the
rule for derived data (features, trial lists, i-vectors): the same signature
skips, another redoes.  :func:`model_is_current` is the rule for trained models
(UBM, T-matrix, LDA/PLDA): another signature refuses, because redoing would destroy
the model, and the message gives the command that forces it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..marker import Marker, StageRefused
from ..utils import DeepSpeakerError, setup_logging

logger = logging.getLogger(__name__)


def run_main(work: Callable[[], object], argv=None, log_file=None,
             user_errors: tuple[type[BaseException], ...] = (DeepSpeakerError, FileNotFoundError),
             echo: bool = True) -> int:
    """Run ``work``; its int result (if any) is the exit code, a user error exits 1."""
    setup_logging(log_file=log_file)
    log = logging.getLogger(__name__)
    if echo:
        log.info("%s", " ".join([sys.argv[0].rsplit("/", 1)[-1]]
                                + list(sys.argv[1:] if argv is None else argv)))
    try:
        rc = work()
    except user_errors as e:
        # str() of a DeepSpeakerError is "file:line: message" when it names its file.
        log.error("%s", e)
        return 1
    return rc if isinstance(rc, int) else 0


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")


def outputs_are_current(marker: Marker, sig: Mapping, outputs: Iterable[str | os.PathLike]) -> bool:
    """True when ``outputs`` exist and ``marker`` holds ``sig``: the stage has nothing to do.

    Otherwise the stage is to redo its outputs: the marker is removed first, so that
    a redo that stops half way is never mistaken for a finished one, and the caller
    writes it again (``marker.write(sig)``) once the outputs are complete.
    """
    if marker.matches(sig) and all(Path(p).exists() for p in outputs):
        return True
    if marker.read() is not None:
        logger.info("%s: the outputs were made from another %s; redoing them", marker.path,
                    _shown(marker.differences(sig)))
    marker.clear()
    return False


def model_is_current(marker: Marker, sig: Mapping, outputs: Iterable[str | os.PathLike],
                     what: str, exp: str | os.PathLike) -> bool:
    """True when trained ``outputs`` exist and were made from ``sig``; False when one is missing.

    A model that exists but was made from another signature (or has no record of
    what made it) is not overwritten: StageRefused names what changed and the
    command that forces the redo, removing the experiment dir ``exp``.
    """
    outputs = [Path(p) for p in outputs]
    if not all(p.exists() for p in outputs):
        marker.clear()
        return False
    if marker.matches(sig):
        return True
    force = f"rm -r {exp} and rerun"
    if marker.read() is None:
        raise StageRefused(f"{what} exists but {marker.path} does not record what made it "
                           f"(an older deepspeaker, or a run stopped between the model and its "
                           f"marker); it is kept. To redo it: {force}")
    raise marker.refuse(sig, what, force)
