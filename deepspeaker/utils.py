"""Small helpers every stage shares: logging with file:line, atomic writes, configs.

They live in one place so that every stage logs the same way, every output file
is written with the same temp-and-rename discipline (a crash or Ctrl-C never
leaves a half-written file under its final name), and every config is checked the
same way, key by key and value by value (``deepspeaker.config_types``).
"""

from __future__ import annotations

import contextlib
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
