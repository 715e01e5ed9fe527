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

Beside them, on the same audio:

* **ONNX Runtime** for each network: the model exported by ``deepspeaker export``
  (into a temp dir), run through the same chunking and batching as stage 8 (the
  session stands in for the torch module in ``nnet.extract.embed_block``), on features
  computed once for both; the network's utterances per second in PyTorch and in ONNX
  Runtime, their ratio, and the largest difference between the two embeddings;
* **Resemblyzer**'s pretrained encoder (``VoiceEncoder().embed_utterance`` after its
  ``preprocess_wav``, from the registry; it ships its weights): warm verify on the
  same two files and embed throughput over the same utterances.  It is no dependency
  of ours: the bench installs it with pip into ``--resemblyzer-dir`` (git-ignored) on
  the first run, without its dependencies' dependencies it does not need, and says so;
  ``--no-resemblyzer`` leaves it out.

Torch and ONNX Runtime run on ``--threads`` threads (default 1: the figure of one
core).  Decisions use ``--threshold 0`` (a number), so no saved operating points are
needed.  Lines ``RESULT name value`` are for scripts.

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
RESEMBLYZER_DIR = REPO / "bench" / ".resemblyzer"
# Resemblyzer and what its import needs (librosa for the mel spectrogram, webrtcvad for
# its VAD), without their optional extras; torch, numpy and scipy are ours.
RESEMBLYZER_PACKAGES = ["resemblyzer==0.1.4", "webrtcvad==2.0.10", "librosa==0.11.0",
                        "audioread", "numba", "llvmlite", "soxr", "lazy_loader", "decorator",
                        "pooch", "msgpack", "typing_extensions", "platformdirs", "setuptools<80"]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp-root", type=Path, default=REPO / "egs/mini/exp")
    p.add_argument("--systems", default=SYSTEMS, help="comma-separated exp/<tag> names")
    p.add_argument("--num-utts", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resemblyzer-dir", type=Path, default=RESEMBLYZER_DIR,
                   help="where Resemblyzer is installed (pip --target) on the first run")
    p.add_argument("--no-resemblyzer", action="store_true", help="leave Resemblyzer out")
    p.add_argument("--no-onnx", action="store_true", help="leave ONNX Runtime out")
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


class OrtNetwork:
    """An ONNX Runtime session in place of the torch module of ``embed_block``."""

    def __init__(self, path: Path, dim: int, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.options = type("Options", (), {"embedding_dim": dim})

    def __call__(self, x, lengths):
        import torch

        out = self.session.run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]
        return torch.from_numpy(out)


def onnx_vs_torch(system, audio, tmp: Path, threads: int, tag: str) -> None:
    """The network of ``system`` in PyTorch and in ONNX Runtime on the same features."""
    import torch

    from deepspeaker.features import prepare_features
    from deepspeaker.nnet.export import export_model
    from deepspeaker.nnet.extract import embed_block

    emb = system.embedder
    feats = [(f"u{i}", np.ascontiguousarray(prepare_features(*system.features_of(
        system._audio(a))), dtype=np.float32)) for i, a in enumerate(audio)]
    onnx = tmp / f"{tag}.onnx"
    export_model(system.exp_dir, onnx, "onnx")
    runners = {"torch": emb.model, "onnxruntime": OrtNetwork(onnx, emb.dim, threads)}
    rates, vectors = {}, {}
    for name, net in runners.items():
        embed_block(net, feats[:32], emb.opts, emb.device)  # warm-up, untimed
        t0 = time.perf_counter()
        with torch.no_grad():
            vectors[name] = np.concatenate([np.stack(embed_block(net, feats[i:i + 32], emb.opts,
                                                                 emb.device))
                                            for i in range(0, len(feats), 32)])
        rates[name] = len(feats) / (time.perf_counter() - t0)
    diff = float(np.abs(vectors["torch"] - vectors["onnxruntime"]).max())
    print(f"{'':26s} network only: PyTorch {rates['torch']:7.1f} utt/s, ONNX Runtime "
          f"{rates['onnxruntime']:7.1f} utt/s ({rates['onnxruntime'] / rates['torch']:.2f}x); "
          f"max |difference| {diff:.2e}")
    print(f"RESULT net_utt_per_s_torch_{tag} {rates['torch']:.2f}")
    print(f"RESULT net_utt_per_s_onnxruntime_{tag} {rates['onnxruntime']:.2f}")
    print(f"RESULT onnxruntime_over_torch_{tag} {rates['onnxruntime'] / rates['torch']:.3f}")
    print(f"RESULT onnxruntime_max_abs_diff_{tag} {diff:.3e}")


def import_resemblyzer(target: Path):
    """Resemblyzer, installed into ``target`` on the first run; None if that fails."""
    if not (target / "resemblyzer").is_dir():
        print(f"resemblyzer: installing {', '.join(RESEMBLYZER_PACKAGES)} into {target} "
              "(pip --target --no-deps; the bench's comparison only)", flush=True)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                            "--target", str(target), *RESEMBLYZER_PACKAGES],
                           capture_output=True, text=True, check=False)
        if r.returncode:
            print(f"resemblyzer: not installed (pip exit {r.returncode}): "
                  f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
            return None
    sys.path.append(str(target))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import resemblyzer
    return resemblyzer


RESEMBLYZER_VERIFY = """
import sys, warnings
warnings.simplefilter("ignore")
sys.path.append(sys.argv[1])
from resemblyzer import VoiceEncoder, preprocess_wav
encoder = VoiceEncoder(device="cpu", verbose=False)
a, b = (encoder.embed_utterance(preprocess_wav(p)) for p in sys.argv[2:4])
print(float(a @ b) >= 0.0)
"""


def bench_resemblyzer(rz, a: Path, b: Path, audio, repeats: int, threads: int,
                      target: Path) -> None:
    """Resemblyzer's cold and warm verify (two files) and embed throughput on our utterances."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cold = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import torch; torch.set_num_threads({threads})\n"
                        + RESEMBLYZER_VERIFY, str(target), str(a), str(b)], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cold = min(cold, time.perf_counter() - t0)
    encoder = rz.VoiceEncoder(device="cpu", verbose=False)

    def verify() -> float:
        ea, eb = (encoder.embed_utterance(rz.preprocess_wav(p)) for p in (a, b))
        return float(ea @ eb)

    verify()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        verify()
        times.append(time.perf_counter() - t0)
    warm = statistics.median(times)
    seconds = sum(len(x) for x, _ in audio) / SAMPLE_RATE
    t0 = time.perf_counter()
    for x, rate in audio:
        encoder.embed_utterance(rz.preprocess_wav(x.astype(np.float32), source_sr=rate))
    dt = time.perf_counter() - t0
    print(f"{'resemblyzer':26s} {'pretrained':11s} {'cosine':9s} verify cold {cold:6.2f} s, "
          f"warm {1000 * warm:7.1f} ms; embed {len(audio) / dt:7.1f} utt/s "
          f"({seconds / dt:6.0f}x real time)")
    print(f"RESULT verify_cold_s_resemblyzer {cold:.3f}")
    print(f"RESULT verify_warm_ms_resemblyzer {1000 * warm:.2f}")
    print(f"RESULT embed_utt_per_s_resemblyzer {len(audio) / dt:.2f}")
    print(f"RESULT embed_rtf_resemblyzer {seconds / dt:.1f}")


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    import torch

    import deepspeaker

    torch.set_num_threads(args.threads)
    audio = utterances(args.num_utts)
    seconds = sum(len(x) for x, _ in audio) / SAMPLE_RATE
    print(f"{args.num_utts} utterances, {seconds:.0f} s of audio; torch threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.2f}")
    rz = None if args.no_resemblyzer else import_resemblyzer(args.resemblyzer_dir)
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
            if system.kind == "deepspeaker" and not args.no_onnx:
                onnx_vs_torch(system, audio, Path(tmp), args.threads, tag)
        if rz is not None:
            bench_resemblyzer(rz, a, b, audio, args.repeats, args.threads, args.resemblyzer_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
