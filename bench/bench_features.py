"""Fbank throughput: deepspeaker's batched torch front end against kaldi-native-fbank.

Both run on one CPU thread over the same ~60 synthetic 4-second utterances (seeded
speech-like signals: a glottal pulse train through moving formant resonators, syllable
envelopes with pauses, background noise). Ours goes through ``compute_fbank_batch`` in
batches of 32; knf takes one utterance at a time through its only Python API
(``accept_waveform`` with a list, then ``get_frame`` per frame), as a Kaldi-style stage
would call it. The two are timed alternately and the best of the repeats is kept, so a
burst of load from another process on the machine hits both alike. Also prints the
largest difference between the two outputs on this data.

    python bench/bench_features.py [--num-utts 60] [--batch-size 32] [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepspeaker.features import FbankOptions, compute_fbank_batch  # noqa: E402

SAMPLE_RATE = 16000


def speech_like(rng: np.random.Generator, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A seeded, roughly speech-shaped signal on the int16 scale (float32, integer-valued)."""
    from scipy.signal import lfilter

    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(90, 240) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = np.cumsum(f0 / sample_rate)
    source = np.diff(np.floor(phase), prepend=0.0)            # one impulse per glottal period
    source += 0.05 * rng.standard_normal(n)                  # breathiness
    voiced = np.zeros(n)
    for centre, bandwidth in ((rng.uniform(500, 800), 80), (rng.uniform(1100, 1800), 100),
                              (rng.uniform(2300, 3000), 150)):
        r = np.exp(-np.pi * bandwidth / sample_rate)
        theta = 2 * np.pi * centre / sample_rate
        voiced += lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], source)
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6.3)), 0, None)
    pause = (np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6.3)) > -0.6).astype(float)
    speech = voiced * syllables * pause
    speech *= rng.uniform(3000, 12000) / (np.abs(speech).max() + 1e-9)
    noise = rng.standard_normal(n) * np.sqrt(np.mean(speech ** 2)) * 10 ** (-rng.uniform(20, 35) / 20)
    return np.clip(np.round(speech + noise), -32768, 32767).astype(np.float32)


def knf_options(num_mel_bins: int):
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0       # knf's default is 3e-5; ours and this comparison: none
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = num_mel_bins
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = 0.0
    return opts


def knf_fbank(samples: np.ndarray, opts):
    import kaldi_native_fbank as knf

    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SAMPLE_RATE, samples.tolist())
    fbank.input_finished()
    return np.array([fbank.get_frame(i) for i in range(fbank.num_frames_ready)], dtype=np.float32)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-utts", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def bench(num_utts: int, seconds: float, batch_size: int, repeats: int, seed: int) -> float:
    torch.set_num_threads(1)  # knf is single-threaded: compare like with like
    rng = np.random.default_rng(seed)
    utts = [speech_like(rng, seconds) for _ in range(num_utts)]
    audio_seconds = num_utts * seconds
    opts = FbankOptions()

    def ours():
        out = []
        for i in range(0, len(utts), batch_size):
            out.extend(fb for fb, _ in compute_fbank_batch(utts[i:i + batch_size], opts))
        return out

    import kaldi_native_fbank as knf

    knf_opts = knf_options(opts.num_mel_bins)

    def reference():
        return [knf_fbank(x, knf_opts) for x in utts]

    lists = [x.tolist() for x in utts]

    def reference_compute_only():
        # knf's C++ work alone: no list conversion, no per-frame get_frame calls.
        for samples in lists:
            fbank = knf.OnlineFbank(knf_opts)
            fbank.accept_waveform(SAMPLE_RATE, samples)
            fbank.input_finished()

    ours()  # warm-up: tables, torch kernels, allocator
    ours_times, knf_times, knf_compute_times = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours_out = ours()
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        knf_out = reference()
        knf_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference_compute_only()
        knf_compute_times.append(time.perf_counter() - start)

    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(ours_out, knf_out))
    ours_speed = audio_seconds / min(ours_times)
    knf_speed = audio_seconds / min(knf_times)
    knf_compute_speed = audio_seconds / min(knf_compute_times)
    print(f"data: {num_utts} utterances x {seconds:g} s = {audio_seconds:g} s of audio, "
          f"{opts.num_mel_bins} mel bins, 1 thread, best of {repeats}")
    print(f"deepspeaker compute_fbank_batch (batch {batch_size}):  {ours_speed:8.0f} s of audio / s")
    print(f"kaldi-native-fbank (one utterance at a time):    {knf_speed:8.0f} s of audio / s")
    print(f"  knf accept_waveform alone (no tolist/get_frame): {knf_compute_speed:6.0f} s of audio / s")
    print(f"ratio: {ours_speed / knf_speed:.1f}x "
          f"({ours_speed / knf_compute_speed:.1f}x against knf's computation alone)")
    print(f"max abs difference vs knf: {max_diff:.2e}")
    return ours_speed / knf_speed


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    bench(args.num_utts, args.seconds, args.batch_size, args.repeats, args.seed)


if __name__ == "__main__":
    main()
