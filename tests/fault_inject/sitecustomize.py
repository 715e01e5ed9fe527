"""Test only: a full disk under one directory, for tests that cannot mount a tiny tmpfs.

A test that puts this directory first on ``PYTHONPATH`` and sets
``DS_TEST_FULL_DISK=<dir>`` in the environment of the command it runs makes Python
import this file at startup (``site`` imports ``sitecustomize``), and every file opened
for writing under ``<dir>`` then behaves as on a disk with
``DS_TEST_FULL_DISK_AFTER`` bytes (default 0) left for this process: the file is
created, writes succeed up to that budget (a partial write, as the OS does it) and then
fail with ``OSError(ENOSPC)``, exactly what the library sees from a real full disk.
Log files (``*.log``) are exempt, so the test can read what the command said.

Nothing in the library knows about this; without the variable this file does nothing.
"""

from __future__ import annotations

import builtins
import errno
import io
import os

_DIR = os.environ.get("DS_TEST_FULL_DISK")
_budget = [int(os.environ.get("DS_TEST_FULL_DISK_AFTER", "0"))]


class _FullDiskFileIO(io.FileIO):
    def write(self, b):
        n = len(memoryview(b).cast("B"))
        if n and _budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        k = min(n, _budget[0])
        written = super().write(memoryview(b).cast("B")[:k])
        _budget[0] -= written
        return written


def _path_of(file) -> str | None:
    if isinstance(file, int):
        try:
            return os.readlink(f"/proc/self/fd/{file}")
        except OSError:
            return None
    try:
        return os.path.abspath(os.fsdecode(file))
    except TypeError:
        return None


def _on_full_disk(file, mode: str) -> bool:
    if not any(c in mode for c in "wax+"):
        return False
    path = _path_of(file)
    if path is None or path.endswith(".log"):
        return False
    root = os.path.abspath(_DIR)
    return path == root or path.startswith(root + os.sep)


_real_open = builtins.open


def _open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
          closefd=True, opener=None):
    if not _on_full_disk(file, mode):
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    raw_mode = "".join(c for c in mode if c not in "bt")
    raw = _FullDiskFileIO(file, raw_mode, closefd=closefd, opener=opener)
    buffered = (io.BufferedRandom if "+" in mode else io.BufferedWriter)(raw)
    if "b" in mode:
        return buffered
    return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline=newline)


if _DIR:
    builtins.open = _open
    io.open = _open
