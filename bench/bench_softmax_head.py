"""Training cost per epoch against the number of training speakers: full vs partial softmax.

An epoch of softmax training is ``utterances / batch_size`` steps, so with a fixed number
of utterances per speaker it is linear in the speakers only if a step's cost is constant.
A full softmax head is not: its matmuls, its gradient and the optimizer's pass over its
momentum are O(speakers) in every step.  The partial softmax
(``softmax.sample_classes: K``, :class:`deepspeaker.nnet.objectives.SampledHead`) touches
K rows a step.  For each ``--speakers`` N this bench times the same network step both ways,
in the same run and alternating (``--repeats`` rounds, median), on a pre-built batch of
random features with random labels:

* ``full``: ``SoftmaxClassifier`` over N classes and torch's SGD over every parameter,
  as the trainer runs ``sample_classes: 0``;
* ``partial``: the classes drawn by :func:`deepspeaker.nnet.data.draw_classes` (on the
  host, each step), the head's rows through :class:`SampledHead`, as the trainer runs
  ``sample_classes: K``.

It prints ms per step, each relative to the smallest N, and the exponent ``b`` of the
per-epoch cost (``cost ~ N^b``, from the smallest N to this one: ``b = 1 + log(t_N /
t_0) / log(N / N_0)``).  Target: ``b`` at most 1.02 for the partial softmax at every N
(what remains is noise).

    python bench/bench_softmax_head.py [--speakers 1000,4000,16000,64000] \\
        [--sample-classes 1000] [--model gru] [--width 0.125] [--batch-size 64] \\
        [--chunk-frames 160] [--steps 8] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepspeaker.nnet.config import train_config_from_dict  # noqa: E402
from deepspeaker.nnet.data import draw_classes  # noqa: E402
from deepspeaker.nnet.distributed import DistInfo  # noqa: E402
from deepspeaker.nnet.models import build_model  # noqa: E402
from deepspeaker.nnet.objectives import SampledHead, SoftmaxClassifier  # noqa: E402

NUM_BINS = 64


def make_step(args, num_classes: int, partial: bool):
    """One training step of the study's shape (a closure) over ``num_classes`` speakers."""
    torch.manual_seed(0)
    cfg = train_config_from_dict({"model": {"name": args.model, "options": {"width": args.width}}})
    net = SoftmaxClassifier(build_model(args.model, width=args.width), num_classes, cfg.softmax.scale)
    o = cfg.optimizer
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)
    sampled = SampledHead(net.head, o.momentum, o.weight_decay, info) if partial else None
    opt = torch.optim.SGD(net.parameters(), lr=o.lr_start, momentum=o.momentum,
                          weight_decay=o.weight_decay)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((args.batch_size, args.chunk_frames, NUM_BINS), generator=gen)
    labels = np.random.default_rng(2).integers(0, num_classes, args.batch_size)
    draws = itertools.count()
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        if sampled is None:
            logits, _ = net(x)
            loss = F.cross_entropy(logits, torch.as_tensor(labels))
        else:
            classes = draw_classes(labels, num_classes, args.sample_classes,
                                   np.random.default_rng([0, next(draws)]))
            targets = torch.as_tensor(np.searchsorted(classes, labels))
            logits, _ = net(x, *sampled.take(torch.as_tensor(classes)))
            loss = F.cross_entropy(logits, targets)
        loss.backward()
        opt.step()
        if sampled is not None:
            sampled.update(o.lr_start)

    return step


def time_step(args, num_classes: int, partial: bool) -> float:
    """Median seconds of ``args.steps`` steps after ``args.warmup``."""
    step = make_step(args, num_classes, partial)
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def exponent(t: float, t0: float, n: int, n0: int) -> float:
    """b of cost per epoch ~ N^b between (n0, t0) and (n, t): steps ~ N, each t."""
    return 1.0 + math.log(t / t0) / math.log(n / n0) if n != n0 else float("nan")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speakers", default="1000,4000,16000,64000",
                   help="comma-separated numbers of training speakers (classes)")
    p.add_argument("--sample-classes", type=int, default=1000, help="K of the partial softmax")
    p.add_argument("--model", choices=("rescnn", "gru"), default="gru")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-frames", type=int, default=160)
    p.add_argument("--steps", type=int, default=8, help="timed steps of each")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each first")
    p.add_argument("--repeats", type=int, default=3, help="rounds (full, partial per N); median")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    return p


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in text.split(",")})
    except ValueError:
        raise SystemExit(f"--speakers: expected comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 2:
        raise SystemExit(f"--speakers: every size must be >= 2, got {text!r}")
    return sizes


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    sizes = parse_sizes(args.speakers)
    if args.sample_classes < 1 or args.steps < 1 or args.repeats < 1:
        raise SystemExit("--sample-classes, --steps and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    print(f"{args.model} width {args.width}, batch {args.batch_size} x {args.chunk_frames} frames, "
          f"cpu, {torch.get_num_threads()} thread(s); partial softmax K = {args.sample_classes}; "
          f"median of {args.steps} steps, median of {args.repeats} rounds")
    times = {(n, mode): [] for n in sizes for mode in ("full", "partial")}
    for _ in range(args.repeats):
        for n in sizes:
            for mode in ("full", "partial"):
                times[n, mode].append(time_step(args, n, mode == "partial"))
    med = {k: statistics.median(v) for k, v in times.items()}
    n0 = sizes[0]
    print(f"{'speakers':>9s} {'full ms':>9s} {'x':>6s} {'b':>6s} {'partial ms':>11s} {'x':>6s} {'b':>6s}")
    for n in sizes:
        cells = []
        for mode in ("full", "partial"):
            t, t0 = med[n, mode], med[n0, mode]
            cells.append(f"{1000 * t:9.1f} {t / t0:6.3f} {exponent(t, t0, n, n0):6.3f}")
        print(f"{n:9d} " + "  ".join(cells))
    print("x: step time / that of the smallest size; b: per-epoch cost ~ N^b from the smallest "
          "size; target b <= 1.02 for the partial softmax")
    return 0


if __name__ == "__main__":
    sys.exit(main())
