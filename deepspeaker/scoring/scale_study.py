"""The training-size study (egs/mini_scale): every system against the number of training
speakers, with the i-vector beside the networks, which the paper's T7 did not run.

For each size N the recipe left a complete experiment in ``exp/spk<N>`` (stages 1-10 of
egs/mini on N speakers, the same eval trials); this module reads each with
:func:`deepspeaker.scoring.report.collect` and writes ``exp/RESULTS.md``:

* EER, minDCF and ACC of every system at every size, the relative change of the best
  Deep Speaker system against the i-vector, and a plot on a log axis;
* the crossover: the first size at which the best Deep Speaker system's EER is below
  the i-vector's, measured between two sizes that were run; otherwise the gap at each
  size, the per-4x factors, and where constant factors would put the crossing (said to
  be an extrapolation);
* the paper's claims at each size (Deep Speaker beats the i-vector; more data helps
  Deep Speaker more than the i-vector);
* the per-stage cost table of ``exp/timing.tsv`` (:mod:`deepspeaker.timing`): wall
  time and peak memory of each step at each size, the growth exponent b of
  ``time ~ N^b`` between sizes (b <= 1: no worse than linear), the dominant stage.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..timing import StepTime, read_timing
from ..utils import DeepSpeakerError, atomic_write
from .report import Report, Result, _save_png, collect, git_commit

# (label, how to find it in one size's report); the Deep Speaker systems are softmax
# pre-training + triplet, scored by cosine and by the PLDA of their embeddings.
DS_SYSTEMS = (("ResCNN, cosine", "rescnn", "cosine"), ("ResCNN, PLDA", "rescnn", "plda"),
              ("GRU, cosine", "gru", "cosine"), ("GRU, PLDA", "gru", "plda"))
STEP_LABELS = {"0": "0 generation", "1": "1 fbank + VAD", "2": "2 trials + MFCC-stats",
               "3": "3 UBM", "4": "4 T-matrix + i-vectors", "5": "5 i-vector PLDA + scores",
               "6": "6 softmax (both networks)", "7": "7 triplet (both networks)",
               "8": "8-9 embeddings, PLDA, scores", "10": "10 fusion + report"}
# Steps whose work is the eval set's (fixed across sizes) more than the training set's.
EVAL_BOUND = {"2", "5", "10"}
MADE = re.compile(r"made (\d+), skipped (\d+) utterances")


@dataclass
class Point:
    size: int
    rows: dict[str, Result]  # label -> main-list result

    def best_ds(self) -> tuple[str, Result] | None:
        ds = [(k, r) for k, r in self.rows.items() if k in {s[0] for s in DS_SYSTEMS}]
        return min(ds, key=lambda kr: kr[1].metrics.eer) if ds else None


def point_rows(rep: Report) -> dict[str, Result]:
    """The study's rows of one size's report (those that were run)."""
    found = {"MFCC-stats (no training)": rep.of(rep.find("reference")),
             "i-vector + PLDA": rep.baseline()}
    for label, model, backend in DS_SYSTEMS:
        found[label] = rep.ds(model, "softmax_triplet", backend=backend)
    found["score fusion (ResCNN + GRU, cosine)"] = rep.score_fusion()
    return {k: r for k, r in found.items() if r is not None}


def collect_points(exp: Path, data: Path, sizes: Sequence[int]) -> list[Point]:
    points = []
    for n in sizes:
        sub = exp / f"spk{n}"
        if not (data / f"spk{n}" / "eval" / "trials").is_file():
            continue
        try:
            points.append(Point(n, point_rows(collect(sub, data / f"spk{n}"))))
        except DeepSpeakerError as e:  # a size whose stages have not run yet
            raise DeepSpeakerError(f"size {n}: {e} (run its stages first: ./run.sh --sizes {n})") from e
    if not points:
        raise DeepSpeakerError(f"{exp}: no size of {' '.join(map(str, sizes))} has results yet")
    return points


def compared(points: list[Point]) -> list[tuple[int, Result, str, Result]]:
    """(size, i-vector, best Deep Speaker label, its result) of each size that has both."""
    out = []
    for p in points:
        iv, best = p.rows.get("i-vector + PLDA"), p.best_ds()
        if iv is not None and best is not None:
            out.append((p.size, iv, *best))
    return out


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def per_4x(a: float, b: float, size_a: int, size_b: int) -> float:
    """The factor by which ``a`` (at size_a) becomes ``b`` (at size_b), per 4x the speakers."""
    return (b / a) ** (math.log(4) / math.log(size_b / size_a))


def results_table(points: list[Point]) -> list[str]:
    labels = [k for k in points[0].rows] + [k for p in points[1:] for k in p.rows
                                            if k not in points[0].rows]
    head = " | ".join(f"{p.size:,} spk EER / minDCF / ACC" for p in points)
    lines = [f"| system | {head} |", "|---|" + "---|" * len(points)]
    for label in dict.fromkeys(labels):
        cells = []
        for p in points:
            r = p.rows.get(label)
            cells.append("" if r is None else f"{_pct(r.metrics.eer)}% / {r.metrics.min_dcf:.3f} / "
                         f"{_pct(r.metrics.acc)}%")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def gap_table(points: list[Point]) -> list[str]:
    """Best Deep Speaker system against the i-vector at each size, with per-4x factors."""
    lines = ["| speakers | i-vector EER | best Deep Speaker (system) | DS / i-vector | "
             "EER rel. change vs i-vector | i-vector per 4x | DS per 4x |", "|---|---|---|---|---|---|---|"]
    prev = None
    for size, iv, label, ds in compared(points):
        e_iv, e_ds = iv.metrics.eer, ds.metrics.eer
        f_iv = f_ds = ""
        if prev is not None:
            f_iv = f"x{per_4x(prev[1], e_iv, prev[0], size):.2f}"
            f_ds = f"x{per_4x(prev[2], e_ds, prev[0], size):.2f}"
        lines.append(f"| {size:,} | {_pct(e_iv)}% | {_pct(e_ds)}% ({label}) | {e_ds / e_iv:.2f} | "
                     f"{100 * (e_iv - e_ds) / e_iv:+.1f}% | {f_iv} | {f_ds} |")
        prev = (size, e_iv, e_ds)
    return lines


def crossover(points: list[Point]) -> str:
    """Where the best Deep Speaker EER falls below the i-vector's: measured, or not reached."""
    pairs = [(n, iv.metrics.eer, ds.metrics.eer) for n, iv, _, ds in compared(points)]
    if not pairs:
        return "No size has both an i-vector and a Deep Speaker result yet."
    for i, (n, e_iv, e_ds) in enumerate(pairs):
        if e_ds < e_iv:
            if i == 0:
                return (f"**Measured**: Deep Speaker is already below the i-vector at the smallest "
                        f"size run, {n:,} speakers ({_pct(e_ds)}% against {_pct(e_iv)}%).")
            n0, iv0, ds0 = pairs[i - 1]
            # log(DS/iv) is taken as linear in log N between the two sizes
            r0, r1 = math.log(ds0 / iv0), math.log(e_ds / e_iv)
            at = math.exp(math.log(n0) + (math.log(n) - math.log(n0)) * r0 / (r0 - r1))
            return (f"**Measured**: the crossover lies between {n0:,} speakers (DS {_pct(ds0)}% "
                    f"against i-vector {_pct(iv0)}%) and {n:,} ({_pct(e_ds)}% against "
                    f"{_pct(e_iv)}%), near {at:,.0f} speakers by log-log interpolation.")
    return _no_crossover(pairs)


def _no_crossover(pairs: list[tuple[int, float, float]]) -> str:
    gaps = "; ".join(f"{n:,}: {_pct(ds)}% against {_pct(iv)}% (x{ds / iv:.2f})" for n, iv, ds in pairs)
    text = f"**Not reached** within the sizes run.  Gap (best DS against i-vector) at each size: {gaps}."
    if len(pairs) < 2:
        return text
    (n0, iv0, ds0), (n1, iv1, ds1) = pairs[-2], pairs[-1]
    f_iv, f_ds = per_4x(iv0, iv1, n0, n1), per_4x(ds0, ds1, n0, n1)
    text += f"  Per 4x speakers over the last two sizes: i-vector x{f_iv:.2f}, DS x{f_ds:.2f}."
    if f_ds < f_iv:
        fours = math.log(ds1 / iv1) / math.log(f_iv / f_ds)
        text += (f"  If those factors held (an extrapolation, not a measurement), the lines "
                 f"would cross near {n1 * 4 ** fours:,.0f} speakers.")
    else:
        text += "  At these factors the gap does not close."
    return text


def claims_table(points: list[Point]) -> list[str]:
    lines = ["| speakers | Deep Speaker beats the i-vector (EER and ACC) | more data helps DS more "
             "than the i-vector (relative EER reduction from the size before) |", "|---|---|---|"]
    prev = None
    for size, iv, _, ds in compared(points):
        beats = ds.metrics.eer < iv.metrics.eer and (ds.metrics.acc or 0) > (iv.metrics.acc or 0)
        c1 = (f"{'**held**' if beats else '**not held**'}: {_pct(ds.metrics.eer)}% / "
              f"{_pct(ds.metrics.acc)}% against {_pct(iv.metrics.eer)}% / {_pct(iv.metrics.acc)}%")
        c2 = ""
        if prev is not None:
            r_ds = (prev[1] - ds.metrics.eer) / prev[1]
            r_iv = (prev[0] - iv.metrics.eer) / prev[0]
            c2 = (f"{'**held**' if r_ds > r_iv else '**not held**'}: DS {100 * r_ds:+.1f}%, "
                  f"i-vector {100 * r_iv:+.1f}%")
        lines.append(f"| {size:,} | {c1} | {c2} |")
        prev = (iv.metrics.eer, ds.metrics.eer)
    return lines


def generated(exp: Path, size: int) -> int | None:
    """Utterances stage 0 of a size made (the sizes before it made the rest)."""
    log = exp / f"spk{size}" / "log" / "make_corpus.log"
    found = MADE.findall(log.read_text()) if log.is_file() else []
    return max(int(m) for m, _ in found) if found else None


def exponent(t0: float, t1: float, n0: float, n1: float) -> float | None:
    return None if t0 <= 0 or t1 <= 0 or n0 == n1 else math.log(t1 / t0) / math.log(n1 / n0)


def growth_cells(times: Sequence[float | None], work: Sequence[float | None]) -> list[str]:
    """The exponent b of each pair of consecutive sizes, "" where a time or work is missing."""
    cells = []
    for t0, t1, n0, n1 in zip(times, times[1:], work, work[1:]):
        e = exponent(t0, t1, n0, n1) if t0 and t1 and n0 and n1 else None
        cells.append("" if e is None else f"{e:.2f}")
    return cells


def _work(exp: Path, step: str, size: int, utts_per_spk: int) -> float | None:
    """What a step's cost is measured against: training utterances; made ones for step 0."""
    return generated(exp, size) if step == "0" else size * utts_per_spk


def cost_table(exp: Path, sizes: Sequence[int], utts_per_spk: int) -> tuple[list[str], str]:
    """The per-stage table of exp/timing.tsv and a sentence on what dominates."""
    timing = read_timing(exp / "timing.tsv")
    sizes = [n for n in sizes if any(k[0] == n for k in timing)]
    if not sizes:
        return ["No step has been timed yet (exp/timing.tsv)."], ""
    head = " | ".join(f"{n:,} spk: s (peak MB)" for n in sizes)
    growth = " | ".join(f"b {a:,}->{b:,}" for a, b in zip(sizes, sizes[1:]))
    lines = [f"| step | {head} | {growth} |" if growth else f"| step | {head} |",
             "|---|" + "---|" * (2 * len(sizes) - 1)]
    for step, label in STEP_LABELS.items():
        rows: list[StepTime | None] = [timing.get((n, step)) for n in sizes]
        if not any(rows):
            continue
        cells = ["" if r is None else f"{r.wall_s:.0f} ({r.max_rss_mb:,.0f})" for r in rows]
        cells += growth_cells([r and r.wall_s for r in rows],
                              [_work(exp, step, n, utts_per_spk) for n in sizes])
        lines.append(f"| {label}{' (eval-bound)' if step in EVAL_BOUND else ''} | " + " | ".join(cells) + " |")
    totals = [sum(r.wall_s for k, r in timing.items() if k[0] == n) for n in sizes]
    lines.append("| **total** | " + " | ".join(f"**{t / 60:.1f} min**" for t in totals)
                 + " |" + " |" * (len(sizes) - 1))
    last = sizes[-1]
    top = max((r for k, r in timing.items() if k[0] == last), key=lambda r: r.wall_s)
    share = top.wall_s / totals[-1]
    return lines, (f"At {last:,} speakers the dominant step is {STEP_LABELS.get(top.step, top.step)} "
                   f"({top.wall_s / 60:.1f} min, {100 * share:.0f}% of that size's "
                   f"{totals[-1] / 60:.1f} min); all sizes together: {sum(totals) / 60:.1f} min.")


# A trainer's progress line (deepspeaker/nnet/trainer.py): "... lr 0.04816 118.2 utt/s".
RATE = re.compile(r" step \d+/\d+ .* ([0-9.]+) utt/s$")


def train_rate(run_dir: Path) -> float | None:
    """The median training rate (utterances a second) of one training's rank-0 log.

    The steps a conf asks for grow slower than the data, so a stage's wall time says
    little about whether training scales; the time of one epoch does: training
    utterances over this rate (the dev EER each epoch adds a fixed eval-set cost)."""
    log = run_dir / "log" / "train.rank0.log"
    if not log.is_file():
        return None
    rates = [float(m.group(1)) for line in log.read_text(errors="replace").splitlines()
             if (m := RATE.search(line))]
    return statistics.median(rates) if rates else None


def epoch_table(exp: Path, sizes: Sequence[int], utts_per_spk: int) -> list[str]:
    """Seconds per training epoch of each network's trainings at each size, with b."""
    runs = sorted({d.name for n in sizes for d in (exp / f"spk{n}").glob("*_softmax*")
                   if (d / "log" / "train.rank0.log").is_file()})
    if not runs:
        return []
    head = [f"{n:,} spk: utt/s, s/epoch" for n in sizes] + [f"b {a:,}->{b:,}" for a, b in zip(sizes, sizes[1:])]
    lines = ["| training | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for run in runs:
        rates = [train_rate(exp / f"spk{n}" / run) for n in sizes]
        epochs = [None if r is None else n * utts_per_spk / r for n, r in zip(sizes, rates)]
        cells = ["" if r is None else f"{r:.0f}, {e:.1f}" for r, e in zip(rates, epochs)]
        cells += growth_cells(epochs, list(sizes))
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return lines


def plot_study(points: list[Point], path: Path, title: str) -> None:
    """EER, minDCF and ACC against the number of training speakers (log axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 4.0), dpi=110)
    labels = list(dict.fromkeys(k for p in points for k in p.rows))
    for label in labels:
        xs = [p.size for p in points if label in p.rows]
        for ax, get in zip(axes, (lambda m: 100 * m.eer, lambda m: m.min_dcf,
                                  lambda m: 100 * (m.acc or 0))):
            ys = [get(p.rows[label].metrics) for p in points if label in p.rows]
            ax.plot(xs, ys, marker="o", lw=1.4, ls="--" if "MFCC" in label else "-", label=label)
    for ax, name in zip(axes, ("EER [%]", "minDCF (p=0.01)", "ACC [%] (1 of 100)")):
        ax.set_xscale("log")
        ax.set_xticks([p.size for p in points], [f"{p.size:,}" for p in points])
        ax.minorticks_off()
        ax.set_xlabel("training speakers")
        ax.set_ylabel(name)
        ax.grid(True, color="0.85", lw=0.6)
    axes[0].set_yscale("log")
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def write_study(exp: Path, data: Path, sizes: Sequence[int], utts_per_spk: int, title: str) -> Path:
    points = collect_points(exp, data, sizes)
    plot_study(points, exp / "report" / "scale.png", title)
    costs, dominant = cost_table(exp, sizes, utts_per_spk)
    lines = [f"# {title}", "",
             f"Made by `python -m deepspeaker.bin.make_scale_report`, commit {git_commit()}.  Each size: "
             f"its first N training speakers of the generator, {utts_per_spk} utterances each, "
             "egs/mini's dev and eval speakers and trial lists; the experiments are in "
             "`exp/spk<N>/` (each with its own RESULTS.md).  EER and ACC in %, minDCF at "
             "p_target = 0.01.  Deep Speaker: softmax pre-training, then triplet.", "",
             "## EER, minDCF and ACC against the number of training speakers", "",
             *results_table(points), "", "![the study](report/scale.png)", "",
             "## Deep Speaker against the i-vector", "",
             "Best Deep Speaker system: the lowest EER of the four network rows (fusion left out).  "
             "Relative change as the paper computes it, (i-vector - DS) / i-vector; per 4x: "
             "the factor of the EER for 4x the speakers between this size and the one before.", "",
             *gap_table(points), "", crossover(points), "",
             "## The paper's claims at each size", "", *claims_table(points), "",
             "## What each step costs", "",
             "Wall seconds and the peak resident memory of the largest process (MB) of each step "
             "(`exp/timing.tsv`); b: the exponent of time ~ N^b between two sizes, N the "
             "training utterances (for generation: the utterances that size made), so b <= 1 "
             "is no worse than linear; eval-bound steps work mostly on the fixed eval set.", "",
             *costs, "", dominant, ""]
    epochs = epoch_table(exp, sizes, utts_per_spk)
    if epochs:
        lines += ["Training per epoch: the median rate of each training's progress lines "
                  "(both networks train side by side, as the recipe runs them) and the "
                  "training utterances over it; b as above, per epoch.", "", *epochs, ""]
    out = exp / "RESULTS.md"
    with atomic_write(out) as f:
        f.write("\n".join(lines))
    return out
