"""Training throughput: the real trainer loop against the bare network step, same run.

Two figures, in utterances per second, on the same model, device, thread count and
batch shape:

* ``trainer``: :func:`deepspeaker.nnet.trainer.train` itself, on a synthetic in-memory
  training set (random features, ``--speakers`` speakers); everything its loop does
  per step is included (chunk assembly from the in-memory features by the batch plan,
  host-to-device copies, forward, loss, negative mining, backward, SGD step, the
  per-step statistics and logging).  Dev evaluation is off (dev dir ``-``),
  ``save_every_steps`` is set beyond the run and the set is sized so that the timed
  steps stay inside one epoch, so no checkpoint or epoch-end work falls in the timed
  steps.  The time of each step is taken from the trainer's own periodic log records
  (``log_every_steps=1``: one record per step, stamped when the step is done).
* ``bare``: the same network (``SoftmaxClassifier`` / ``TripletNet`` of
  :mod:`deepspeaker.nnet.objectives` around ``build_model``) with the same SGD
  optimizer, a pre-built batch already on the device, ``zero_grad`` + forward + a
  trivial loss + backward + ``step``.

Each is warmed up for ``--warmup`` steps, then ``--steps`` steps are timed one by one
and the median step time is kept (the median resists bursts of load from other
processes on a shared machine).  The pair is measured ``--repeats`` times, trainer and
bare alternating, and the median of the per-round ratios is the result: load that
drifts over a minute then hits both sides of a round alike.  ``--threads`` defaults to 1: on a loaded 2-core
machine two intra-op threads made steps 10-40x slower at random, on either side.
A triplet step of ``--batch-size`` pairs is ``2 * batch_size`` utterances.

The bare step uses the trainer's own run settings (``amp: auto`` and
``channels_last: auto``, resolved by ``resolve_speed_settings``): on CUDA the forward
runs under bf16 autocast with the loss in float32 and ResCNN is channels_last; on the
CPU both run float32 in the default layout (the output says which).

    python bench/bench_train.py [--model rescnn|gru] [--stage softmax|triplet] \\
        [--width 0.125] [--batch-size 32] [--chunk-frames 200] [--steps 20] [--device auto]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepspeaker.nnet import trainer as trainer_mod  # noqa: E402
from deepspeaker.nnet.config import resolve_speed_settings, train_config_from_dict  # noqa: E402
from deepspeaker.nnet.data import FeatureSet  # noqa: E402
from deepspeaker.nnet.distributed import DistInfo  # noqa: E402
from deepspeaker.nnet.models import build_model  # noqa: E402
from deepspeaker.nnet.objectives import SoftmaxClassifier, TripletNet  # noqa: E402
from deepspeaker.nnet.trainer import train  # noqa: E402

NUM_BINS = 64


def synthetic_set(num_spk: int, utts_per_spk: int, min_len: int, max_len: int,
                  seed: int = 0) -> FeatureSet:
    """Random normalised features, ``utts_per_spk`` utterances of ``min_len..max_len`` frames each."""
    rng = np.random.default_rng(seed)
    utts, feats, utt2spk = [], [], {}
    speakers = [f"spk{s:03d}" for s in range(num_spk)]
    for s, spk in enumerate(speakers):
        for u in range(utts_per_spk):
            utt = f"{spk}-u{u:03d}"
            n = int(rng.integers(min_len, max_len + 1))
            utts.append(utt)
            feats.append(rng.standard_normal((n, NUM_BINS), dtype=np.float32))
            utt2spk[utt] = spk
    labels = np.array([speakers.index(utt2spk[u]) for u in utts], dtype=np.int64)
    return FeatureSet(utts=utts, feats=feats, speakers=speakers, labels=labels, utt2spk=utt2spk)


class _StepTimes(logging.Handler):
    """Collects (global_step, perf_counter) of the trainer's per-step log records."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.marks: list[tuple[int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("epoch %d step %d/%d (global %d)"):
            self.marks.append((int(record.args[3]), time.perf_counter()))


def time_trainer(args, device: torch.device, feats: FeatureSet) -> float:
    """Median seconds per trainer step over the timed steps."""
    total = args.warmup + args.steps
    cfg = train_config_from_dict({
        "model": {"name": args.model, "options": {"width": args.width}},
        "stage": args.stage, "chunk_frames": args.chunk_frames, "min_frames": 1,
        "batch_size": args.batch_size, "epochs": 1, "seed": 0,
        "save_every_steps": 10 * total, "log_every_steps": 1, "device": str(device),
    })
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=device, backend=None)

    class InMemory(FeatureSet):
        @classmethod
        def load(cls, data_dir, min_frames=1, max_frames=None, **kwargs):
            return feats

    handler = _StepTimes()
    log = logging.getLogger(trainer_mod.__name__)
    old_level, old_fs = log.level, trainer_mod.FeatureSet
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    trainer_mod.FeatureSet = InMemory
    try:
        with tempfile.TemporaryDirectory(prefix="bench_train_") as exp:
            train(cfg, "<in-memory>", None, exp, info, max_steps=total)
    finally:
        trainer_mod.FeatureSet = old_fs
        log.removeHandler(handler)
        log.setLevel(old_level)
    marks = dict(handler.marks)
    steps = [marks[s] - marks[s - 1] for s in range(args.warmup + 1, total + 1)
             if s in marks and s - 1 in marks]
    if len(steps) < args.steps:
        raise SystemExit(f"got {len(steps)} step times from the trainer's log, expected "
                         f"{args.steps}: has its per-step log message changed?")
    return statistics.median(steps)


def speed_settings(args, device: torch.device) -> tuple[bool, bool]:
    """(bf16 autocast, channels_last) the trainer resolves for this model on ``device``."""
    cfg = train_config_from_dict({"model": {"name": args.model, "options": {"width": args.width}}})
    return resolve_speed_settings(cfg, device)


def time_bare(args, device: torch.device, num_spk: int) -> float:
    """Median seconds per bare forward + backward + SGD step."""
    torch.manual_seed(0)
    use_bf16, use_channels_last = speed_settings(args, device)
    model = build_model(args.model, width=args.width)
    gen = torch.Generator().manual_seed(1)
    shape = (args.batch_size, args.chunk_frames, NUM_BINS)
    if args.stage == "softmax":
        net = SoftmaxClassifier(model, num_spk, 16.0).to(device)
        x = torch.randn(shape, generator=gen).to(device)
        y = torch.randint(0, num_spk, (args.batch_size,), generator=gen).to(device)

        def loss_fn():
            logits, _ = net(x)  # float32 head (SoftmaxClassifier)
            return F.cross_entropy(logits.float(), y)
    else:
        net = TripletNet(model).to(device)
        a = torch.randn(shape, generator=gen).to(device)
        p = torch.randn(shape, generator=gen).to(device)

        def loss_fn():
            ea, ep = net(a, p)
            with torch.autocast(device.type, enabled=False):
                return (ea.float() * ep.float()).sum()
    if use_channels_last:
        model.to(memory_format=torch.channels_last)
    # The trainer's own optimizer settings (a tiny learning rate would leave the weights,
    # and so the cost of the step, where they start).
    o = train_config_from_dict({"model": {"name": args.model}}).optimizer
    opt = torch.optim.SGD(net.parameters(), lr=o.lr_start, momentum=o.momentum,
                          weight_decay=o.weight_decay)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = loss_fn()
        loss.float().backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    sync()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("rescnn", "gru"), default="rescnn")
    p.add_argument("--stage", choices=("softmax", "triplet"), default="triplet")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--batch-size", type=int, default=32,
                   help="utterances (softmax) or anchor-positive pairs (triplet) per step")
    p.add_argument("--chunk-frames", type=int, default=200)
    p.add_argument("--steps", type=int, default=20, help="timed steps of each")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each first")
    p.add_argument("--speakers", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of (trainer, bare); the median ratio is reported")
    # 1 by default: on a loaded 2-core machine 2 intra-op threads made GRU steps up to 40x
    # slower at random (threads waiting for a core held by another process).
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = p.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    torch.set_num_threads(args.threads)
    utts_per_step = args.batch_size * (2 if args.stage == "triplet" else 1)
    total = args.warmup + args.steps
    # Enough utterances that warmup + timed steps fit in one epoch (no epoch-end work).
    units_per_spk = -(-args.batch_size * (total + 1) // args.speakers)
    utts_per_spk = max(2, units_per_spk * (2 if args.stage == "triplet" else 1))
    feats = synthetic_set(args.speakers, utts_per_spk, args.chunk_frames,
                          args.chunk_frames + args.chunk_frames // 2)

    print(f"model {args.model} width {args.width} stage {args.stage}: {args.batch_size} "
          f"{'pairs' if args.stage == 'triplet' else 'utterances'} x {args.chunk_frames} frames "
          f"= {utts_per_step} utts/step; device {device}; torch threads {torch.get_num_threads()}; "
          f"{args.speakers} speakers x {utts_per_spk} synthetic utts; "
          f"median of {args.steps} steps after {args.warmup} warmup")
    use_bf16, use_channels_last = speed_settings(args, device)
    print(f"both sides: bf16 autocast {'on' if use_bf16 else 'off'}, channels_last "
          f"{'on' if use_channels_last else 'off'} (the trainer's amp/channels_last: auto)")
    rounds = []
    for r in range(args.repeats):
        t_trainer = time_trainer(args, device, feats)
        t_bare = time_bare(args, device, args.speakers)
        r_trainer, r_bare = utts_per_step / t_trainer, utts_per_step / t_bare
        rounds.append((r_trainer / r_bare, r_trainer, r_bare, t_trainer, t_bare))
        print(f"round {r + 1}: trainer {r_trainer:9.1f} utt/s ({1000 * t_trainer:7.1f} ms/step)  "
              f"bare {r_bare:9.1f} utt/s ({1000 * t_bare:7.1f} ms/step)  "
              f"ratio {r_trainer / r_bare:.3f}")
    ratio, r_trainer, r_bare, t_trainer, t_bare = sorted(rounds)[len(rounds) // 2]
    print(f"trainer  {r_trainer:9.1f} utt/s  ({1000 * t_trainer:8.1f} ms/step)")
    print(f"bare     {r_bare:9.1f} utt/s  ({1000 * t_bare:8.1f} ms/step)")
    print(f"ratio    {ratio:9.3f}  (median of {len(rounds)} rounds; target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
