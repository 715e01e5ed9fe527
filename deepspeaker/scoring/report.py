"""The results report of a recipe: the paper's tables T5, T6, T8 from an ``exp/`` tree.

Where the numbers come from (the recipes' layout, SPEC stages 2-10):

========================================  =========================================
``exp/mfcc_stats/scores/cosine_<T>``       the no-training reference
``exp/ivector/scores/plda_<T>``            the i-vector + PLDA baseline (``cosine_<T>``: same
                                           i-vectors, cosine)
``exp/<model>_<strategy>/scores/cosine_<T>``  Deep Speaker, ``model`` in rescnn / gru,
                                           ``strategy`` in softmax / triplet / softmax_triplet
``exp/fusion/scores/{embedding,score}_<T>``  embedding and score fusion of the systems
                                           named in ``exp/fusion/systems``
========================================  =========================================

``<T>`` is a trial list of the eval data dir: ``trials`` (1 positive + 99 negatives per
anchor, paper §4.1) and ``trials_enroll{1,2,3,5}`` (T8).  Every metric is recomputed
here from the score files (EER, minDCF at p_target 0.01, ACC), excluding the trials a
scoring stage listed in ``<score file>.skipped``.  A system that was not run is shown
as such, never guessed.

Relative changes are computed as the paper does (§5.1.1, §5.1.3): the relative
reduction of EER, ``(EER_ref - EER) / EER_ref``, and of the identification error
``1 - ACC``, against the i-vector baseline (T5, T8) or the best single system (T6).
"""

from __future__ import annotations

import datetime
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import DataDir
from ..utils import DeepSpeakerError, atomic_write
from .metrics import Metrics, compute_metrics, error_rates
from .trials import read_scores, read_skipped, read_trials, scores_for_trials

logger = logging.getLogger(__name__)

MODEL_LABELS = {"rescnn": "ResCNN", "gru": "GRU"}
STRATEGY_LABELS = {"softmax": "softmax", "triplet": "triplet",
                   "softmax_triplet": "softmax (pre-train) + triplet"}
ENROLL_COUNTS = (1, 2, 3, 5)
MAIN_TRIALS = "trials"


@dataclass
class System:
    key: str          # file-system name, e.g. rescnn_softmax_triplet
    label: str        # table label
    exp: str          # subdir of exp/
    prefix: str       # score-file prefix
    kind: str         # reference | baseline | deepspeaker | fusion


@dataclass
class Result:
    system: System
    metrics: Metrics
    scores: np.ndarray
    labels: np.ndarray
    skipped: int
    path: Path


@dataclass
class Report:
    exp: Path
    data: Path
    eval_set: str
    strategy: str
    results: dict[tuple[str, str], Result] = field(default_factory=dict)  # (system key, trials)
    trial_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    fusion_members: list[str] = field(default_factory=list)

    def get(self, key: str, trials: str = MAIN_TRIALS) -> Result | None:
        return self.results.get((key, trials))


def known_systems() -> list[System]:
    systems = [System("mfcc_stats", "MFCC-stats cosine (reference, no training)", "mfcc_stats",
                      "cosine", "reference"),
               System("ivector", "i-vector + PLDA (baseline)", "ivector", "plda", "baseline"),
               System("ivector_cosine", "i-vector, cosine", "ivector", "cosine", "reference")]
    for model, mlabel in MODEL_LABELS.items():
        for strategy, slabel in STRATEGY_LABELS.items():
            systems.append(System(f"{model}_{strategy}", f"{mlabel}, {slabel}",
                                  f"{model}_{strategy}", "cosine", "deepspeaker"))
    systems += [System("embedding_fusion", "embedding fusion", "fusion", "embedding", "fusion"),
                System("score_fusion", "score fusion", "fusion", "score", "fusion")]
    return systems


def study_systems(exp: Path) -> list[System]:
    """The optional experiments of stages 11 and 12 that exist under ``exp``.

    ``<model>_<strategy>_spk<pct>``: trained on pct% of the training speakers (T7);
    ``<model>_source_only``: another recipe's model as it is; ``<model>_transfer``: that
    model fine-tuned here with the triplet loss (T9/T10).
    """
    found = []
    for d in sorted(p for p in exp.iterdir() if p.is_dir()) if exp.is_dir() else []:
        for model, mlabel in MODEL_LABELS.items():
            m = re.fullmatch(rf"{model}_(\w+?)_spk(\d+)", d.name)
            if m and m.group(1) in STRATEGY_LABELS:
                found.append(System(d.name, f"{mlabel}, {STRATEGY_LABELS[m.group(1)]}, "
                                    f"{m.group(2)}% of the training speakers", d.name,
                                    "cosine", "size"))
            elif d.name == f"{model}_source_only":
                source = (d / "source").read_text().strip() if (d / "source").is_file() else "?"
                found.append(System(d.name, f"{mlabel}, trained on {source} only", d.name,
                                    "cosine", "transfer"))
            elif d.name == f"{model}_transfer":
                found.append(System(d.name, f"{mlabel}, fine-tuned here from that model",
                                    d.name, "cosine", "transfer"))
    return found


def trial_names(trials_dir: Path) -> list[str]:
    names = [MAIN_TRIALS] + [f"trials_enroll{k}" for k in ENROLL_COUNTS]
    return [n for n in names if (trials_dir / n).is_file()]


def evaluate(score_path: Path, trials_path: Path, trials=None) -> tuple[Metrics, np.ndarray, np.ndarray, int]:
    trials = trials if trials is not None else read_trials(trials_path)
    skip = read_skipped(score_path)
    kept = [t for t in trials if (t.enroll, t.test) not in skip]
    scores = scores_for_trials(kept, read_scores(score_path), trials_path, score_path)
    labels = np.array([t.target for t in kept], dtype=bool)
    return compute_metrics(scores, labels, [t.test for t in kept]), scores, labels, len(skip)


def collect(exp: Path, data: Path, eval_set: str = "eval", strategy: str = "softmax_triplet") -> Report:
    """Evaluate every score file of the layout above that exists."""
    trials_dir = data / eval_set
    names = trial_names(trials_dir)
    if MAIN_TRIALS not in names:
        raise DeepSpeakerError(f"{trials_dir}/{MAIN_TRIALS}: missing; run the trials stage first")
    rep = Report(exp=exp, data=data, eval_set=eval_set, strategy=strategy)
    members = exp / "fusion" / "systems"
    if members.is_file():
        rep.fusion_members = members.read_text().split()
    for name in names:
        trials = read_trials(trials_dir / name)
        rep.trial_counts[name] = (sum(t.target for t in trials), sum(not t.target for t in trials))
        for system in known_systems() + study_systems(exp):
            path = exp / system.exp / "scores" / f"{system.prefix}_{name}"
            if not path.is_file():
                continue
            metrics, scores, labels, skipped = evaluate(path, trials_dir / name, trials)
            rep.results[(system.key, name)] = Result(system, metrics, scores, labels, skipped, path)
    if rep.get("ivector") is None and not any(k == MAIN_TRIALS for _, k in rep.results):
        raise DeepSpeakerError(f"{exp}: no score file of any known system for {trials_dir}/trials")
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


def table_t5(rep: Report) -> list[str]:
    base = rep.get("ivector")
    lines = ["| system | EER [%] | minDCF | ACC [%] | EER rel. reduction vs i-vector | "
             "error (1-ACC) rel. reduction vs i-vector |", "|---|---|---|---|---|---|"]
    keys = ["ivector"] + [f"{m}_{s}" for m in MODEL_LABELS for s in STRATEGY_LABELS]
    by_key = {s.key: s for s in known_systems()}
    for key in keys:
        r = rep.get(key)
        if r is None and key != "ivector" and not any(rep.get(f"{key.split('_')[0]}_{s}")
                                                     for s in STRATEGY_LABELS):
            continue  # a model that was not trained at all: no rows
        cells = [by_key[key].label] + _row_metrics(r)
        if key == "ivector" or r is None or base is None:
            cells += ["", ""]
        else:
            cells += [_rel(rel_reduction(base.metrics.eer, r.metrics.eer)),
                      _rel(rel_reduction(_err(base.metrics), _err(r.metrics)))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def best_single(rep: Report) -> Result | None:
    members = [rep.get(k) for k in (rep.fusion_members or
                                    [f"{m}_{rep.strategy}" for m in MODEL_LABELS])]
    members = [r for r in members if r is not None]
    return min(members, key=lambda r: r.metrics.eer) if members else None


def table_t6(rep: Report) -> list[str]:
    best = best_single(rep)
    lines = ["| system | EER [%] | minDCF | ACC [%] | EER rel. reduction vs best single | "
             "error rel. reduction vs best single |", "|---|---|---|---|---|---|"]
    members = rep.fusion_members or [f"{m}_{rep.strategy}" for m in MODEL_LABELS]
    by_key = {s.key: s for s in known_systems()}
    for key in members + ["embedding_fusion", "score_fusion"]:
        r = rep.get(key)
        label = by_key[key].label if key in by_key else key
        if best is not None and r is best:
            label += " (best single)"
        cells = [label] + _row_metrics(r)
        if r is None or best is None or r is best:
            cells += ["", ""]
        else:
            cells += [_rel(rel_reduction(best.metrics.eer, r.metrics.eer)),
                      _rel(rel_reduction(_err(best.metrics), _err(r.metrics)))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def t8_keys(rep: Report) -> list[str]:
    return ["ivector"] + [f"{m}_{rep.strategy}" for m in MODEL_LABELS] + ["score_fusion"]


def table_t8(rep: Report) -> list[str]:
    ks = [k for k in ENROLL_COUNTS if f"trials_enroll{k}" in rep.trial_counts]
    head = "| system | " + " | ".join(f"EER [%] k={k}" for k in ks) + " | " + \
        " | ".join(f"ACC [%] k={k}" for k in ks) + " |"
    lines = [head, "|---|" + "---|" * (2 * len(ks))]
    by_key = {s.key: s for s in known_systems()}
    for key in t8_keys(rep):
        rs = [rep.get(key, f"trials_enroll{k}") for k in ks]
        if all(r is None for r in rs):
            continue
        cells = [by_key[key].label] + [_pct(r.metrics.eer) if r else "not run" for r in rs] + \
            [_pct(r.metrics.acc) if r else "not run" for r in rs]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def table_t7(rep: Report) -> list[str]:
    """EER / ACC against the share of training speakers (paper T7); [] without stage 11."""
    rows = []
    for model, mlabel in MODEL_LABELS.items():
        full = rep.get(f"{model}_{rep.strategy}")
        parts = sorted(((int(k.rsplit("spk", 1)[1]), r) for (k, t), r in rep.results.items()
                        if t == MAIN_TRIALS and k.startswith(f"{model}_{rep.strategy}_spk")),
                       key=lambda x: x[0])
        if not parts:
            continue
        if full is not None:
            parts.append((100, full))
        for pct, r in parts:
            rows.append(f"| {mlabel} | {pct}% | " + " | ".join(_row_metrics(r)) + " |")
    if not rows:
        return []
    return ["| network | training speakers | EER [%] | minDCF | ACC [%] |",
            "|---|---|---|---|---|"] + rows


def table_transfer(rep: Report) -> list[str]:
    """T9/T10: trained here, trained elsewhere, trained elsewhere then fine-tuned here."""
    rows = []
    base = rep.get("ivector")
    if base is not None:
        rows.append("| " + " | ".join([base.system.label] + _row_metrics(base)) + " |")
    any_transfer = False
    for model in MODEL_LABELS:
        for key in (f"{model}_{rep.strategy}", f"{model}_source_only", f"{model}_transfer"):
            r = rep.get(key)
            if r is None:
                continue
            any_transfer |= key.endswith(("_source_only", "_transfer"))
            label = r.system.label + (" (trained here only)" if key.endswith(rep.strategy) else "")
            rows.append("| " + " | ".join([label] + _row_metrics(r)) + " |")
    if not any_transfer:
        return []
    return ["| system | EER [%] | minDCF | ACC [%] |", "|---|---|---|---|"] + rows


# ----------------------------------------------------------------------------- claims

@dataclass
class Claim:
    text: str
    held: bool | None   # None: cannot be checked (systems missing)
    evidence: str


def check_claims(rep: Report) -> list[Claim]:
    claims = []
    base = rep.get("ivector")
    ds = [rep.get(f"{m}_{s}") for m in MODEL_LABELS for s in STRATEGY_LABELS]
    ds = [r for r in ds if r is not None]
    text = "Deep Speaker beats the i-vector baseline (every DS system: lower EER and higher ACC; T5)"
    if base is None or not ds:
        claims.append(Claim(text, None, "i-vector or Deep Speaker scores missing"))
    else:
        wins = [r for r in ds if r.metrics.eer < base.metrics.eer and
                (r.metrics.acc or 0) > (base.metrics.acc or 0)]
        best = min(ds, key=lambda r: r.metrics.eer)
        claims.append(Claim(text, len(wins) == len(ds),
                            f"{len(wins)} of {len(ds)} systems beat it; i-vector EER "
                            f"{_pct(base.metrics.eer)}% / ACC {_pct(base.metrics.acc)}%, best DS "
                            f"({best.system.label}) {_pct(best.metrics.eer)}% / "
                            f"{_pct(best.metrics.acc)}%"))
    for m, mlabel in MODEL_LABELS.items():
        rs = [rep.get(f"{m}_{s}") for s in ("softmax_triplet", "triplet", "softmax")]
        text = f"{mlabel}: softmax + triplet beats triplet only, which beats softmax only (EER and ACC; T5)"
        if any(r is None for r in rs):
            if any(r is not None for r in rs):
                claims.append(Claim(text, None, "not every strategy was run"))
            continue
        st, t, s = rs
        held = (st.metrics.eer < t.metrics.eer < s.metrics.eer and
                (st.metrics.acc or 0) > (t.metrics.acc or 0) > (s.metrics.acc or 0))
        claims.append(Claim(text, held, f"EER {_pct(st.metrics.eer)} / {_pct(t.metrics.eer)} / "
                                        f"{_pct(s.metrics.eer)}%, ACC {_pct(st.metrics.acc)} / "
                                        f"{_pct(t.metrics.acc)} / {_pct(s.metrics.acc)}% "
                                        "(softmax+triplet / triplet / softmax)"))
    best, fused = best_single(rep), rep.get("score_fusion")
    text = "Score fusion beats the best single system (EER and ACC; T6)"
    if best is None or fused is None:
        claims.append(Claim(text, None, "fusion or its systems missing"))
    else:
        claims.append(Claim(text, fused.metrics.eer < best.metrics.eer and
                            (fused.metrics.acc or 0) > (best.metrics.acc or 0),
                            f"score fusion EER {_pct(fused.metrics.eer)}% / ACC "
                            f"{_pct(fused.metrics.acc)}% vs {best.system.label} "
                            f"{_pct(best.metrics.eer)}% / {_pct(best.metrics.acc)}%"))
    for model, mlabel in MODEL_LABELS.items():
        parts = sorted((int(k.rsplit("spk", 1)[1]), r) for (k, t), r in rep.results.items()
                       if t == MAIN_TRIALS and k.startswith(f"{model}_{rep.strategy}_spk"))
        full = rep.get(f"{model}_{rep.strategy}")
        if parts and full is not None:
            parts.append((100, full))
            eers = [r.metrics.eer for _, r in parts]
            claims.append(Claim(f"{mlabel}: more training speakers, lower EER (T7)",
                                all(a > b for a, b in zip(eers, eers[1:])),
                                "EER " + " / ".join(_pct(e) for e in eers) + "% with " +
                                " / ".join(f"{p}%" for p, _ in parts) + " of the speakers"))
        here, source, tuned = (rep.get(f"{model}_{rep.strategy}"), rep.get(f"{model}_source_only"),
                               rep.get(f"{model}_transfer"))
        if tuned is not None and (here is not None or source is not None):
            others = [r for r in (here, source) if r is not None]
            claims.append(Claim(f"{mlabel}: a model of another corpus fine-tuned here beats the "
                                "model trained here only and the other corpus' model (T9/T10)",
                                all(tuned.metrics.eer < r.metrics.eer for r in others),
                                f"EER fine-tuned {_pct(tuned.metrics.eer)}% vs " +
                                ", ".join(f"{r.system.label} {_pct(r.metrics.eer)}%"
                                          for r in others)))
    ks = [k for k in ENROLL_COUNTS if f"trials_enroll{k}" in rep.trial_counts]
    for key in t8_keys(rep):
        rs = [rep.get(key, f"trials_enroll{k}") for k in ks]
        if len(ks) < 2 or any(r is None for r in rs):
            continue
        eers = [r.metrics.eer for r in rs]
        label = rs[0].system.label
        claims.append(Claim(f"{label}: EER falls as enrollment utterances go from "
                            f"{ks[0]} to {ks[-1]} (T8)",
                            all(a > b for a, b in zip(eers, eers[1:])),
                            "EER " + " / ".join(_pct(e) for e in eers) + "% for k = " +
                            ", ".join(map(str, ks))))
    return claims


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
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, format="png", bbox_inches="tight")  # room for an outside legend
    tmp.replace(path)


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

def write_report(rep: Report, title: str) -> Path:
    """``exp/RESULTS.md`` and the PNGs it links, in ``exp/report/``."""
    exp = rep.exp
    fig_dir = exp / "report"
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

    n_tar, n_non = rep.trial_counts[MAIN_TRIALS]
    anchors = next((r.metrics.num_anchors for r in main if r.metrics.num_anchors), None)
    lines = [f"# {title}", "",
             f"Made by `python -m deepspeaker.bin.make_report` on {datetime.datetime.now():%Y-%m-%d %H:%M}, "
             f"commit {git_commit()}.", "",
             f"Eval trials `{rep.data / rep.eval_set}/{MAIN_TRIALS}`: {n_tar} target + {n_non} "
             f"non-target" + (f" ({anchors} anchors, 1 positive + {n_non // max(1, n_tar)} "
                              "negatives each, paper §4.1)" if anchors else "") + ".  "
             "EER and ACC in %, minDCF at p_target = 0.01.  Relative reductions as the paper "
             "computes them: (ref - x) / ref of EER and of the error 1 - ACC.", "",
             "## T5: i-vector baseline and Deep Speaker, by network and training strategy", ""]
    lines += table_t5(rep)
    ref = rep.get("mfcc_stats")
    cos = rep.get("ivector_cosine")
    extra = []
    if ref is not None:
        extra.append(f"MFCC-stats cosine (no training): EER {_pct(ref.metrics.eer)}%, "
                     f"ACC {_pct(ref.metrics.acc)}%")
    if cos is not None:
        extra.append(f"i-vector with cosine instead of PLDA: EER {_pct(cos.metrics.eer)}%, "
                     f"ACC {_pct(cos.metrics.acc)}%")
    if extra:
        lines += ["", "Reference rows: " + "; ".join(extra) + "."]
    lines += ["", f"## T6: fusion of {' + '.join(rep.fusion_members) or 'ResCNN + GRU'}", ""]
    lines += table_t6(rep)
    lines += ["", "Embedding fusion: per utterance, the sum of the unit embeddings, renormalised, "
              "then cosine.  Score fusion: each system's scores z-normalised over all its "
              "trials, then added (paper §5.1.3).", "",
              f"## T8: enrollment with k utterances (Deep Speaker: {STRATEGY_LABELS[rep.strategy]})", ""]
    lines += table_t8(rep)
    lines += ["", "A k-utterance model averages the unit embeddings of k enrollment utterances and "
              "renormalises (i-vector: PLDA with k utterances).  The same anchors are scored for "
              "every k."]
    t7, tr = table_t7(rep), table_transfer(rep)
    if t7:
        lines += ["", "## T7: training-set size (nested seeded subsets of the training speakers)",
                  ""] + t7
    if tr:
        lines += ["", "## T9/T10: transfer from another corpus (triplet fine-tuning)", ""] + tr
    lines += ["", "## The paper's claims on this corpus", "",
              "| claim | held? | numbers |", "|---|---|---|"]
    for c in check_claims(rep):
        verdict = {True: "**held**", False: "**not held**", None: "not checked"}[c.held]
        lines.append(f"| {c.text} | {verdict} | {c.evidence} |")
    if det_systems:
        lines += ["", "## DET curves and score histograms", "", "![DET curves](report/det.png)", ""]
        if study:
            lines += ["![DET curves of stages 11-12](report/det_studies.png)", ""]
        lines.append(" ".join(f"[{r.system.label}](report/hist_{r.system.key}.png)" for r in main))
    skipped = [(r.path, r.skipped) for r in rep.results.values() if r.skipped]
    if skipped:
        lines += ["", "Trials left out (utterances without a vector, listed in `*.skipped`): " +
                  "; ".join(f"`{p}` {n}" for p, n in skipped) + "."]
    lines += ["", "## Corpus", ""] + corpus_lines(rep.data)
    lines += ["", "## Trial lists", "", "| list | target | non-target |", "|---|---|---|"]
    lines += [f"| {n} | {t} | {nt} |" for n, (t, nt) in rep.trial_counts.items()]
    lines += ["", "## Configs (as saved beside each experiment)", ""] + config_lines(exp)
    out = exp / "RESULTS.md"
    with atomic_write(out) as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return out


__all__ = ["Claim", "Report", "Result", "System", "check_claims", "collect", "known_systems",
           "plot_det", "plot_histogram", "rel_reduction", "table_t5", "table_t6", "table_t8",
           "write_report"]
