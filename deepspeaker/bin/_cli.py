"""What every stage entry point does the same way: log setup, command echo, error exit.

A user error (bad input, missing file, config mismatch: a ``DeepSpeakerError``) is
printed by :func:`run_main` as one message, ``file:line: message`` where the error
names its file (see ``DeepSpeakerError.path``), with exit code 1 and no traceback;
anything else is a bug and keeps its traceback.  Library code raises; no stage
prints its own errors.

Every entry point sets its thread counts here, once (``deepspeaker.threads``): its share
of the cores it may use, not every core of the machine.

The rerun rule every stage applies is ``deepspeaker.marker.Marker``
(``outputs_current`` for derived data, ``model_current`` for trained models).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from ..threads import configure_threads
from ..utils import DeepSpeakerError, setup_logging


def run_main(work: Callable[[], object], argv=None, log_file=None,
             user_errors: tuple[type[BaseException], ...] = (DeepSpeakerError, FileNotFoundError),
             echo: bool = True, jobs: int | None = None) -> int:
    """Run ``work``; its int result (if any) is the exit code, a user error exits 1.

    With ``argv`` None (the command line of the process: ``python -m deepspeaker.bin.X``)
    this is the process's entry point, so it sets the thread counts
    (``deepspeaker.threads.configure_threads``); a caller that passes ``argv`` (a test or
    script calling ``main([...])`` in its own process) keeps the threads it has.
    ``jobs``: how many processes like this one run at once, if the caller knows better
    than the environment (``run_jobs.sh``'s ``DS_NUM_THREADS``, torchrun's
    ``LOCAL_WORLD_SIZE``).  ``echo=False`` (a command whose output is the answer) also
    keeps the thread count out of the log.
    """
    setup_logging(log_file=log_file)
    log = logging.getLogger(__name__)
    if echo:
        log.info("%s", " ".join([sys.argv[0].rsplit("/", 1)[-1]]
                                + list(sys.argv[1:] if argv is None else argv)))
    if argv is None:
        configure_threads(jobs, quiet=not echo)
    try:
        rc = work()
    except user_errors as e:
        # str() of a DeepSpeakerError is "file:line: message" when it names its file.
        log.error("%s", e)
        return 1
    return rc if isinstance(rc, int) else 0
