"""The results report of a recipe: the paper's tables T5-T10 from an ``exp/`` tree.

Every experiment dir ``exp/<tag>/`` says what it is in ``system.yaml``
(:mod:`deepspeaker.scoring.experiment`); the report reads those, never the tags, and
takes each system's score files from ``exp/<tag>/scores/<prefix>_<T>``:

===============  ==================================  ================================
``kind``         score files                         rows
===============  ==================================  ================================
``reference``    ``cosine_<T>``                      the no-training reference (MFCC
                                                     stats)
``ivector``      ``plda_<T>``, ``cosine_<T>``        the i-vector + PLDA baseline, and
                                                     the same i-vectors by cosine
``deepspeaker``  ``cosine_<T>``, ``plda_<T>``         T5 (``model`` x ``strategy`` x back
                                                     end), T7 (``fraction`` < 1), T9/T10
                                                     (``source_only``, ``transfer``)
``fusion``       ``embedding_<T>``, ``score_<T>``    T6: the two fusions of ``members``
===============  ==================================  ================================

Model labels ("ResCNN", "GRU") come from the model registry
(:data:`deepspeaker.nnet.models.MODELS`).  A Deep Speaker system scored with LDA + PLDA
(``plda_<T>``, stage 9's ``--nnet-backends plda``) gets a row ", PLDA" beside its cosine
row in T5; one described ``augmented: false`` (the ablation twin, ``<tag>_noaug``) is
labelled ", no augmentation" and follows its augmented twin.  T6 (fusion), T7, T8's Deep
Speaker rows and T9/T10 use the cosine scores; the claim "Deep Speaker beats the
i-vector" takes each system's better back end.  A dir without ``system.yaml`` is not an
experiment the report knows (it is left out, with one log line).

``<T>`` is every trial list of the eval data dir (:func:`~.experiment.trial_lists`):
``trials`` (1 positive + 99 negatives per anchor, paper §4.1) and ``trials_enroll<k>``
(T8) make the paper's tables; any other list (``trials_vox1_o``, ``trials_cnceleb``)
gets a table of its own.  Every metric is recomputed here from the score files (EER,
minDCF at p_target 0.01, ACC), excluding the trials a scoring stage listed in
``<score file>.skipped``.  A system that was not run is shown as such, never guessed.

Relative changes are computed as the paper does (§5.1.1, §5.1.3): the relative
reduction of EER, ``(EER_ref - EER) / EER_ref``, and of the identification error
``1 - ACC``, against the i-vector baseline (T5, T8) or the best single system (T6).
"""

from __future__ import annotations

import datetime
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import DataDir
from ..utils import DeepSpeakerError, atomic_write
from .experiment import (
    MAIN_TRIALS,
    SystemInfo,
    enroll_count,
    read_system_info,
    score_dir_name,
    trial_lists,
)
from .groups import conditions, counts, group_eers, read_speakers
from .metrics import Metrics, ScoringError, compute_metrics, error_rates
from .operating_points import ASNORM_SUFFIX, METHODS, THRESHOLDS, load_operating_points
from .trials import read_scores, read_skipped, read_trials, scores_for_trials

logger = logging.getLogger(__name__)

STRATEGY_LABELS = {"softmax": "softmax", "triplet": "triplet",
                   "softmax_triplet": "softmax (pre-train) + triplet"}
FIGURES = "report"  # exp/report/: the PNGs of RESULTS.md, not an experiment
# The back ends of a Deep Speaker system (score-file prefix -> label suffix).
BACKEND_LABELS = {"cosine": "", "plda": ", PLDA"}
NOAUG_LABEL = ", no augmentation"


@dataclass
class System:
    """One row of the tables: a score-file prefix of one described experiment."""

    key: str          # unique name (histogram file): the tag, <tag>_cosine, embedding_<tag>, ...
    label: str        # table label
    exp: str          # subdir of exp/
    prefix: str       # score-file prefix
    kind: str         # reference | baseline | ivector_cosine | deepspeaker | fusion | size | transfer
    model: str | None = None
    strategy: str | None = None
    fraction: float = 1.0
    augmented: bool = True  # False: the ablation twin trained without augmentation


@dataclass
class Result:
    system: System
    metrics: Metrics
    scores: np.ndarray
    labels: np.ndarray
    skipped: int
    path: Path
    trials: list | None = None   # the trials of ``scores`` (the main list only: groups.py)


@dataclass
class Report:
    exp: Path
    data: Path
    eval_set: str
    strategy: str
    results: dict[tuple[str, str], Result] = field(default_factory=dict)  # (system key, trials)
    trial_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    fusion_members: list[str] = field(default_factory=list)
    systems: list[System] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)  # registry name -> label, in order
    # system key -> the main list's scores after AS-norm (<prefix>_asnorm_trials), if any
    asnorm: dict[str, Result] = field(default_factory=dict)

    def get(self, key: str, trials: str = MAIN_TRIALS) -> Result | None:
        return self.results.get((key, trials))

    def find(self, kind: str, model: str | None = None, strategy: str | None = None,
             prefix: str | None = None, augmented: bool = True) -> System | None:
        """The one system of this role (None when it was not run)."""
        return next((s for s in self.systems if s.kind == kind and
                     (model is None or s.model == model) and
                     (strategy is None or s.strategy == strategy) and
                     (prefix is None or s.prefix == prefix) and
                     s.augmented == augmented), None)

    def of(self, system: System | None, trials: str = MAIN_TRIALS) -> Result | None:
        return None if system is None else self.get(system.key, trials)

    def ds(self, model: str, strategy: str, trials: str = MAIN_TRIALS, backend: str = "cosine",
           augmented: bool = True) -> Result | None:
        """Deep Speaker ``model`` trained with ``strategy`` on all training speakers (T5),
        scored by ``backend`` (the score-file prefix: cosine or plda)."""
        return self.of(self.find("deepspeaker", model, strategy, backend, augmented), trials)

    def baseline(self, trials: str = MAIN_TRIALS) -> Result | None:
        return self.of(self.find("baseline"), trials)

    def score_fusion(self, trials: str = MAIN_TRIALS) -> Result | None:
        return self.of(self.find("fusion", prefix="score"), trials)

    def ds_label(self, model: str, strategy: str, backend: str = "cosine",
                 augmented: bool = True) -> str:
        return (f"{self.models[model]}, {STRATEGY_LABELS[strategy]}" +
                ("" if augmented else NOAUG_LABEL) + BACKEND_LABELS[backend])


def model_labels() -> dict[str, str]:
    """Display label of every network of the model registry, in its order."""
    from ..nnet.models import MODELS

    return {name: cls.label for name, cls in MODELS.items()}


def _percent(fraction: float) -> int:
    return int(round(100 * fraction))


def _systems_of(exp_dir: Path, info: SystemInfo, models: dict[str, str]) -> list[System]:
    """The rows one experiment contributes, in report order."""
    tag = exp_dir.name
    if info.kind == "reference":
        return [System(tag, "MFCC-stats cosine (reference, no training)", tag, "cosine",
                       "reference")]
    if info.kind == "ivector":
        return [System(tag, "i-vector + PLDA (baseline)", tag, "plda", "baseline"),
                System(f"{tag}_cosine", "i-vector, cosine", tag, "cosine", "ivector_cosine")]
    if info.kind == "fusion":
        return [System(f"embedding_{tag}", "embedding fusion", tag, "embedding", "fusion"),
                System(f"score_{tag}", "score fusion", tag, "score", "fusion")]
    if info.model not in models:
        raise DeepSpeakerError(f"{exp_dir}/system.yaml: model {info.model!r} is not in the model "
                               f"registry ({', '.join(models)})")
    mlabel = models[info.model]
    label, kind = _ds_label_kind(info, mlabel)
    if info.augmented is False:
        label += NOAUG_LABEL
    augmented = info.augmented is not False
    return [System(tag + ("" if prefix == "cosine" else f"_{prefix}"), label + suffix, tag,
                   prefix, kind, info.model, info.strategy, info.fraction, augmented)
            for prefix, suffix in BACKEND_LABELS.items()]


def _ds_label_kind(info: SystemInfo, mlabel: str) -> tuple[str, str]:
    """The label and table role of a Deep Speaker experiment."""
    if info.strategy == "source_only":
        label, kind = f"{mlabel}, trained on {info.source or '?'} only", "transfer"
    elif info.strategy == "transfer":
        label, kind = f"{mlabel}, fine-tuned here from that model", "transfer"
    elif info.fraction < 1:
        label = (f"{mlabel}, {STRATEGY_LABELS[info.strategy]}, {_percent(info.fraction)}% of "
                 "the training speakers")
        kind = "size"
    else:
        label, kind = f"{mlabel}, {STRATEGY_LABELS[info.strategy]}", "deepspeaker"
    return label, kind


def _report_order(s: System, models: dict[str, str]) -> tuple:
    """References, baseline, T5 by network, strategy, augmentation and back end, fusions,
    then the studies by tag."""
    group = {"reference": 0, "baseline": 1, "ivector_cosine": 1, "deepspeaker": 2,
             "fusion": 3}.get(s.kind, 4)
    backend = list(BACKEND_LABELS).index(s.prefix) if s.model is not None else 0
    if group == 2:
        return (2, list(models).index(s.model), list(STRATEGY_LABELS).index(s.strategy),
                not s.augmented, backend, "")
    return (group, 0, 0, "" if group in (1, 3) else s.exp, not s.augmented, backend)


def read_systems(exp: Path, models: dict[str, str]) -> tuple[list[System], list[str]]:
    """Every system described under ``exp`` (report order) and the fusion's members.

    Two experiments describing the same row (say two ivector dirs) are refused: the
    report would have to guess which one the tables mean.
    """
    systems, members, undescribed = [], [], []
    for d in sorted(p for p in exp.iterdir() if p.is_dir()) if exp.is_dir() else []:
        info = read_system_info(d)
        if info is None:
            if d.name != FIGURES:
                undescribed.append(d.name)
            continue
        systems += _systems_of(d, info, models)
        if info.kind == "fusion":
            members = list(info.members)
    if undescribed:
        logger.info("%s: left out of the report (no system.yaml): %s", exp, " ".join(undescribed))
    seen: dict[tuple, System] = {}
    for s in systems:
        role = (s.kind, s.model, s.strategy, s.fraction, s.prefix, s.augmented)
        if role in seen:
            raise DeepSpeakerError(f"{exp / seen[role].exp} and {exp / s.exp} both describe "
                                   f"'{s.label}': remove one (or its system.yaml)")
        seen[role] = s
    return sorted(systems, key=lambda s: _report_order(s, models)), members


def evaluate(score_path: Path, trials_path: Path, trials=None) -> tuple[Metrics, np.ndarray, np.ndarray, int]:
    """Metrics of one score file over its trial list, less the trials in ``<scores>.skipped``.

    Returns (metrics, scores, labels, number of skipped trials); the one evaluation of
    the report and of ``summarize_scores``.
    """
    trials = trials if trials is not None else read_trials(trials_path)
    skip = read_skipped(score_path)
    kept = kept_trials(trials, score_path, skip)
    scores = scores_for_trials(kept, read_scores(score_path), trials_path, score_path)
    labels = np.array([t.target for t in kept], dtype=bool)
    try:
        metrics = compute_metrics(scores, labels, [t.test for t in kept])
    except ScoringError as e:  # say which file: "need both target and non-target", ...
        raise ScoringError(f"{score_path} over {trials_path}: {e}") from e
    return metrics, scores, labels, len(skip)


def kept_trials(trials, score_path: Path, skip=None) -> list:
    """The trials a score file is judged on: all, less those in ``<scores>.skipped``."""
    skip = read_skipped(score_path) if skip is None else skip
    return [t for t in trials if (t.enroll, t.test) not in skip] if skip else list(trials)


def paper_lists(rep: Report) -> list[str]:
    """The lists of the paper's tables: ``trials`` and ``trials_enroll<k>``."""
    return [n for n in rep.trial_counts if n == MAIN_TRIALS or enroll_count(n) is not None]


def other_lists(rep: Report) -> list[str]:
    """Every other list of the eval dir (VoxCeleb1-O/E/H, CN-Celeb, ...)."""
    return [n for n in rep.trial_counts if n not in paper_lists(rep)]


def collect(exp: Path, data: Path, eval_set: str = "eval", strategy: str = "softmax_triplet",
            main_eval_set: str | None = None) -> Report:
    """Evaluate every score file of every described system on every trial list it has.

    The score files are those of ``eval_set`` (``scores/``, or ``scores_<set>/`` when
    ``main_eval_set`` names another set: :func:`~.experiment.score_dir_name`).
    """
    scores_dir = score_dir_name(eval_set, main_eval_set or eval_set)
    trials_dir = data / eval_set
    names = trial_lists(trials_dir)
    if MAIN_TRIALS not in names:
        raise DeepSpeakerError(f"{trials_dir}/{MAIN_TRIALS}: missing; run the trials stage first")
    models = model_labels()
    systems, members = read_systems(exp, models)
    rep = Report(exp=exp, data=data, eval_set=eval_set, strategy=strategy,
                 fusion_members=members, systems=systems, models=models)
    for name in names:
        trials = read_trials(trials_dir / name)
        rep.trial_counts[name] = (sum(t.target for t in trials), sum(not t.target for t in trials))
        for system in systems:
            path = exp / system.exp / scores_dir / f"{system.prefix}_{name}"
            if not path.is_file():
                continue
            metrics, scores, labels, skipped = evaluate(path, trials_dir / name, trials)
            kept = kept_trials(trials, path) if name == MAIN_TRIALS else None
            rep.results[(system.key, name)] = Result(system, metrics, scores, labels, skipped,
                                                     path, kept)
            normed = path.with_name(f"{system.prefix}{ASNORM_SUFFIX}_{name}")
            if name == MAIN_TRIALS and system.prefix in METHODS and normed.is_file():
                rep.asnorm[system.key] = Result(system, *evaluate(normed, trials_dir / name, trials),
                                                normed)
    if not any(k == MAIN_TRIALS for _, k in rep.results):
        raise DeepSpeakerError(f"{exp}: no described system has a score file for "
                               f"{trials_dir}/{MAIN_TRIALS} in {scores_dir}/ (each experiment dir describes "
                               "itself in system.yaml: python -m deepspeaker.bin.describe_system)")
    return rep


# ----------------------------------------------------------------------------- formatting

def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def rel_reduction(ref: float | None, value: float | None) -> float | None:
    """``(ref - value) / ref``: the paper's relative reduction (None when undefined)."""
    if ref is None or value is None or ref <= 0:
        return None
    return (ref - value) / ref


def _rel(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def _err(m: Metrics) -> float | None:
    return None if m.acc is None else 1.0 - m.acc


def _row_metrics(r: Result | None) -> list[str]:
    if r is None:
        return ["not run", "", ""]
    return [_pct(r.metrics.eer), f"{r.metrics.min_dcf:.4f}", _pct(r.metrics.acc)]


def _reductions(ref: Result | None, r: Result | None) -> list[str]:
    """The two relative-reduction cells of ``r`` against ``ref`` (empty when either is missing)."""
    if ref is None or r is None:
        return ["", ""]
    return [_rel(rel_reduction(ref.metrics.eer, r.metrics.eer)),
            _rel(rel_reduction(_err(ref.metrics), _err(r.metrics)))]


BASELINE_LABEL = "i-vector + PLDA (baseline)"


def has_plda_rows(rep: Report) -> bool:
    """Whether any Deep Speaker system of T5 was scored with PLDA (then each gets that row)."""
    return any(s.kind == "deepspeaker" and s.prefix == "plda" and rep.of(s) is not None
               for s in rep.systems)


def t5_rows(rep: Report) -> list[tuple[str, Result | None]]:
    """T5's Deep Speaker rows: per network and strategy the cosine row, the PLDA row (when
    the recipe scored any system with PLDA), then the same of its twin trained without
    augmentation (when there is one).  A network never trained has no rows."""
    backends = list(BACKEND_LABELS) if has_plda_rows(rep) else ["cosine"]
    rows = []
    for model in rep.models:
        mrows = []
        for strategy in STRATEGY_LABELS:
            for augmented in (True, False):
                if not augmented and rep.find("deepspeaker", model, strategy,
                                              augmented=False) is None:
                    continue
                mrows += [(rep.ds_label(model, strategy, b, augmented),
                           rep.ds(model, strategy, backend=b, augmented=augmented))
                          for b in backends]
        if any(r is not None for _, r in mrows):
            rows += mrows
    return rows


def table_t5(rep: Report) -> list[str]:
    base = rep.baseline()
    lines = ["| system | EER [%] | minDCF | ACC [%] | EER rel. reduction vs i-vector | "
             "error (1-ACC) rel. reduction vs i-vector |", "|---|---|---|---|---|---|"]
    rows = [(BASELINE_LABEL, base)] + t5_rows(rep)
    for i, (label, r) in enumerate(rows):
        cells = [label] + _row_metrics(r) + (["", ""] if i == 0 else _reductions(base, r))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def fusion_inputs(rep: Report) -> list[tuple[str, Result | None]]:
    """(label, result) of the systems fused in T6: the fusion's members, or by default the
    ``rep.strategy`` model of every network."""
    if not rep.fusion_members:
        return [(rep.ds_label(m, rep.strategy), rep.ds(m, rep.strategy)) for m in rep.models]
    by_key = {s.key: s for s in rep.systems}
    return [(by_key[k].label if k in by_key else k, rep.get(k)) for k in rep.fusion_members]


def best_single(rep: Report) -> Result | None:
    members = [r for _, r in fusion_inputs(rep) if r is not None]
    return min(members, key=lambda r: r.metrics.eer) if members else None


def table_t6(rep: Report) -> list[str]:
    best = best_single(rep)
    lines = ["| system | EER [%] | minDCF | ACC [%] | EER rel. reduction vs best single | "
             "error rel. reduction vs best single |", "|---|---|---|---|---|---|"]
    fused = [(label, rep.of(rep.find("fusion", prefix=prefix)))
             for label, prefix in (("embedding fusion", "embedding"), ("score fusion", "score"))]
    for label, r in fusion_inputs(rep) + fused:
        if best is not None and r is best:
            label += " (best single)"
        cells = [label] + _row_metrics(r) + (["", ""] if r is best else _reductions(best, r))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def enroll_lists(rep: Report) -> list[tuple[int, str]]:
    """(k, list name) of the T8 lists, by k."""
    return [(enroll_count(n), n) for n in paper_lists(rep) if n != MAIN_TRIALS]


def t8_systems(rep: Report) -> list[System]:
    """The rows of T8: the baseline, each network's ``rep.strategy`` model (cosine, then
    PLDA), score fusion."""
    systems = [rep.find("baseline")] + [rep.find("deepspeaker", m, rep.strategy, b)
                                        for m in rep.models for b in BACKEND_LABELS] + \
        [rep.find("fusion", prefix="score")]
    return [s for s in systems if s is not None]


def table_t8(rep: Report) -> list[str]:
    ks = enroll_lists(rep)
    head = "| system | " + " | ".join(f"EER [%] k={k}" for k, _ in ks) + " | " + \
        " | ".join(f"ACC [%] k={k}" for k, _ in ks) + " |"
    lines = [head, "|---|" + "---|" * (2 * len(ks))]
    for system in t8_systems(rep):
        rs = [rep.of(system, name) for _, name in ks]
        if all(r is None for r in rs):
            continue
        cells = [system.label] + [_pct(r.metrics.eer) if r else "not run" for r in rs] + \
            [_pct(r.metrics.acc) if r else "not run" for r in rs]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def size_study(rep: Report, model: str) -> list[tuple[int, Result]]:
    """(percent of the training speakers, result) of ``model`` for T7, the full run last;
    [] without a run on a subset."""
    parts = sorted(((_percent(s.fraction), r) for s in rep.systems
                    if s.kind == "size" and s.model == model and s.strategy == rep.strategy
                    and s.prefix == "cosine" and s.augmented
                    and (r := rep.of(s)) is not None), key=lambda x: x[0])
    full = rep.ds(model, rep.strategy)
    return parts + [(100, full)] if parts and full is not None else parts


def table_t7(rep: Report) -> list[str]:
    """EER / ACC against the share of training speakers (paper T7); [] without stage 11."""
    rows = [f"| {mlabel} | {pct}% | " + " | ".join(_row_metrics(r)) + " |"
            for model, mlabel in rep.models.items() for pct, r in size_study(rep, model)]
    if not rows:
        return []
    return ["| network | training speakers | EER [%] | minDCF | ACC [%] |",
            "|---|---|---|---|---|"] + rows


def transfer_results(rep: Report, model: str) -> tuple[Result | None, Result | None]:
    """``model`` trained on another corpus only, and that model fine-tuned here (T9/T10)."""
    return (rep.of(rep.find("transfer", model, "source_only", "cosine")),
            rep.of(rep.find("transfer", model, "transfer", "cosine")))


def table_transfer(rep: Report) -> list[str]:
    """T9/T10: trained here, trained elsewhere, trained elsewhere then fine-tuned here."""
    rows = []
    base = rep.baseline()
    if base is not None:
        rows.append("| " + " | ".join([base.system.label] + _row_metrics(base)) + " |")
    any_transfer = False
    for model in rep.models:
        here = rep.ds(model, rep.strategy)
        if here is not None:
            rows.append("| " + " | ".join([here.system.label + " (trained here only)"] +
                                          _row_metrics(here)) + " |")
        for r in transfer_results(rep, model):
            if r is not None:
                any_transfer = True
                rows.append("| " + " | ".join([r.system.label] + _row_metrics(r)) + " |")
    if not any_transfer:
        return []
    return ["| system | EER [%] | minDCF | ACC [%] |", "|---|---|---|---|"] + rows


def table_other_lists(rep: Report) -> list[str]:
    """One table per trial list outside the paper's (VoxCeleb1-O/E/H, CN-Celeb, ...)."""
    lines = []
    for name in other_lists(rep):
        n_tar, n_non = rep.trial_counts[name]
        lines += ["", f"### `{name}`: {n_tar} target + {n_non} non-target", "",
                  "| system | EER [%] | minDCF | ACC [%] | target / non-target | skipped |",
                  "|---|---|---|---|---|---|"]
        rows = [rep.of(s, name) for s in rep.systems]
        rows = [r for r in rows if r is not None]
        lines += [f"| {r.system.label} | " + " | ".join(_row_metrics(r)) +
                  f" | {r.metrics.num_target} / {r.metrics.num_nontarget} | {r.skipped} |"
                  for r in rows] or ["| no system has scores for this list | | | | | |"]
    return lines


# ----------------------------------------------------------------------------- claims

@dataclass
class Claim:
    text: str
    held: bool | None   # None: cannot be checked (systems missing)
    evidence: str


def _better_backend(rep: Report, model: str, strategy: str) -> Result | None:
    """The system's row of lower EER among its back ends (cosine, PLDA)."""
    rs = [r for b in BACKEND_LABELS if (r := rep.ds(model, strategy, backend=b)) is not None]
    return min(rs, key=lambda r: r.metrics.eer) if rs else None


def _claim_beats_baseline(rep: Report) -> Claim:
    base = rep.baseline()
    ds = [_better_backend(rep, m, s) for m in rep.models for s in STRATEGY_LABELS]
    ds = [r for r in ds if r is not None]
    text = "Deep Speaker beats the i-vector baseline (every DS system: lower EER and higher ACC; T5)"
    if base is None or not ds:
        return Claim(text, None, "i-vector or Deep Speaker scores missing")
    wins = [r for r in ds if r.metrics.eer < base.metrics.eer and
            (r.metrics.acc or 0) > (base.metrics.acc or 0)]
    best = min(ds, key=lambda r: r.metrics.eer)
    each = " (each by its better back end)" if has_plda_rows(rep) else ""
    return Claim(text, len(wins) == len(ds),
                 f"{len(wins)} of {len(ds)} systems{each} beat it; i-vector EER "
                 f"{_pct(base.metrics.eer)}% / ACC {_pct(base.metrics.acc)}%, best DS "
                 f"({best.system.label}) {_pct(best.metrics.eer)}% / "
                 f"{_pct(best.metrics.acc)}%")


def _claim_strategy_order(rep: Report, model: str, mlabel: str) -> Claim | None:
    rs = [rep.ds(model, s) for s in ("softmax_triplet", "triplet", "softmax")]
    text = f"{mlabel}: softmax + triplet beats triplet only, which beats softmax only (EER and ACC; T5)"
    if any(r is None for r in rs):
        return Claim(text, None, "not every strategy was run") if any(rs) else None
    st, t, s = rs
    held = (st.metrics.eer < t.metrics.eer < s.metrics.eer and
            (st.metrics.acc or 0) > (t.metrics.acc or 0) > (s.metrics.acc or 0))
    return Claim(text, held, f"EER {_pct(st.metrics.eer)} / {_pct(t.metrics.eer)} / "
                             f"{_pct(s.metrics.eer)}%, ACC {_pct(st.metrics.acc)} / "
                             f"{_pct(t.metrics.acc)} / {_pct(s.metrics.acc)}% "
                             "(softmax+triplet / triplet / softmax)")


def _claim_fusion(rep: Report) -> Claim:
    best, fused = best_single(rep), rep.score_fusion()
    text = "Score fusion beats the best single system (EER and ACC; T6)"
    if best is None or fused is None:
        return Claim(text, None, "fusion or its systems missing")
    return Claim(text, fused.metrics.eer < best.metrics.eer and
                 (fused.metrics.acc or 0) > (best.metrics.acc or 0),
                 f"score fusion EER {_pct(fused.metrics.eer)}% / ACC "
                 f"{_pct(fused.metrics.acc)}% vs {best.system.label} "
                 f"{_pct(best.metrics.eer)}% / {_pct(best.metrics.acc)}%")


def _claims_studies(rep: Report, model: str, mlabel: str) -> list[Claim]:
    claims = []
    parts, here = size_study(rep, model), rep.ds(model, rep.strategy)
    if parts and here is not None:
        eers = [r.metrics.eer for _, r in parts]
        claims.append(Claim(f"{mlabel}: more training speakers, lower EER (T7)",
                            all(a > b for a, b in zip(eers, eers[1:])),
                            "EER " + " / ".join(_pct(e) for e in eers) + "% with " +
                            " / ".join(f"{p}%" for p, _ in parts) + " of the speakers"))
    source, tuned = transfer_results(rep, model)
    if tuned is not None and (here is not None or source is not None):
        others = [r for r in (here, source) if r is not None]
        claims.append(Claim(f"{mlabel}: a model of another corpus fine-tuned here beats the "
                            "model trained here only and the other corpus' model (T9/T10)",
                            all(tuned.metrics.eer < r.metrics.eer for r in others),
                            f"EER fine-tuned {_pct(tuned.metrics.eer)}% vs " +
                            ", ".join(f"{r.system.label} {_pct(r.metrics.eer)}%"
                                      for r in others)))
    return claims


def _claims_enrollment(rep: Report) -> list[Claim]:
    claims = []
    ks = enroll_lists(rep)
    for system in t8_systems(rep):
        rs = [rep.of(system, name) for _, name in ks]
        if len(ks) < 2 or any(r is None for r in rs):
            continue
        eers = [r.metrics.eer for r in rs]
        claims.append(Claim(f"{system.label}: EER falls as enrollment utterances go from "
                            f"{ks[0][0]} to {ks[-1][0]} (T8)",
                            all(a > b for a, b in zip(eers, eers[1:])),
                            "EER " + " / ".join(_pct(e) for e in eers) + "% for k = " +
                            ", ".join(str(k) for k, _ in ks)))
    return claims


def check_claims(rep: Report) -> list[Claim]:
    claims = [_claim_beats_baseline(rep)]
    claims += [c for m, mlabel in rep.models.items()
               if (c := _claim_strategy_order(rep, m, mlabel)) is not None]
    claims.append(_claim_fusion(rep))
    for model, mlabel in rep.models.items():
        claims += _claims_studies(rep, model, mlabel)
    return claims + _claims_enrollment(rep)


# ----------------------------------------------------------------------------- plots

DET_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]


def plot_det(results: Sequence[Result], path: Path, title: str) -> None:
    """DET curves (miss vs false alarm on normal-deviate axes) of ``results`` in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    lo, hi = DET_TICKS[0], DET_TICKS[-1]
    fig, ax = plt.subplots(figsize=(6.0, 6.0), dpi=110)
    # tab20 pairs dark/light shades: the dark ones first, so 10 curves never share a colour.
    palette = plt.get_cmap("tab20").colors
    colours = [palette[i] for i in range(0, 20, 2)] + [palette[i] for i in range(1, 20, 2)]
    for i, r in enumerate(results):
        _, p_miss, p_fa = error_rates(r.scores, r.labels)
        x = norm.ppf(np.clip(p_fa, lo / 2, 1 - lo / 2))
        y = norm.ppf(np.clip(p_miss, lo / 2, 1 - lo / 2))
        ax.plot(x, y, lw=1.4, color=colours[i % len(colours)],
                ls="-" if i < len(colours) else "--",
                label=f"{r.system.label} (EER {_pct(r.metrics.eer)}%)")
    ticks = norm.ppf(DET_TICKS)
    labels = [f"{100 * t:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.plot([norm.ppf(lo), norm.ppf(hi)], [norm.ppf(lo), norm.ppf(hi)], color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("false alarm rate [%]")
    ax.set_ylabel("miss rate [%]")
    ax.set_title(title, fontsize=10)
    ax.grid(True, color="0.85", lw=0.6)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    _save_png(fig, path)
    plt.close(fig)


def plot_histogram(r: Result, path: Path) -> None:
    """Target and non-target score densities of one system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.4), dpi=110)
    edges = np.histogram_bin_edges(r.scores, bins=80)
    ax.hist(r.scores[~r.labels], bins=edges, density=True, alpha=0.6, label="non-target")
    ax.hist(r.scores[r.labels], bins=edges, density=True, alpha=0.6, label="target")
    ax.axvline(r.metrics.eer_threshold, color="k", lw=0.8, ls="--",
               label=f"EER threshold ({_pct(r.metrics.eer)}%)")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title(r.system.label, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def _save_png(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic_write: a full disk is one "cannot write" message and no temp file is left
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")  # room for an outside legend


# ----------------------------------------------------------------------------- metadata

def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=Path(__file__).parent,
                               check=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def corpus_lines(data: Path) -> list[str]:
    lines = ["| set | speakers | utterances | hours |", "|---|---|---|---|"]
    for d in sorted(p for p in data.iterdir() if (p / "utt2spk").is_file()):
        dd = DataDir.load(d)
        hours = "n/a" if dd.utt2dur is None else f"{sum(dd.utt2dur.values()) / 3600:.2f}"
        lines.append(f"| {d.name} | {len(dd.speakers)} | {len(dd.utts)} | {hours} |")
    return lines


def config_lines(exp: Path) -> list[str]:
    lines = []
    for cfg in sorted(exp.glob("*/config.yaml")):
        lines += [f"<details><summary><code>{cfg.relative_to(exp.parent)}</code></summary>", "",
                  "```yaml", cfg.read_text().rstrip(), "```", "", "</details>", ""]
    return lines


# ----------------------------------------------------------------------------- the report

def write_figures(rep: Report) -> tuple[list[Result], list[Result]]:
    """The DET plots and histograms of the main list; returns (T5/T6 systems, studies)."""
    fig_dir = rep.exp / FIGURES
    main = [r for (k, t), r in rep.results.items() if t == MAIN_TRIALS]
    # Every system of T5/T6 on one plot; those of stages 11-12 (T7, T9/T10) with the
    # baseline on a second, so that neither has 15 curves.
    det_systems = [r for r in main if r.system.kind not in ("size", "transfer")]
    study = [r for r in main if r.system.kind in ("size", "transfer")]
    det_title = f"DET, {rep.data / rep.eval_set}/{MAIN_TRIALS}"
    if det_systems:
        plot_det(det_systems, fig_dir / "det.png", det_title)
    if study:
        base = [r for r in main if r.system.kind == "baseline"]
        plot_det(base + study, fig_dir / "det_studies.png", det_title + " (stages 11-12)")
    for r in main:
        plot_histogram(r, fig_dir / f"hist_{r.system.key}.png")
    return det_systems, study


def _head_lines(rep: Report, title: str) -> list[str]:
    main = [r for (k, t), r in rep.results.items() if t == MAIN_TRIALS]
    n_tar, n_non = rep.trial_counts[MAIN_TRIALS]
    anchors = next((r.metrics.num_anchors for r in main if r.metrics.num_anchors), None)
    return [f"# {title}", "",
            f"Made by `python -m deepspeaker.bin.make_report` on {datetime.datetime.now():%Y-%m-%d %H:%M}, "
            f"commit {git_commit()}.", "",
            f"Eval trials `{rep.data / rep.eval_set}/{MAIN_TRIALS}`: {n_tar} target + {n_non} "
            f"non-target" + (f" ({anchors} anchors, 1 positive + {n_non // max(1, n_tar)} "
                             "negatives each, paper §4.1)" if anchors else "") + ".  "
            "EER and ACC in %, minDCF at p_target = 0.01.  Relative reductions as the paper "
            "computes them: (ref - x) / ref of EER and of the error 1 - ACC."]


def _reference_lines(rep: Report) -> list[str]:
    ref, cos = rep.of(rep.find("reference")), rep.of(rep.find("ivector_cosine"))
    extra = []
    if ref is not None:
        extra.append(f"MFCC-stats cosine (no training): EER {_pct(ref.metrics.eer)}%, "
                     f"ACC {_pct(ref.metrics.acc)}%")
    if cos is not None:
        extra.append(f"i-vector with cosine instead of PLDA: EER {_pct(cos.metrics.eer)}%, "
                     f"ACC {_pct(cos.metrics.acc)}%")
    return ["", "Reference rows: " + "; ".join(extra) + "."] if extra else []


def _backend_lines(rep: Report) -> list[str]:
    """What the PLDA and no-augmentation rows of T5 are (nothing when there are none)."""
    notes = []
    if has_plda_rows(rep):
        notes.append("\", PLDA\": the system's embeddings through global mean, LDA, length norm "
                     "and two-covariance PLDA trained on its training-set embeddings (Kaldi's "
                     "x-vector back end; the other rows score by cosine)")
    if any(not s.augmented for s in rep.systems if s.kind == "deepspeaker"):
        notes.append("\", no augmentation\": the same system trained without data "
                     "augmentation (the ablation)")
    return ["", "; ".join(notes) + "."] if notes else []


def _table_lines(rep: Report) -> list[str]:
    """T5, T6, T8, the other trial lists, T7, T9/T10."""
    lines = ["", "## T5: i-vector baseline and Deep Speaker, by network and training strategy", ""]
    lines += table_t5(rep) + _reference_lines(rep) + _backend_lines(rep)
    fused = " + ".join(rep.fusion_members) or " + ".join(rep.models.values())
    lines += ["", f"## T6: fusion of {fused}", ""] + table_t6(rep)
    lines += ["", "Embedding fusion: per utterance, the sum of the unit embeddings, renormalised, "
              "then cosine.  Score fusion: each system's scores z-normalised over all its "
              "trials, then added (paper §5.1.3).", "",
              f"## T8: enrollment with k utterances (Deep Speaker: {STRATEGY_LABELS[rep.strategy]})", ""]
    lines += table_t8(rep)
    lines += ["", "A k-utterance model averages the unit embeddings of k enrollment utterances and "
              "renormalises (i-vector: PLDA with k utterances).  The same anchors are scored for "
              "every k."]
    if has_plda_rows(rep):
        lines[-1] += ("  Deep Speaker PLDA rows: LDA + length norm + PLDA trained on each "
                      "system's training-set embeddings; k utterances scored as the i-vector's.")
    if other_lists(rep):
        lines += ["", f"## Other trial lists of `{rep.data / rep.eval_set}`", "",
                  "The lists a data prep wrote beside the paper's (e.g. VoxCeleb1-O/E/H, "
                  "CN-Celeb).  ACC is n/a where a list is not 1 positive + N negatives per "
                  "anchor; trial counts are those scored (skipped trials left out)."]
        lines += table_other_lists(rep)
    groups = table_groups(rep)
    if groups:
        lines += ["", f"## EER by speaker group (`{MAIN_TRIALS}`; ages and genders from "
                  f"`{rep.data / rep.eval_set}`)", ""] + groups
    t7, tr = table_t7(rep), table_transfer(rep)
    if t7:
        lines += ["", "## T7: training-set size (nested seeded subsets of the training speakers)",
                  ""] + t7
    if tr:
        lines += ["", "## T9/T10: transfer from another corpus (triplet fine-tuning)", ""] + tr
    return lines


def group_rows(rep: Report) -> list[tuple[str, Result]]:
    """The systems of the group table: reference, baseline, T5's rows, the two fusions."""
    rows = [("MFCC-stats cosine (no training)", rep.of(rep.find("reference"))),
            (BASELINE_LABEL, rep.baseline())] + t5_rows(rep)
    rows += [(f"{label} fusion", rep.of(rep.find("fusion", prefix=label)))
             for label in ("embedding", "score")]
    return [(label, r) for label, r in rows if r is not None and r.trials is not None]


def table_groups(rep: Report) -> list[str]:
    """EER of every system by speaker group (groups.py); nothing without spk2age/spk2gender."""
    spk = read_speakers(rep.data / rep.eval_set)
    rows = group_rows(rep)
    if not spk.any or not rows:
        return []
    table, sizes = [], None
    for label, r in rows:
        masks = conditions(r.trials, r.labels, spk)
        sizes = sizes or counts(r.labels, masks)
        eers = group_eers(r.scores, r.labels, masks)
        table.append("| " + " | ".join([label] + [_pct(eers[n]) for n in masks]) + " |")
    names = list(sizes)
    head = ["| system | " + " | ".join(f"{n} [%]" for n in names) + " |",
            "|---" * (len(names) + 1) + "|"]
    trials = "; ".join(f"{n} {t:,} / {nt:,}" for n, (t, nt) in sizes.items())
    return head + table + ["", f"Trials (target / non-target, of the first row): {trials}.  "
                           "Under 13 / 13 and over: both speakers in the group; across ages, "
                           "same and other gender: every target trial and the non-targets of "
                           "that kind (deepspeaker/scoring/groups.py)."]


ASNORM_LABEL = ", AS-norm"


def table_asnorm(rep: Report) -> list[str]:
    """Each system's main-list metrics without and with AS-norm (systems that have both)."""
    lines = [("| system | EER [%] | EER, AS-norm [%] | minDCF | minDCF, AS-norm | ACC [%] | "
              "ACC, AS-norm [%] | EER rel. reduction by AS-norm |"), "|---|---|---|---|---|---|---|---|"]
    for system in rep.systems:
        raw, normed = rep.of(system), rep.asnorm.get(system.key)
        if raw is None or normed is None:
            continue
        a, b = raw.metrics, normed.metrics
        lines.append(f"| {system.label} | {_pct(a.eer)} | {_pct(b.eer)} | {a.min_dcf:.4f} | "
                     f"{b.min_dcf:.4f} | {_pct(a.acc)} | {_pct(b.acc)} | "
                     f"{_rel(rel_reduction(a.eer, b.eer))} |")
    return lines


def asnorm_lines(rep: Report) -> list[str]:
    """The section "AS-norm" (nothing when no system has AS-normed scores)."""
    if not rep.asnorm:
        return []
    return ["", "## AS-norm", "",
            (f"Adaptive symmetric score normalisation (top-N cohort of training speakers, as "
             f"WeSpeaker's stage 6) on `{rep.data / rep.eval_set}/{MAIN_TRIALS}`: each "
             f"system's scores (`scores/<method>_{MAIN_TRIALS}`) beside the same scores after "
             f"AS-norm (`scores/<method>{ASNORM_SUFFIX}_{MAIN_TRIALS}`)."), ""] + table_asnorm(rep)


THRESHOLD_LABELS = {"eer": "EER point", "far_1pct": "FAR 1%", "far_0.1pct": "FAR 0.1%",
                    "min_dcf": "minDCF point"}


def _threshold_cell(points, name: str) -> str:
    if name not in points.thresholds or name not in points.heldout:
        return "n/a"
    held = points.heldout[name]
    return f"{points.thresholds[name]:.4g} ({_pct(held['far'])} / {_pct(held['miss'])})"


def _cllr_cell(points) -> str:
    if not {"raw", "calibrated"} <= set(points.cllr):
        return "n/a"
    return f"{points.cllr['raw']:.3f} -> {points.cllr['calibrated']:.3f}"


def _calibration_cell(points) -> str:
    c = points.calibration
    return "n/a" if c is None else f"{c.scale:.4g} s {'+' if c.offset >= 0 else '-'} {abs(c.offset):.4g}"


def table_operating_points(rep: Report) -> tuple[list[str], list[str]]:
    """The rows of "Operating points" (every scored system with a method that has them,
    in report order) and the distinct ``fitted_on`` texts of their files."""
    lines = ["| system | " + " | ".join(THRESHOLD_LABELS[n] for n in THRESHOLDS) +
             " | Cllr raw -> calibrated | calibration (llr) |",
             "|---|" + "---|" * (len(THRESHOLDS) + 2)]
    fitted = []
    for system in rep.systems:
        if system.prefix not in METHODS or system.kind == "reference" or rep.of(system) is None:
            continue
        rows = [(system.label, load_operating_points(rep.exp / system.exp, system.prefix))]
        normed = load_operating_points(rep.exp / system.exp, system.prefix + ASNORM_SUFFIX)
        if normed is not None or system.key in rep.asnorm:
            rows.append((system.label + ASNORM_LABEL, normed))
        for label, points in rows:
            if points is None:
                cells = ["not saved"] * len(THRESHOLDS) + ["", ""]
            else:
                cells = [_threshold_cell(points, n) for n in THRESHOLDS]
                cells += [_cllr_cell(points), _calibration_cell(points)]
                fitted_on = points.fitted_on or (points.calibration.fitted_on
                                                 if points.calibration else "")
                if fitted_on and fitted_on not in fitted:
                    fitted.append(fitted_on)
            lines.append("| " + " | ".join([label] + cells) + " |")
    return lines, fitted


def operating_point_lines(rep: Report) -> list[str]:
    """The section "Operating points": the thresholds each system decides with, and how
    well they and its calibration hold on trials they were not fitted on."""
    table, fitted = table_operating_points(rep)
    if all("not saved" in row for row in table[2:]):  # a tree from before they were saved
        return []
    lines = ["", "## Operating points", "",
             ("The thresholds each system saved beside its model "
             "(`exp/<tag>/operating_points/<method>.yaml`; `verify` decides at FAR 1% unless "
             "told otherwise) and the linear calibration of its scores to log-likelihood "
             "ratios, by prior-weighted logistic regression (prior 0.5, as BOSARIS and Kaldi's "
             "logistic-regression tools fit it).  Both are fitted on one half of the anchors of "
             "the main list and measured on the other half: each cell is the threshold, then "
             "the false-accept / miss rate in % it gives on the held-out half (accept when "
             "score >= threshold).  Cllr in bits on the held-out half, the raw scores read as "
             "LLRs (cosine scores are not LLRs, hence their high raw Cllr), then calibrated."), ""]
    lines += table
    if fitted:
        lines += ["", "Fitted on: " + "; ".join(f"`{f}`" for f in fitted) + "."]
    return lines


def _claim_lines(rep: Report) -> list[str]:
    lines = ["", "## The paper's claims on this corpus", "",
             "| claim | held? | numbers |", "|---|---|---|"]
    for c in check_claims(rep):
        verdict = {True: "**held**", False: "**not held**", None: "not checked"}[c.held]
        lines.append(f"| {c.text} | {verdict} | {c.evidence} |")
    return lines


def _figure_lines(rep: Report, det_systems: list[Result], study: list[Result]) -> list[str]:
    lines = []
    if det_systems:
        main = [r for (k, t), r in rep.results.items() if t == MAIN_TRIALS]
        lines += ["", "## DET curves and score histograms", "",
                  f"![DET curves]({FIGURES}/det.png)", ""]
        if study:
            lines += [f"![DET curves of stages 11-12]({FIGURES}/det_studies.png)", ""]
        lines.append(" ".join(f"[{r.system.label}]({FIGURES}/hist_{r.system.key}.png)"
                              for r in main))
    skipped = [(r.path, r.skipped) for r in rep.results.values() if r.skipped]
    if skipped:
        lines += ["", "Trials left out (utterances without a vector, listed in `*.skipped`): " +
                  "; ".join(f"`{p}` {n}" for p, n in skipped) + "."]
    return lines


def table_eval_sets(reports: Sequence[Report]) -> list[str]:
    """One row per system, one column block (EER, minDCF, ACC of the main list) per eval
    set, the main one first: the systems of the report's tables on every eval set."""
    head = "| system |" + "".join(f" {r.eval_set} EER [%] | minDCF | ACC [%] |" for r in reports)
    lines = [head, "|---|" + "---|---|---|" * len(reports)]
    for system in reports[0].systems:
        results = [r.get(system.key) for r in reports]
        if all(x is None for x in results):
            continue
        lines.append(f"| {system.label} | " + " | ".join(c for x in results for c in _row_metrics(x))
                     + " |")
    return lines


def eval_set_lines(reports: Sequence[Report]) -> list[str]:
    """The section "Every eval set" (nothing for a recipe with one eval set)."""
    if len(reports) < 2:
        return []
    sets = "; ".join(f"`{r.data / r.eval_set}`: {r.trial_counts[MAIN_TRIALS][0]} target + "
                     f"{r.trial_counts[MAIN_TRIALS][1]} non-target trials" for r in reports)
    return ["", "## Every eval set", "",
            f"The main list (`{MAIN_TRIALS}`) of each eval set, scored by every system; the "
            f"tables above are those of the main eval set, `{reports[0].eval_set}`.  {sets}.  "
            f"Scores of another eval set are in `exp/<system>/scores_<set>/`.", ""
            ] + table_eval_sets(reports)


def write_report(rep: Report, title: str, others: Sequence[Report] = ()) -> Path:
    """``exp/RESULTS.md`` and the PNGs it links, in ``exp/report/``; ``others``: the same
    systems on the recipe's other eval sets (the section "Every eval set")."""
    det_systems, study = write_figures(rep)
    lines = _head_lines(rep, title) + _table_lines(rep) + eval_set_lines([rep, *others])
    lines += asnorm_lines(rep)
    lines += operating_point_lines(rep)
    lines += _claim_lines(rep)
    lines += _figure_lines(rep, det_systems, study)
    lines += ["", "## Corpus", ""] + corpus_lines(rep.data)
    lines += ["", "## Trial lists", "", "| list | target | non-target |", "|---|---|---|"]
    lines += [f"| {n} | {t} | {nt} |" for n, (t, nt) in rep.trial_counts.items()]
    lines += ["", "## Configs (as saved beside each experiment)", ""] + config_lines(rep.exp)
    out = rep.exp / "RESULTS.md"
    with atomic_write(out) as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return out


__all__ = ["BACKEND_LABELS", "BASELINE_LABEL", "Claim", "Report", "Result", "STRATEGY_LABELS", "System",
           "asnorm_lines", "check_claims", "collect", "eval_set_lines", "evaluate", "model_labels",
           "operating_point_lines",
           "plot_det", "plot_histogram",
           "read_systems", "rel_reduction", "table_eval_sets", "table_other_lists", "table_t5", "table_t6",
           "t5_rows", "table_asnorm", "table_operating_points", "table_t7", "table_t8", "table_transfer",
           "write_report"]
