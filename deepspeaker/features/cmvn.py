"""Voiced-frame selection and per-utterance mean/variance normalisation (paper §4.3; SPEC F2, F3).

The paper normalises each utterance's fbank "to have zero mean and unit variance" and
keeps only the frames the VAD calls voiced. Statistics are taken over the voiced frames
only: silence would otherwise pull the mean towards the log floor and inflate the
variance, so the same speaker would look different depending on how much silence was
recorded around them.
"""

from __future__ import annotations

import numpy as np

from ..utils import SizeMismatchError


def select_voiced(feats: np.ndarray, vad: np.ndarray) -> np.ndarray:
    """Rows of ``feats`` (T, D) whose ``vad`` (T,) value is > 0.5, as Kaldi's select-voiced-frames."""
    feats = np.asarray(feats)
    vad = np.asarray(vad).reshape(-1)
    if feats.ndim != 2:
        raise ValueError(f"expected features of shape (frames, dims), got {feats.shape}")
    if feats.shape[0] != vad.shape[0]:
        # Off by one or two frames usually means features and VAD were computed with
        # different frame options (snip_edges) or from different audio.
        raise SizeMismatchError(f"features have {feats.shape[0]} frames but the VAD has "
                                f"{vad.shape[0]}; were they made from the same audio and options?")
    return feats[vad > 0.5]


def normalize_utterance(feats: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-dimension zero mean, unit variance over the frames of one utterance, float32.

    The standard deviation is floored at ``eps`` so that a constant dimension (e.g. a
    mel bin stuck at the log floor in band-limited audio) becomes all zeros instead of
    NaN. Statistics are accumulated in float64: a float32 variance of values around
    20 loses digits to cancellation.
    """
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"expected features of shape (frames, dims), got {feats.shape}")
    if feats.shape[0] == 0:
        raise ValueError("no frames to normalise (did the VAD reject every frame?)")
    x = feats.astype(np.float64)
    mean = x.mean(axis=0)
    x -= mean
    std = np.sqrt(np.mean(x * x, axis=0))
    x /= np.maximum(std, eps)
    return x.astype(np.float32)


def prepare_features(feats: np.ndarray, vad: np.ndarray | None = None) -> np.ndarray:
    """What training and extraction feed the network: voiced frames, normalised per utterance.

    ``feats`` as read from feats.scp, ``vad`` from vad.scp (or None to keep every frame).
    Raises ValueError when no frame is voiced; the caller names the utterance and
    decides whether to skip it (Kaldi's select-voiced-frames warns and drops it).
    """
    if vad is not None:
        voiced = select_voiced(feats, vad)
        if voiced.shape[0] == 0:
            raise ValueError(f"the VAD rejects all {np.asarray(feats).shape[0]} frames")
        feats = voiced
    return normalize_utterance(feats)
