"""Generated noise and music, for corpora without MUSAN.

MUSAN's noise is mostly stationary hums, fans, rain and traffic with some knocks and
beeps, and its music covers many genres with and without a beat.  These generators
give the same kinds of spectra and time structure, seeded, in numpy only:

* noise (``NOISE_KINDS``): white, pink (1/f), brown (1/f^2), band-limited (a random
  band of one to three octaves), bursts (non-stationary: knocks and rustles of 30-800
  ms on a quiet pink floor), hum (50 or 60 Hz mains with harmonics and a slow wobble)
  and fan (low-passed noise, amplitude-modulated at the blade rate, plus the blade
  tone and its harmonics);
* music: a melody of random notes from a pentatonic scale, a bass line on the bar,
  both harmonic tones with their own harmonic roll-off and attack/release envelope,
  and a drum beat (kick, snare, hi-hat) at a random tempo.

Each item is drawn from its own generator, so it depends only on (seed, list, index),
never on how many others are made.  Levels are set to -20 dBFS RMS, peaks kept below
-1 dBFS; the augment stage scales them to the SNR it draws anyway.
"""

from __future__ import annotations

import math

import numpy as np

NOISE_KINDS = ("white", "pink", "brown", "band", "bursts", "hum", "fan")
DURATION_RANGE_S = (5.0, 20.0)
RMS_DBFS = -20.0
PEAK_MAX = 10 ** (-1.0 / 20)


def _coloured(n: int, exponent: float, rng: np.random.Generator, sample_rate: int,
              band: tuple[float, float] | None = None) -> np.ndarray:
    """Gaussian noise with power spectrum ``1 / f**exponent`` (optionally only in ``band``)."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    f[0] = f[1]
    gain = f ** (-exponent / 2.0)
    gain[f < 20.0] = 0.0
    if band is not None:
        lo, hi = band
        # Smooth (raised-cosine, 1/6 octave) band edges: no ringing tones at the edges.
        octaves = np.log2(f / lo), np.log2(hi / f)
        gain *= np.clip(np.minimum(*octaves) * 6.0 + 0.5, 0.0, 1.0)
    return np.fft.irfft(spec * gain, n)


def _envelope(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n)
    attack, release = min(attack, n), min(release, n)
    env[:attack] = np.linspace(0.0, 1.0, attack, endpoint=False)
    if release:
        env[n - release:] *= np.exp(-5.0 * np.linspace(0.0, 1.0, release))
    return env


def _bursts(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    x = _coloured(n, 1.0, rng, sr)
    x /= np.std(x) * 30.0                                  # the floor, 30 dB under a burst
    t = 0
    while True:
        t += int(rng.exponential(0.6) * sr)
        length = int(rng.uniform(0.03, 0.8) * sr)
        if t + length > n:
            break
        lo = rng.uniform(100.0, 3000.0)
        burst = _coloured(length, rng.uniform(0.0, 2.0), rng, sr, (lo, lo * 2 ** rng.uniform(1, 4)))
        env = _envelope(length, int(rng.uniform(0.001, 0.05) * sr), length // 2)
        x[t:t + length] += burst / (np.std(burst) + 1e-12) * env * 10 ** rng.uniform(-1.0, 0.0)
    return x


def _harmonics(f0: float, n: int, sr: int, rng: np.random.Generator, count: int,
               rolloff: float) -> np.ndarray:
    t = np.arange(n) / sr
    x = np.zeros(n)
    for k in range(1, count + 1):
        if k * f0 >= 0.45 * sr:
            break
        x += k ** -rolloff * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    return x


def _hum(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
    x = _harmonics(f0, n, sr, rng, int(rng.integers(4, 16)), rng.uniform(0.5, 2.0))
    t = np.arange(n) / sr
    x *= 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t)
    return x / np.std(x) + 0.03 * rng.standard_normal(n)


def _fan(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    x = _coloured(n, rng.uniform(1.0, 2.0), rng, sr, (40.0, rng.uniform(1000.0, 4000.0)))
    t = np.arange(n) / sr
    rate = rng.uniform(5.0, 30.0)                        # revolutions per second
    blades = int(rng.integers(3, 8))
    x *= 1.0 + rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rate * t)
    tone = _harmonics(rate * blades, n, sr, rng, 4, 1.5)
    return x / np.std(x) + rng.uniform(0.1, 0.5) * tone / np.std(tone)


def generate_noise(kind: str, num_samples: int, sample_rate: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``num_samples`` of noise ``kind`` (one of NOISE_KINDS), float64 at -20 dBFS RMS."""
    n, sr = num_samples, sample_rate
    if kind in ("white", "pink", "brown"):
        x = _coloured(n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng, sr)
    elif kind == "band":
        lo = rng.uniform(100.0, 3000.0)
        x = _coloured(n, rng.uniform(0.0, 1.0), rng, sr, (lo, min(lo * 2 ** rng.uniform(1, 3),
                                                                  0.45 * sr)))
    elif kind == "bursts":
        x = _bursts(n, rng, sr)
    elif kind == "hum":
        x = _hum(n, rng, sr)
    elif kind == "fan":
        x = _fan(n, rng, sr)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
    return _level(x)


def _level(x: np.ndarray) -> np.ndarray:
    rms = math.sqrt(float(np.mean(x ** 2))) or 1.0
    x = x * (10 ** (RMS_DBFS / 20) / rms)
    peak = float(np.max(np.abs(x)))
    return x * (PEAK_MAX / peak) if peak > PEAK_MAX else x


# --------------------------------------------------------------------------- music

_SCALES = {"major pentatonic": (0, 2, 4, 7, 9), "minor pentatonic": (0, 3, 5, 7, 10)}


def _note(midi: float, n: int, sr: int, rng: np.random.Generator, timbre: tuple[int, float],
          attack_s: float) -> np.ndarray:
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    tone = _harmonics(f0, n, sr, rng, *timbre)
    return tone * _envelope(n, int(attack_s * sr), n // 3)


def _drums(n: int, sr: int, beat: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(n)
    kick_n, hat_n = int(0.15 * sr), int(0.04 * sr)
    t = np.arange(kick_n) / sr
    kick = np.sin(2 * np.pi * np.cumsum(50.0 + 90.0 * np.exp(-t * 30)) / sr) * np.exp(-t * 20)
    for i, start in enumerate(range(0, n - kick_n, beat // 2)):
        if i % 4 == 0:
            x[start:start + kick_n] += kick
        if i % 4 == 2:
            snare = _coloured(kick_n, 0.0, rng, sr, (200.0, 6000.0))
            x[start:start + kick_n] += 0.5 * snare / np.std(snare) * np.exp(-t * 25)
        hat = _coloured(hat_n, 0.0, rng, sr, (5000.0, 0.45 * sr))
        x[start:start + hat_n] += 0.15 * hat / np.std(hat) * np.exp(-t[:hat_n] * 80)
    return x


def generate_music(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``num_samples`` of music (melody, bass, optional beat), float64 at -20 dBFS RMS."""
    n, sr = num_samples, sample_rate
    beat = int(60.0 / rng.uniform(70.0, 160.0) * sr)        # samples per beat
    scale = _SCALES[str(rng.choice(list(_SCALES)))]
    root = int(rng.integers(45, 58))
    lead = (int(rng.integers(3, 10)), rng.uniform(0.7, 2.0))
    bass = (int(rng.integers(2, 6)), rng.uniform(1.0, 2.5))
    attack = rng.uniform(0.005, 0.06)
    x = np.zeros(n + 4 * beat)
    t = 0
    while t < n:
        length = beat * int(rng.choice([1, 1, 2, 2, 4])) // 2
        if rng.random() > 0.15:                            # else a rest
            midi = root + 12 + scale[int(rng.integers(len(scale)))] + 12 * int(rng.integers(0, 2))
            x[t:t + length] += _note(midi, length, sr, rng, lead, attack)
        t += length
    for bar in range(0, n, 4 * beat):
        x[bar:bar + 4 * beat] += 0.6 * _note(root + scale[int(rng.integers(len(scale)))] - 12,
                                             4 * beat, sr, rng, bass, 0.01)
    x = x[:n] / (np.std(x[:n]) + 1e-12)
    if rng.random() < 0.8:
        x += rng.uniform(0.3, 1.0) * _drums(n, sr, beat, rng)
    return _level(x)
