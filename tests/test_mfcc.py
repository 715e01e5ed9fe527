"""MFCC from stored fbank: Kaldi's DCT and lifter, checked against kaldi-native-fbank."""

import numpy as np
import pytest

from deepspeaker.features import compute_fbank, mfcc_from_fbank
from deepspeaker.features.mfcc import dct_matrix

knf = pytest.importorskip("kaldi_native_fbank", reason="kaldi-native-fbank (the reference) is not installed")


def test_dct_is_orthonormal():
    d = dct_matrix(64, 64)
    np.testing.assert_allclose(d @ d.T, np.eye(64), atol=1e-12)


def test_matches_knf_mfcc_without_energy():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    x = (3000 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
         + rng.normal(0, 300, t.size)).astype(np.float32)
    opts = knf.MfccOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 64
    opts.mel_opts.low_freq = 20.0
    opts.num_ceps = 20
    opts.use_energy = False
    m = knf.OnlineMfcc(opts)
    m.accept_waveform(16000, x.tolist())
    m.input_finished()
    ref = np.array([m.get_frame(i) for i in range(m.num_frames_ready)])
    ours = mfcc_from_fbank(compute_fbank(x), num_ceps=20)
    assert ours.shape == ref.shape
    # Kaldi's MFCC and ours take the same DCT of the same log mel energies.
    np.testing.assert_allclose(ours, ref, atol=5e-3)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="num_ceps"):
        mfcc_from_fbank(np.zeros((5, 10)), num_ceps=20)
    with pytest.raises(ValueError, match="matrix"):
        mfcc_from_fbank(np.zeros(5))
