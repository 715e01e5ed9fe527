"""Small helpers every stage shares: logging with file:line, atomic writes, configs.

They live in one place so that every stage logs the same way, every output file
is written with the same temp-and-rename discipline (a crash or Ctrl-C never
leaves a half-written file under its final name), and every config rejects
unknown keys the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Type, TypeVar

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"


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


def setup_logging(level: int | str = logging.INFO, log_file: str | os.PathLike | None = None) -> None:
    """Log to stderr (and optionally a file) with time and file:line, as Kaldi and icefall do."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=LOG_DATEFMT,
                        handlers=handlers, force=True)


def tmp_path_for(path: str | os.PathLike) -> Path:
    """A temp name beside ``path`` (same directory, so the rename is atomic).

    The name keeps the suffix of ``path``, so tools that look at extensions still work,
    and contains the pid so that two writers never share a temp file.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


T = TypeVar("T")


def dataclass_from_dict(cls: Type[T], values: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``values``, refusing keys it does not declare.

    A misspelt option silently falling back to its default is the commonest way an
    experiment ends up not being the one that was meant, so unknown keys are errors,
    at every level: a field whose type is itself a dataclass is built the same way
    from its sub-mapping (``where`` then names the path, e.g. ``conf.yaml: backend.plda``).
    """
    import typing

    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                          f"known keys are {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        sub = hints.get(name)
        if dataclasses.is_dataclass(sub) and not isinstance(value, sub):
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{where}: '{name}' must be a mapping, got {value!r}")
            sep = "." if ": " in where else ": "
            values[name] = dataclass_from_dict(sub, value, f"{where}{sep}{name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; an empty file is an empty mapping."""
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def save_yaml(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    import yaml

    with atomic_write(path) as f:
        yaml.safe_dump(dict(data), f, sort_keys=False, default_flow_style=False)
