#!/usr/bin/env python3
"""Generate the synthetic multi-speaker corpus of the egs/mini recipe.

    python egs/mini/local/make_corpus.py --out-dir corpus --data-dir data [options]

writes 16 kHz mono PCM_16 wav files ``<out-dir>/<set>/<spk>/<utt>.wav`` and the Kaldi
data dirs ``<data-dir>/{train,dev,eval}/`` (``wav.scp`` with absolute paths,
``utt2spk``, ``spk2utt``, ``utt2dur``, sorted bytewise).  Train, dev and eval speakers
are disjoint (ids ``trNNNN``, ``dvNNNN``, ``evNNNN``; utterances ``<spk>-uNNN``).

Voices follow the source-filter model.  What makes a speaker, drawn once per speaker:
F0 median and range (male-like and female-like populations that overlap), intonation
habits (accent size, frequency and timing, declination, final rise or fall),
vocal-tract length (scales every formant), a per-vowel formant "accent", upper
formants F4-F8, formant bandwidths, side-cavity anti-resonances, glottal pulse shape
(open quotient, skew) and extra source tilt, jitter, shimmer, breathiness, speaking
rate, fricative colour.  What is nuisance, drawn per utterance: the words (random
syllables between leading and trailing silence), small shifts of pitch, rate and
vocal effort, token-to-token formant scatter, and the channel: a smooth random EQ with
band limits, white / pink / babble-like noise at 15-40 dB SNR, and a random level
(peak -26 to -6 dBFS, never clipping).  Frame statistics see mostly the long-term
spectrum, which the channel blurs; the per-vowel formants and the F0 dynamics are
there for a model that looks at time and context.

How hard it is (default options, seed 0, eval set, 1,900 anchors with 1 positive and
99 negatives each as in paper §4.1): 20 MFCC -> per-utterance mean and std -> z-score
over the set -> cosine gives EER 20.1 %, ACC 34.6 % (mean cosine 0.41 same speaker,
0.00 others); LDA trained on the train speakers on the same 40-d stats: EER 14.6 %;
the long-term spectrum of loud frames with its smooth (channel) part removed: 9.7 %;
a small TDNN x-vector (softmax, 64 fbank, per-utterance mean norm, 2 min on 2 CPU
cores) EER 4.4 %, ACC 80.7 %.  The knobs are the constants below (speaker spread,
within-speaker variation, channel).  Made in ~60 s with --nj 2: 3.5 h, 4,220 wavs, 400 MB.

The audio of an utterance depends only on (seed, set, speaker index, utterance index)
and the duration range, never on --nj or the order of work, so the same options give
byte-identical files.  Every wav is written to a temp name and renamed, so a rerun
skips what is complete and a killed run, rerun, completes the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import scipy.fft
import soundfile as sf

if __package__ in (None, ""):  # run as a script without path.sh: find the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from deepspeaker.utils import DeepSpeakerError, atomic_write, setup_logging, tmp_path_for  # noqa: E402

SAMPLE_RATE = 16000
# 10 ms: the control rate of the time-varying vocal tract and the quantum of every
# utterance length, so utt2dur is exact with two decimals.
HOP = 160
WIN = 2 * HOP
NFFT = 1024  # leaves 44 ms for a resonance to ring down before it wraps around
# Bump when the audio a given seed produces changes; a corpus dir made by another
# version is refused instead of being silently mixed.
GENERATOR_VERSION = 1

SETS = {"train": ("tr", 1), "dev": ("dv", 2), "eval": ("ev", 3)}

# Peterson & Barney (1952) average adult male F1-F3 (Hz) of ten English vowels.
VOWEL_FORMANTS = np.array([
    [270, 2290, 3010],  # i
    [390, 1990, 2550],  # I
    [530, 1840, 2480],  # E
    [660, 1720, 2410],  # ae
    [730, 1090, 2440],  # a
    [570, 840, 2410],   # O
    [440, 1020, 2240],  # U
    [300, 870, 2240],   # u
    [640, 1190, 2390],  # V
    [490, 1350, 1690],  # 3r
], dtype=np.float64)
NASAL_FORMANTS = np.array([250.0, 1100.0, 2300.0])
# F2/F3 loci (male reference) of labial, alveolar, velar and postalveolar closures.
PLACE_LOCUS = {"lab": (800.0, 2100.0), "alv": (1750.0, 2700.0), "vel": (1900.0, 2050.0),
               "pal": (2000.0, 2600.0)}
# Burst spectra (centre Hz, width Hz, level dB re the vowels) by place.
BURST_SHAPE = {"lab": (1200.0, 1500.0, -20.0), "alv": (4200.0, 1800.0, -15.0),
               "vel": (2100.0, 700.0, -14.0)}
# Spread of the speaker population (beyond sex): how different two voices are.
VTL_STD = 0.065                          # log vocal-tract length scale
VOWEL_ACCENT_STD = (0.12, 0.09, 0.06)    # log F1-F3 offsets per vowel and speaker
UPPER_FORMANT_STD = 0.05                 # log F4, F5
SOURCE_TILT_DB_OCT = (-3.0, 1.5)

# Within-speaker variation from utterance to utterance (the speaker's own nuisance).
EFFORT_STD = 1.0             # vocal effort: +1 = louder, higher pitch, flatter source
EFFORT_TILT_DB_OCT = 1.2
EFFORT_PITCH_ST = 0.6
PITCH_SHIFT_STD_ST = 0.8     # mood / day-to-day pitch, semitones
RATE_STD = 0.07              # log speaking-rate scatter
TOKEN_SCATTER = 0.03         # log formant scatter of each vowel token

# The channel: the knobs that set how hard the corpus is for frame statistics.  At
# 5-30 dB SNR the MFCC-stats baseline sat at 31 % EER, nearly all of it from the noise
# (9 % without any channel); 15-40 dB puts it at 20 %, with the EQ and the speakers'
# own variation carrying a fair share.
SNR_RANGE_DB = (15.0, 40.0)
NOISE_KINDS = ("white", "pink", "babble")
NOISE_P = (0.25, 0.4, 0.35)
EQ_TILT_STD_DB_OCT = 2.5     # random channel tilt around 1 kHz
EQ_PEAKS = 3                 # smooth random peaks and dips
EQ_PEAK_STD_DB = 4.0
LOW_CUT_HZ = (50.0, 250.0)
HIGH_CUT_HZ = (5000.0, 9000.0)  # above 8 kHz: no band limit
PEAK_DBFS = (-26.0, -6.0)

CONSONANTS = ("stop", "s", "sh", "f", "h", "nasal", "none")
CONSONANT_P = (0.30, 0.12, 0.06, 0.07, 0.10, 0.15, 0.20)


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    num_train_spk: int = 250
    num_dev_spk: int = 40
    num_eval_spk: int = 100  # paper T4: Eva200 has 200; half keeps the recipe fast
    utts_per_train_spk: int = 8
    utts_per_dev_spk: int = 8
    utts_per_eval_spk: int = 19  # paper T4: 19 utterances per speaker
    min_dur: float = 2.0  # paper §4.1: mostly 3-5 s; shorter keeps the recipe fast
    max_dur: float = 4.0
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Utterance:
    set_name: str
    spk_index: int
    utt_index: int
    spk_id: str
    utt_id: str
    path: Path
    num_samples: int


@dataclasses.dataclass(frozen=True)
class Voice:
    """Everything that identifies a speaker; drawn once from the speaker's seed."""

    female: bool
    f0_median: float          # Hz
    accent_st: float          # pitch-accent size, semitones
    accent_prob: float        # share of accented syllables
    accent_peak: float        # where in the vowel the accent peaks (0..1)
    declination_st: float     # fall of the baseline over an utterance
    boundary_st: float        # final rise (> 0) or fall (< 0) on the last syllable
    vtl_scale: float          # formant scale: shorter tract -> higher formants
    vowel_formants: np.ndarray  # (10, 3) Hz: F1-F3 of each vowel, with the accent
    upper_formants: np.ndarray  # (2,) Hz: F4, F5, nearly vowel independent
    bandwidths: np.ndarray    # (5,) Hz
    open_quotient: float
    skew: float               # opening share of the open phase
    tilt_db_oct: float        # extra source tilt above 300 Hz
    jitter: float             # relative std of the period, cycle to cycle
    shimmer: float            # relative std of the amplitude, cycle to cycle
    breathiness: float        # aspiration noise / pulse level during voicing
    rate: float               # speaking rate factor (> 1 faster)
    s_centre: float           # Hz, the colour of /s/
    consonant_db: float       # consonant level re vowels
    pole_zero_pairs: np.ndarray  # (P, 4): zero Hz, zero bandwidth, pole Hz, pole bandwidth
    high_formants: np.ndarray  # (H, 2): Hz and bandwidth of F6 and up, below Nyquist


def utterance_rng(seed: int, set_name: str, spk_index: int, stream: int, utt_index: int = 0
                  ) -> np.random.Generator:
    """One independent stream per (seed, set, speaker, purpose, utterance).

    stream 0 = the speaker's voice, 1 = an utterance's audio, 2 = its duration.  The
    entropy always has five words so that no two purposes can share a stream.
    """
    return np.random.default_rng([seed, SETS[set_name][1], spk_index, stream, utt_index])


def draw_voice(rng: np.random.Generator) -> Voice:
    female = bool(rng.random() < 0.5)
    # Male and female F0 populations overlap between ~140 and ~180 Hz, as they do in
    # speech; vocal-tract length likewise differs by ~17 % on average with overlap.
    if female:
        f0 = math.exp(rng.normal(math.log(200.0), 0.15))
        vtl = 1.17 * math.exp(rng.normal(0.0, VTL_STD))
    else:
        f0 = math.exp(rng.normal(math.log(118.0), 0.17))
        vtl = math.exp(rng.normal(0.0, VTL_STD))
    f0 = float(np.clip(f0, 70.0, 330.0))
    accent = np.exp(rng.normal(0.0, VOWEL_ACCENT_STD, size=(len(VOWEL_FORMANTS), 3)))
    vowel_formants = VOWEL_FORMANTS * vtl * accent
    f4 = 3350.0 * vtl * math.exp(rng.normal(0.0, UPPER_FORMANT_STD))
    f5 = max(4300.0 * vtl * math.exp(rng.normal(0.0, UPPER_FORMANT_STD)), f4 + 400.0)
    bandwidths = (np.array([60.0, 90.0, 130.0, 200.0, 280.0]) * math.exp(rng.normal(0.0, 0.2))
                  * np.exp(rng.normal(0.0, 0.12, size=5)))
    open_quotient = float(rng.uniform(0.45, 0.75))
    return Voice(
        female=female,
        f0_median=f0,
        accent_st=float(rng.uniform(1.0, 4.5)),
        accent_prob=float(rng.uniform(0.2, 0.6)),
        accent_peak=float(rng.uniform(0.15, 0.85)),
        declination_st=float(rng.uniform(0.5, 4.0)),
        boundary_st=float(rng.normal(-1.5, 2.0)),
        vtl_scale=vtl,
        vowel_formants=vowel_formants,
        upper_formants=np.array([f4, f5]),
        bandwidths=bandwidths,
        open_quotient=open_quotient,
        skew=float(rng.uniform(0.55, 0.8)),
        tilt_db_oct=float(rng.uniform(*SOURCE_TILT_DB_OCT)),
        jitter=float(math.exp(rng.uniform(math.log(0.003), math.log(0.02)))),
        shimmer=float(rng.uniform(0.02, 0.12)),
        breathiness=float(math.exp(rng.uniform(math.log(0.03), math.log(0.3)))),
        rate=float(math.exp(rng.normal(0.0, 0.15))),
        s_centre=float(5200.0 * math.sqrt(vtl) * math.exp(rng.normal(0.0, 0.08))),
        consonant_db=float(rng.normal(0.0, 2.0)),
        pole_zero_pairs=_draw_side_branches(rng, vtl),
        high_formants=_draw_high_formants(rng, vtl),
    )


def _draw_high_formants(rng: np.random.Generator, vtl: float) -> np.ndarray:
    """F6 and up, the odd multiples of c/4L of a uniform tube.

    A digital cascade of F1-F5 alone falls tens of dB short above 5 kHz (the
    "higher-pole correction" of cascade synthesisers); the poles of a uniform tube
    up to Nyquist bring the high band back to the level of real voices.
    """
    freqs = np.arange(11, 17, 2) * 500.0 * vtl * np.exp(rng.normal(0.0, 0.04, size=3))
    bandwidths = rng.uniform(500.0, 1000.0, size=3)
    keep = freqs < 0.48 * SAMPLE_RATE
    return np.stack([freqs[keep], bandwidths[keep]], axis=1)


def _draw_side_branches(rng: np.random.Generator, vtl: float) -> np.ndarray:
    """Anti-resonances of side cavities (piriform fossa, nasal / sinus coupling).

    They are fixed for a speaker whatever the vowel, narrower than any channel EQ
    peak, and each comes with a nearby pole as in a real side branch: dips of 4-22 dB
    (median 13) next to a peak.
    """
    zeros = np.array([4500.0 * vtl * math.exp(rng.normal(0.0, 0.08)),
                      math.exp(rng.uniform(math.log(700.0), math.log(2800.0)))])
    zero_bw = rng.uniform(100.0, 400.0, size=2)
    poles = zeros * np.exp(rng.choice([-1.0, 1.0], size=2) * rng.uniform(0.08, 0.25, size=2))
    pole_bw = zero_bw * rng.uniform(1.2, 2.0, size=2)
    return np.stack([zeros, zero_bw, poles, pole_bw], axis=1)


def _side_branch_response(pairs: np.ndarray) -> np.ndarray:
    """Static frequency response (NFFT//2+1,) of pole-zero pairs, unity DC gain."""
    z1 = np.exp(-2j * np.pi * np.arange(NFFT // 2 + 1) / NFFT)
    h = np.ones(z1.size, dtype=np.complex128)
    for zf, zb, pf, pb in pairs:
        rz, rp = math.exp(-math.pi * zb / SAMPLE_RATE), math.exp(-math.pi * pb / SAMPLE_RATE)
        bz = 2 * rz * math.cos(2 * math.pi * zf / SAMPLE_RATE)
        ap = 2 * rp * math.cos(2 * math.pi * pf / SAMPLE_RATE)
        h *= ((1.0 - bz * z1 + rz * rz * z1 * z1) / (1.0 - bz + rz * rz)
              * (1.0 - ap + rp * rp) / (1.0 - ap * z1 + rp * rp * z1 * z1))
    return h


# --------------------------------------------------------------------------- timeline

class _Timeline:
    """Sample-level envelopes and control points of one utterance's articulation."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.voiced = np.zeros(n)     # glottal pulses
        self.aspirated = np.zeros(n)  # /h/ and stop aspiration, through the tract
        self.frication = np.zeros(n)  # frication and bursts, own spectra
        self.fric_shapes: list[tuple[float, float, float, float]] = []  # start, end, centre, width
        self.anchors_t: list[float] = []
        self.anchors_f: list[np.ndarray] = []
        self.accents: list[tuple[float, float, float]] = []  # time, semitones, width
        self.vowels: list[tuple[float, float]] = []

    def segment(self, env: np.ndarray, start: float, end: float, amp: float, ramp: float) -> None:
        s, e = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))
        s, e = max(s, 0), min(e, self.n)
        if e <= s:
            return
        seg = np.full(e - s, amp)
        r = min(int(ramp * SAMPLE_RATE), (e - s) // 2)
        if r > 0:
            up = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
            seg[:r] *= up
            seg[-r:] *= up[::-1]
        np.maximum(env[s:e], seg, out=env[s:e])

    def anchor(self, t: float, formants: np.ndarray) -> None:
        if self.anchors_t and t <= self.anchors_t[-1]:
            t = self.anchors_t[-1] + 1e-4
        self.anchors_t.append(t)
        self.anchors_f.append(formants)


def _plan_articulation(voice: Voice, rng: np.random.Generator, n: int, scale: float) -> _Timeline:
    """Random words of random syllables between leading and trailing silence."""
    tl = _Timeline(n)
    total = n / SAMPLE_RATE
    lead = rng.uniform(0.15, 0.4)
    end_limit = total - rng.uniform(0.15, 0.4)
    upper = voice.upper_formants
    vtl = voice.vtl_scale
    cons_gain = 10.0 ** (voice.consonant_db / 20.0)
    t = lead
    done = False
    while not done:
        for _ in range(int(rng.integers(1, 4))):
            ctype = CONSONANTS[int(rng.choice(len(CONSONANTS), p=CONSONANT_P))]
            v = int(rng.integers(len(VOWEL_FORMANTS)))
            # Token-to-token scatter of the vowel target: within-speaker variability.
            scatter = np.exp(rng.normal(0.0, TOKEN_SCATTER, 3))
            target = np.concatenate([voice.vowel_formants[v] * scatter, upper])
            accented = rng.random() < voice.accent_prob
            vdur = rng.uniform(0.08, 0.19) * scale * (1.25 if accented else 1.0)
            place = None
            if ctype == "stop":
                place = ("lab", "alv", "vel")[int(rng.integers(3))]
                closure = rng.uniform(0.03, 0.06) * scale
                burst = rng.uniform(0.008, 0.018)
                asp = rng.uniform(0.012, 0.04) * scale
                cdur = closure + burst + asp
            elif ctype in ("s", "sh", "f"):
                cdur = rng.uniform(0.06, 0.12) * scale
            elif ctype == "h":
                cdur = rng.uniform(0.04, 0.08) * scale
            elif ctype == "nasal":
                place = ("lab", "alv")[int(rng.integers(2))]
                cdur = rng.uniform(0.04, 0.08) * scale
            else:
                cdur = 0.0
            if t + cdur + vdur > end_limit:
                if tl.vowels or end_limit - t < 0.05:
                    done = True
                    break
                cdur, vdur, ctype, place = 0.0, end_limit - t, "none", None  # too short for more
            vstart = t + cdur
            vend = vstart + vdur
            trans = min(0.04 * scale, vdur / 2)
            if ctype == "stop":
                cs, cb = t + closure, t + closure + burst
                centre, width, level = BURST_SHAPE[place]
                if place == "vel":
                    centre = 0.5 * centre * vtl + 0.5 * target[1]
                tl.segment(tl.frication, cs, cb, cons_gain * 10.0 ** (level / 20.0), 0.002)
                tl.fric_shapes.append((cs, cb, centre * vtl, width * vtl))
                tl.segment(tl.aspirated, cb, vstart + 0.01, cons_gain * 0.25, 0.005)
            elif ctype in ("s", "sh", "f"):
                if ctype == "s":
                    centre, width, level, place = voice.s_centre, 1500.0 * vtl, -12.0, "alv"
                elif ctype == "sh":
                    centre, width, level, place = 2900.0 * vtl, 900.0 * vtl, -11.0, "pal"
                else:
                    centre, width, level, place = 5000.0, 4000.0, -24.0, "lab"
                tl.segment(tl.frication, t, vstart, cons_gain * 10.0 ** (level / 20.0), 0.015)
                tl.fric_shapes.append((t, vstart, centre, width))
            elif ctype == "h":
                tl.segment(tl.aspirated, t, vstart + 0.01, cons_gain * 0.3, 0.015)
            elif ctype == "nasal":
                tl.segment(tl.voiced, t, vstart, 0.3, 0.01)
            if ctype == "nasal":
                nasal = np.concatenate([NASAL_FORMANTS * vtl, upper])
                tl.anchor(t, nasal)
                tl.anchor(vstart, nasal)
            elif place is not None:
                f2, f3 = PLACE_LOCUS[place]
                locus = target.copy()
                locus[0] = max(0.55 * target[0], 200.0 * vtl)
                locus[1] = math.sqrt(target[1] * f2 * vtl)
                locus[2] = math.sqrt(target[2] * f3 * vtl)
                tl.anchor(t, locus)
                tl.anchor(vstart, locus)
            else:
                tl.anchor(t, target)
            tl.anchor(vstart + trans, target)
            tl.anchor(vend - 0.01, target)
            tl.segment(tl.voiced, vstart, vend, 1.25 if accented else 1.0, 0.012)
            tl.vowels.append((vstart, vend))
            if accented:
                tl.accents.append((vstart + voice.accent_peak * vdur,
                                   voice.accent_st * rng.uniform(0.5, 1.2), 0.07 * scale))
            t = vend
        if not done and rng.random() < 0.35:
            t += rng.uniform(0.08, 0.3) * scale  # a pause between words
    return tl


# --------------------------------------------------------------------------- synthesis

def _frames(x: np.ndarray) -> np.ndarray:
    """Hann-windowed frames, hop HOP, frame f centred on sample f * HOP."""
    padded = np.concatenate([np.zeros(HOP), x, np.zeros(HOP)])
    view = np.lib.stride_tricks.sliding_window_view(padded, WIN)[::HOP]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN) / WIN)  # periodic: sums to 1
    return view * window


def _overlap_add(frames: np.ndarray, n: int) -> np.ndarray:
    """Inverse of _frames for frames of length NFFT (filtered, with their tails)."""
    num, length = frames.shape
    k = -(-length // HOP)
    blocks = np.zeros((num, k * HOP))
    blocks[:, :length] = frames
    blocks = blocks.reshape(num, k, HOP)
    out = np.zeros((num + k - 1, HOP))
    for j in range(k):
        out[j:j + num] += blocks[:, j]
    return out.reshape(-1)[HOP:HOP + n]


def _resonator_cascade(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Frequency response (frames, NFFT//2+1) of cascaded 2-pole resonators, unity DC gain."""
    r = np.exp(-np.pi * bandwidths / SAMPLE_RATE)                    # (K,)
    c1 = (2.0 * r * np.cos(2.0 * np.pi * formants / SAMPLE_RATE))    # (F, K)
    c2 = np.broadcast_to(r * r, c1.shape)
    z1 = np.exp(-2j * np.pi * np.arange(NFFT // 2 + 1) / NFFT).astype(np.complex64)
    z2 = z1 * z1
    h = np.ones((formants.shape[0], z1.size), dtype=np.complex64)
    for k in range(formants.shape[1]):
        a1 = c1[:, k:k + 1].astype(np.float32)
        a2 = c2[:, k:k + 1].astype(np.float32)
        h *= (1.0 - a1 + a2) / (1.0 - a1 * z1 + a2 * z2)
    return h


def synthesize_speech(voice: Voice, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean speech (float64, vowels at ~unit RMS) and its vowel mask, ``n`` samples."""
    sr = SAMPLE_RATE
    rate = voice.rate * math.exp(rng.normal(0.0, RATE_STD))
    scale = 1.0 / rate
    effort = rng.normal(0.0, EFFORT_STD)
    shift_st = rng.normal(0.0, PITCH_SHIFT_STD_ST) + EFFORT_PITCH_ST * effort
    tl = _plan_articulation(voice, rng, n, scale)

    # F0 contour at the frame rate, in semitones re the speaker's median.
    num_frames = n // HOP + 1
    ft = np.arange(num_frames) * (HOP / sr)
    first, last = tl.vowels[0][0], tl.vowels[-1][1]
    progress = np.clip((ft - first) / max(last - first, 1e-3), 0.0, 1.0)
    st = shift_st + voice.declination_st * (0.5 - progress)
    for centre, amp, width in tl.accents:
        st += amp * np.exp(-0.5 * ((ft - centre) / width) ** 2)
    lv0, lv1 = tl.vowels[-1]
    st += voice.boundary_st * np.clip((ft - lv0) / max(lv1 - lv0, 1e-3), 0.0, 1.0)
    for _ in range(2):
        amp, freq, phase0 = rng.uniform(0.1, 0.4), rng.uniform(0.3, 1.5), rng.uniform(0, 2 * np.pi)
        st += amp * np.sin(2 * np.pi * freq * ft + phase0)
    f0_frames = voice.f0_median * 2.0 ** (st / 12.0)
    f0 = np.interp(np.arange(n) / sr, ft, f0_frames)

    # Glottal pulses by phase accumulation; jitter and shimmer per cycle.
    phase = np.cumsum(f0 / sr)
    max_cycles = int(phase[-1] * 1.2) + 16
    jitter = 1.0 + voice.jitter * rng.standard_normal(max_cycles)
    cycle = np.minimum(phase.astype(np.int64), max_cycles - 1)
    phase = np.cumsum(f0 * jitter[cycle] / sr)
    cycle = np.minimum(phase.astype(np.int64), max_cycles - 1)
    shimmer = np.maximum(1.0 + voice.shimmer * rng.standard_normal(max_cycles), 0.2)
    frac = phase - np.floor(phase)
    oq = voice.open_quotient
    a = oq * voice.skew
    flow = np.where(frac < a, 0.5 - 0.5 * np.cos(np.pi * frac / a),
                    np.where(frac < oq, np.cos(0.5 * np.pi * (frac - a) / (oq - a)), 0.0))
    pulses = np.diff(flow, prepend=0.0) * shimmer[cycle] * tl.voiced  # derivative = lip radiation
    vowel_mask = tl.voiced > 0.5
    pulses /= math.sqrt(np.mean(pulses[vowel_mask] ** 2)) + 1e-12
    open_phase = np.where(frac < oq, 1.0, 0.4)
    aspiration = rng.standard_normal(n) * (voice.breathiness * open_phase * tl.voiced + tl.aspirated)
    frication = rng.standard_normal(n) * tl.frication

    # Vocal tract: formant tracks at the frame rate, interpolated in log frequency.
    at = np.asarray(tl.anchors_t)
    af = np.log(np.asarray(tl.anchors_f))
    formants = np.exp(np.stack([np.interp(ft, at, af[:, k]) for k in range(af.shape[1])], axis=1))
    freqs = np.arange(NFFT // 2 + 1) * (sr / NFFT)
    tilt = voice.tilt_db_oct + EFFORT_TILT_DB_OCT * effort
    source_tilt = (np.maximum(freqs, 300.0) / 300.0) ** (tilt / 6.02)
    static = source_tilt * _side_branch_response(voice.pole_zero_pairs)
    if len(voice.high_formants):
        static = static * _resonator_cascade(voice.high_formants[None, :, 0], voice.high_formants[:, 1])[0]
    static = static.astype(np.complex64)
    h_tract = _resonator_cascade(formants, voice.bandwidths) * static

    # Frication spectra: a Gaussian bump per frame, unit mean power over the band.
    centres = np.full(num_frames, 4000.0)
    widths = np.full(num_frames, 3000.0)
    for start, end, centre, width in tl.fric_shapes:
        f_lo = max(int(math.floor(start * sr / HOP)), 0)
        f_hi = min(int(math.ceil(end * sr / HOP)) + 1, num_frames)
        centres[f_lo:f_hi] = centre
        widths[f_lo:f_hi] = width
    h_fric = np.exp(-0.5 * ((freqs[None, :] - centres[:, None]) / widths[:, None]) ** 2) + 0.03
    h_fric /= np.sqrt(np.mean(h_fric ** 2, axis=1, keepdims=True))

    spec = scipy.fft.rfft(_frames(pulses + aspiration), NFFT) * h_tract
    voiced = _overlap_add(scipy.fft.irfft(spec, NFFT), n)
    voiced /= math.sqrt(np.mean(voiced[vowel_mask] ** 2)) + 1e-12
    fric = _overlap_add(scipy.fft.irfft(scipy.fft.rfft(_frames(frication), NFFT) * h_fric, NFFT), n)
    return voiced + fric, vowel_mask


def _shaped_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    nfft = scipy.fft.next_fast_len(n, real=True)
    freqs = np.arange(nfft // 2 + 1) * (SAMPLE_RATE / nfft)
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":
        shape = 1.0 / np.sqrt(np.maximum(freqs, 30.0))
        noise = scipy.fft.irfft(scipy.fft.rfft(rng.standard_normal(nfft)) * shape, nfft)[:n]
    else:  # babble-like: a few speech-shaped streams, each with a syllabic rhythm
        t = np.arange(nfft) / SAMPLE_RATE
        total = np.zeros(freqs.size, dtype=np.complex128)
        lf = np.log(np.maximum(freqs, 30.0))
        for _ in range(int(rng.integers(3, 7))):
            env = np.zeros(nfft)
            for _ in range(3):
                env += np.sin(2 * np.pi * rng.uniform(2.0, 6.0) * t + rng.uniform(0, 2 * np.pi))
            env = np.maximum(env, 0.0) + 0.1
            shape = 1.0 / np.sqrt(np.maximum(freqs, 150.0)) * (freqs > 80.0)
            for centre in np.log(rng.uniform([300, 900, 2000], [900, 2200, 3200])):
                shape = shape * (1.0 + 3.0 * np.exp(-0.5 * ((lf - centre) / 0.15) ** 2))
            total += scipy.fft.rfft(rng.standard_normal(nfft) * env) * shape
        noise = scipy.fft.irfft(total, nfft)[:n]
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def apply_channel(speech: np.ndarray, vowel_mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth random EQ with band limits, noise at a random SNR, a random level.

    The noise goes through the same microphone as the speech, but the SNR is set on
    the result (vowel power over noise power), so it is the SNR of the file.
    """
    n = speech.size
    nfft = scipy.fft.next_fast_len(n + 1024, real=True)
    freqs = np.arange(nfft // 2 + 1) * (SAMPLE_RATE / nfft)
    octaves = np.log2(np.maximum(freqs, 40.0) / 1000.0)
    eq_db = rng.normal(0.0, EQ_TILT_STD_DB_OCT) * octaves
    for _ in range(EQ_PEAKS):
        centre = rng.uniform(math.log2(0.15), math.log2(6.5))
        gain_db, width = rng.normal(0.0, EQ_PEAK_STD_DB), rng.uniform(0.3, 1.0)
        eq_db += gain_db * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    low_cut = rng.uniform(*LOW_CUT_HZ)
    high_cut = rng.uniform(*HIGH_CUT_HZ)
    response = (10.0 ** (eq_db / 20.0)
                / np.sqrt(1.0 + (low_cut / np.maximum(freqs, 1.0)) ** 4)
                / np.sqrt(1.0 + (freqs / high_cut) ** 8))
    kind = NOISE_KINDS[int(rng.choice(len(NOISE_KINDS), p=NOISE_P))]
    snr_db = rng.uniform(*SNR_RANGE_DB)
    noise = _shaped_noise(rng, n, kind)
    speech = scipy.fft.irfft(scipy.fft.rfft(speech, nfft) * response, nfft)[:n]
    noise = scipy.fft.irfft(scipy.fft.rfft(noise, nfft) * response, nfft)[:n]
    gain = math.sqrt(np.mean(speech[vowel_mask] ** 2) / np.mean(noise ** 2) / 10.0 ** (snr_db / 10.0))
    y = speech + gain * noise

    peak_dbfs = rng.uniform(*PEAK_DBFS)
    return y * (10.0 ** (peak_dbfs / 20.0) / (np.max(np.abs(y)) + 1e-12))


def make_utterance_audio(seed: int, set_name: str, spk_index: int, utt_index: int,
                         num_samples: int) -> np.ndarray:
    """The int16 samples of one utterance: a pure function of its arguments."""
    voice = draw_voice(utterance_rng(seed, set_name, spk_index, 0))
    rng = utterance_rng(seed, set_name, spk_index, 1, utt_index)
    speech, vowel_mask = synthesize_speech(voice, rng, num_samples)
    y = apply_channel(speech, vowel_mask, rng)
    return np.round(y * 32767.0).astype(np.int16)


# --------------------------------------------------------------------------- corpus

def plan_corpus(opts: CorpusOptions, out_dir: Path) -> list[Utterance]:
    """Every utterance of the corpus with its id, path and length; no audio is made."""
    counts = {"train": (opts.num_train_spk, opts.utts_per_train_spk),
              "dev": (opts.num_dev_spk, opts.utts_per_dev_spk),
              "eval": (opts.num_eval_spk, opts.utts_per_eval_spk)}
    plan = []
    for set_name, (num_spk, num_utt) in counts.items():
        prefix = SETS[set_name][0]
        spk_width = max(4, len(str(num_spk - 1)))
        utt_width = max(3, len(str(num_utt - 1)))
        for s in range(num_spk):
            spk_id = f"{prefix}{s:0{spk_width}d}"
            for u in range(num_utt):
                utt_id = f"{spk_id}-u{u:0{utt_width}d}"
                dur = utterance_rng(opts.seed, set_name, s, 2, u).uniform(opts.min_dur, opts.max_dur)
                num_samples = max(int(round(dur * SAMPLE_RATE / HOP)), 1) * HOP
                plan.append(Utterance(set_name, s, u, spk_id, utt_id,
                                      out_dir / set_name / spk_id / f"{utt_id}.wav", num_samples))
    return plan


def _is_complete(utt: Utterance) -> bool:
    """A wav under its final name was renamed there whole; check it is the one planned."""
    try:
        info = sf.info(str(utt.path))
    except (RuntimeError, sf.LibsndfileError):
        return False
    return (info.frames == utt.num_samples and info.samplerate == SAMPLE_RATE
            and info.channels == 1 and info.subtype == "PCM_16")


def _write_utterance(job: tuple[int, Utterance]) -> str:
    seed, utt = job
    audio = make_utterance_audio(seed, utt.set_name, utt.spk_index, utt.utt_index, utt.num_samples)
    utt.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(utt.path)
    try:
        sf.write(str(tmp), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp, utt.path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return utt.utt_id


def _check_manifest(out_dir: Path, opts: CorpusOptions) -> None:
    """Refuse to mix wavs made with another seed, duration range or generator."""
    manifest = {"generator_version": GENERATOR_VERSION, "sample_rate": SAMPLE_RATE,
                "seed": opts.seed, "min_dur": opts.min_dur, "max_dur": opts.max_dur}
    path = out_dir / "corpus.json"
    if path.exists():
        with open(path) as f:
            old = json.load(f)
        if old != manifest:
            raise DeepSpeakerError(
                f"{path}: corpus made with {old}, asked for {manifest}; "
                f"remove {out_dir} or choose another --out-dir")
        return
    with atomic_write(path) as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


def _write_if_changed(path: Path, lines: Iterable[str]) -> bool:
    """Atomically write ``lines``; leave the file untouched when it already holds them."""
    text = "".join(f"{line}\n" for line in lines)
    if path.exists() and path.read_text() == text:
        return False
    with atomic_write(path) as f:
        f.write(text)
    return True


def write_data_dirs(plan: Sequence[Utterance], data_dir: Path) -> None:
    for set_name in SETS:
        utts = sorted((u for u in plan if u.set_name == set_name), key=lambda u: u.utt_id)
        d = data_dir / set_name
        d.mkdir(parents=True, exist_ok=True)
        spk2utt: dict[str, list[str]] = {}
        for u in utts:
            spk2utt.setdefault(u.spk_id, []).append(u.utt_id)
        _write_if_changed(d / "wav.scp", (f"{u.utt_id} {u.path}" for u in utts))
        _write_if_changed(d / "utt2spk", (f"{u.utt_id} {u.spk_id}" for u in utts))
        _write_if_changed(d / "spk2utt", (f"{s} {' '.join(spk2utt[s])}" for s in sorted(spk2utt)))
        _write_if_changed(d / "utt2dur", (f"{u.utt_id} {u.num_samples / SAMPLE_RATE:.2f}" for u in utts))


def make_corpus(out_dir: str | os.PathLike, data_dir: str | os.PathLike,
                opts: CorpusOptions = CorpusOptions(), nj: int = 2) -> dict[str, int]:
    """Generate what is missing of the corpus and (re)write the data dirs.

    Returns counts: ``made``, ``skipped``, ``samples`` (of the whole corpus).
    """
    for name in ("num_train_spk", "num_dev_spk", "num_eval_spk", "utts_per_train_spk",
                 "utts_per_dev_spk", "utts_per_eval_spk"):
        if getattr(opts, name) < 1:
            raise DeepSpeakerError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(opts, name)}")
    if not 1.0 <= opts.min_dur <= opts.max_dur:
        raise DeepSpeakerError(f"need 1.0 <= --min-dur <= --max-dur, got {opts.min_dur} and {opts.max_dur}")
    if opts.utts_per_eval_spk < 2:
        raise DeepSpeakerError("--utts-per-eval-spk must be >= 2: trials need a positive per anchor")
    if nj < 1:
        raise DeepSpeakerError(f"--nj must be >= 1, got {nj}")
    out_dir = Path(out_dir).resolve()
    data_dir = Path(data_dir)
    start = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, opts)
    # Temp files of a killed run: no run is complete without remaking them anyway.
    for stale in out_dir.glob("*/*/.*.tmp*.wav"):
        stale.unlink(missing_ok=True)

    plan = plan_corpus(opts, out_dir)
    todo = [u for u in plan if not _is_complete(u)]
    logging.info("%d utterances planned, %d already complete, %d to make with nj=%d",
                 len(plan), len(plan) - len(todo), len(todo), nj)
    jobs = [(opts.seed, u) for u in todo]
    report_every = max(len(jobs) // 10, 1)
    if nj == 1 or len(jobs) <= 1:
        results: Iterable[str] = map(_write_utterance, jobs)
        pool = None
    else:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        pool = ctx.Pool(min(nj, len(jobs)))
        results = pool.imap_unordered(_write_utterance, jobs, chunksize=4)
    try:
        for i, _ in enumerate(results, 1):
            if i % report_every == 0 or i == len(jobs):
                logging.info("made %d / %d utterances (%.1f s)", i, len(jobs), time.time() - start)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()

    write_data_dirs(plan, data_dir)
    samples = sum(u.num_samples for u in plan)
    for set_name in SETS:
        part = [u for u in plan if u.set_name == set_name]
        logging.info("%s: %d speakers, %d utterances, %.2f h", set_name,
                     len({u.spk_id for u in part}), len(part),
                     sum(u.num_samples for u in part) / SAMPLE_RATE / 3600)
    logging.info("made %d, skipped %d utterances; corpus %.2f h in %s, data dirs in %s; took %.1f s",
                 len(todo), len(plan) - len(todo), samples / SAMPLE_RATE / 3600, out_dir, data_dir,
                 time.time() - start)
    return {"made": len(todo), "skipped": len(plan) - len(todo), "samples": samples}


def get_parser() -> argparse.ArgumentParser:
    d = CorpusOptions()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out-dir", required=True, help="wav files go to OUT_DIR/<set>/<spk>/<utt>.wav")
    p.add_argument("--data-dir", required=True, help="Kaldi data dirs go to DATA_DIR/{train,dev,eval}")
    p.add_argument("--num-train-spk", type=int, default=d.num_train_spk, help="training speakers")
    p.add_argument("--num-dev-spk", type=int, default=d.num_dev_spk, help="dev (early stopping) speakers")
    p.add_argument("--num-eval-spk", type=int, default=d.num_eval_spk, help="evaluation speakers")
    p.add_argument("--utts-per-train-spk", type=int, default=d.utts_per_train_spk, help="utterances each")
    p.add_argument("--utts-per-dev-spk", type=int, default=d.utts_per_dev_spk, help="utterances each")
    p.add_argument("--utts-per-eval-spk", type=int, default=d.utts_per_eval_spk, help="utterances each")
    p.add_argument("--min-dur", type=float, default=d.min_dur, help="shortest utterance, seconds")
    p.add_argument("--max-dur", type=float, default=d.max_dur, help="longest utterance, seconds")
    p.add_argument("--seed", type=int, default=d.seed, help="the corpus is a function of it")
    p.add_argument("--nj", type=int, default=2, help="parallel worker processes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    logging.info("%s %s", Path(__file__).name, " ".join(sys.argv[1:] if argv is None else argv))
    opts = CorpusOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CorpusOptions)})
    try:
        make_corpus(args.out_dir, args.data_dir, opts, nj=args.nj)
    except DeepSpeakerError as e:
        logging.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
