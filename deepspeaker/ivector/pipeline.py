"""The i-vector system as stages: config, experiment dir, and the per-set plumbing.

One experiment dir ``exp/<tag>/`` holds everything (paper §4.2; SPEC B1-B3):

* ``config.yaml``: the merged config, written by the first stage (train_ubm) and
  read by every later stage, so there is never a second copy of the numbers;
* ``models/ubm.npz``, ``models/extractor.npz``, ``models/lda.npz``, ``models/plda.npz``;
* ``<set>/ivector.scp`` + ark, ``<set>/failed_utts`` (no voiced frames);
* while stage 4 runs, its ``--nj`` jobs' files: ``stats/<set>/`` (the training
  statistics) and ``<set>/jobs/``, removed once the stage's output is written;
* ``scores/``, ``log/`` and ``RESULTS.md``.

Each model file records the dimensions it was made for; a stage that finds a
model of another dimension (a UBM for 40-d features given 60-d ones, a PLDA trained
after another LDA size) stops with a message naming the file and both dimensions.

Rerunning (the rule of ``deepspeaker.marker``): every output has a marker beside it
(``models/.ubm.done``, ``models/.extractor.done``, ``models/.plda.done``,
``<set>/.ivector.done``) holding :func:`stage_signature`: the config sections the
output depends on, the data files it was computed from and the experiment's model
files it was built from.  The models are trained: a rerun with another signature
refuses (``rm -r`` the experiment to redo it).  I-vectors are derived data: another
signature extracts them again.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Container, Iterator

import numpy as np

from ..config_types import Seed
from ..data import DataDir
from ..data.ark import read_utt_features
from ..marker import file_digest, signature
from ..utils import (DeepSpeakerError, SizeMismatchError, dataclass_from_dict, load_yaml,
                     save_yaml)
from .frontend import FrontendOptions, compute_frontend
from .plda import PldaConfig

logger = logging.getLogger(__name__)


def _at_least(owner: object, minimum: int, *names: str) -> None:
    """ValueError for a count below ``minimum`` (dataclass_from_dict makes it a ConfigError).

    The types of every field are checked when the config is read
    (``deepspeaker.config_types``); this is the range, for a config built in code too.
    """
    for name in names:
        value = getattr(owner, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < minimum):
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class UbmOptions:
    num_components: int = 1024      # paper §4.2 scale; the mini recipe uses fewer
    max_frames: int = 500_000       # seeded random subset of voiced frames, as Kaldi does
    max_iter: int = 20
    seed: Seed = 0

    def __post_init__(self) -> None:
        _at_least(self, 1, "num_components", "max_frames", "max_iter")


@dataclass
class StatsOptions:
    top_k: int | None = 20          # Kaldi's gselect: posteriors over the 20 best components
    batch_utts: int = 64

    def __post_init__(self) -> None:
        _at_least(self, 1, "top_k", "batch_utts")


@dataclass
class ExtractorOptions:
    rank: int = 400                 # paper §4.2: 400-d i-vectors
    num_iters: int = 10
    min_divergence: bool = True
    update_sigma: bool = False
    seed: Seed = 0

    def __post_init__(self) -> None:
        _at_least(self, 1, "rank")
        _at_least(self, 0, "num_iters")


@dataclass
class BackendOptions:
    lda_dim: int = 200              # paper §4.2 scale
    plda: PldaConfig = field(default_factory=PldaConfig)

    def __post_init__(self) -> None:
        _at_least(self, 1, "lda_dim")


@dataclass
class IvectorConfig:
    frontend: FrontendOptions = field(default_factory=FrontendOptions)
    ubm: UbmOptions = field(default_factory=UbmOptions)
    stats: StatsOptions = field(default_factory=StatsOptions)
    extractor: ExtractorOptions = field(default_factory=ExtractorOptions)
    backend: BackendOptions = field(default_factory=BackendOptions)

    @classmethod
    def from_dict(cls, d: dict | None, where: str | None = None) -> "IvectorConfig":
        """The checked config; a ConfigError names ``where`` (default: the file) and the key."""
        return dataclass_from_dict(cls, d, where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_config(config_path: Path | None) -> IvectorConfig:
    """The config the first stage (train_ubm) is given: ``config_path``, or the defaults."""
    return IvectorConfig.from_dict(load_yaml(config_path) if config_path else {},
                                   str(config_path or "defaults"))


def save_exp_config(exp: Path, cfg: IvectorConfig) -> None:
    """Write ``exp/config.yaml``, the one copy of the numbers every later stage reads.

    Left untouched when it already holds ``cfg``, so an up-to-date rerun changes no file.
    """
    saved = exp / "config.yaml"
    if saved.exists() and load_yaml(saved) == cfg.to_dict():
        return
    save_yaml(saved, cfg.to_dict())


def feature_files(data_dir: Path) -> list[Path]:
    """The files of a data dir that the i-vector front end reads."""
    return [data_dir / "feats.scp", data_dir / "vad.scp"]


def stage_signature(cfg: IvectorConfig, sections: tuple[str, ...], exp: Path,
                    data_files: list[Path] = (), exp_files: list[Path] = ()) -> dict:
    """The signature an i-vector stage records beside its output.

    ``sections`` of the config; ``data_files`` by their resolved path (``data/train``
    and ``./data/train`` are one input); ``exp_files``, the experiment's own models and
    i-vectors, by their path inside ``exp``, so a copied or moved experiment stays current.
    """
    full = cfg.to_dict()
    return signature(config={name: full[name] for name in sections},
                     inputs=[Path(p).resolve() for p in data_files],
                     options={"exp_files": {str(Path(p).relative_to(exp)): file_digest(p)
                                            for p in exp_files}})


def load_exp_config(exp: Path) -> IvectorConfig:
    saved = exp / "config.yaml"
    if not saved.exists():
        raise DeepSpeakerError(f"{saved} not found: run the UBM stage (train_ubm) first")
    return IvectorConfig.from_dict(load_yaml(saved), str(saved))


def iter_frontend(data_dir: Path, opts: FrontendOptions, utts: list[str] | None = None,
                  failed: dict[str, str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(utt, voiced 60-d frames) for every utterance with features.

    Utterances with no voiced frames are recorded in ``failed`` (utt -> reason)
    and skipped: the caller lists them, they are never scored as if they were zero.
    """
    d = DataDir.load(data_dir)
    keys = utts if utts is not None else listed_utts(d)
    yield from frontend_items(d, keys, opts, failed)


def listed_utts(d: DataDir) -> list[str]:
    """The utterances of a data dir with features and VAD, sorted: what the jobs split."""
    _require_features(d)
    return sorted(set(d.feats_scp) & set(d.vad_scp))


def _require_features(d: DataDir) -> None:
    if d.feats_scp is None or d.vad_scp is None:
        raise DeepSpeakerError(f"{d.path}: needs feats.scp and vad.scp (run stage 1 first)")


def frontend_items(d: DataDir, utts: list[str], opts: FrontendOptions,
                   failed: dict[str, str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """:func:`iter_frontend` over a loaded data dir ``d`` and the utterances ``utts``."""
    _require_features(d)
    for utt in utts:
        if utt not in d.feats_scp or utt not in d.vad_scp:
            if failed is not None:
                failed[utt] = "no features (see failed_utts of the data dir)"
            continue
        # A damaged entry is a FeatureFileError naming utterance, scp:line and ark; not
        # caught: training stops on it, extraction has listed such entries beforehand.
        fbank, vad = read_utt_features(d, utt)
        try:
            x = compute_frontend(fbank, vad, opts)
        except ValueError as e:
            if failed is None:
                raise DeepSpeakerError(f"{utt} ({d.feats_scp[utt]}): {e}") from e
            failed[utt] = str(e)
            logger.warning("%s: %s; skipped", utt, e)
            continue
        yield utt, x


def block_stats(d: DataDir, utts: list[str], ubm, cfg: IvectorConfig, failed: dict[str, str],
                device="cpu", skip: Container[str] = (), progress=None
                ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, N, F) of ``utts``, computed per block of ``cfg.stats.batch_utts`` *listed* ones.

    A block holds its usable utterances (those not in ``skip`` and with voiced frames;
    the others are in ``failed``), so the blocks, and the GEMM shapes that decide the
    rounding, depend on the list alone: a job that starts on a block boundary computes
    what one process computes, and an utterance that fails moves no other's stats.
    (Before ``--nj`` a batch was 64 *usable* utterances; the same when none fails.)
    ``progress`` (a JobProgress) counts the listed utterances done.
    """
    from .stats import compute_stats_batch

    size = cfg.stats.batch_utts
    keys: list[str] = []
    n_all = [np.zeros((0, ubm.num_components))]
    f_all = [np.zeros((0, ubm.num_components, ubm.dim))]
    for b0 in range(0, len(utts), size):
        block = [u for u in utts[b0:b0 + size] if u not in skip]
        items = list(frontend_items(d, block, cfg.frontend, failed))
        if items:
            n, f = compute_stats_batch(ubm, [x for _, x in items], top_k=cfg.stats.top_k,
                                       device=device)
            keys += [u for u, _ in items]
            n_all.append(n)
            f_all.append(f)
        if progress is not None:
            progress.add(len(utts[b0:b0 + size]))
    return keys, np.concatenate(n_all), np.concatenate(f_all)


def load_ubm(exp: Path, cfg: IvectorConfig):
    """The experiment's UBM, checked against the feature dimension the config produces."""
    from .ubm import DiagGmm

    path = exp / "models" / "ubm.npz"
    ubm = DiagGmm.load(path)
    want = _frontend_dim(cfg.frontend)
    if ubm.dim != want:
        raise SizeMismatchError(f"{path}: the UBM is for {ubm.dim}-d features but "
                                f"{exp / 'config.yaml'} gives {want}-d features "
                                f"({cfg.frontend.num_ceps} MFCC, delta order "
                                f"{cfg.frontend.delta_order})")
    return ubm


def _frontend_dim(opts: FrontendOptions) -> int:
    return opts.num_ceps * (opts.delta_order + 1)


def write_failed(path: Path, failed: dict[str, str]) -> None:
    from ..data import write_kaldi_map

    if failed:
        write_kaldi_map(path, {u: r.replace("\n", " ") for u, r in failed.items()})
        logger.warning("%d utterances skipped, listed in %s", len(failed), path)
    else:
        path.unlink(missing_ok=True)
