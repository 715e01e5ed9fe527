"""Small helpers every stage shares: logging with file:line, atomic writes, configs.

They live in one place so that every stage logs the same way, every output file
is written with the same temp-and-rename discipline (a crash or Ctrl-C never
leaves a half-written file under its final name), and every config is checked the
same way, key by key and value by value (``deepspeaker.config_types``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Type, TypeVar

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"
logger = logging.getLogger(__name__)


class DeepSpeakerError(Exception):
    """An error a user can act on; ``bin/_cli.run_main`` prints it as one message, no traceback.

    ``path`` and ``line`` (both optional) name the file, and the line in it, that is at
    fault; ``str()`` then reads ``path:line: message`` (or ``path: message``), the form
    compilers use, so the text is the same in the CLI's message, in a log and in a test.
    Subclasses that compose their own ``file:line`` text (``AudioError``) leave them unset.
    """

    path: str | None = None
    line: int | None = None

    def __init__(self, *args: object, path: str | os.PathLike | None = None,
                 line: int | None = None):
        super().__init__(*args)
        if path is not None:
            self.path = str(path)
        if line is not None:
            self.line = line

    def __str__(self) -> str:
        # Exception's text, not that of a second base such as KeyError (which would quote it).
        text = Exception.__str__(self)
        if self.path is None:
            return text
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {text}"


class ConfigError(DeepSpeakerError):
    """A config file or dict that does not match its schema."""


class SizeMismatchError(DeepSpeakerError, ValueError):
    """Two things a user put together do not fit: a model and its input, an LDA and a PLDA.

    The message names both sizes (and the model file where it is known).  A ValueError
    too, because library callers and tests catch the shape checks as ValueError.
    """


class UnusableDataError(DeepSpeakerError, ValueError):
    """Data a stage cannot learn from as given: too few frames or speakers, NaN, nothing left."""


class _LogFile(logging.FileHandler):
    """A log file that, when the disk says no, says so once on stderr and is dropped.

    logging's own handler prints a traceback for every record it cannot write; on a
    full disk that buries the one message that matters (``cannot write ...``).
    """

    _failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self._failed:
            super().emit(record)

    def flush(self) -> None:
        if not self._failed:
            super().flush()

    def handleError(self, record: logging.LogRecord) -> None:
        e = sys.exc_info()[1]
        if not isinstance(e, OSError):
            super().handleError(record)
            return
        self._failed = True
        sys.stderr.write(f"cannot write {self.baseFilename}: {e.strerror or e}; "
                         f"logging to stderr only\n")
        stream, self.stream = self.stream, None
        with contextlib.suppress(OSError, ValueError):
            stream.close()


def setup_logging(level: int | str = logging.INFO, log_file: str | os.PathLike | None = None) -> None:
    """Log to stderr (and optionally a file) with time and file:line, as Kaldi and icefall do."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(_LogFile(log_file))
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=LOG_DATEFMT,
                        handlers=handlers, force=True)


def tmp_path_for(path: str | os.PathLike) -> Path:
    """A temp name beside ``path`` (same directory, so the rename is atomic).

    The name keeps the suffix of ``path``, so tools that look at extensions still work,
    and contains the pid so that two writers never share a temp file and a rerun can
    tell the temp files of dead writers from those of live ones (:func:`remove_stale_temps`).
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def temp_name(path: str | os.PathLike) -> Path:
    """``.<name>.tmp<pid>`` beside ``path``: the temp name of every atomic writer here.

    One pattern for all (:func:`atomic_write`, ``ArkWriter``, checkpoints), with the
    writer's pid in it, so that :func:`remove_stale_temps` can find what a killed
    process left and know whether that process is still alive.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


class WriteError(DeepSpeakerError):
    """The disk said no: ``cannot write <file>: <the OS reason>`` (no space, read-only, ...).

    ``filename`` is the file (or dir) that could not be written, ``reason`` the OS's
    words ("No space left on device", "Permission denied").
    """

    def __init__(self, filename: str | os.PathLike, reason: str):
        self.filename, self.reason = str(filename), reason
        super().__init__(f"cannot write {filename}: {reason}")

    @classmethod
    def from_os_error(cls, filename: str | os.PathLike, e: OSError) -> WriteError:
        return cls(filename, e.strerror or str(e))


# errno values that only writing gives: their OSError is a WriteError whatever the call.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def _writing_failed(e: OSError, *ours: str | os.PathLike) -> bool:
    """Whether ``e`` came from writing one of ``ours`` (file objects' errors name no file)."""
    return e.errno in WRITE_ERRNOS or e.filename is None or str(e.filename) in map(str, ours)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", fsync: bool = True,
                 **kwargs: Any) -> Iterator[Any]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds.

    The temp file is removed whatever stops the block (an error, Ctrl-C, a full disk);
    a failed write, flush, fsync or rename is a :class:`WriteError` naming ``path`` and
    the OS reason.  Only a kill leaves the temp file: a rerun removes it
    (:func:`remove_stale_temps`).  ``fsync`` (default) makes the bytes durable before
    the rename, so that a power loss never leaves an empty file under the final name.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created with the mode a plain open() gives (0666 less the umask).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    except OSError as e:
        raise WriteError.from_os_error(path, e) from None
    try:
        try:
            with open(fd, mode, **kwargs) as f:
                yield f
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            if not _writing_failed(e, tmp, path):
                raise
            raise WriteError.from_os_error(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def require_writable(*dirs: str | os.PathLike) -> None:
    """Fail now, not after hours of work, when an output dir cannot be written.

    Each dir is created if missing, then a probe file is created and removed in it
    (which catches a read-only file system and missing permissions alike; ``os.access``
    would not see a read-only mount under some file systems), and a file system with no
    free block left is refused too.  A failure is a :class:`WriteError` naming the dir.
    """
    for d in map(Path, dirs):
        probe = d / f".writable.tmp{os.getpid()}"
        try:
            d.mkdir(parents=True, exist_ok=True)
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            os.unlink(probe)
            st = os.statvfs(d)
        except OSError as e:
            raise WriteError.from_os_error(d, e) from None
        if st.f_bavail == 0 and st.f_blocks > 0:
            raise WriteError(d, os.strerror(errno.ENOSPC))


_TEMP_RE = re.compile(r"^\..+\.tmp(\d+)(\.[A-Za-z0-9]+)?$")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True       # someone else's process
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(directory: str | os.PathLike, recursive: bool = False,
                       what: str = "a job killed while writing it") -> list[Path]:
    """Delete the temp files (:func:`temp_name`, :func:`tmp_path_for`) of dead writers.

    A kill (SIGKILL, the OOM killer, a lost node) skips every cleanup and leaves
    ``.<name>.tmp<pid>`` beside the output; a rerun calls this.  Only files whose pid is
    not a live process are removed, so the temp files of a job still running (or of this
    process) are never touched.  Pids are those of this machine: a writer on another host
    of a shared file system is not seen (the stages run their jobs locally).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = directory.rglob(".*.tmp*") if recursive else directory.glob(".*.tmp*")
    removed = []
    for tmp in sorted(found):
        m = _TEMP_RE.match(tmp.name)
        if not m or not tmp.is_file() or pid_alive(int(m.group(1))):
            continue
        logger.warning("removing %s, left by %s (process %s is gone)", tmp, what, m.group(1))
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        removed.append(tmp)
    return removed


T = TypeVar("T")


def dataclass_from_dict(cls: Type[T], values: Mapping[str, Any] | None,
                        where: str | None = None) -> T:
    """Build dataclass ``cls`` from ``values``, checking every key and every value.

    A misspelt option silently falling back to its default is the commonest way an
    experiment ends up not being the one that was meant, so unknown keys are errors,
    at every level; a value is checked against its field's type hint and declared range
    (``deepspeaker.config_types``: the coercions and why).  A ConfigError reads
    ``where: dotted.key: what is wrong``; ``where`` defaults to the file ``values`` was
    read from (:func:`load_yaml`), else ``config``.
    """
    from .config_types import build_config

    if where is None:
        where = getattr(values, "source", None) or "config"
    return build_config(cls, values, where)


class ConfigDict(dict):
    """The mapping :func:`load_yaml` returns: a plain dict that remembers its file.

    ``source`` travels with the values however many hands they pass through, so a stage
    given a dict (``compute_fbank_vad(config=...)``) still names the file in its
    messages.  Copies (``dict(d)``, ``{**d}``) are plain dicts and forget it.
    """

    source: str | None = None


def _yaml():
    import yaml

    # save_yaml(cfg) with a ConfigDict inside writes it as the mapping it is.
    yaml.SafeDumper.add_representer(ConfigDict, yaml.SafeDumper.represent_dict)
    return yaml


def load_yaml(path: str | os.PathLike) -> ConfigDict:
    """Read a YAML mapping (a :class:`ConfigDict` naming ``path``); an empty file is empty."""
    yaml = _yaml()
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:  # a directory, no permission
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    out = ConfigDict(data)
    out.source = str(path)
    return out


def save_yaml(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    yaml = _yaml()
    with atomic_write(path) as f:
        yaml.safe_dump(dict(data), f, sort_keys=False, default_flow_style=False)
