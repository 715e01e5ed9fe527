"""A user's audio for a trained system: a file, a ``command |``, or samples with their rate.

Samples are brought to what stage 1 computed its features from: mono float32 on
Kaldi's int16 scale, at the rate of the system's fbank config.

* **Files** are read exactly as stage 1 reads a wav.scp entry (``data.audio``: a
  missing file, a file that is not audio and a WAV cut short are refused, never read
  in part), so a file the recipe listed gives the very samples its features came from.
* **Arrays**: an integer array holds PCM values (int16: as is; int32: scaled to the
  int16 range); a float array is taken on soundfile's scale, full scale = 1.0, and
  multiplied by 32768, as stage 1 does with what soundfile returns.
* **Another sample rate.**  A rate *above* the system's (44.1 or 48 kHz recordings,
  the common case for a user's own files) is resampled with ``scipy.signal.
  resample_poly`` (a deterministic polyphase low-pass), with a log line: nothing the
  model looks at is lost.  A rate *below* it is refused: upsampling 8 kHz audio to
  16 kHz leaves the mel bins above 4 kHz empty, features the model never saw in
  training, and the scores would look plausible and be wrong.
* Several channels are refused, as stage 1 refuses them (which channel holds the
  speaker is the user's call).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from ..data.audio import INT16_SCALE, _open, _Unusable
from ..utils import DeepSpeakerError

logger = logging.getLogger(__name__)


class AudioInputError(DeepSpeakerError):
    """Audio a system cannot use; names the file (or the array) and why."""


@dataclass
class Audio:
    """Mono samples on the int16 scale at ``rate`` Hz; ``name`` says where they came from."""

    samples: np.ndarray
    rate: int
    name: str


def read_audio(value: str | os.PathLike) -> Audio:
    """A file name (or a wav.scp ``command |``) as :class:`Audio`, or AudioInputError."""
    value = os.fspath(value)
    try:
        with _open(value) as f:
            rate, channels = f.samplerate, f.channels
            if channels != 1:
                raise _Unusable(f"has {channels} channels, expected 1 (mono); mix down or pick "
                                f"a channel first")
            x = f.read(dtype="float32", always_2d=True)
    except _Unusable as e:
        raise AudioInputError(str(e), path=value) from None
    except RuntimeError as e:  # libsndfile decoding errors
        raise AudioInputError(f"cannot read audio: {e}", path=value) from None
    if x.shape[0] == 0:
        raise AudioInputError("empty: 0 samples", path=value)
    x = x[:, 0]
    x *= INT16_SCALE
    return Audio(x, rate, value)


def audio_from_array(samples, rate, name: str = "<array>") -> Audio:
    """``(samples, rate)`` from a caller as :class:`Audio` (scales in the module docstring)."""
    x = np.asarray(samples)
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioInputError(f"{name}: the sample rate must be a positive integer, got {rate!r}")
    if x.ndim != 1:
        raise AudioInputError(f"{name}: expected mono samples (1-D), got shape {x.shape}; mix "
                              f"down or pick a channel first")
    if x.dtype == np.int16:
        x = x.astype(np.float32)
    elif x.dtype == np.int32:
        x = (x.astype(np.float64) / 65536.0).astype(np.float32)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32) * np.float32(INT16_SCALE)
    else:
        raise AudioInputError(f"{name}: expected int16, int32 or float samples, got {x.dtype}")
    if x.size == 0:
        raise AudioInputError(f"{name}: empty: 0 samples")
    return Audio(x, int(rate), name)


def at_rate(audio: Audio, rate: int) -> np.ndarray:
    """``audio``'s samples at ``rate``: as they are, downsampled, or refused (see above)."""
    if audio.rate == rate:
        return audio.samples
    if audio.rate < rate:
        raise AudioInputError(f"{audio.name}: sample rate {audio.rate} Hz is below the "
                              f"system's {rate} Hz; upsampling cannot add the missing band "
                              f"(the model was trained on {rate} Hz audio), so it is refused")
    from scipy.signal import resample_poly

    g = math.gcd(rate, audio.rate)
    logger.info("%s: resampling %d Hz -> %d Hz", audio.name, audio.rate, rate)
    y = resample_poly(audio.samples.astype(np.float64), rate // g, audio.rate // g)
    return y.astype(np.float32)


__all__ = ["Audio", "AudioInputError", "at_rate", "audio_from_array", "read_audio"]
