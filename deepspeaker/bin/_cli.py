"""What every stage entry point does the same way: log setup, command echo, error exit.

A user error (bad input, missing file, config mismatch: a ``DeepSpeakerError``) is
printed by :func:`run_main` as one message, ``file:line: message`` where the error
names its file (see ``DeepSpeakerError.path``), with exit code 1 and no traceback;
anything else is a bug and keeps its traceback.  Library code raises; no stage
prints its own errors.

The rerun rule every stage applies is ``deepspeaker.marker.Marker``
(``outputs_current`` for derived data, ``model_current`` for trained models).
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from ..utils import DeepSpeakerError, setup_logging



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
