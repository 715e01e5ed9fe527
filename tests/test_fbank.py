"""Fbank parity with kaldi-native-fbank and with a float64 reading of Kaldi's definition.

Parity tolerance is 1e-3 on the log mel energies. The synthetic tones carry a noise
floor 20 dB down, as recordings do: in a clean loud tone, mel bins ~20 nats below the
frame's loudest bin (the lowest bins, which pre-emphasis cuts by ~30 dB) are below
float32's resolution, and there knf itself is up to ~1e-2 away from the exact value.
Such signals are compared on the bins float32 resolves (RESOLVABLE_NATS of the frame
maximum): see test_clean_tones_agree_where_float32_resolves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepspeaker.features import (
    FbankOptions,
    compute_fbank,
    compute_fbank_and_energy,
    compute_fbank_batch,
    mel_filterbank,
    num_frames,
)
from deepspeaker.utils import ConfigError

knf = pytest.importorskip("kaldi_native_fbank", reason="kaldi-native-fbank (the reference) is not installed")

SR = 16000
LIBRISPEECH_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech-mini"
TOL = 1e-3
RESOLVABLE_NATS = 15.0
FLT_EPSILON = float(np.finfo(np.float32).eps)


# Small torch ops stall when threads outnumber free cores (see fbank.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------

def knf_fbank(x, num_bins=64, snip_edges=True, window_type="povey"):
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0           # knf's default dither is 3e-5
    opts.frame_opts.snip_edges = snip_edges
    opts.frame_opts.window_type = window_type
    opts.mel_opts.num_bins = num_bins
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = 0.0
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SR, [float(v) for v in x])
    fbank.input_finished()
    return np.array([fbank.get_frame(i) for i in range(fbank.num_frames_ready)], dtype=np.float32)


def knf_log_energy(x, snip_edges=True, raw_energy=True, energy_floor=0.0):
    """Column 0 of knf's MFCC with use_energy: Kaldi's frame log energy."""
    opts = knf.MfccOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = snip_edges
    opts.use_energy = True
    opts.raw_energy = raw_energy
    opts.energy_floor = energy_floor
    mfcc = knf.OnlineMfcc(opts)
    mfcc.accept_waveform(SR, [float(v) for v in x])
    mfcc.input_finished()
    return np.array([mfcc.get_frame(i)[0] for i in range(mfcc.num_frames_ready)], dtype=np.float32)


def reference_fbank(x, num_bins=64, low_freq=20.0, preemph=0.97):
    """Kaldi's definition read literally, one frame at a time, in float64 (snip_edges)."""
    x = np.asarray(x, dtype=np.float64)
    length, shift, padded = 400, 160, 512
    frames = 0 if len(x) < length else 1 + (len(x) - length) // shift
    n = np.arange(length)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / (length - 1))) ** 0.85

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    mel_low, mel_high = mel(low_freq), mel(SR / 2)
    delta = (mel_high - mel_low) / (num_bins + 1)
    weights = np.zeros((padded // 2, num_bins))
    for m in range(num_bins):
        left, centre, right = mel_low + m * delta, mel_low + (m + 1) * delta, mel_low + (m + 2) * delta
        for k in range(padded // 2):
            f = mel(k * SR / padded)
            if left < f < right:
                rising, falling = (f - left) / (centre - left), (right - f) / (right - centre)
                weights[k, m] = rising if f <= centre else falling
    fbank, energy = np.zeros((frames, num_bins)), np.zeros(frames)
    for t in range(frames):
        frame = x[t * shift:t * shift + length].copy()
        frame -= frame.mean()
        energy[t] = np.log(max(frame @ frame, FLT_EPSILON))
        emphasised = frame.copy()
        emphasised[1:] -= preemph * frame[:-1]
        emphasised[0] -= preemph * frame[0]
        power = np.abs(np.fft.rfft(emphasised * window, padded)[:padded // 2]) ** 2
        fbank[t] = np.log(np.maximum(power @ weights, FLT_EPSILON))
    return fbank, energy


# ---------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------

def int16(x):
    return np.clip(np.round(x), -32768, 32767)


def two_sines(t):
    return np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 3100 * t + 1.0)


def chirp(t, duration=1.5, f0=100.0, f1=3900.0):
    return np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / duration / 2))


def resolvable(ref):
    """Bins within RESOLVABLE_NATS of their frame's loudest bin."""
    return ref >= ref.max(axis=1, keepdims=True) - RESOLVABLE_NATS


def synthetic_signals():
    """Named test signals on the int16 scale (float64 arrays of integers)."""
    rng = np.random.default_rng(20170501)
    t = np.arange(int(1.5 * SR)) / SR
    signals = {}
    for amplitude in (30.0, 1000.0, 20000.0):
        signals[f"sines_{amplitude:g}"] = int16(amplitude * two_sines(t)
                                                + 0.1 * amplitude * rng.standard_normal(t.size))
    signals["chirp"] = int16(8000 * chirp(t) + 800 * rng.standard_normal(t.size))
    # Speech-ish burst, then a near-silent stretch (+-1 LSB), digital silence, a burst again.
    burst = int16(3000 * np.sin(2 * np.pi * 220 * t[:8000]) * np.hanning(8000)
                  + 30 * rng.standard_normal(8000))
    signals["bursts_silences"] = np.concatenate(
        [burst, int16(0.6 * rng.standard_normal(4000)), np.zeros(4000), burst])
    signals["digital_silence"] = np.zeros(4000)
    signals["len_400"] = int16(500 * rng.standard_normal(400))
    signals["len_559"] = int16(500 * rng.standard_normal(400 + 159))
    signals["len_560"] = int16(500 * rng.standard_normal(400 + 160))
    return signals


SIGNALS = synthetic_signals()


def real_utterances(count=6):
    if not LIBRISPEECH_MINI.is_dir():
        pytest.skip(f"{LIBRISPEECH_MINI} is absent: real-speech parity not checked")
    import soundfile as sf

    files = sorted(LIBRISPEECH_MINI.rglob("*.flac"))[:count]
    if len(files) < 5:
        pytest.skip(f"fewer than 5 FLAC files under {LIBRISPEECH_MINI}")
    out = {}
    for path in files:
        samples, rate = sf.read(path, dtype="int16")
        assert rate == SR and samples.ndim == 1, path
        out[path.name] = samples.astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_synthetic_matches_knf(name):
    x = SIGNALS[name]
    fbank, log_energy = compute_fbank_and_energy(x)
    ref = knf_fbank(x)
    assert fbank.dtype == np.float32 and log_energy.dtype == np.float32
    assert fbank.shape == ref.shape == (num_frames(len(x), FbankOptions()), 64)
    assert np.abs(fbank - ref).max() <= TOL
    assert np.abs(log_energy - knf_log_energy(x)).max() <= 1e-4


def test_frame_counts_at_the_edges():
    assert compute_fbank(SIGNALS["len_400"]).shape == (1, 64)
    assert compute_fbank(SIGNALS["len_559"]).shape == (1, 64)
    assert compute_fbank(SIGNALS["len_560"]).shape == (2, 64)


def test_digital_silence_is_the_log_floor():
    fbank, log_energy = compute_fbank_and_energy(SIGNALS["digital_silence"])
    assert np.all(fbank == np.float32(np.log(FLT_EPSILON)))
    assert np.all(log_energy == np.float32(np.log(FLT_EPSILON)))


def test_real_speech_matches_knf():
    utts = real_utterances()
    for name, x in utts.items():
        fbank, log_energy = compute_fbank_and_energy(x)
        ref = knf_fbank(x)
        assert fbank.shape == ref.shape, name
        assert np.abs(fbank - ref).max() <= TOL, name
        assert np.abs(log_energy - knf_log_energy(x)).max() <= 1e-4, name
    # The batched path over the same utterances.
    for (fbank, log_energy), (name, x) in zip(compute_fbank_batch(list(utts.values()), FbankOptions()),
                                              utts.items()):
        assert np.abs(fbank - knf_fbank(x)).max() <= TOL, name
        assert np.abs(log_energy - knf_log_energy(x)).max() <= 1e-4, name


def test_real_speech_resolvable_bins_match_knf_on_more_files():
    # Over all 552 files of librispeech-mini, ~6% have some bin more than 1e-3 from knf,
    # always ~20 nats below the frame maximum, where knf is as far from float64 as we are.
    if not LIBRISPEECH_MINI.is_dir():
        pytest.skip(f"{LIBRISPEECH_MINI} is absent: real-speech parity not checked")
    import soundfile as sf

    files = sorted(LIBRISPEECH_MINI.rglob("*.flac"))[::20]
    batch = [sf.read(path, dtype="int16")[0].astype(np.float32) for path in files]
    for path, x, (fbank, _) in zip(files, batch, compute_fbank_batch(batch, FbankOptions())):
        ref = knf_fbank(x)
        ok = resolvable(ref)
        assert ok.mean() > 0.95, path.name
        assert np.abs(fbank - ref)[ok].max() <= TOL, path.name


def test_batch_matches_knf_and_single_calls():
    names = sorted(SIGNALS)
    batch = [SIGNALS[n] for n in names]
    results = compute_fbank_batch(batch, FbankOptions())
    assert len(results) == len(batch)
    for name, x, (fbank, log_energy) in zip(names, batch, results):
        single_fbank, single_energy = compute_fbank_and_energy(x)
        assert np.abs(fbank - knf_fbank(x)).max() <= TOL, name
        np.testing.assert_allclose(fbank, single_fbank, atol=1e-5, rtol=0, err_msg=name)
        np.testing.assert_allclose(log_energy, single_energy, atol=1e-5, rtol=0, err_msg=name)


def test_batch_spanning_many_chunks():
    # More frames than one internal chunk, utterances split across chunk boundaries.
    rng = np.random.default_rng(3)
    batch = [int16(300 * rng.standard_normal(n)) for n in (400, 70000, 559, 160 * 300 + 400, 12345)]
    results = compute_fbank_batch(batch, FbankOptions())
    for x, (fbank, log_energy) in zip(batch, results):
        single_fbank, single_energy = compute_fbank_and_energy(x)
        assert fbank.shape == (num_frames(len(x), FbankOptions()), 64)
        np.testing.assert_allclose(fbank, single_fbank, atol=1e-5, rtol=0)
        np.testing.assert_allclose(log_energy, single_energy, atol=1e-5, rtol=0)
    assert compute_fbank_batch([], FbankOptions()) == []


def test_matches_float64_reference_of_kaldis_definition():
    for name in ("sines_1000", "chirp", "bursts_silences"):
        x = SIGNALS[name]
        ref_fbank, ref_energy = reference_fbank(x)
        fbank, log_energy = compute_fbank_and_energy(x)
        assert np.abs(fbank - ref_fbank).max() <= TOL, name
        assert np.abs(log_energy - ref_energy).max() <= 1e-4, name


def test_clean_tones_agree_where_float32_resolves():
    t = np.arange(SR) / SR
    rng = np.random.default_rng(8)
    clean = {
        "pure_sine_float": 20000 * np.sin(2 * np.pi * 440 * t),
        "pure_chirp_to_7.9k": int16(20000 * chirp(t, 1.0, 100.0, 7900.0)),
        "sines_40dB_snr": int16(1000 * two_sines(t) + 10 * rng.standard_normal(t.size)),
    }
    # A clean tone leaves most bins unresolvable (88% for the chirp): there both knf and
    # we are up to ~0.7 away from float64, so only the resolvable bins are compared.
    for name, x in clean.items():
        ref, _ = reference_fbank(x)
        ok = resolvable(ref)
        assert ok.mean() > 0.1, name
        assert np.abs(compute_fbank(x) - ref)[ok].max() <= TOL, name
        assert np.abs(knf_fbank(x) - ref)[ok].max() <= TOL, name


def test_snip_edges_false_matches_knf():
    for name in ("len_400", "len_559", "sines_1000", "bursts_silences"):
        x = SIGNALS[name]
        fbank, log_energy = compute_fbank_and_energy(x, snip_edges=False)
        ref = knf_fbank(x, snip_edges=False)
        assert fbank.shape == ref.shape == (num_frames(len(x), FbankOptions(snip_edges=False)), 64)
        assert np.abs(fbank - ref).max() <= TOL, name
        assert np.abs(log_energy - knf_log_energy(x, snip_edges=False)).max() <= 1e-4, name


@pytest.mark.parametrize("window_type", ["hamming", "hanning", "rectangular"])
def test_other_windows_match_knf(window_type):
    x = SIGNALS["sines_1000"]
    fbank = compute_fbank(x, window_type=window_type)
    assert np.abs(fbank - knf_fbank(x, window_type=window_type)).max() <= TOL


def test_energy_options_match_knf():
    x = SIGNALS["bursts_silences"]
    _, non_raw = compute_fbank_and_energy(x, raw_energy=False)
    assert np.abs(non_raw - knf_log_energy(x, raw_energy=False)).max() <= 1e-4
    _, floored = compute_fbank_and_energy(x, energy_floor=1e5)
    assert np.abs(floored - knf_log_energy(x, energy_floor=1e5)).max() <= 1e-4
    assert floored.min() == pytest.approx(np.log(1e5), abs=1e-5)


@pytest.mark.parametrize("num_bins", [23, 40, 80])
def test_other_num_mel_bins_match_knf(num_bins):
    # With 80 bins the lowest filters see a single FFT bin, whose noise power is now and
    # then ~20 nats below the frame's peak: unresolvable in float32 (knf vs float64 differ
    # there too), so compare the resolvable bins.
    x = SIGNALS["sines_1000"]
    ref = knf_fbank(x, num_bins=num_bins)
    ok = resolvable(ref)
    assert ok.mean() > 0.9
    assert np.abs(compute_fbank(x, num_mel_bins=num_bins) - ref)[ok].max() <= TOL


# ---------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("samples,snip,expected", [
    (0, True, 0), (399, True, 0), (400, True, 1), (559, True, 1), (560, True, 2), (16000, True, 98),
    (0, False, 0), (79, False, 0), (80, False, 1), (400, False, 3), (16000, False, 100),
])
def test_num_frames(samples, snip, expected):
    assert num_frames(samples, FbankOptions(snip_edges=snip)) == expected


def test_mel_filterbank_shape():
    weights = mel_filterbank(FbankOptions())
    assert weights.shape == (257, 64)
    assert np.all(weights[-1] == 0) and np.all(weights[0] == 0)  # Nyquist unused; DC < 20 Hz
    assert np.all(weights.max(axis=0) > 0) and weights.max() <= 1.0
    assert np.all((weights > 0).sum(axis=1) <= 2)  # each FFT bin feeds at most two filters


def test_int16_input_equals_float_input():
    x = SIGNALS["sines_1000"]
    np.testing.assert_array_equal(compute_fbank(x.astype(np.int16)), compute_fbank(x))


def test_dither_is_seeded_and_batch_independent():
    x = SIGNALS["bursts_silences"]
    a = compute_fbank(x, dither=1.0, seed=7)
    np.testing.assert_array_equal(a, compute_fbank(x, dither=1.0, seed=7))
    assert not np.array_equal(a, compute_fbank(x, dither=1.0, seed=8))
    assert not np.array_equal(a, compute_fbank(x))
    batch = compute_fbank_batch([SIGNALS["sines_30"], x], FbankOptions(dither=1.0, seed=7))
    np.testing.assert_allclose(batch[1][0], a, atol=1e-5, rtol=0)
    # Dither lifts digital silence off the floor.
    silent = compute_fbank(SIGNALS["digital_silence"], dither=1.0, seed=1)
    assert np.all(silent > np.log(FLT_EPSILON))


def test_opts_object_and_keywords():
    x = SIGNALS["sines_1000"]
    np.testing.assert_array_equal(compute_fbank(x, opts=FbankOptions(num_mel_bins=40)),
                                  compute_fbank(x, num_mel_bins=40))
    with pytest.raises(ValueError, match="not both"):
        compute_fbank(x, opts=FbankOptions(), num_mel_bins=40)


# ---------------------------------------------------------------------------------------
# Input and option errors
# ---------------------------------------------------------------------------------------

def test_rejects_two_channels():
    with pytest.raises(ValueError, match=r"1-D.*\(2, 16000\)"):
        compute_fbank(np.zeros((2, 16000)))


def test_rejects_shorter_than_one_frame():
    with pytest.raises(ValueError, match="399 samples is shorter than one 25 ms frame"):
        compute_fbank(np.zeros(399))
    with pytest.raises(ValueError, match="shorter than one"):
        compute_fbank(np.zeros(200), snip_edges=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite(bad):
    x = np.zeros(1000)
    x[123] = bad
    with pytest.raises(ValueError, match="1 NaN/inf value.*sample 123"):
        compute_fbank(x)


def test_rejects_sample_rate_mismatch():
    with pytest.raises(ValueError, match="8000 Hz does not match the fbank config \\(16000 Hz\\)"):
        compute_fbank(np.zeros(16000), sample_rate=8000)


def test_batch_errors_name_the_item():
    with pytest.raises(ValueError, match="batch item 1: .*shorter than one"):
        compute_fbank_batch([np.zeros(1000), np.zeros(10)], FbankOptions())


def test_unknown_and_invalid_options():
    x = np.zeros(1000)
    with pytest.raises(ConfigError, match="unknown key.*num_mel_bin"):
        compute_fbank(x, num_mel_bin=64)
    with pytest.raises(ConfigError, match="window_type"):
        compute_fbank(x, window_type="blackmann")
    with pytest.raises(ConfigError, match="low_freq"):
        compute_fbank(x, low_freq=9000.0)
    with pytest.raises(ValueError, match="cover no FFT bin"):
        compute_fbank(x, num_mel_bins=200)
