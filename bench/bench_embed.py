"""Using a trained system: latency of ``verify`` and throughput of ``embed``, per system.

For each system of a trained recipe (default: ``egs/mini/exp``'s i-vector system, the
two Deep Speaker networks and their fusion) on this CPU:

* **cold verify**: the wall time of ``python -m deepspeaker.cli verify EXP a.wav b.wav``
  on two 4-s files (process start, imports, model load, two embeddings, the score),
  as a subprocess, best of ``--repeats``;
* **warm verify**: ``system.verify(a, b)`` in a process that has the system loaded,
  median of ``--repeats`` after one untimed call;
* **embed throughput**: ``system.embed`` over ``--num-utts`` seeded speech-like
  utterances of 2-6 s given as arrays (no disk), utterances per second and the
  real-time factor (seconds of audio per second).

Resemblyzer's pretrained encoder would be timed beside them on the same audio if it
were installed; it is not in the package registry this project may use, so the
line says so.  ONNX Runtime beside PyTorch needs the exported models (``deepspeaker
export``) and is left to the export's own bench.  Torch runs on ``--threads`` threads
(default 1: the figure of one core).  Decisions use ``--threshold 0`` (a number), so
no saved operating points are needed.  Lines ``RESULT name value`` are for scripts.

    python bench/bench_embed.py [--exp-root egs/mini/exp] [--systems ivector,fusion]
                                [--num-utts 1000] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_features import SAMPLE_RATE, speech_like  # noqa: E402

SYSTEMS = "ivector,gru_softmax_triplet,rescnn_softmax_triplet,fusion"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp-root", type=Path, default=REPO / "egs/mini/exp")
    p.add_argument("--systems", default=SYSTEMS, help="comma-separated exp/<tag> names")
    p.add_argument("--num-utts", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    return p


def write_pair(d: Path) -> tuple[Path, Path]:
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for name in ("a", "b"):
        x = speech_like(rng, 4.0) / 32768.0
        paths.append(d / f"{name}.wav")
        sf.write(paths[-1], x, SAMPLE_RATE, subtype="PCM_16")
    return paths[0], paths[1]


def cold_verify(exp: Path, a: Path, b: Path, repeats: int, threads: int) -> float:
    env = {**os.environ, "DS_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "deepspeaker.cli", "verify", str(exp), str(a),
                        str(b), "--threshold", "0"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def warm_verify(system, a: Path, b: Path, repeats: int) -> float:
    system.verify(str(a), str(b), threshold=0.0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        system.verify(str(a), str(b), threshold=0.0)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def utterances(n: int) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(1)
    return [(speech_like(rng, float(rng.uniform(2.0, 6.0))) / 32768.0, SAMPLE_RATE)
            for _ in range(n)]


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    import torch

    import deepspeaker

    torch.set_num_threads(args.threads)
    audio = utterances(args.num_utts)
    seconds = sum(len(x) for x, _ in audio) / SAMPLE_RATE
    print(f"{args.num_utts} utterances, {seconds:.0f} s of audio; torch threads {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        a, b = write_pair(Path(tmp))
        for tag in args.systems.split(","):
            exp = args.exp_root / tag
            system = deepspeaker.load(exp)
            cold = cold_verify(exp, a, b, args.repeats, args.threads)
            warm = warm_verify(system, a, b, args.repeats)
            t0 = time.perf_counter()
            system.embed(audio)
            dt = time.perf_counter() - t0
            print(f"{tag:26s} {system.kind:11s} {system.method:9s} verify cold {cold:6.2f} s, "
                  f"warm {1000 * warm:7.1f} ms; embed {args.num_utts / dt:7.1f} utt/s "
                  f"({seconds / dt:6.0f}x real time)")
            print(f"RESULT verify_cold_s_{tag} {cold:.3f}")
            print(f"RESULT verify_warm_ms_{tag} {1000 * warm:.2f}")
            print(f"RESULT embed_utt_per_s_{tag} {args.num_utts / dt:.2f}")
            print(f"RESULT embed_rtf_{tag} {seconds / dt:.1f}")
    try:
        import resemblyzer  # noqa: F401
        print("resemblyzer: installed, but not timed by this version of the bench")
    except ImportError:
        print("resemblyzer: not installed (not in the package registry this project uses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
