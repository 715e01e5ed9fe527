"""The i-vector front end: 20 MFCC + deltas + accelerations, sliding CMN, voiced frames.

The paper's baseline (§4.2) uses 20-dimensional MFCC "with delta and acceleration
appended" and a frame-level energy VAD. We follow Kaldi's sid/ recipes for the
details the paper leaves open, in their order:

    add-deltas  |  apply-cmvn-sliding --norm-vars=false --center=true --cmn-window=300
                |  select-voiced-frames

Deltas are taken before the VAD so that a voiced frame next to silence still sees its
true neighbours, and the sliding mean is taken over all frames (silence included),
exactly as those pipes do. The cepstra come from the stored 64-d fbank
(``mfcc_from_fbank``), so this stage needs no second pass over the audio.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from deepspeaker.features import mfcc_from_fbank, select_voiced


@dataclass
class FrontendOptions:
    """Options of the i-vector front end; saved beside the UBM so extraction reuses them."""

    num_ceps: int = 20              # paper §4.2: 20-dimensional MFCC
    cepstral_lifter: float = 22.0   # Kaldi's compute-mfcc-feats default
    delta_order: int = 2            # paper §4.2: delta and acceleration -> 3 x 20 = 60-d
    delta_window: int = 2           # Kaldi add-deltas default
    cmn_window: int = 300           # Kaldi sid/ recipes: apply-cmvn-sliding --cmn-window=300

    def __post_init__(self) -> None:
        if self.num_ceps < 1:
            raise ValueError(f"num_ceps must be >= 1, got {self.num_ceps}")
        if self.delta_order < 0:
            raise ValueError(f"delta_order must be >= 0, got {self.delta_order}")
        if self.delta_window < 1:
            raise ValueError(f"delta_window must be >= 1, got {self.delta_window}")
        if self.cmn_window < 1:
            raise ValueError(f"cmn_window must be >= 1, got {self.cmn_window}")

    @property
    def dim(self) -> int:
        """Dimension of the output frames."""
        return self.num_ceps * (self.delta_order + 1)


@functools.lru_cache(maxsize=16)
def delta_scales(order: int, window: int) -> tuple[np.ndarray, ...]:
    """Kaldi's delta filters: ``scales[i]`` is the (2*i*window + 1)-tap filter of order i.

    Order 0 is the identity; order i is the order i-1 filter convolved with the
    regression filter ``j / sum(j^2)`` for j in -window..window.
    """
    if order < 0 or window < 1:
        raise ValueError(f"need order >= 0 and window >= 1, got order={order}, window={window}")
    j = np.arange(-window, window + 1, dtype=np.float64)
    regression = j / np.sum(j * j)
    scales = [np.ones(1)]
    for _ in range(order):
        scales.append(np.convolve(scales[-1], regression))
    for s in scales:
        s.setflags(write=False)
    return tuple(scales)


def add_deltas(x: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """(T, D) -> (T, D * (order + 1)) float32: ``[x, delta x, delta-delta x, ...]``.

    As Kaldi's add-deltas: frames outside the utterance are replaced by the first or
    last frame (edge replication), so a 1-frame utterance gets zero deltas.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected features of shape (frames, dims), got {x.shape}")
    num_frames, dim = x.shape
    out = np.zeros((num_frames, dim * (order + 1)), dtype=np.float64)
    if num_frames == 0:
        return out.astype(np.float32)
    x64 = x.astype(np.float64)
    for i, scales in enumerate(delta_scales(order, window)):
        offset = (len(scales) - 1) // 2
        padded = np.pad(x64, ((offset, offset), (0, 0)), mode="edge")
        block = out[:, i * dim:(i + 1) * dim]
        for k, scale in enumerate(scales):
            if scale != 0.0:
                block += scale * padded[k:k + num_frames]
    return out.astype(np.float32)


def sliding_window_bounds(num_frames: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of Kaldi's centred CMN window for every frame.

    Frame t's window is ``[t - window // 2, t - window // 2 + window)``, shifted right
    when it starts before frame 0 and then left when it ends after the last frame (and
    clipped to the utterance if it is shorter than the window), as in Kaldi's
    SlidingWindowCmn with ``center=true``.
    """
    t = np.arange(num_frames)
    start = t - window // 2
    end = start + window
    end = np.where(start < 0, end - start, end)
    start = np.maximum(start, 0)
    over = end > num_frames
    start = np.where(over, np.maximum(start - (end - num_frames), 0), start)
    end = np.minimum(end, num_frames)
    return start, end


def sliding_cmn(x: np.ndarray, window: int = 300) -> np.ndarray:
    """Centred sliding-window mean normalisation (Kaldi apply-cmvn-sliding, means only).

    Every frame has the mean of its window subtracted; the window sums come from one
    float64 cumulative sum (Kaldi keeps a running sum in double), so the cost is O(T D)
    whatever the window. An utterance shorter than the window has its global mean
    removed. Returns float32.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected features of shape (frames, dims), got {x.shape}")
    if window < 1:
        raise ValueError(f"cmn window must be >= 1, got {window}")
    num_frames = x.shape[0]
    if num_frames == 0:
        return x.astype(np.float32)
    x64 = x.astype(np.float64)
    csum = np.zeros((num_frames + 1, x.shape[1]))
    np.cumsum(x64, axis=0, out=csum[1:])
    start, end = sliding_window_bounds(num_frames, window)
    mean = (csum[end] - csum[start]) / (end - start)[:, None]
    return (x64 - mean).astype(np.float32)


def compute_frontend(fbank: np.ndarray, vad: np.ndarray | None,
                     opts: FrontendOptions | None = None) -> np.ndarray:
    """Stored fbank (T, 64) + VAD (T,) -> the UBM / i-vector frames, float32 (T_voiced, dim).

    ``vad=None`` keeps every frame. Raises ValueError("no voiced frames") when the VAD
    rejects the whole utterance; the caller names the utterance and skips it, as
    Kaldi's select-voiced-frames does.
    """
    opts = opts or FrontendOptions()
    mfcc = mfcc_from_fbank(fbank, num_ceps=opts.num_ceps, cepstral_lifter=opts.cepstral_lifter)
    feats = add_deltas(mfcc, order=opts.delta_order, window=opts.delta_window)
    feats = sliding_cmn(feats, window=opts.cmn_window)
    if vad is not None:
        feats = select_voiced(feats, vad)
    if feats.shape[0] == 0:
        raise ValueError("no voiced frames")
    return np.ascontiguousarray(feats, dtype=np.float32)
