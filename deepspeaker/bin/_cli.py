"""What every stage entry point does the same way: log setup, command echo, error exit.

:func:`run_main` is the one place where what a user caused becomes a message (one
line, no traceback); library code raises, no stage prints its own errors:

* a ``DeepSpeakerError`` (bad input, missing file, config mismatch): its text,
  ``file:line: message`` where the error names its file (``DeepSpeakerError.path``),
  exit code 1;
* an ``OSError`` the machine gave (no space left, read-only dir, permission denied,
  a missing file): ``cannot write <file>: <reason>`` for writing, ``<file>: <reason>``
  otherwise, exit code 1 (:func:`os_error_message`);
* Ctrl-C (SIGINT) or SIGTERM: ``interrupted (SIGINT); ...``, exit code 130 (143 for
  SIGTERM), as a shell reports a process killed by that signal.  SIGTERM is turned into
  the same interrupt (:func:`install_signal_handlers`), so that the ``finally`` blocks
  of the writers run and remove their temp files when ``run_jobs.sh`` or torchrun stop
  a job.

Anything else is a bug and keeps its traceback (a bug report).

Every entry point sets its thread counts here, once (``deepspeaker.threads``): its share
of the cores it may use, not every core of the machine.

The rerun rule every stage applies is ``deepspeaker.marker.Marker``
(``outputs_current`` for derived data, ``model_current`` for trained models).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable

from ..threads import configure_threads
from ..utils import WRITE_ERRNOS, DeepSpeakerError, require_writable, setup_logging

# OSErrors a user's machine or input causes (not a bug of ours): one line, no traceback.
ENVIRONMENT_ERRNOS = WRITE_ERRNOS | {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR,
                                     errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG,
                                     errno.EMFILE, errno.ENFILE, errno.EIO, errno.ELOOP}


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), raised where Python would raise KeyboardInterrupt for SIGINT."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise :class:`Interrupted` (so cleanups run) unless ignored.

    A signal the process was started with ignored (``nohup``, a background job) stays
    ignored; SIGINT keeps Python's own KeyboardInterrupt.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _raise_interrupted)


def os_error_message(e: OSError) -> str | None:
    """One line for an OSError of the user's machine, or None (a bug: keep the traceback).

    Errors only writing gives (no space, read-only file system, quota, file too large)
    read ``cannot write <file>: <reason>``.  A permission error on a file that is
    readable, or does not exist, can only have come from creating or writing it, so it
    reads the same; any other reads ``<file>: <reason>``.
    """
    if e.errno not in ENVIRONMENT_ERRNOS:
        return None
    name = e.filename if e.filename is not None else "a file"
    reason = e.strerror or str(e)
    if e.filename2 is not None:
        name = f"{e.filename} -> {e.filename2}"
    writing = e.errno in WRITE_ERRNOS or (
        e.errno in (errno.EACCES, errno.EPERM) and e.filename is not None
        and (not os.path.lexists(e.filename) or os.access(e.filename, os.R_OK)))
    return f"cannot write {name}: {reason}" if writing else f"{name}: {reason}"


def run_main(work: Callable[[], object], argv=None, log_file=None,
             user_errors: tuple[type[BaseException], ...] = (DeepSpeakerError,),
             echo: bool = True, jobs: int | None = None, outputs: Iterable = ()) -> int:
    """Run ``work``; its int result (if any) is the exit code, a user error exits 1.

    The errors that become messages are listed in the module docstring;
    ``user_errors`` adds exception types whose text is message enough (e.g.
    ValueError for a command that parses numbers).  An interrupt exits 130 (SIGINT)
    or 143 (SIGTERM).  ``outputs``: the dirs the command writes, checked writable
    (``deepspeaker.utils.require_writable``) before ``work`` starts.

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
        install_signal_handlers()
    try:
        require_writable(*outputs)
        rc = work()
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        log.error("interrupted (%s); rerun the same command to continue",
                  signal.Signals(signum).name)
        return 128 + signum
    except BaseException as e:
        msg = user_message(e, user_errors)
        if msg is None:
            raise
        log.error("%s", msg)
        return 1
    return rc if isinstance(rc, int) else 0


def user_message(e: BaseException,
                 user_errors: tuple[type[BaseException], ...] = (DeepSpeakerError,)) -> str | None:
    """The one-line message of an error a user caused, or None for a bug."""
    if isinstance(e, DeepSpeakerError):
        # str() of a DeepSpeakerError is "file:line: message" when it names its file.
        return str(e)
    if isinstance(e, OSError):
        msg = os_error_message(e)
        if msg is not None:
            return msg
    if isinstance(e, user_errors):
        return str(e)
    return None
