"""What every stage entry point does the same way: log setup, command echo, error exit.

A user error (bad input, missing file, config mismatch) is printed as one message
naming what is wrong, with exit code 1 and no traceback; anything else is a bug and
keeps its traceback.
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
        log.error("%s", e)
        return 1
    return rc if isinstance(rc, int) else 0
