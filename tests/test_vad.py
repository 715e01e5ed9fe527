"""Energy VAD: Kaldi compute-vad-energy semantics on hand-made and synthetic inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.signal.windows import tukey

from deepspeaker.features import FbankOptions, compute_fbank_and_energy, compute_vad_energy, num_frames
from deepspeaker.utils import ConfigError

SR = 16000
LENGTH, SHIFT = 400, 160


# Small torch ops stall when threads outnumber free cores (see fbank.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def naive_vad(log_energy, vad_energy_threshold=5.0, vad_energy_mean_scale=0.5,
              vad_frames_context=0, vad_proportion_threshold=0.6):
    """compute-vad-energy one frame at a time, in float32 as Kaldi computes it."""
    energy = np.asarray(log_energy, dtype=np.float32)
    T = len(energy)
    threshold = np.float32(vad_energy_threshold)
    if vad_energy_mean_scale != 0:
        threshold = np.float32(threshold + np.float32(vad_energy_mean_scale)
                               * np.float32(energy.astype(np.float64).sum()) / np.float32(T))
    out = np.zeros(T, dtype=np.float32)
    for t in range(T):
        num = den = 0
        for t2 in range(t - vad_frames_context, t + vad_frames_context + 1):
            if 0 <= t2 < T:
                den += 1
                if energy[t2] > threshold:
                    num += 1
        out[t] = 1.0 if np.float32(num) >= np.float32(den) * np.float32(vad_proportion_threshold) else 0.0
    return out


def frames_inside(start, stop, total):
    """Masks of the frames lying wholly inside / wholly outside samples [start, stop)."""
    first = SHIFT * np.arange(num_frames(total, FbankOptions()))
    inside = (first >= start) & (first + LENGTH <= stop)
    outside = (first + LENGTH <= start) | (first >= stop)
    return inside, outside


# ---------------------------------------------------------------------------------------
# Hand-computed answers
# ---------------------------------------------------------------------------------------

HAND = np.array([0, 0, 20, 20, 20, 0, 20, 0, 0, 0], dtype=np.float32)
FIXED = dict(vad_energy_threshold=10.0, vad_energy_mean_scale=0.0)   # above = HAND > 10


@pytest.mark.parametrize("context,proportion,expected", [
    # No context: each frame on its own.
    (0, 0.6, [0, 0, 1, 1, 1, 0, 1, 0, 0, 0]),
    # +-1 frame, 2 of 3 needed: the one-frame gap is filled, the lone frame 6 dropped;
    # at the edges the window has 2 frames and needs 1.2, i.e. 2.
    (1, 0.6, [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]),
    # +-1 frame, 0.9 of 3 needed: one voiced neighbour is enough; edges need 0.6 of 2.
    (1, 0.3, [0, 1, 1, 1, 1, 1, 1, 1, 0, 0]),
    # +-2 frames, half needed: frame 0 sees 1 of 3, frame 1 sees 2 of 4, frame 6 2 of 5.
    (2, 0.5, [0, 1, 1, 1, 1, 1, 0, 0, 0, 0]),
    # +-2, 0.6 of 5 = 3 exactly (also in float32): 3 of 5 is voiced (>=), frame 6 is not.
    (2, 0.6, [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]),
    # Kaldi's x-vector vad.conf: +-2, 0.12: any voiced frame within 2 frames is enough.
    (2, 0.12, [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]),
])
def test_context_and_proportion_by_hand(context, proportion, expected):
    vad = compute_vad_energy(HAND, vad_frames_context=context, vad_proportion_threshold=proportion, **FIXED)
    assert vad.dtype == np.float32
    assert vad.tolist() == expected
    assert naive_vad(HAND, vad_frames_context=context, vad_proportion_threshold=proportion,
                     **FIXED).tolist() == expected


def test_mean_scale_by_hand():
    ramp = np.arange(1, 11, dtype=np.float32)                       # mean 5.5
    assert compute_vad_energy(ramp, vad_energy_threshold=0.0, vad_energy_mean_scale=1.0).tolist() == \
        [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]                              # E > 5.5
    assert compute_vad_energy(ramp).tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]   # E > 5 + 2.75


def test_all_equal_energies():
    # The mean term cannot separate equal frames: voiced iff E > 5 + 0.5 E, i.e. E > 10.
    assert compute_vad_energy(np.full(50, 10.5)).tolist() == [1.0] * 50
    assert compute_vad_energy(np.full(50, 9.5)).tolist() == [0.0] * 50
    assert compute_vad_energy(np.full(50, 10.0)).tolist() == [0.0] * 50   # strictly above


def test_matches_naive_loop():
    rng = np.random.default_rng(11)
    for trial in range(40):
        T = int(rng.integers(1, 120))
        energy = rng.normal(12, 5, T).astype(np.float32)
        if trial % 4 == 0:
            energy = np.round(energy)                                # ties with the threshold
        opts = dict(vad_energy_threshold=float(rng.uniform(0, 8)),
                    vad_energy_mean_scale=float(rng.choice([0.0, 0.5, 1.0])),
                    vad_frames_context=int(rng.integers(0, 6)),
                    vad_proportion_threshold=float(rng.choice([0.1, 0.3, 0.5, 0.6, 0.7, 0.99])))
        np.testing.assert_array_equal(compute_vad_energy(energy, **opts), naive_vad(energy, **opts),
                                      err_msg=str(opts))


# ---------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------

def test_digital_silence_is_unvoiced():
    _, log_energy = compute_fbank_and_energy(np.zeros(2 * SR))
    assert compute_vad_energy(log_energy).tolist() == [0.0] * len(log_energy)


@pytest.mark.parametrize("context", [0, 2])
def test_tone_burst_in_silence(context):
    start, stop, total = 9000, 17000, 2 * SR
    x = np.zeros(total)
    t = np.arange(stop - start) / SR
    x[start:stop] = np.round(3000 * np.sin(2 * np.pi * 500 * t))
    _, log_energy = compute_fbank_and_energy(x)
    vad = compute_vad_energy(log_energy, vad_frames_context=context)
    inside, outside = frames_inside(start, stop, total)
    assert np.all(vad[inside] == 1)
    # Frames overlapping the edges may go either way, and so may `context` frames beyond.
    far = outside & ~np.convolve(~outside, np.ones(2 * context + 1), "same").astype(bool)
    assert np.all(vad[far] == 0)
    assert far.sum() > 0.6 * len(vad)


def speech_in_noise(speech_rms, snr_db, seed=0):
    """Formant-filtered pulse train in odd half-seconds, white noise throughout.

    Returns the samples and masks of the frames wholly inside speech (envelope > 0.5)
    and wholly in noise alone. SNR is speech power (where speech is on) over noise power.
    """
    rng = np.random.default_rng(seed)
    seg = SR // 2
    n = 8 * seg
    t = np.arange(n) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 3 * t)
    source = np.diff(np.floor(np.cumsum(f0 / SR)), prepend=0.0)
    voiced = np.zeros(n)
    for centre, bandwidth in ((700, 80), (1200, 100), (2600, 150)):
        r = np.exp(-np.pi * bandwidth / SR)
        theta = 2 * np.pi * centre / SR
        voiced += lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], source)
    envelope = np.zeros(n)
    for k in range(1, 8, 2):
        envelope[k * seg:(k + 1) * seg] = tukey(seg, 0.2)
    speech = voiced * envelope
    speech *= speech_rms / np.sqrt(np.mean(speech[envelope > 0.99] ** 2))
    noise = rng.standard_normal(n) * speech_rms * 10 ** (-snr_db / 20)
    x = np.clip(np.round(speech + noise), -32768, 32767)
    starts = SHIFT * np.arange(num_frames(n, FbankOptions()))
    is_speech = np.array([envelope[s:s + LENGTH].min() > 0.5 for s in starts])
    is_noise = np.array([envelope[s:s + LENGTH].max() == 0 for s in starts])
    return x, is_speech, is_noise


@pytest.mark.parametrize("snr_db", [10, 15, 20])
def test_speech_in_noise_with_kaldi_defaults(snr_db):
    # Kaldi's defaults threshold at 5 + half the mean log energy: they separate speech
    # from noise when the noise frames' log energy is low (here noise of 1-3 LSB rms).
    x, is_speech, is_noise = speech_in_noise(speech_rms=10.0, snr_db=snr_db)
    _, log_energy = compute_fbank_and_energy(x)
    vad = compute_vad_energy(log_energy)
    assert vad[is_speech].mean() >= 0.9
    assert vad[is_noise].mean() <= 0.1


@pytest.mark.parametrize("snr_db", [10, 15, 20])
def test_speech_in_noise_with_a_mean_relative_threshold(snr_db):
    # At a normal recording level the mean-relative threshold (constant 0, scale 1) separates.
    x, is_speech, is_noise = speech_in_noise(speech_rms=3000.0, snr_db=snr_db)
    _, log_energy = compute_fbank_and_energy(x)
    vad = compute_vad_energy(log_energy, vad_energy_threshold=0.0, vad_energy_mean_scale=1.0)
    assert vad[is_speech].mean() >= 0.9
    assert vad[is_noise].mean() <= 0.1


def test_kaldi_defaults_keep_loud_noise():
    # Documented behaviour, not a wish: at speech rms 3000 and 15 dB SNR the noise frames'
    # log energy (~18.5) is above 5 + mean / 2 (~15), so the defaults keep them too.
    x, is_speech, is_noise = speech_in_noise(speech_rms=3000.0, snr_db=15)
    _, log_energy = compute_fbank_and_energy(x)
    vad = compute_vad_energy(log_energy)
    assert vad[is_speech].mean() == 1.0 and vad[is_noise].mean() > 0.9


# ---------------------------------------------------------------------------------------
# Edges and errors
# ---------------------------------------------------------------------------------------

def test_empty_and_bad_inputs():
    assert compute_vad_energy(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="1-D"):
        compute_vad_energy(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        compute_vad_energy(np.array([1.0, np.nan]))


def test_bad_options():
    with pytest.raises(ConfigError, match="unknown key"):
        compute_vad_energy(np.zeros(3), vad_threshold=5.0)
    with pytest.raises(ConfigError, match="vad_proportion_threshold"):
        compute_vad_energy(np.zeros(3), vad_proportion_threshold=1.0)
    with pytest.raises(ConfigError, match="vad_frames_context"):
        compute_vad_energy(np.zeros(3), vad_frames_context=-1)
    with pytest.raises(ConfigError, match="vad_energy_mean_scale"):
        compute_vad_energy(np.zeros(3), vad_energy_mean_scale=-0.5)
