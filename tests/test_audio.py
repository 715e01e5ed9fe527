"""Audio loading from wav.scp / segments: scale, slicing, pipes, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepspeaker.data import AudioError, DataDir, iter_audio, load_audio
from deepspeaker.data import audio as audio_mod

SR = 16000


def sine(n: int, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> str:
    sf.write(str(path), x, sr, subtype=subtype)
    return str(path)


def ramp(n: int) -> np.ndarray:
    """Distinct int16 values, so a slice shows exactly where it was cut."""
    return ((np.arange(n) * 7) % 65536 - 32768).astype(np.int16)


def make_data(path: Path, wav_scp: dict[str, str],
              segments: dict[str, tuple[str, float, float]] | None = None) -> DataDir:
    utts = sorted(segments if segments is not None else wav_scp)
    utt2spk = {u: "spk" for u in utts}
    d = DataDir(path=path, wav_scp=wav_scp, utt2spk=utt2spk, spk2utt={"spk": utts},
                segments=segments)
    d.write(path)
    return DataDir.load(path)


def test_int16_scale_is_exact(tmp_path):
    x = np.array([0, 1, -1, 32767, -32768, 12345, -2] * 100, dtype=np.int16)
    d = make_data(tmp_path / "d", {"u1": write_wav(tmp_path / "a.wav", x)})
    y = load_audio(d, "u1")
    assert y.dtype == np.float32 and y.ndim == 1
    np.testing.assert_array_equal(y, x.astype(np.float32))


def test_flac_and_float_wav(tmp_path):
    x = ramp(4000)
    f = tmp_path / "a.flac"
    sf.write(str(f), x, SR, subtype="PCM_16", format="FLAC")
    fl = write_wav(tmp_path / "f.wav", np.array([0.5, -0.25] * 300, np.float32), subtype="FLOAT")
    d = make_data(tmp_path / "d", {"u1": str(f), "u2": fl})
    np.testing.assert_array_equal(load_audio(d, "u1"), x.astype(np.float32))
    np.testing.assert_array_equal(load_audio(d, "u2")[:2], [16384.0, -8192.0])


def test_segments_slice_exact_samples(tmp_path):
    x = ramp(3 * SR)
    rec = write_wav(tmp_path / "rec.wav", x)
    segs = {"r-a": ("rec", 0.5, 1.25), "r-b": ("rec", 0.29, 0.5), "r-c": ("rec", 2.0, -1),
            "r-d": ("rec", 2.5, 3.2)}  # r-d ends 0.2 s past the end: clipped, as in Kaldi
    d = make_data(tmp_path / "d", {"rec": rec}, segs)
    expected = {"r-a": x[8000:20000], "r-b": x[4640:8000], "r-c": x[32000:],
                "r-d": x[40000:]}
    for utt, want in expected.items():
        np.testing.assert_array_equal(load_audio(d, utt), want.astype(np.float32))
    got = {u: y for u, y, err in iter_audio(d)}
    assert list(got) == ["r-a", "r-b", "r-c", "r-d"]
    for utt, want in expected.items():
        np.testing.assert_array_equal(got[utt], want.astype(np.float32))


def test_iter_audio_reads_recording_once_per_run(tmp_path, monkeypatch):
    r1 = write_wav(tmp_path / "r1.wav", sine(SR))
    r2 = write_wav(tmp_path / "r2.wav", sine(SR, 300))
    segs = {"a": ("r1", 0, 0.5), "b": ("r1", 0.5, 1), "c": ("r2", 0, 0.5), "d": ("r1", 0, 0.3)}
    d = make_data(tmp_path / "d", {"r1": r1, "r2": r2}, segs)
    reads = []
    real = audio_mod._read
    monkeypatch.setattr(audio_mod, "_read", lambda v, *a, **k: reads.append(v) or real(v, *a, **k))
    out = list(iter_audio(d, ["a", "b", "c", "d"]))
    assert [u for u, _, _ in out] == ["a", "b", "c", "d"]
    assert all(e is None for _, _, e in out)
    assert reads == [r1, r2, r1]


def test_pipe_entries(tmp_path):
    x = ramp(2 * SR)
    rec = write_wav(tmp_path / "rec.wav", x)
    d = make_data(tmp_path / "d", {"u1": f"cat {rec} |", "u2": f"cat {tmp_path}/nope.wav |",
                                   "u3": "true |"})
    np.testing.assert_array_equal(load_audio(d, "u1"), x.astype(np.float32))
    with pytest.raises(AudioError) as e:
        load_audio(d, "u2")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path}/d/wav.scp:2: u2: command failed with exit status 1")
    assert "No such file or directory" in msg
    assert msg.endswith(f"(audio: cat {tmp_path}/nope.wav |)")
    with pytest.raises(AudioError, match="u3: command wrote nothing to stdout"):
        load_audio(d, "u3")
    seg = make_data(tmp_path / "s", {"rec": f"cat {rec} |"}, {"s1": ("rec", 1.0, 1.5)})
    np.testing.assert_array_equal(load_audio(seg, "s1"), x[SR:SR + SR // 2].astype(np.float32))


def bad_inputs(tmp_path: Path) -> tuple[DataDir, dict[str, str]]:
    """A dir with one good utterance beside one per bad-input case; utt -> expected reason."""
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00junk" * 10)
    nan = sine(800, amp=0.1)
    nan[10] = np.nan
    inf = sine(800, amp=0.1)
    inf[3] = np.inf
    wav = {
        "a-good": write_wav(tmp_path / "good.wav", sine(SR)),
        "b-missing": str(tmp_path / "missing.wav"),
        "c-corrupt": str(corrupt),
        "d-empty": write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32)),
        "e-short": write_wav(tmp_path / "short.wav", sine(399)),
        "f-rate": write_wav(tmp_path / "rate.wav", sine(SR), sr=8000),
        "g-stereo": write_wav(tmp_path / "stereo.wav", np.stack([sine(SR)] * 2, axis=1)),
        "h-nan": write_wav(tmp_path / "nan.wav", nan, subtype="FLOAT"),
        "i-inf": write_wav(tmp_path / "inf.wav", inf, subtype="FLOAT"),
        "j-pipe": "exit 3; cat |",
        "k-good": write_wav(tmp_path / "good2.wav", sine(SR, 200)),
    }
    reasons = {
        "b-missing": "audio file not found",
        "c-corrupt": "cannot read audio: not a readable audio file (",
        "d-empty": "empty: 0 samples",
        "e-short": "too short: 399 samples, fewer than one frame of 400",
        "f-rate": "sample rate is 8000 Hz, expected 16000 Hz",
        "g-stereo": "has 2 channels, expected 1 (mono)",
        "h-nan": "contains 1 NaN or inf sample(s) of 800",
        "i-inf": "contains 1 NaN or inf sample(s) of 800",
        "j-pipe": "command failed with exit status 3",
    }
    return make_data(tmp_path / "d", wav), reasons


def test_each_bad_input_has_its_own_message(tmp_path):
    d, reasons = bad_inputs(tmp_path)
    for lineno, (utt, value) in enumerate(d.wav_scp.items(), 1):
        if utt not in reasons:
            continue
        with pytest.raises(AudioError) as e:
            load_audio(d, utt)
        err = e.value
        assert (err.utt, err.file, err.line) == (utt, str(d.path / "wav.scp"), lineno)
        assert reasons[utt] in err.reason, (utt, err.reason)
        assert str(err).startswith(f"{d.path}/wav.scp:{lineno}: {utt}: {reasons[utt]}")
        assert str(err).endswith(f"(audio: {value})")


def test_iter_audio_good_utterances_still_load(tmp_path):
    d, reasons = bad_inputs(tmp_path)
    out = list(iter_audio(d))
    assert [u for u, _, _ in out] == d.utts
    good = {u: x for u, x, e in out if e is None}
    bad = {u: e for u, x, e in out if e is not None}
    assert sorted(good) == ["a-good", "k-good"]
    assert good["a-good"].shape == (SR,)
    for utt, err in bad.items():
        assert reasons[utt] in str(err) and f": {utt}: " in str(err)
    assert all(x is None for u, x, e in out if e is not None)


def test_segment_errors(tmp_path):
    rec = write_wav(tmp_path / "rec.wav", sine(SR))
    rate = write_wav(tmp_path / "rate.wav", sine(SR), sr=8000)
    segs = {"s1": ("rec", 0.0, 0.02), "s2": ("rec", 1.0, 1.1), "s3": ("rec", 0.5, 1.6),
            "s4": ("rate", 0.0, 0.5), "s5": ("rate", 0.5, 1.0), "s6": ("rec", 0.0, 0.5),
            "s7": ("nope", 0, 1)}
    d = make_data(tmp_path / "d", {"rate": rate, "rec": rec}, segs)
    out = {u: (x, e) for u, x, e in iter_audio(d)}
    seg = f"{d.path}/segments"
    assert str(out["s1"][1]).startswith(f"{seg}:1: s1: too short: 320 samples")
    assert "s2: segment starts at 1 s, at or past the end of the recording (1 s)" in str(out["s2"][1])
    assert "s3: segment ends at 1.6 s, more than 0.5 s past the end" in str(out["s3"][1])
    for i, utt in ((4, "s4"), (5, "s5")):
        assert str(out[utt][1]) == (f"{seg}:{i}: {utt}: sample rate is 8000 Hz, expected 16000 Hz"
                                    f" (audio: recording rate, {d.path}/wav.scp:1: {rate})")
    assert out["s6"][1] is None and out["s6"][0].shape == (8000,)
    assert str(out["s7"][1]) == f"{seg}:7: s7: recording 'nope' is not in wav.scp"
    with pytest.raises(AudioError, match="s3: segment ends at 1.6 s"):
        load_audio(d, "s3")


def test_unknown_utterance(tmp_path):
    d = make_data(tmp_path / "d", {"u1": write_wav(tmp_path / "a.wav", sine(SR))})
    with pytest.raises(AudioError, match=r"wav.scp: u9: no wav.scp entry"):
        load_audio(d, "u9")
    (u, x, e), = iter_audio(d, ["u9"])
    assert u == "u9" and x is None and "no wav.scp entry" in str(e)
