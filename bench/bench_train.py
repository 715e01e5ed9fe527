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

``--with-load``: a shared machine (issue 11, item 6).  For each of ``--load-settings``
(default: the thread count and wait policy every entry point now configures, and the old
behaviour, one intra-op thread per core with OpenMP's default wait policy) a fresh
process (the wait policy is read when torch loads) times the trainer quiet, then beside
one busy process per usable core at nice 10 (``--load spin``: pure-python loops;
``matmul``: single-threaded numpy matmuls) in a session of their own, as another user's
jobs run (``--load-session same`` keeps them in ours: with autogroup scheduling nice
only counts inside a session), ``--repeats`` times alternating, and the
median of the per-round ratios contended / quiet is printed (target >= 0.5: no worse
than a fair share).  Here the mean step time is kept, not the median: stalls under load
are what is measured.  The competitors are killed in a ``finally`` (their process
groups), and each also exits by itself when its parent dies or after
``--load-seconds``.

    python bench/bench_train.py --with-load [--load spin|matmul] \\
        [--load-settings auto/PASSIVE,all/default] [--model gru] [--steps 20] ...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepspeaker import DEFAULT_OMP_WAIT_POLICY  # noqa: E402
from deepspeaker.nnet import trainer as trainer_mod  # noqa: E402
from deepspeaker.nnet.config import resolve_speed_settings, train_config_from_dict  # noqa: E402
from deepspeaker.nnet.data import FeatureSet  # noqa: E402
from deepspeaker.nnet.distributed import DistInfo  # noqa: E402
from deepspeaker.nnet.models import build_model  # noqa: E402
from deepspeaker.nnet.objectives import SoftmaxClassifier, TripletNet  # noqa: E402
from deepspeaker.nnet.trainer import train  # noqa: E402
from deepspeaker.threads import configure_threads, usable_cores  # noqa: E402

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
    return statistics.median(trainer_step_times(args, device, feats))


def trainer_step_times(args, device: torch.device, feats: FeatureSet) -> list[float]:
    """Seconds of each timed trainer step (after ``args.warmup`` untimed ones)."""
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
    return steps


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


# The competitors: one leader that forks the others, so all share one process group (one
# killpg ends them) and one session.  Each is busy until its parent dies, its deadline
# passes or it is killed: checking the parent keeps a bench killed with SIGKILL from
# leaving busy loops on a shared machine.
_BUSY = """
import os, sys, time
count, kind, end = int(sys.argv[1]), sys.argv[2], time.monotonic() + float(sys.argv[3])
os.nice(10)
for _ in range(count - 1):
    if os.fork() == 0:
        break
parent = os.getppid()
if kind == "matmul":
    import numpy as np
    a = np.random.default_rng(0).standard_normal((192, 192))
    work = lambda: a @ a
else:
    def work():
        x = 0
        for i in range(20000):
            x += i
while os.getppid() == parent and time.monotonic() < end:
    for _ in range(20):
        work()
"""


class Competitors:
    """``count`` busy processes at nice 10 in one process group, killed on exit.

    ``own_session``: the group is a session of its own, as another user's job (or one
    started from another terminal) is.  That is the case that matters: with the kernel's
    autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``) every session is
    one scheduling group of equal weight, so nice only orders processes inside a session
    and the niced competitors take half the machine (their fair share) whatever their
    nice.  ``own_session=False`` keeps them in the bench's session, where nice 10 counts.
    """

    def __init__(self, count: int, kind: str, seconds: float, own_session: bool = True):
        self.count, self.kind, self.seconds = count, kind, seconds
        self.own_session = own_session
        self.leader: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        group = {"start_new_session": True} if self.own_session else {"process_group": 0}
        self.leader = subprocess.Popen(
            [sys.executable, "-c", _BUSY, str(self.count), self.kind, str(self.seconds)],
            env=env, stdin=subprocess.DEVNULL, **group)
        time.sleep(0.3)  # let them fork and reach their loops
        return self

    def __exit__(self, *exc) -> None:
        if self.leader is None:
            return
        try:
            os.killpg(self.leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.leader.wait()


def parse_settings(text: str) -> list[tuple[str, str]]:
    """``auto/PASSIVE,all/default`` -> [(threads, wait policy)]; threads auto | all | N."""
    settings = []
    for item in text.split(","):
        threads, _, policy = item.strip().partition("/")
        if not (threads in ("auto", "all") or threads.isdigit() and int(threads) > 0) \
                or policy.upper() not in ("PASSIVE", "ACTIVE", "DEFAULT"):
            raise SystemExit(f"--load-settings: bad item {item!r} (expected THREADS/POLICY, "
                             "THREADS auto|all|N, POLICY PASSIVE|ACTIVE|default)")
        settings.append((threads, policy.upper()))
    return settings


def with_load(args, argv: list[str]) -> int:
    """One fresh process per setting (the wait policy only counts before torch loads)."""
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    autogroup = autogroup.read_text().strip() == "1" if autogroup.exists() else False
    print(f"{usable_cores()} usable cores; competitors: {usable_cores()} x {args.load} at "
          f"nice 10 in {'a session of their own' if args.load_session == 'own' else 'our session'}"
          f" (autogroup scheduling {'on' if autogroup else 'off'}); trainer {args.model} width {args.width} {args.stage}, batch "
          f"{args.batch_size} x {args.chunk_frames} frames, mean of {args.steps} steps, "
          f"median ratio of {args.repeats} rounds (quiet, contended)")
    rows = []
    for threads, policy in parse_settings(args.load_settings):
        env = dict(os.environ)
        for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "DS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.pop(name, None)
        if policy != "DEFAULT":
            env["OMP_WAIT_POLICY"] = policy
        if threads == "all":
            # The old behaviour: torch's own default, one thread per core of the machine.
            threads = str(os.cpu_count() or 1)
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--load-child",
               "--threads", threads]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("LOAD ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"bench child for {threads}/{policy} failed (exit {proc.returncode})")
        r = json.loads(lines[-1][5:])
        # The child's own environ is no witness: importing deepspeaker after torch sets a
        # default there that libgomp never read.
        r["policy"] = policy
        rows.append(r)
        print(f"threads {r['threads']} ({threads}), inter-op {r['interop']}, OMP_WAIT_POLICY "
              f"{policy.lower()}: quiet -> contended utt/s (cores busy) " + "; ".join(
                  f"{q:.1f} ({cq:.2f}) -> {c:.1f} ({cc:.2f})" for q, c, cq, cc in zip(
                      r["quiet"], r["contended"], r["cpu"][::2], r["cpu"][1::2])))
    print(f"{'setting':34s} {'quiet utt/s':>12s} {'contended':>10s} {'ratio':>6s}")
    for r in rows:
        name = f"{r['threads']} threads, wait policy {r['policy'].lower()}"
        print(f"{name:34s} {r['quiet_rate']:12.1f} {r['contended_rate']:10.1f} "
              f"{r['ratio']:6.3f}")
    print("ratio = contended / quiet trainer rate (median of rounds); target >= 0.5")
    return 0


def load_child(args, device: torch.device, feats: FeatureSet) -> int:
    """Quiet, then contended, trainer rates (mean step time) in this one process."""
    threads = configure_threads() if args.threads == "auto" else int(args.threads)
    torch.set_num_threads(threads)
    utts_per_step = args.batch_size * (2 if args.stage == "triplet" else 1)
    quiet, contended, cpu = [], [], []

    def rate() -> float:
        """Trainer utt/s; its CPU use (cores busy: threads spinning show here) to ``cpu``."""
        t0 = os.times()
        steps = trainer_step_times(args, device, feats)
        t1 = os.times()
        cpu.append((t1.user + t1.system - t0.user - t0.system) / (t1.elapsed - t0.elapsed))
        return utts_per_step / statistics.mean(steps)

    for _ in range(args.repeats):
        quiet.append(rate())
        with Competitors(usable_cores(), args.load, args.load_seconds,
                         own_session=args.load_session == "own"):
            contended.append(rate())
    ratios = [c / q for q, c in zip(quiet, contended)]
    mid = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    print("LOAD " + json.dumps({
        "threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
        "quiet": quiet, "cpu": cpu,
        "contended": contended, "ratio": ratios[mid], "quiet_rate": quiet[mid],
        "contended_rate": contended[mid]}))
    return 0


def get_parser() -> argparse.ArgumentParser:
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
                   help="rounds of (trainer, bare), or with --with-load of (quiet, contended); "
                        "the median ratio is reported")
    # 1 by default: on a loaded 2-core machine 2 intra-op threads made GRU steps up to 40x
    # slower at random (threads waiting for a core held by another process).
    p.add_argument("--threads", default="1",
                   help="torch.set_num_threads, or 'auto': deepspeaker.threads.configure_threads, "
                        "as every entry point does (default 1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--with-load", action="store_true",
                   help="trainer rate quiet and beside busy processes at nice 10, per setting")
    p.add_argument("--load", choices=("spin", "matmul"), default="spin",
                   help="what each competitor runs (default: pure-python loops)")
    p.add_argument("--load-settings", default=f"auto/{DEFAULT_OMP_WAIT_POLICY},all/default",
                   help="THREADS/POLICY,...: THREADS auto (configure_threads), all (os.cpu_count,"
                        " the old default) or N; POLICY the OMP_WAIT_POLICY, or default (unset); "
                        f"default: auto/{DEFAULT_OMP_WAIT_POLICY},all/default")
    p.add_argument("--load-session", choices=("own", "same"), default="own",
                   help="competitors in a session of their own, as another user's jobs "
                        "(default), or in the bench's, where their nice 10 counts "
                        "(see Competitors)")
    p.add_argument("--load-seconds", type=float, default=900.0,
                   help="a competitor exits by itself after this long (a safety net)")
    p.add_argument("--load-child", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_parser().parse_args(argv)
    if args.threads != "auto" and not (args.threads.isdigit() and int(args.threads) > 0):
        raise SystemExit(f"--threads: expected a positive integer or 'auto', got {args.threads!r}")
    if args.with_load and not args.load_child:
        return with_load(args, [a for a in argv if a != "--with-load"])

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    utts_per_step = args.batch_size * (2 if args.stage == "triplet" else 1)
    total = args.warmup + args.steps
    # Enough utterances that warmup + timed steps fit in one epoch (no epoch-end work).
    units_per_spk = -(-args.batch_size * (total + 1) // args.speakers)
    utts_per_spk = max(2, units_per_spk * (2 if args.stage == "triplet" else 1))
    feats = synthetic_set(args.speakers, utts_per_spk, args.chunk_frames,
                          args.chunk_frames + args.chunk_frames // 2)
    if args.load_child:
        return load_child(args, device, feats)
    torch.set_num_threads(configure_threads() if args.threads == "auto" else int(args.threads))

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
