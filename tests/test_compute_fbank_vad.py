"""Stage 1 end to end on a tiny data dir with every kind of bad input (SPEC "Bad input")."""


import kaldiio
import numpy as np
import pytest
import soundfile as sf

from deepspeaker.bin import compute_fbank_vad as stage
from deepspeaker.features import compute_fbank_and_energy, compute_vad_energy
from deepspeaker.utils import DeepSpeakerError

SR = 16000


def _speechlike(seed, seconds=1.2):
    """Noise floor with two loud harmonic bursts, int16 range."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = rng.normal(0, 30, n)
    t = np.arange(n) / SR
    for start in (0.2, 0.7):
        a, b = int(start * SR), int((start + 0.3) * SR)
        f0 = 100 + 20 * seed
        x[a:b] += sum(3000 / h * np.sin(2 * np.pi * f0 * h * t[a:b]) for h in range(1, 8))
    return np.clip(x, -32768, 32767).astype(np.int16)


@pytest.fixture
def data_dir(tmp_path):
    wav = tmp_path / "wav"
    wav.mkdir()
    entries, utt2spk = {}, {}
    for i in range(6):
        utt = f"spkA-good{i}" if i < 3 else f"spkB-good{i}"
        sf.write(wav / f"{utt}.wav", _speechlike(i), SR, subtype="PCM_16")
        entries[utt] = str(wav / f"{utt}.wav")
    # A pipe entry (Kaldi's `command |`) for a good file.
    entries["spkB-pipe"] = f"cat {wav / 'spkB-good4.wav'} |"
    bad = {
        "spkC-missing": str(wav / "nope.wav"),
        "spkC-corrupt": str(wav / "corrupt.wav"),
        "spkC-empty": str(wav / "empty.wav"),
        "spkC-short": str(wav / "short.wav"),
        "spkC-rate": str(wav / "rate.wav"),
        "spkC-stereo": str(wav / "stereo.wav"),
        "spkC-nan": str(wav / "nan.wav"),
    }
    (wav / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)
    sf.write(wav / "empty.wav", np.zeros(0, np.int16), SR, subtype="PCM_16")
    sf.write(wav / "short.wav", _speechlike(9)[:300], SR, subtype="PCM_16")
    sf.write(wav / "rate.wav", _speechlike(9)[:8000], 8000, subtype="PCM_16")
    sf.write(wav / "stereo.wav", np.stack([_speechlike(9)] * 2, 1), SR, subtype="PCM_16")
    nan = _speechlike(9).astype(np.float32) / 32768
    nan[100] = np.nan
    sf.write(wav / "nan.wav", nan, SR, subtype="FLOAT")
    entries.update(bad)
    for utt in entries:
        utt2spk[utt] = utt.split("-")[0]
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"{u} {entries[u]}\n" for u in sorted(entries)))
    (d / "utt2spk").write_text("".join(f"{u} {utt2spk[u]}\n" for u in sorted(utt2spk)))
    spks = sorted(set(utt2spk.values()))
    (d / "spk2utt").write_text("".join(
        f"{s} {' '.join(u for u in sorted(utt2spk) if utt2spk[u] == s)}\n" for s in spks))
    return d, bad


def test_bad_inputs_are_listed_and_good_ones_finish(data_dir, tmp_path):
    d, bad = data_dir
    ok, failed = stage.compute_fbank_vad(d, tmp_path / "log", nj=2, max_failed_fraction=1.0)
    assert ok == 7 and set(failed) == set(bad)
    expect = {"spkC-missing": "nope.wav", "spkC-corrupt": "corrupt.wav", "spkC-empty": "empty",
              "spkC-short": "300", "spkC-rate": "8000", "spkC-stereo": "2 channels",
              "spkC-nan": "NaN"}
    lines = dict(line.split(" ", 1) for line in (d / "failed_utts").read_text().splitlines())
    for utt, needle in expect.items():
        assert needle.lower() in lines[utt].lower(), (utt, lines[utt])
        assert "wav.scp" in lines[utt]  # names the file (and line) it came from
    # Good utterances: the ark holds exactly what the library computes, read back by kaldiio.
    feats = kaldiio.load_scp(str(d / "feats.scp"))
    vads = kaldiio.load_scp(str(d / "vad.scp"))
    frames = dict(line.split() for line in (d / "utt2num_frames").read_text().splitlines())
    assert sorted(feats) == sorted(frames) == sorted(vads)
    for utt in feats:
        src = "spkB-good4" if utt == "spkB-pipe" else utt
        x = sf.read(tmp_path / "wav" / f"{src}.wav", dtype="int16")[0].astype(np.float32)
        fb, energy = compute_fbank_and_energy(x)
        assert feats[utt].dtype == np.float32 and feats[utt].shape == (fb.shape[0], 64)
        np.testing.assert_array_equal(feats[utt], fb)
        vad_cfg = stage.FeatureConfig().vad
        np.testing.assert_array_equal(vads[utt], compute_vad_energy(energy, **vad_cfg.__dict__))
        assert int(frames[utt]) == fb.shape[0]
        assert 0.2 < vads[utt].mean() < 0.9  # bursts voiced, noise floor not
    # No temp files left behind.
    leftovers = [p for p in tmp_path.rglob("*") if "tmp" in p.name]
    assert leftovers == []


def test_failure_fraction_and_exit_code(data_dir, tmp_path):
    d, _ = data_dir
    with pytest.raises(DeepSpeakerError, match=r"7 of 14 utterances failed"):
        stage.compute_fbank_vad(d, tmp_path / "log", nj=2, max_failed_fraction=0.2)
    assert (d / "failed_utts").exists() and (d / "feats.scp").exists()  # nothing lost
    assert stage.main([str(d), str(tmp_path / "log"), "--nj", "2"]) == 1


def test_rerun_skips_and_resumes_unfinished_jobs(data_dir, tmp_path):
    d, _ = data_dir
    stage.compute_fbank_vad(d, tmp_path / "log", nj=3, max_failed_fraction=1.0)
    arks = sorted((d / "data").glob("raw_fbank_*.ark"))
    assert len(arks) == 3
    mtimes = {p: p.stat().st_mtime_ns for p in arks}
    before = (d / "feats.scp").read_text()
    # Simulate a crash of job 2: its marker and outputs are gone, and the set's marker
    # (written last) was never written.
    for p in (d / "data").glob("*.2*"):
        p.unlink()
    (d / "data" / f".done_{d.name}.2").unlink(missing_ok=True)
    (d / stage.MARKER).unlink()
    stage.compute_fbank_vad(d, tmp_path / "log", nj=3, max_failed_fraction=1.0)
    assert (d / "feats.scp").read_text() == before
    for p in arks:
        if ".2." in p.name:
            assert p.exists()
        else:
            assert p.stat().st_mtime_ns == mtimes[p], f"{p} was recomputed"
    log = (tmp_path / "log" / "make_fbank_vad.2.log").read_text()
    assert "Ended (code 0)" in log


def test_config_rejects_unknown_keys(data_dir, tmp_path):
    d, _ = data_dir
    conf = tmp_path / "c.yaml"
    conf.write_text("fbank:\n  num_mel_bin: 40\n")
    assert stage.main(["--config", str(conf), str(d)]) == 1
    with pytest.raises(Exception, match="num_mel_bin"):
        stage.FeatureConfig.from_dict({"fbank": {"num_mel_bin": 40}})


def test_invalid_data_dir_is_refused(data_dir, tmp_path):
    d, _ = data_dir
    lines = (d / "utt2spk").read_text().splitlines()
    (d / "utt2spk").write_text("\n".join(lines[::-1]) + "\n")
    with pytest.raises(DeepSpeakerError, match="problem"):
        stage.compute_fbank_vad(d, tmp_path / "log", nj=1)
    assert not (d / "feats.scp").exists()
