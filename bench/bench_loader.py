"""Loader throughput: 2-s training chunks per second from page-cached arks, beside the step's rate.

Builds (once; reused when ``--work-dir`` already holds it) a feature set of
``--num-utts`` utterances on disk: speech-like float32 64-bin fbank (a per-speaker
spectral envelope, slow drift and frame noise; 2.2-4.2 s each) with a VAD that marks
leading/trailing silence and a few pauses, written with
:class:`deepspeaker.data.ark.ArkWriter` into arks of ``--utts-per-ark`` utterances.
It is loaded as training does with features above ``max_memory_gb``
(:class:`~deepspeaker.nnet.data.FeatureSet` from disk: each scp entry parsed once,
chunks read by offset), the arks are read once so they are page-cached, and then:

* the chunks per second of the loader (:func:`deepspeaker.nnet.loader.batch_loader`,
  softmax batches of ``--batch-size`` chunks of ``--chunk-frames`` frames) with 0, 1,
  2 and all workers (all: the cores this process may use), over ``--batches`` batches
  after one untimed batch (worker start-up);
* the bare training step's consumption rate in the same run: the CPU step of the GRU
  at width 0.125 (``bench/bench_train.py``'s ``time_bare``) on the same batch shape;
* the GPU reference of 10,000 chunks/s (the paper's ResCNN in bf16 on one H100) and
  the ratios loader / step and loader / 10,000;
* the time per chunk of each part of building a batch in the main process (read,
  VAD selection, normalisation, crop, collate);
* the peak resident memory (VmHWM) of the main process and of each worker, and each
  worker's private memory (what it does not share with the main process).

Lines starting with ``RESULT name value`` are for scripts (the tests read them).

    python bench/bench_loader.py [--num-utts 100000] [--work-dir DIR] [--batches 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deepspeaker.data.ark import ArkWriter
from deepspeaker.nnet.data import TIMED_PARTS, BatchPlan, FeatureSet
from deepspeaker.nnet.loader import batch_loader, iterate_batches
from deepspeaker.threads import usable_cores

GPU_REFERENCE = 10_000.0   # 2-s chunks/s one H100 consumes (paper ResCNN, bf16; issue 11)
NUM_BINS = 64
DONE = ".bench_loader_done"


def build_corpus(work: Path, num_utts: int, utts_per_ark: int, num_spk: int, seed: int) -> None:
    """Write feats/vad arks + scp, utt2spk and utt2num_frames into ``work`` (skipped when done)."""
    if (work / DONE).is_file() and (work / DONE).read_text().strip() == str(num_utts):
        return
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bins = np.arange(NUM_BINS)
    envelopes = [12 + 4 * np.cos(bins / rng.uniform(6, 12) + rng.uniform(0, 6)) - bins / 16
                 for _ in range(num_spk)]
    noise = rng.standard_normal((1 << 16, NUM_BINS)).astype(np.float32)
    utts = [f"spk{u % num_spk:05d}-utt{u:07d}" for u in range(num_utts)]
    feats_lines, vad_lines, lengths = [], [], {}
    for a, first in enumerate(range(0, num_utts, utts_per_ark)):
        fw = ArkWriter(work / f"feats.{a}.ark", work / f"feats.{a}.scp")
        vw = ArkWriter(work / f"vad.{a}.ark", work / f"vad.{a}.scp")
        for utt in utts[first:first + utts_per_ark]:
            n = int(rng.integers(220, 421))
            at = int(rng.integers(0, len(noise) - n))
            drift = np.sin(np.arange(n) / rng.uniform(5, 20))[:, None] * 2
            x = envelopes[int(utt[3:8])] + drift + noise[at:at + n]
            vad = np.ones(n, dtype=np.float32)
            vad[: int(rng.integers(5, 30))] = 0
            vad[n - int(rng.integers(5, 30)):] = 0
            for _ in range(int(rng.integers(0, 4))):
                s = int(rng.integers(0, n - 20))
                vad[s:s + int(rng.integers(5, 20))] = 0
            fw.write(utt, x.astype(np.float32))
            vw.write(utt, vad)
            lengths[utt] = n
        fw.commit()
        vw.commit()
        feats_lines += (work / f"feats.{a}.scp").read_text().splitlines(keepends=True)
        vad_lines += (work / f"vad.{a}.scp").read_text().splitlines(keepends=True)
    (work / "feats.scp").write_text("".join(sorted(feats_lines)))
    (work / "vad.scp").write_text("".join(sorted(vad_lines)))
    (work / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    (work / "wav.scp").write_text("".join(f"{u} /dev/null\n" for u in sorted(utts)))
    (work / "utt2num_frames").write_text("".join(f"{u} {lengths[u]}\n" for u in sorted(utts)))
    (work / DONE).write_text(f"{num_utts}\n")


def page_cache(work: Path) -> float:
    """Read every ark once (so the loader reads from the page cache); returns GB read."""
    total = 0
    for ark in sorted(work.glob("*.ark")):
        with open(ark, "rb") as f:
            while chunk := f.read(1 << 24):
                total += len(chunk)
    return total / 2 ** 30


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS (kB) of ``pid`` and its private memory from smaps_rollup (kB)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Private_Clean", "Private_Dirty"):
                out["Private"] = out.get("Private", 0) + int(value.split()[0])
    except OSError:
        pass
    return out


def child_pids() -> list[int]:
    pids = []
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            pids += [int(p) for p in Path(f"/proc/{os.getpid()}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return sorted(set(pids))


def time_loader(plan: BatchPlan, workers: int, batches: int, first_epoch: int):
    """(chunks/s over ``batches`` batches after one untimed one, [worker memory dicts])."""
    epochs = first_epoch + -(-(batches + 1) // plan.steps_per_epoch)
    loader = batch_loader(plan, first_epoch, 0, epochs, num_workers=workers, prefetch=2)
    it = iterate_batches(loader)
    next(it)
    t0 = time.perf_counter()
    chunks = 0
    for _ in range(batches):
        chunks += next(it)["feats"].shape[0]
    rate = chunks / (time.perf_counter() - t0)
    memory = [proc_status(pid) for pid in child_pids()] if workers else []
    it.close()
    return rate, memory


def breakdown(plan: BatchPlan, batches: int, first_epoch: int) -> dict[str, float]:
    """Seconds per chunk of each part of building batches in this process."""
    timer: dict[str, float] = {}
    chunks = 0
    t0 = time.perf_counter()
    for k in range(batches):
        epoch, step = divmod(first_epoch * plan.steps_per_epoch + k, plan.steps_per_epoch)
        chunks += plan.batch(epoch, step, timer=timer)["feats"].shape[0]
    total = time.perf_counter() - t0
    parts = {k: timer.get(k, 0.0) / chunks for k in TIMED_PARTS}
    parts["other (plan, offsets)"] = max(0.0, total / chunks - sum(parts.values()))
    parts["total"] = total / chunks
    return parts


def step_rate(args) -> float:
    """Chunks/s of the bare CPU training step (GRU, width 0.125) on this batch shape."""
    from bench_train import time_bare

    targs = SimpleNamespace(model="gru", width=0.125, stage="softmax", batch_size=args.batch_size,
                            chunk_frames=args.chunk_frames, warmup=1, steps=args.step_batches)
    return args.batch_size / time_bare(targs, torch.device("cpu"), 50)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-utts", type=int, default=100_000)
    p.add_argument("--work-dir", default=None,
                   help="where the arks go (default: a dir under the temp dir, reused if present)")
    p.add_argument("--utts-per-ark", type=int, default=5000)
    p.add_argument("--speakers", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--chunk-frames", type=int, default=200, help="200 frames: 2 s")
    p.add_argument("--batches", type=int, default=20, help="timed batches per worker count")
    p.add_argument("--step-batches", type=int, default=3, help="timed bare training steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--in-memory", action="store_true",
                   help="load the features into memory (one shared buffer) instead: shows that "
                        "the workers' private memory stays far below the buffer's size")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / f"deepspeaker_bench_loader_{args.num_utts}")
    t = time.perf_counter()
    build_corpus(work, args.num_utts, args.utts_per_ark, min(args.speakers, args.num_utts), args.seed)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    feats = FeatureSet.load(work, min_frames=1, max_memory_gb=None if args.in_memory else 0.0)
    t_load = time.perf_counter() - t
    cached = page_cache(work)
    batch = min(args.batch_size, len(feats.utts) // 2)
    plan = BatchPlan(feats, "softmax", batch, args.chunk_frames, seed=args.seed)
    args.batch_size = batch
    cores = usable_cores()
    where = (f"in memory ({feats.buffer.nbytes / 2 ** 20:.0f} MB buffer, loaded in {t_load:.1f} s)"
             if feats.in_memory else f"on disk, indexed in {t_load:.1f} s "
             f"({len(feats.disk.files.paths)} arks, {cached:.2f} GB page-cached)")
    print(f"{len(feats.utts)} utterances in {work} (built/checked in {t_build:.1f} s), read {where}; "
          f"batches of {batch} chunks x {args.chunk_frames} frames; "
          f"{cores} usable cores; {plan.steps_per_epoch} steps per epoch")
    rates, memory = {}, {}
    # Each measurement starts at another epoch: other utterances, other offsets.
    per = -(-(args.batches + 1) // plan.steps_per_epoch)
    for k, (name, workers) in enumerate((("w0", 0), ("w1", 1), ("w2", 2), ("all", cores))):
        rates[name], memory[name] = time_loader(plan, workers, args.batches, k * per)
        print(f"loader {workers:2d} worker(s): {rates[name]:10.0f} chunks/s")
    parts = breakdown(plan, args.batches, 4 * per)
    print("per chunk, main process (0 workers): " + "  ".join(
        f"{k} {1e6 * v:.1f} us" for k, v in parts.items()))
    loader_mem = proc_status(os.getpid())
    torch.set_num_threads(1)
    rate_step = step_rate(args)
    best = max(rates.values())
    print(f"bare CPU step (GRU width 0.125, 1 thread): {rate_step:10.1f} chunks/s")
    print(f"GPU reference: {GPU_REFERENCE:10.0f} chunks/s (paper ResCNN, bf16, one H100)")
    print(f"best loader / step {best / rate_step:.1f}x   best loader / GPU reference "
          f"{best / GPU_REFERENCE:.3f}   (target >= 1 with {cores} cores)")
    main_mem = proc_status(os.getpid())
    print(f"peak RSS: main {loader_mem.get('VmHWM', 0) / 1024:.1f} MB before the step, "
          f"{main_mem.get('VmHWM', 0) / 1024:.1f} MB after it; workers " + "; ".join(
        f"{name}: " + ", ".join(f"{m.get('VmHWM', 0) / 1024:.1f} MB (private "
                                f"{m.get('Private', 0) / 1024:.1f} MB)" for m in mems)
        for name, mems in memory.items() if mems))
    worker_peaks = [m.get("VmHWM", 0) for mems in memory.values() for m in mems]
    for name, value in rates.items():
        print(f"RESULT loader_{name} {value:.1f}")
    print(f"RESULT step {rate_step:.2f}")
    print(f"RESULT ratio_step {best / rate_step:.4f}")
    print(f"RESULT ratio_gpu {best / GPU_REFERENCE:.6f}")
    print(f"RESULT rss_main_mb {loader_mem.get('VmHWM', 0) / 1024:.1f}")
    print(f"RESULT rss_worker_mb {max(worker_peaks, default=0) / 1024:.1f}")
    for k, v in parts.items():
        print(f"RESULT us_{k.split()[0]} {1e6 * v:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
