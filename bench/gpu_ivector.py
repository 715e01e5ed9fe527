"""Stage 4 on CPU and CUDA in one run: statistics, one T-matrix EM iteration, extraction.

A synthetic set (default 2,000 utterances of 300 frames of 60-d features drawn from a
random 512-component diagonal UBM; rank-200 extractor) goes through the code the stages
run (``compute_stats_batch`` in batches of ``--batch-utts``, ``em_iteration``,
``IvectorExtractor.extract``) on each device; the table gives utterances/s (seconds for
the EM iteration) and the CPU/CUDA ratio, and how far the CUDA results are from the
CPU ones.  Without a CUDA device it runs on the CPU alone and says so.

    python bench/gpu_ivector.py [--num-utts 2000] [--frames 300] [--dim 60] \\
        [--components 512] [--rank 200] [--top-k 20] [--batch-utts 64] [--threads N]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepspeaker.ivector.extractor import em_iteration, init_extractor  # noqa: E402
from deepspeaker.ivector.stats import compute_stats_batch  # noqa: E402
from deepspeaker.ivector.ubm import DiagGmm  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-utts", type=int, default=2000)
    p.add_argument("--frames", type=int, default=300, help="frames per utterance")
    p.add_argument("--dim", type=int, default=60)
    p.add_argument("--components", type=int, default=512)
    p.add_argument("--rank", type=int, default=200)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--batch-utts", type=int, default=64, help="utterances per stats batch")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    return p


def synthetic_set(args, rng: np.random.Generator) -> tuple[DiagGmm, list[np.ndarray]]:
    """A random UBM and float32 utterances whose frames come from its components."""
    c, d = args.components, args.dim
    ubm = DiagGmm(rng.dirichlet(np.full(c, 5.0)), rng.normal(0, 3, (c, d)),
                  rng.uniform(0.5, 2.0, (c, d)))
    utts = []
    for _ in range(args.num_utts):
        comp = rng.choice(c, size=args.frames, p=ubm.weights)
        x = ubm.means[comp] + np.sqrt(ubm.variances[comp]) * rng.standard_normal((args.frames, d))
        utts.append(x.astype(np.float32))
    return ubm, utts


def run_device(args, ubm: DiagGmm, utts: list[np.ndarray], device: torch.device) -> dict:
    """Times and results of the three steps on ``device`` (after a small warm-up)."""
    ext = init_extractor(ubm, args.rank, seed=args.seed)
    b = args.batch_utts
    # Warm-up: CUDA context, cuBLAS/cuSOLVER handles, kernels of these shapes.
    n0, f0 = compute_stats_batch(ubm, utts[:b], args.top_k, device=device)
    ext.extract(n0, f0, device=device)
    em_iteration(ext, n0, f0, device=device)
    out = {}
    t = time.perf_counter()
    parts = [compute_stats_batch(ubm, utts[i:i + b], args.top_k, device=device)
             for i in range(0, len(utts), b)]
    out["stats"] = len(utts) / (time.perf_counter() - t)
    n = np.concatenate([p[0] for p in parts])
    f = np.concatenate([p[1] for p in parts])
    t = time.perf_counter()
    new, _ = em_iteration(ext, n, f, device=device)
    out["em"] = time.perf_counter() - t
    t = time.perf_counter()
    ivectors = ext.extract(n, f, device=device)
    out["extract"] = len(utts) / (time.perf_counter() - t)
    out["results"] = (f, new.T, ivectors)
    return out


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.getLogger("deepspeaker").setLevel(logging.ERROR)   # "Gaussians keep their T"...
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    ubm, utts = synthetic_set(args, rng)
    print(f"{args.num_utts} utterances x {args.frames} frames of {args.dim}-d, "
          f"{args.components}-component UBM (top {args.top_k}), rank {args.rank}, stats in "
          f"batches of {args.batch_utts}; CPU threads {torch.get_num_threads()} "
          f"(set up in {time.perf_counter() - t:.1f} s)")
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
    else:
        print("no CUDA device: CPU only")
    res = {dev.type: run_device(args, ubm, utts, dev) for dev in devices}
    rows = [("statistics (utt/s)", "stats", True), ("EM iteration (s)", "em", False),
            ("extraction from stats (utt/s)", "extract", True)]
    names = [d.type for d in devices]
    print(f"{'':32s}" + "".join(f"{n:>12s}" for n in names)
          + (f"{'cuda/cpu':>12s}" if "cuda" in res else ""))
    for label, key, rate in rows:
        line = f"{label:32s}" + "".join(f"{res[n][key]:12.2f}" for n in names)
        if "cuda" in res:
            cpu, cuda = res["cpu"][key], res["cuda"][key]
            ratio = cuda / cpu if rate else cpu / cuda
            line += f"{ratio:11.1f}x"
        print(line)
    if "cuda" in res:
        for label, a, b in zip(("F", "T after one EM iteration", "i-vectors"),
                               res["cpu"]["results"], res["cuda"]["results"]):
            print(f"CUDA vs CPU, max relative difference of {label}: {rel_diff(a, b):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
