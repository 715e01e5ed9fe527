"""Energy VAD with Kaldi's compute-vad-energy semantics (paper §4.2, §4.3; SPEC F2).

The paper's Deep Speaker models use "the same VAD processing as the DNN i-vector
baseline", i.e. Kaldi's energy VAD on the frame log energy (column 0 of MFCC with
``--use-energy``; here the log energy ``compute_fbank_and_energy`` returns). A frame
``t`` is voiced when, among the frames ``t - context .. t + context`` that exist, at
least ``vad_proportion_threshold`` of them have a log energy above

    vad_energy_threshold + vad_energy_mean_scale * mean(log_energy)

The mean term makes the threshold follow the recording level, but only half-way: with
the defaults, noise frames are rejected only while their log energy is below about
``10 + 0.5 * (speech - noise log-energy gap)``; i.e. noise of a few LSB rms on the int16
scale. At ordinary levels (speech rms ~3000, 15 dB SNR) noise frames sit around 18.5
against a threshold near 15 and are kept (tests/test_vad.py shows both). That is
Kaldi's behaviour, and the paper's baseline; ``vad_energy_threshold=0,
vad_energy_mean_scale=1`` (threshold at the mean) separates at any level.

Two places where we state the behaviour rather than leave it to chance:

* All-equal energies (digital silence, a constant tone): the mean term cannot separate
  anything, so every frame is decided by the same comparison ``E > 5 + 0.5 E``, i.e.
  ``E > 10`` with the defaults. Digital silence (``E = log(FLT_EPSILON) = -15.9``) is
  all unvoiced; a constant loud tone is all voiced. No special case: this is what
  Kaldi does, and it is sensible for both.
* Kaldi before April 2016 tested ``log_energy[t]`` inside the context loop where
  ``log_energy[t2]`` was meant, which made ``vad_frames_context`` a no-op (kaldi-asr
  issue #383, fixed by PR #697, which also changed the default context from 5 to 0).
  We follow the fixed code, so the x-vector recipes' vad.conf (context 2, proportion
  0.12) means here what it means in current Kaldi. Copies of the old file still
  circulate in forks; with ``context = 0`` old and new agree exactly.

Comparisons are done in float32 as Kaldi does (``den_count * vad_proportion_threshold``
is a float product), so ties fall the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepspeaker.utils import dataclass_from_dict


@dataclass
class VadOptions:
    """Kaldi compute-vad-energy options, with Kaldi's defaults."""

    vad_energy_threshold: float = 5.0
    vad_energy_mean_scale: float = 0.5
    vad_frames_context: int = 0
    vad_proportion_threshold: float = 0.6

    def __post_init__(self) -> None:
        if not self.vad_energy_mean_scale >= 0.0:
            raise ValueError(f"vad_energy_mean_scale must be >= 0, got {self.vad_energy_mean_scale}")
        if not isinstance(self.vad_frames_context, (int, np.integer)) or self.vad_frames_context < 0:
            raise ValueError(f"vad_frames_context must be an integer >= 0, got {self.vad_frames_context!r}")
        if not 0.0 < self.vad_proportion_threshold < 1.0:
            raise ValueError(f"vad_proportion_threshold must be in (0, 1), "
                             f"got {self.vad_proportion_threshold}")


def compute_vad_energy(log_energy: np.ndarray, **options) -> np.ndarray:
    """float32 (T,) of 1.0 (voiced) / 0.0 for frame log energies ``log_energy`` (T,).

    Options are VadOptions field names; unknown names raise ConfigError. An empty input
    gives an empty output (Kaldi warns and writes an empty vector).
    """
    opts = dataclass_from_dict(VadOptions, options, where="vad options")
    energy = np.asarray(log_energy)
    if energy.ndim != 1:
        raise ValueError(f"expected a 1-D log-energy vector, got shape {energy.shape}")
    energy = energy.astype(np.float32, copy=False)
    num = energy.shape[0]
    if num == 0:
        return np.zeros(0, dtype=np.float32)
    if not np.isfinite(energy).all():
        raise ValueError("log energies contain NaN/inf")

    threshold = np.float32(opts.vad_energy_threshold)
    if opts.vad_energy_mean_scale != 0.0:
        threshold = np.float32(threshold + np.float32(opts.vad_energy_mean_scale)
                               * np.float32(energy.sum(dtype=np.float64)) / np.float32(num))
    above = energy > threshold

    context = int(opts.vad_frames_context)
    if context == 0:
        count_above = above.astype(np.int64)
        count_all = np.ones(num, dtype=np.int64)
    else:
        # Counts over the window [t - context, t + context] clipped to [0, T), from
        # cumulative sums: one vectorised pass however wide the context.
        cumulative = np.concatenate([[0], np.cumsum(above, dtype=np.int64)])
        t = np.arange(num)
        lo = np.maximum(t - context, 0)
        hi = np.minimum(t + context + 1, num)
        count_above = cumulative[hi] - cumulative[lo]
        count_all = hi - lo
    proportion = np.float32(opts.vad_proportion_threshold)
    voiced = count_above.astype(np.float32) >= count_all.astype(np.float32) * proportion
    return voiced.astype(np.float32)
