"""Training checkpoints: what they hold, how they are written and read, what made them.

A checkpoint (``last.pt``, ``best.pt``) is a dict that ``torch.load(weights_only=True)``
reads, because it holds only tensors, numbers, strings, lists and dicts:

* ``model`` and ``model_config``: the embedding network's weights (float32, default
  layout whatever the run used) and architecture; extraction and ``init`` read only
  these two;
* ``optimizer``, ``rng`` (torch, numpy and Python generators) and ``objective`` (the
  stage's own state: the softmax head and speaker list, the triplet miner's
  generator), so that a resume continues bit for bit;
* the fields of :class:`TrainState` at the top level (epoch, step, best dev EER,
  history, the running :class:`EpochStats`);
* ``train_config`` and ``signature``: the config it ran with and the signature of
  what made the experiment (:func:`experiment_signature`).  A resume with another
  signature is refused (:func:`check_signature`): training again over a trained model
  would destroy it, so the force command is to remove the experiment dir.

Writes are atomic (temp file + rename, :func:`save_checkpoint`); a file that is cut
short or damaged ("not a readable checkpoint"), or holds anything but tensors and
plain values ("not a deepspeaker checkpoint"), is refused with one message naming it
(:func:`load_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import random
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from deepspeaker.marker import Marker, StageRefused, file_digest, signature
from deepspeaker.nnet.config import TrainConfig
from deepspeaker.nnet.models import check_compatible
from deepspeaker.utils import ConfigError, DeepSpeakerError, atomic_write
from deepspeaker.utils import remove_stale_temps as remove_dead_temps

logger = logging.getLogger(__name__)

# 2: named epoch statistics, the objective's state under "objective", the signature.
CHECKPOINT_VERSION = 2
# The files of a data dir that decide what training learns from it.
DATA_FILES = ("feats.scp", "vad.scp", "utt2spk")


@dataclass
class EpochStats:
    """Running sums over the steps of the current epoch (reset at each epoch end).

    Steps pass their statistics as device tensors: the sums are then kept on the device
    (float64, added in step order, so they are the very sums Python floats would give)
    and read back only by :meth:`sync`, which the means, logging and checkpoints call:
    no host-device synchronisation in the steps between.  Plain floats work too.
    """

    loss_sum: float = 0.0
    prob_hard_sum: float = 0.0
    steps: int = 0
    steps_at_margin: int = 0   # triplet steps whose loss per anchor sat at the margin

    def __post_init__(self) -> None:
        self._sums: torch.Tensor | None = None    # loss, prob_hard, steps at margin

    def add(self, stats: Mapping[str, Any], at_margin) -> None:
        self.steps += 1
        values = (stats["loss"], stats.get("prob_hard", 0.0), at_margin)
        if not any(isinstance(v, torch.Tensor) for v in values):
            self.loss_sum += float(values[0])
            self.prob_hard_sum += float(values[1])
            self.steps_at_margin += int(bool(values[2]))
            return
        device = next(v.device for v in values if isinstance(v, torch.Tensor))
        if self._sums is None:
            self._sums = torch.tensor([self.loss_sum, self.prob_hard_sum, self.steps_at_margin],
                                      dtype=torch.float64, device=device)
        self._sums += torch.stack([torch.as_tensor(v, device=device).detach().to(torch.float64)
                                   .reshape(()) for v in values])

    def sync(self) -> EpochStats:
        """Read the device sums into the float fields (a host-device synchronisation)."""
        if self._sums is not None:
            loss, prob_hard, at_margin = self._sums.tolist()
            self.loss_sum, self.prob_hard_sum = loss, prob_hard
            self.steps_at_margin = int(at_margin)
        return self

    def mean_loss(self) -> float:
        return self.sync().loss_sum / max(1, self.steps)

    def mean_prob_hard(self) -> float:
        return self.sync().prob_hard_sum / max(1, self.steps)


@dataclass
class TrainState:
    """Where training is: saved in every checkpoint, restored on resume.

    ``history`` has one row per finished epoch, the columns of ``train_log.tsv``:
    epoch, global step, mean loss, mean prob_hard (None for softmax), dev EER (None
    without a dev set).
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_eer: float = math.inf
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    epoch_stats: EpochStats = field(default_factory=EpochStats)

    def to_dict(self) -> dict:
        self.epoch_stats.sync()
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> "TrainState":
        return cls(epoch=ckpt["epoch"], step_in_epoch=ckpt["step_in_epoch"],
                   global_step=ckpt["global_step"], best_eer=ckpt["best_eer"],
                   bad_epochs=ckpt["bad_epochs"], history=[list(r) for r in ckpt["history"]],
                   epoch_stats=EpochStats(**ckpt["epoch_stats"]))

    def finished(self, config: TrainConfig) -> str | None:
        """"completed", "stopped early" or None (more epochs to train)."""
        if self.epoch >= config.epochs:
            return "completed"
        if config.early_stopping_patience and self.bad_epochs >= config.early_stopping_patience:
            return "stopped early"
        return None


def training_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer,
                        objective_state: Mapping[str, Any], config: TrainConfig,
                        sig: Mapping[str, Any], state: TrainState) -> dict:
    """The checkpoint of a training run at ``state`` (see the module docstring)."""
    return {
        "version": CHECKPOINT_VERSION,
        # contiguous: the default layout, whatever channels_last this run used
        "model": contiguous(model.state_dict()),
        "model_config": model.config(),
        "optimizer": contiguous(optimizer.state_dict()),
        "rng": rng_state(),
        "objective": dict(objective_state),
        "train_config": config.to_dict(),
        "signature": dict(sig),
        **state.to_dict(),
    }


# --------------------------------------------------------------------------- files


def save_checkpoint(path: Path, checkpoint: Mapping[str, Any]) -> None:
    """torch.save to a temp file beside ``path``, then rename (a kill never leaves half a file).

    torch writes through a Python file (:func:`~deepspeaker.utils.atomic_write`), not to a
    file name: given a name, its own writer reports a full disk as ``unexpected pos``;
    through the file, the OS's error reaches us and becomes ``cannot write <path>: No
    space left on device`` (:class:`~deepspeaker.utils.WriteError`), the temp file removed.
    """
    with atomic_write(path, "wb") as f:
        out = _RecordingFile(f)
        try:
            torch.save(dict(checkpoint), out)
        except BaseException as e:
            # torch's writer may wrap what the file raised (a full disk, Ctrl-C) in its own
            # RuntimeError; what the file raised is the error.  Ctrl-C can also land between
            # two writes, outside the file's code: then torch's error has it as its context.
            cause = out.error if out.error is not None else _interrupt_behind(e)
            if cause is not None:
                raise cause from None
            raise


def _interrupt_behind(e: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or SIGTERM's) that ``e`` was raised while handling."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__context__
    return None


class _RecordingFile:
    """A binary file whose ``write`` remembers the exception it raised."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except BaseException as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def remove_stale_temps(paths) -> None:
    """Delete the temp files left beside ``paths`` (``last.pt``, ``best.pt``) by killed runs.

    A kill (SIGKILL, OOM killer, node loss) inside save_checkpoint skips its cleanup
    and leaves ".last.pt.tmp<pid>": a dead process's half-written checkpoint.  Only the
    temp files of processes that are gone (:func:`deepspeaker.utils.remove_stale_temps`).
    """
    for d in sorted({Path(p).parent for p in paths}):
        remove_dead_temps(d, what="a run killed while writing a checkpoint")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The dict saved in ``path``; any file that is not one is a DeepSpeakerError naming it.

    Three kinds of refusal, each one line: a file that is not there; a file torch
    cannot read (cut short, damaged, or never written by torch.save: "not a readable
    checkpoint", with what is wrong with it); a readable file holding anything but
    tensors and plain values ("not a deepspeaker checkpoint ... will not be loaded":
    loading it would mean running code from the file, so torch's advice to do that,
    ``weights_only=False``, is never passed on).
    """
    broken = _failed_record(path)
    if broken is not None:
        raise DeepSpeakerError(f"{path}: not a readable checkpoint (truncated or damaged: "
                               f"record {broken} of the archive fails its CRC check)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DeepSpeakerError(f"{path}: checkpoint not found") from None
    except IsADirectoryError:
        raise DeepSpeakerError(f"{path}: is a directory, not a checkpoint") from None
    except pickle.UnpicklingError as e:
        if _holds_objects(e):
            raise DeepSpeakerError(
                f"{path}: not a deepspeaker checkpoint (it holds objects other than tensors, "
                f"numbers, strings, lists and dicts); it will not be loaded") from None
        raise DeepSpeakerError(f"{path}: not a readable checkpoint ({_damage(path)})") from None
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError, OSError,
            AttributeError, ImportError, UnicodeDecodeError, MemoryError):
        # every way torch's zip and pickle readers fail on bytes that are not a whole
        # checkpoint; what they say (PytorchStreamReader ...) names neither file nor cause
        raise DeepSpeakerError(f"{path}: not a readable checkpoint ({_damage(path)})") from None
    if not isinstance(ckpt, dict):
        raise DeepSpeakerError(f"{path}: not a deepspeaker checkpoint (it holds a "
                               f"{type(ckpt).__name__}, not a dict); it will not be loaded")
    return ckpt


def _holds_objects(e: pickle.UnpicklingError) -> bool:
    """Whether torch's weights-only unpickler refused a global (an object, code): not damage."""
    return "unsupported global" in str(e).lower()


def _failed_record(path: str | os.PathLike) -> str | None:
    """The first record of checkpoint ``path`` whose bytes do not match their CRC-32, or None.

    torch.load does not check the CRCs torch.save writes, so damage inside a tensor
    (a bad sector, a botched copy) would load quietly as wrong weights.  Reading the
    file once more costs about a second per GB; a record stored without a CRC (0: an
    empty one, or a writer that turned CRCs off) is not checked.  Anything that is not
    a readable zip is left to torch.load and :func:`_damage`.
    """
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.CRC == 0:
                    continue
                try:
                    with z.open(info) as f:
                        while f.read(1 << 24):
                            pass
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
                    return info.filename
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None
    return None


def _damage(path: str | os.PathLike) -> str:
    """What is wrong with a checkpoint file torch could not read, in the file's own terms.

    torch.save writes a zip archive; the tail of a zip (its central directory) is what
    a cut-short copy loses first, so "truncated" is told from "not torch.save's format"
    by the zip signatures at the start and the end of the file.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    if size == 0:
        return "truncated or damaged: the file is empty"
    if head != b"PK\x03\x04":
        return (f"truncated or damaged: {size} bytes that do not start like the zip archive "
                f"torch.save writes")
    try:
        with zipfile.ZipFile(path) as z:
            broken = z.testzip()
    except zipfile.BadZipFile:
        return (f"truncated or damaged: a zip archive of {size} bytes without its end "
                f"(central directory); a copy or save cut short?")
    except (OSError, EOFError, ValueError, RuntimeError, zlib.error) as e:
        return f"truncated or damaged: the zip archive cannot be read ({e})"
    if broken is not None:
        return f"truncated or damaged: record {broken} of the archive fails its CRC check"
    return "truncated or damaged: torch cannot read its records"


def load_weights(model: nn.Module, ckpt: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Load ``ckpt["model"]`` into ``model``, refusing a checkpoint of another network.

    The recorded architecture must match (:func:`check_compatible`, naming both); a
    state dict that still does not fit (a damaged or hand-edited file) is one message
    naming the file, not torch's list of missing keys in a traceback.
    """
    if "model" not in ckpt or "model_config" not in ckpt:
        raise ConfigError(f"{path}: not a training checkpoint (no 'model' / 'model_config')")
    check_compatible(ckpt["model_config"], model.config(), path)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        name = dict(ckpt["model_config"]).get("name", "?")
        raise DeepSpeakerError(f"{path}: the weights do not fit the {name} network the "
                               f"checkpoint records ({first})") from None


def load_init(path: str | os.PathLike, model: nn.Module) -> None:
    """Start ``model`` from the embedding weights of another experiment's checkpoint."""
    ckpt = load_checkpoint(path)
    load_weights(model, ckpt, path)
    logger.info("initialised the embedding network from %s (stage %s, epoch %s)", path,
                ckpt.get("train_config", {}).get("stage", "?"), ckpt.get("epoch", "?"))


# --------------------------------------------------------------------------- what made it


def experiment_signature(config: TrainConfig, train_dir, dev_dir) -> dict:
    """The signature (:mod:`deepspeaker.marker`) of what an experiment learns from.

    The config without its run settings, the :data:`DATA_FILES` of the training and
    (when used) the dev data, and the ``init`` checkpoint.  Inputs are keyed by role,
    not path, so the same data named by another path is the same experiment.
    """
    sig = signature(config=config.without_run_settings())
    dirs = {"train": train_dir}
    if config.dev.enabled and dev_dir is not None:
        dirs["dev"] = dev_dir
    sig["inputs"] = {f"{role}/{name}": file_digest(Path(d) / name)
                     for role, d in dirs.items() for name in DATA_FILES}
    if config.init:
        sig["inputs"]["init"] = file_digest(config.init)
    return sig


class _Recorded(Marker):
    """The signature a checkpoint records, read through :class:`Marker`'s comparisons."""

    def __init__(self, path: Path, recorded: Mapping[str, Any]):
        super().__init__(path)
        self._recorded = dict(recorded)

    def read(self) -> dict:
        return self._recorded


def check_signature(ckpt: Mapping[str, Any], sig: Mapping[str, Any], path: Path,
                    exp_dir: Path) -> None:
    """Refuse to continue checkpoint ``path`` of ``exp_dir`` unless it was made from ``sig``."""
    force = f"rm -r {exp_dir} and rerun"
    if "signature" not in ckpt:
        raise StageRefused(f"{exp_dir} was trained by an older deepspeaker (checkpoint version "
                           f"{ckpt.get('version', '?')} in {path} records no signature); it is "
                           f"kept. To redo it: {force}")
    recorded = _Recorded(path, ckpt["signature"])
    if not recorded.matches(sig):
        raise recorded.refuse(sig, str(exp_dir), force)


# --------------------------------------------------------------------------- helpers


def rng_state() -> dict:
    """The torch, numpy and Python global generators, as tensors and plain values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def contiguous(tree):
    """``tree`` (dicts / lists of tensors and plain values) with every tensor in the default layout."""
    if isinstance(tree, torch.Tensor):
        return tree.contiguous()
    if isinstance(tree, dict):
        return {k: contiguous(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(contiguous(v) for v in tree)
    return tree


__all__ = ["CHECKPOINT_VERSION", "DATA_FILES", "EpochStats", "TrainState", "check_signature",
           "contiguous", "experiment_signature", "load_checkpoint", "load_init", "load_weights",
           "remove_stale_temps", "rng_state", "save_checkpoint", "set_rng_state",
           "training_checkpoint"]
