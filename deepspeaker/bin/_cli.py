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


def run_main(work: Callable[[], object], argv=None, log_file=None) -> int:
    setup_logging(log_file=log_file)
    logging.getLogger(__name__).info(
        "%s", " ".join([sys.argv[0].rsplit("/", 1)[-1]] + list(sys.argv[1:] if argv is None else argv)))
    try:
        work()
    except (DeepSpeakerError, FileNotFoundError) as e:
        logging.getLogger(__name__).error("%s", e)
        return 1
    return 0
