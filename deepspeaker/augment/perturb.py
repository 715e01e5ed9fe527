"""The signal operations of offline augmentation (Kaldi's v2 recipe, WeSpeaker's speed).

Every function takes and returns float samples on the int16 scale (as
``deepspeaker.data.load_audio`` gives them) and keeps the length of the speech it is
given, except ``speed``, which changes it as ``sox speed`` does.  Randomness comes only
from the ``np.random.Generator`` passed in, so a copy is a pure function of its seed.

Choices, and why:

* ``reverberate`` scales the RIR to unit energy.  A measured RIR's absolute gain is
  arbitrary (it depends on the microphone and the recording level of the sweep); with
  unit energy the reverberant speech has about the power of the dry speech, so the
  SNRs of noise added afterwards keep their meaning, and two RIRs of one room give
  copies of similar loudness.  The output is aligned on the direct path (the RIR's
  largest peak) and cut to the input's length, as Kaldi's ``wav-reverberate
  --shift-output=true`` does, so frame t of a copy is frame t of its clean source and
  the clean VAD applies to it.
* SNRs are measured over the whole signal: speech power is the mean square of all the
  utterance's samples (Kaldi's ``wav-reverberate`` does the same), noise power that of
  the noise samples that are added.  The SNR of active speech would be a few dB higher
  for utterances with long pauses.
* Noise shorter than the utterance is tiled, each repetition joined to the next by a
  10 ms raised-cosine crossfade (no click at the seam); longer noise is cut at a
  seeded offset, so the same noise file gives different stretches to different copies.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767
CROSSFADE_S = 0.010


def power(x: np.ndarray) -> float:
    """Mean square of ``x`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x * x)) if x.size else 0.0


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``rir`` (scaled to unit energy), aligned on the direct path.

    The direct path is the RIR's largest absolute sample; the output is the convolution
    from that lag on, ``len(x)`` samples long (Kaldi's ``--shift-output=true``).
    """
    rir = np.asarray(rir, dtype=np.float64)
    energy = float(np.sum(rir * rir))
    if energy <= 0:
        raise ValueError("RIR is all zeros")
    rir = rir / np.sqrt(energy)
    delay = int(np.argmax(np.abs(rir)))
    from scipy.signal import fftconvolve  # imported here: scipy.signal takes seconds

    y = fftconvolve(np.asarray(x, dtype=np.float64), rir)
    return y[delay:delay + len(x)]


def fit_length(noise: np.ndarray, n: int, rng: np.random.Generator,
               crossfade: int = int(CROSSFADE_S * 16000)) -> np.ndarray:
    """``n`` samples of ``noise``: a seeded stretch of a longer one, a tiling of a shorter one."""
    noise = np.asarray(noise, dtype=np.float64)
    length = len(noise)
    if length >= n:
        off = int(rng.integers(0, length - n + 1))
        return noise[off:off + n].copy()
    c = min(crossfade, length // 2)
    period = length - c
    reps = int(np.ceil(max(n - c, 1) / period))
    out = np.zeros(reps * period + c)
    piece = noise.copy()
    if c:
        ramp = np.sin(0.5 * np.pi * (np.arange(c) + 0.5) / c) ** 2
        head, tail = piece[:c] * ramp, piece[-c:] * ramp[::-1]
    for k in range(reps):
        a = k * period
        seg = piece.copy()
        if c and k > 0:
            seg[:c] = head
        if c and k < reps - 1:
            seg[-c:] = tail
        out[a:a + length] += seg
    return out[:n]


def scale_to_snr(noise: np.ndarray, speech_power: float, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that ``10 log10(speech_power / power(noise)) == snr_db``."""
    p = power(noise)
    if p <= 0 or speech_power <= 0:
        return np.zeros(len(noise))
    return np.asarray(noise, dtype=np.float64) * np.sqrt(speech_power / (p * 10 ** (snr_db / 10)))


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator,
              speech_power: float | None = None) -> np.ndarray:
    """``x`` plus ``noise`` fitted to its length (``fit_length``) at ``snr_db`` (whole-signal)."""
    sp = power(x) if speech_power is None else speech_power
    return np.asarray(x, dtype=np.float64) + scale_to_snr(fit_length(noise, len(x), rng), sp, snr_db)


def add_events(x: np.ndarray, events: list[tuple[int, np.ndarray, float]]) -> np.ndarray:
    """``x`` plus foreground noise events ``(start sample, noise, snr_db)``.

    Each event's SNR is against the whole utterance's power and its own samples' power
    (Kaldi's ``--additive-signals --start-times --snrs``); an event running past the
    end is cut.
    """
    y = np.asarray(x, dtype=np.float64).copy()
    sp = power(x)
    for start, noise, snr_db in events:
        seg = np.asarray(noise, dtype=np.float64)[:max(0, len(y) - start)]
        if seg.size:
            y[start:start + len(seg)] += scale_to_snr(seg, sp, snr_db)
    return y


def speed_ratio(factor: float) -> tuple[int, int]:
    """``(up, down)`` for ``resample_poly``: 0.9 -> (10, 9), 1.1 -> (10, 11)."""
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    r = Fraction(1 / factor).limit_denominator(1000)
    return r.numerator, r.denominator


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster, pitch and tempo together, as ``sox speed``.

    Resampling by ``1/factor`` and playing at the original rate: 0.9 gives a copy 10/9
    as long and lower in pitch; 1.1 one 10/11 as long and higher.
    """
    from scipy.signal import resample_poly

    up, down = speed_ratio(factor)
    return resample_poly(np.asarray(x, dtype=np.float64), up, down)


def to_int16(y: np.ndarray) -> np.ndarray:
    """Round and clip to the int16 range (what a 16-bit wav can hold)."""
    return np.clip(np.round(y), INT16_MIN, INT16_MAX).astype(np.int16)


__all__ = ["add_events", "add_noise", "fit_length", "power", "reverberate", "scale_to_snr",
           "speed", "speed_ratio", "to_int16"]
