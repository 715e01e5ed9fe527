"""MFCC from stored log mel fbank, as Kaldi's compute-mfcc-feats derives them.

Kaldi computes MFCC as a DCT of the log mel energies followed by a cepstral lifter;
doing the same on the stored 64-d fbank gives the i-vector front end and the
MFCC-stats reference system their cepstra without a second pass over the audio.
(Kaldi's MFCC replaces c0 by the frame log energy when ``use_energy`` is set; here
c0 stays the DCT's, since the fbank ark does not store energy.)
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=8)
def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0..num_ceps-1 (Kaldi's ComputeDctMatrix): (num_ceps, num_bins)."""
    if not 1 <= num_ceps <= num_bins:
        raise ValueError(f"num_ceps must be in 1..{num_bins}, got {num_ceps}")
    k = np.arange(num_ceps)[:, None]
    n = np.arange(num_bins)[None, :]
    d = np.sqrt(2.0 / num_bins) * np.cos(np.pi / num_bins * (n + 0.5) * k)
    d[0] = np.sqrt(1.0 / num_bins)
    return d


@functools.lru_cache(maxsize=8)
def lifter_coefs(num_ceps: int, cepstral_lifter: float) -> np.ndarray:
    """Kaldi's sinusoidal lifter 1 + Q/2 sin(pi i / Q); all ones when Q == 0."""
    i = np.arange(num_ceps)
    if cepstral_lifter == 0:
        return np.ones(num_ceps)
    return 1.0 + 0.5 * cepstral_lifter * np.sin(np.pi * i / cepstral_lifter)


def mfcc_from_fbank(fbank: np.ndarray, num_ceps: int = 20, cepstral_lifter: float = 22.0
                    ) -> np.ndarray:
    """(frames, num_bins) log mel fbank -> (frames, num_ceps) float32 MFCC."""
    fbank = np.asarray(fbank)
    if fbank.ndim != 2:
        raise ValueError(f"expected a (frames, bins) matrix, got shape {fbank.shape}")
    d = dct_matrix(num_ceps, fbank.shape[1]) * lifter_coefs(num_ceps, cepstral_lifter)[:, None]
    return (fbank.astype(np.float64) @ d.T).astype(np.float32)
