"""What an experiment is, written beside it, and which trial lists an eval set has.

Every experiment dir ``exp/<tag>/`` that produces scores describes itself in
``exp/<tag>/system.yaml`` (written by the stage that makes it, through
``python -m deepspeaker.bin.describe_system``):

=============  ==============================================================
``kind``       ``reference`` (no training), ``ivector``, ``deepspeaker``, ``fusion``
``model``      Deep Speaker's frame-level network (``rescnn``, ``gru``)
``strategy``   ``softmax``, ``triplet``, ``softmax_triplet`` (paper T5), or
               ``source_only`` / ``transfer`` (a model of another corpus, T9/T10)
``train_set``  the data dir it was trained on
``fraction``   the share of ``train_set``'s speakers it saw (< 1: the size study, T7)
``source``     the experiment of another recipe it comes from (transfer)
``init``       the checkpoint it started from
``members``    the experiments a fusion combines
``augmented``  ``false``: trained without data augmentation, the ablation twin
               of the system that was (absent: as the recipe trains them all)
=============  ==============================================================

so that the report reads what each experiment is instead of parsing its tag.  The
trial lists of an eval dir are found by :func:`trial_lists`, the one answer for the
shell stages (``python -m deepspeaker.bin.trial_lists``), the summaries and the report.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..utils import ConfigError, dataclass_from_dict, load_yaml, save_yaml

SYSTEM_FILE = "system.yaml"
KINDS = ("reference", "ivector", "deepspeaker", "fusion")
STRATEGIES = ("softmax", "triplet", "softmax_triplet", "source_only", "transfer")
MAIN_TRIALS = "trials"
_ENROLL = re.compile(r"trials_enroll(\d+)")


@dataclass
class SystemInfo:
    kind: str
    model: str | None = None
    strategy: str | None = None
    train_set: str | None = None
    fraction: float = 1.0
    source: str | None = None
    init: str | None = None
    members: list = field(default_factory=list)
    augmented: bool | None = None

    def __post_init__(self) -> None:
        if self.augmented not in (None, True, False):
            raise ValueError(f"augmented={self.augmented!r}: expected true or false")
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.kind == "deepspeaker":
            if not self.model:
                raise ValueError("a deepspeaker system needs its model")
            if self.strategy not in STRATEGIES:
                raise ValueError(f"strategy={self.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) \
                or not 0 < self.fraction <= 1:
            raise ValueError(f"fraction={self.fraction!r}: expected a number in (0, 1]")
        if self.kind == "fusion" and len(self.members) < 2:
            raise ValueError(f"a fusion needs >= 2 members, got {self.members!r}")

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, [])}


def write_system_info(exp_dir: str | os.PathLike, info: SystemInfo) -> Path:
    path = Path(exp_dir) / SYSTEM_FILE
    save_yaml(path, info.to_dict())
    return path


def read_system_info(exp_dir: str | os.PathLike) -> SystemInfo | None:
    """The experiment's description; None when it has none (not a scored experiment)."""
    path = Path(exp_dir) / SYSTEM_FILE
    if not path.is_file():
        return None
    values = load_yaml(path)
    if "kind" not in values:
        raise ConfigError(f"{path}: no 'kind'")
    return dataclass_from_dict(SystemInfo, values, where=str(path))


FEATURE_FILE = "feature.yaml"  # stage 1's config, copied beside a trained model
_NOT_FEATURE_KEYS = ("nj",)  # saved beside the config by stage 1, not part of it


def locate_feature_config(exp_dir: str | os.PathLike,
                          train_set: str | None) -> tuple[Path | None, list[Path]]:
    """(the stage-1 config a system in ``exp_dir`` was trained on, or None; where it looked).

    In this order: ``exp_dir/feature.yaml``; the config stage 1 saved for the training
    set, ``<recipe>/<train_set>/data/conf_<set>.yaml`` (the recipe is ``exp_dir/../..``);
    for a set combined from others (no stage 1 of its own), the saved configs of the
    recipe's sets, ``<recipe>/data/*/data/conf_*.yaml``, if they all agree (one recipe,
    one front end).  Light (no torch): ``describe_system`` copies what it finds to
    ``exp_dir/feature.yaml``, so a moved experiment carries its front end with it.
    """
    exp_dir = Path(exp_dir)
    looked = [exp_dir / FEATURE_FILE]
    if looked[0].is_file():
        return looked[0], looked
    recipe = exp_dir.resolve().parent.parent
    if train_set:
        saved = recipe / train_set / "data" / f"conf_{Path(train_set).name}.yaml"
        looked.append(saved)
        if saved.is_file():
            return saved, looked
    found = sorted(recipe.glob("data/*/data/conf_*.yaml"))
    looked.append(recipe / "data/*/data/conf_*.yaml")
    configs = [{k: v for k, v in (load_yaml(f) or {}).items() if k not in _NOT_FEATURE_KEYS}
               for f in found]
    if configs and all(c == configs[0] for c in configs):
        return found[0], looked
    return None, looked


def _trial_order(name: str) -> tuple:
    if name == MAIN_TRIALS:
        return (0, 0, b"")
    m = _ENROLL.fullmatch(name)
    if m:
        return (1, int(m.group(1)), b"")
    return (2, 0, name.encode("utf-8", "surrogateescape"))


def trial_lists(eval_dir: str | os.PathLike) -> list[str]:
    """The trial lists of an eval dir, in report order.

    ``trials`` (the paper's 1 + 99 list), then ``trials_enroll<k>`` by k (T8), then any
    other ``trials_<name>`` a data prep wrote (e.g. VoxCeleb1-O as ``trials_vox1_o``),
    bytewise.  Hidden files, temp files and ``*.skipped`` are not lists.
    """
    d = Path(eval_dir)
    if not d.is_dir():
        return []
    names = [p.name for p in d.iterdir() if p.is_file() and
             (p.name == MAIN_TRIALS or p.name.startswith("trials_")) and
             not p.name.endswith((".skipped", ".tmp"))]
    return sorted(names, key=_trial_order)


def enroll_count(name: str) -> int | None:
    """k of a ``trials_enroll<k>`` list (those need the eval dir's ``enroll2utt``), else None."""
    m = _ENROLL.fullmatch(name)
    return int(m.group(1)) if m else None


def score_dir_name(eval_set: str, main_eval_set: str) -> str:
    """The subdir of ``exp/<tag>/`` with a system's scores on ``eval_set``.

    ``scores`` for the recipe's main eval set, as always, so that one-eval-set recipes,
    the operating points and the Python API are unchanged; ``scores_<set>`` for each
    other eval set of a recipe that has several (``eval_sets`` in utils/stages.sh, which
    applies the same rule).
    """
    return "scores" if eval_set == main_eval_set else f"scores_{eval_set}"


__all__ = ["FEATURE_FILE", "KINDS", "MAIN_TRIALS", "STRATEGIES", "SYSTEM_FILE", "SystemInfo",
           "enroll_count", "locate_feature_config", "read_system_info", "score_dir_name",
           "trial_lists", "write_system_info"]
