"""i-vector front end: Kaldi's add-deltas and centred apply-cmvn-sliding against naive loops."""

import numpy as np
import pytest

from deepspeaker.features import mfcc_from_fbank
from deepspeaker.ivector import FrontendOptions, add_deltas, compute_frontend, sliding_cmn
from deepspeaker.utils import ConfigError, dataclass_from_dict


def naive_delta_scales(order, window):
    """Kaldi's DeltaFeatures constructor, written as its loops."""
    scales = [np.array([1.0])]
    for _ in range(order):
        prev = scales[-1]
        prev_offset = (len(prev) - 1) // 2
        cur_offset = prev_offset + window
        cur = np.zeros(len(prev) + 2 * window)
        normalizer = 0.0
        for j in range(-window, window + 1):
            normalizer += j * j
            for k in range(-prev_offset, prev_offset + 1):
                cur[j + k + cur_offset] += j * prev[k + prev_offset]
        scales.append(cur / normalizer)
    return scales


def naive_add_deltas(x, order, window):
    """Kaldi's DeltaFeatures::Process, one output frame at a time, edges clamped."""
    num_frames, dim = x.shape
    scales = naive_delta_scales(order, window)
    out = np.zeros((num_frames, dim * (order + 1)))
    for t in range(num_frames):
        for i, s in enumerate(scales):
            offset = (len(s) - 1) // 2
            for j in range(-offset, offset + 1):
                src = min(max(t + j, 0), num_frames - 1)
                out[t, i * dim:(i + 1) * dim] += s[j + offset] * x[src]
    return out


def naive_sliding_cmn(x, window):
    """Kaldi's SlidingWindowCmn with center=true, norm_vars=false, as plain per-frame code."""
    num_frames = x.shape[0]
    out = np.empty_like(x, dtype=np.float64)
    for t in range(num_frames):
        start = t - window // 2
        end = start + window
        if start < 0:
            end -= start
            start = 0
        if end > num_frames:
            start -= end - num_frames
            end = num_frames
            if start < 0:
                start = 0
        out[t] = x[t] - x[start:end].astype(np.float64).mean(axis=0)
    return out


@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 9, 57])
@pytest.mark.parametrize("order,window", [(2, 2), (3, 1), (1, 3), (0, 2)])
def test_add_deltas_matches_naive(num_frames, order, window):
    rng = np.random.default_rng(num_frames)
    x = rng.normal(0, 3, (num_frames, 5)).astype(np.float32)
    ours = add_deltas(x, order=order, window=window)
    assert ours.dtype == np.float32 and ours.shape == (num_frames, 5 * (order + 1))
    np.testing.assert_allclose(ours, naive_add_deltas(x.astype(np.float64), order, window),
                               rtol=1e-5, atol=1e-5)


def test_add_deltas_known_answers():
    # Kaldi's order-2 / window-2 delta filter is j / 10 for j = -2..2.
    x = np.arange(30, dtype=np.float32)[:, None] * 2.0          # a ramp of slope 2
    out = add_deltas(x, 2, 2)
    np.testing.assert_allclose(out[:, 0], x[:, 0])
    np.testing.assert_allclose(out[2:-2, 1], 2.0, rtol=1e-6)     # slope, away from the edges
    np.testing.assert_allclose(out[4:-4, 2], 0.0, atol=1e-5)     # no curvature
    # At the first frame edge replication gives sum_j j/10 * x[max(j, 0)] = (1*2 + 2*4)/10.
    assert out[0, 1] == pytest.approx((1 * 2 + 2 * 4) / 10)
    # One frame: no neighbours, so every delta is zero.
    np.testing.assert_allclose(add_deltas(np.ones((1, 3)), 2, 2)[:, 3:], 0.0, atol=1e-7)


def test_add_deltas_empty_and_bad_shape():
    assert add_deltas(np.zeros((0, 4))).shape == (0, 12)
    with pytest.raises(ValueError, match="frames, dims"):
        add_deltas(np.zeros(5))


@pytest.mark.parametrize("num_frames", [1, 2, 7, 149, 150, 151, 299, 300, 301, 450, 777])
def test_sliding_cmn_matches_naive_kaldi(num_frames):
    rng = np.random.default_rng(num_frames)
    # A drifting offset, so that the window position matters.
    x = (rng.normal(0, 1, (num_frames, 4)) + np.linspace(0, 30, num_frames)[:, None]
         + 100.0).astype(np.float32)
    ours = sliding_cmn(x, 300)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, naive_sliding_cmn(x, 300), rtol=0, atol=2e-4)


@pytest.mark.parametrize("window", [1, 2, 5, 6])
def test_sliding_cmn_small_windows(window):
    rng = np.random.default_rng(window)
    x = rng.normal(0, 1, (23, 3))
    np.testing.assert_allclose(sliding_cmn(x, window), naive_sliding_cmn(x, window), atol=1e-5)


def test_sliding_cmn_short_utterance_removes_global_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(5, 2, (120, 6))                     # shorter than the 300-frame window
    np.testing.assert_allclose(sliding_cmn(x, 300), x - x.mean(0), atol=1e-5)
    assert sliding_cmn(np.zeros((0, 6)), 300).shape == (0, 6)
    np.testing.assert_allclose(sliding_cmn(np.full((1, 2), 7.0), 300), 0.0)


def test_sliding_cmn_window_positions():
    # Frame t of a long utterance is normalised over [t - 150, t + 150) in the middle,
    # [0, 300) near the start and [T - 300, T) near the end.
    x = np.arange(1000, dtype=np.float64)[:, None]
    out = sliding_cmn(x, 300)
    assert out[500, 0] == pytest.approx(500 - np.mean(np.arange(350, 650)))
    assert out[10, 0] == pytest.approx(10 - np.mean(np.arange(0, 300)))
    assert out[990, 0] == pytest.approx(990 - np.mean(np.arange(700, 1000)))


def test_compute_frontend_order_and_shape():
    rng = np.random.default_rng(0)
    fbank = rng.normal(10, 3, (400, 64)).astype(np.float32)
    vad = (rng.random(400) > 0.3).astype(np.float32)
    opts = FrontendOptions()
    out = compute_frontend(fbank, vad, opts)
    assert out.dtype == np.float32 and out.shape == (int(vad.sum()), 60) and opts.dim == 60
    # Kaldi's sid/ order: deltas and CMN over all frames, voiced frames picked last.
    want = sliding_cmn(add_deltas(mfcc_from_fbank(fbank, 20, 22.0), 2, 2), 300)[vad > 0.5]
    np.testing.assert_allclose(out, want, atol=1e-5)
    np.testing.assert_allclose(compute_frontend(fbank, None, opts)[vad > 0.5], out, atol=1e-6)


def test_compute_frontend_errors():
    fbank = np.ones((50, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="no voiced frames"):
        compute_frontend(fbank, np.zeros(50), FrontendOptions())
    with pytest.raises(ValueError, match="no voiced frames"):
        compute_frontend(np.ones((0, 64), dtype=np.float32), np.zeros(0), FrontendOptions())
    with pytest.raises(ValueError, match="50 frames but the VAD has 49"):
        compute_frontend(fbank, np.ones(49), FrontendOptions())


def test_frontend_options_validation():
    assert FrontendOptions(num_ceps=13, delta_order=1).dim == 26
    with pytest.raises(ValueError, match="cmn_window"):
        FrontendOptions(cmn_window=0)
    with pytest.raises(ConfigError, match="unknown key.*cmn_windw"):
        dataclass_from_dict(FrontendOptions, {"cmn_windw": 300})
