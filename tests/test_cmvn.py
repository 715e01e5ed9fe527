"""Voiced-frame selection and per-utterance normalisation (paper §4.3)."""

from __future__ import annotations

import numpy as np
import pytest

from deepspeaker.features import (
    compute_fbank_and_energy,
    compute_vad_energy,
    normalize_utterance,
    prepare_features,
    select_voiced,
)


# Small torch ops stall when threads outnumber free cores (see fbank.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_normalize_gives_zero_mean_unit_std():
    rng = np.random.default_rng(0)
    feats = (rng.normal(15.0, 3.0, (300, 64)) * rng.uniform(0.1, 5, 64)).astype(np.float32)
    out = normalize_utterance(feats)
    assert out.dtype == np.float32 and out.shape == feats.shape
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-4)


def test_constant_dimension_gives_zeros_not_nan():
    feats = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    feats[:, 2] = -15.942385                                  # a bin stuck at the log floor
    out = normalize_utterance(feats)
    assert np.isfinite(out).all()
    assert np.all(out[:, 2] == 0.0)
    np.testing.assert_allclose(out[:, [0, 1, 3]].std(axis=0), 1.0, atol=1e-4)


def test_single_frame_is_finite():
    assert np.all(normalize_utterance(np.ones((1, 3))) == 0.0)


def test_prepare_features_on_voiced_frames_of_real_fbank():
    # Tone bursts in silence: statistics over the voiced frames only.
    x = np.zeros(3 * 16000)
    t = np.arange(8000) / 16000
    for start in (4000, 24000):
        noise = 30 * np.random.default_rng(start).standard_normal(8000)
        x[start:start + 8000] = np.round(3000 * np.sin(2 * np.pi * 300 * t) + noise)
    fbank, log_energy = compute_fbank_and_energy(x)
    vad = compute_vad_energy(log_energy)
    assert 0 < vad.sum() < len(vad)
    out = prepare_features(fbank, vad)
    assert out.shape == (int(vad.sum()), 64)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)
    np.testing.assert_array_equal(out, normalize_utterance(fbank[vad > 0.5]))
    np.testing.assert_array_equal(prepare_features(fbank), normalize_utterance(fbank))


def test_select_voiced():
    feats = np.arange(12, dtype=np.float32).reshape(6, 2)
    vad = np.array([0, 1, 1, 0, 1, 0], dtype=np.float32)
    np.testing.assert_array_equal(select_voiced(feats, vad), feats[[1, 2, 4]])


def test_select_voiced_length_mismatch():
    with pytest.raises(ValueError, match="features have 6 frames but the VAD has 5"):
        select_voiced(np.zeros((6, 2)), np.ones(5))


def test_no_voiced_frames():
    with pytest.raises(ValueError, match="rejects all 4 frames"):
        prepare_features(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="no frames"):
        normalize_utterance(np.zeros((0, 3)))


def test_bad_shapes():
    with pytest.raises(ValueError, match="frames, dims"):
        normalize_utterance(np.zeros(5))
    with pytest.raises(ValueError, match="frames, dims"):
        select_voiced(np.zeros(5), np.ones(5))
