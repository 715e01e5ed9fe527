"""Augmentation sources: simulated RIRs, generated noise and music, MUSAN and RIRS_NOISES prep.

The physics of the image-source RIRs (measured RT60 against the requested one,
direct path and first reflection at distance / c, the direct path's amplitude),
generated sets deterministic and seeded, the rerun rule, and the data prep of tiny
fake MUSAN and RIRS_NOISES trees (tests/aug_trees.py) through the command a user
runs, each kind of bad input included: exit code, the message naming the file (and
line), no traceback, the rest finished.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from aug_trees import SR, make_musan, make_rirs_noises, rir_line, write_wav

from deepspeaker.augment import (
    NOISE_KINDS,
    generate_music,
    generate_noise,
    load_source_list,
    measure_rt60,
    random_rir,
    simulate_rir,
)
from deepspeaker.augment.rir import SINC_TAPS, SPEED_OF_SOUND, Room
from deepspeaker.bin.prepare_aug_sources import main
from deepspeaker.data.kaldi_dir import sorted_ids

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--num-rirs", "4", "--num-noises", "7", "--num-music", "2"]
FEW_NOISES = ["--num-noises", "1", "--num-music", "1"]


def table(path: Path) -> dict[str, str]:
    """``key value`` lines, asserting the keys are unique and sorted bytewise."""
    lines = [line.split(" ", 1) for line in path.read_text().splitlines()]
    keys = [k for k, _ in lines]
    assert keys == sorted_ids(keys) and len(set(keys)) == len(keys), path
    return dict(lines)


def files_of(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def check_list(d: Path) -> dict[str, str]:
    """wav.scp and utt2dur agree with each other and with the files; returns wav.scp."""
    wav = table(d / "wav.scp")
    dur = table(d / "utt2dur")
    assert set(wav) == set(dur) and wav
    for key, path in wav.items():
        info = sf.info(path)
        assert os.path.isabs(path) and info.channels == 1 and info.samplerate == SR
        assert abs(float(dur[key]) - info.duration) < 1e-4, key
    return wav


def run_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "deepspeaker.bin.prepare_aug_sources",  # noqa: PLW1510
                           *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- RIR physics

@pytest.mark.parametrize("size, rt60", [((5.0, 4.0, 3.0), 0.5), ((3.0, 2.5, 2.4), 0.3),
                                        ((7.0, 9.0, 3.5), 0.9), ((15.0, 12.0, 4.0), 0.7),
                                        ((25.0, 18.0, 3.0), 0.45)])
def test_measured_rt60_is_the_requested_one(size, rt60):
    room = Room(size, rt60, (1.2, 1.1, 1.3), (size[0] - 1.5, size[1] - 1.0, 1.6))
    rir = simulate_rir(room, SR, rng=np.random.default_rng(0)).samples
    assert abs(measure_rt60(rir, SR) / rt60 - 1) < 0.2
    assert abs(measure_rt60(rir, SR, decay_db=(-5, -35)) / rt60 - 1) < 0.25   # T30


def test_measured_rt60_of_drawn_rooms():
    """Over drawn small and medium rooms: nearly all within 20%, no bias."""
    ratios = []
    for i in range(30):
        room, rir = random_rir(np.random.default_rng([7, i]), ("small", "medium")[i % 2], SR)
        ratios.append(measure_rt60(rir.samples, SR) / room.rt60)
    ratios = np.array(ratios)
    assert np.mean(np.abs(ratios - 1) < 0.2) >= 0.9, np.round(ratios, 2)
    assert abs(np.median(ratios) - 1) < 0.05, np.round(ratios, 2)


def _peak_near(h: np.ndarray, around: float) -> tuple[float, float]:
    """Position (samples) and height of the band-limited peak of ``h`` near ``around``."""
    t = np.arange(around - 2, around + 2, 1 / 256)
    n = np.arange(int(around) - 40, int(around) + 41)
    values = (h[n][None, :] * np.sinc(t[:, None] - n[None, :])).sum(axis=1)
    i = int(np.argmax(values))
    return float(t[i]), float(values[i])


@pytest.mark.parametrize("mic", [(5.0, 4.5, 1.7), (6.13, 3.77, 1.91), (3.21, 6.02, 2.3)])
def test_direct_path_and_first_reflection_arrive_at_distance_over_c(mic):
    room = Room((10.0, 8.0, 4.0), 0.4, (2.0, 3.0, 1.5), mic, "medium")
    h = simulate_rir(room, SR, rng=np.random.default_rng(0)).samples
    tau = room.distance / SPEED_OF_SOUND * SR
    assert not np.any(h[:math.floor(tau) - SINC_TAPS // 2 + 1])     # nothing before it
    where, height = _peak_near(h, tau)
    assert abs(where - tau) < 0.05
    # The high-pass (and the window of the sinc) cost the direct path 4% of its 1 / (4 pi d).
    assert abs(height * 4 * math.pi * room.distance - 1) < 0.06
    # The floor image, mirrored in z = 0, one reflection.
    floor = math.dist(room.mic, (2.0, 3.0, -1.5)) / SPEED_OF_SOUND * SR
    assert abs(_peak_near(h, floor)[0] - floor) < 0.1


def test_simulation_is_deterministic_and_seeded():
    a = random_rir(np.random.default_rng([0, 1, 5]), "small", SR)
    b = random_rir(np.random.default_rng([0, 1, 5]), "small", SR)
    c = random_rir(np.random.default_rng([1, 1, 5]), "small", SR)
    assert a[0] == b[0] and np.array_equal(a[1].samples, b[1].samples)
    assert a[0] != c[0]


def test_two_hundred_rirs_in_twenty_seconds():
    """The brief's budget, 200 RIRs < 20 s on one core, checked on 20 in CPU time."""
    import time

    start = time.process_time()
    for i in range(20):
        random_rir(np.random.default_rng([3, i]), ("small", "medium")[i % 2], SR)
    assert time.process_time() - start < 2.0


# --------------------------------------------------------------------------- noise and music

def _octave_slope(x: np.ndarray) -> float:
    """Power spectrum slope in dB per octave over 100-4000 Hz."""
    f, p = scipy.signal.welch(x, SR, nperseg=4096)
    band = (f >= 100) & (f <= 4000)
    return float(np.polyfit(np.log2(f[band]), 10 * np.log10(p[band]), 1)[0])


def _frame_db_std(x: np.ndarray) -> float:
    frames = x[:x.size // 400 * 400].reshape(-1, 400)
    return float(np.std(10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)))


def test_generated_noise_has_the_spectrum_and_time_structure_of_its_kind():
    x = {k: generate_noise(k, 5 * SR, SR, np.random.default_rng(1)) for k in NOISE_KINDS}
    for k, y in x.items():
        assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 10 ** (-1 / 20) + 1e-9, k
        rms_db = 10 * np.log10(np.mean(y ** 2))   # -20 dBFS unless the peak limit lowered it
        assert abs(rms_db + 20) < 0.01 or np.max(np.abs(y)) > 0.89, (k, rms_db)
    for kind, want in (("white", 0.0), ("pink", -3.0), ("brown", -6.0)):
        assert abs(_octave_slope(x[kind]) - want) < 0.5, kind
    assert _frame_db_std(x["bursts"]) > 5.0
    assert _frame_db_std(x["white"]) < 1.0
    f, p = scipy.signal.welch(x["hum"], SR, nperseg=SR)
    mains = min((50.0, 60.0), key=lambda f0: -p[np.abs(f / f0 - np.round(f / f0)) * f0 < 2].sum())
    near = np.abs(f / mains - np.round(f / mains)) * mains < 2
    assert p[near].sum() > 0.9 * p.sum()
    music = generate_music(8 * SR, SR, np.random.default_rng(2))
    f, p = scipy.signal.welch(music, SR, nperseg=4096)
    assert 10 * np.log10(p.max() / np.median(p)) > 30          # tones, not noise
    assert not np.array_equal(music, generate_music(8 * SR, SR, np.random.default_rng(3)))


# --------------------------------------------------------------------------- generated sets

def test_generated_sources_deterministic_seeded_and_rerun(tmp_path, capfd):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main([*SMALL, str(a)]) == 0
    assert main([*SMALL, str(b)]) == 0
    assert main([*SMALL, "--seed", "1", str(c)]) == 0
    assert sorted(p.name for p in a.iterdir()) == [".sources.done", "music", "noise", "rirs"]
    same = {k: v for k, v in files_of(a).items() if not k.endswith("wav.scp")}
    assert same == {k: v for k, v in files_of(b).items() if not k.endswith("wav.scp")}
    other = files_of(c)
    for name in ("rirs", "noise", "music"):
        wav = check_list(a / name)
        assert all(Path(p).parent == a / name / "wav" for p in wav.values())
        theirs = {v for k, v in other.items() if k.startswith(f"{name}/wav/")}
        assert not {Path(p).read_bytes() for p in wav.values()} & theirs
    noise = table(a / "noise" / "utt2dur")
    assert sorted(k.rsplit("-", 1)[1] for k in noise) == sorted(NOISE_KINDS)
    assert all(5.0 <= float(d) <= 20.0 for d in [*noise.values(),
                                                  *table(a / "music" / "utt2dur").values()])
    for path in check_list(a / "noise").values():
        assert sf.info(path).subtype == "PCM_16"
    info = table(a / "rirs" / "rir2info")
    assert set(info) == set(table(a / "rirs" / "wav.scp")) and len(info) == 4
    for key, line in info.items():
        fields = dict(f.split("=", 1) for f in line.split())
        assert fields["kind"] == "simulated" and fields["roomkind"] in ("small", "medium")
        assert len(fields["room"].split("x")) == 3 and len(fields["source"].split(",")) == 3
        assert 0.2 <= float(fields["rt60"]) <= 1.0
        assert key.startswith(f"sim-{fields['roomkind']}room-")
    # The same arguments again: nothing is redone.
    mtimes = {p: p.stat().st_mtime_ns for p in a.rglob("*")}
    capfd.readouterr()
    assert main([*SMALL, str(a)]) == 0
    assert "up to date" in capfd.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*")} == mtimes
    # Another option redoes it.
    assert main(["--num-rirs", "3", "--num-noises", "7", "--num-music", "2", str(a)]) == 0
    assert len(table(a / "rirs" / "wav.scp")) == 3


# --------------------------------------------------------------------------- MUSAN

def test_musan(tmp_path):
    musan, expected = make_musan(tmp_path / "corpus")
    for root in (musan, musan.parent):           # the musan folder or its parent
        out = tmp_path / f"out_{root.name}"
        assert main(["--musan-dir", str(root), "--num-rirs", "2", str(out)]) == 0
        for kind in ("music", "noise", "speech"):
            wav = check_list(out / kind)
            assert {k: float(v) for k, v in table(out / kind / "utt2dur").items()} == \
                pytest.approx(expected[kind])
            assert all(Path(p).stem == k and Path(p).is_relative_to(musan.resolve())
                       for k, p in wav.items())
            assert not (out / kind / "failed").exists()
    # Without MUSAN the speech list of the earlier run goes, noise and music are generated.
    assert main(["--num-rirs", "2", "--num-noises", "2", "--num-music", "1", str(out)]) == 0
    assert not (out / "speech").exists()
    assert len(table(out / "noise" / "wav.scp")) == 2


def test_musan_bad_files_are_listed_and_the_rest_kept(tmp_path):
    musan, expected = make_musan(tmp_path)
    noise = musan / "noise" / "free-sound"
    (noise / "noise-free-sound-0100.wav").write_bytes(b"RIFF\x00\x01garbage, not a wav")
    write_wav(noise / "noise-free-sound-0101.wav", 4000, 1, sample_rate=8000)
    write_wav(noise / "noise-free-sound-0102.wav", 4000, 1, channels=2)
    write_wav(noise / "noise-free-sound-0103.wav", 0, 1)
    cut = noise / "noise-free-sound-0104.wav"   # cut short: its header promises 4000 samples
    write_wav(cut, 4000, 1)
    cut.write_bytes(cut.read_bytes()[:2000])
    out = tmp_path / "out"
    r = run_cli("--musan-dir", musan, "--num-rirs", "1", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    failed = table(out / "noise" / "failed")
    reasons = {"0100": "cannot read audio", "0101": "sample rate is 8000 Hz, expected 16000 Hz",
               "0102": "has 2 channels, expected 1", "0103": "empty: 0 samples",
               "0104": "cannot read audio: truncated: the WAV header promises 4000 samples"}
    assert sorted(failed) == [f"noise-free-sound-{k}" for k in sorted(reasons)]
    for k, why in reasons.items():
        path = (noise / f"noise-free-sound-{k}.wav").resolve()
        assert failed[f"noise-free-sound-{k}"].startswith(f"{path}: {why}")
        assert "WARNING" in r.stderr and f"{path}: {why}" in r.stderr
    assert set(check_list(out / "noise")) == set(expected["noise"])


def test_musan_without_its_folders(tmp_path, capfd):
    musan, _ = make_musan(tmp_path)
    for sub in (musan / "speech").iterdir():
        for f in sub.iterdir():
            f.unlink()
        sub.rmdir()
    (musan / "music").rename(tmp_path / "elsewhere")
    out = tmp_path / "out"
    assert main(["--musan-dir", str(musan), str(out)]) == 1
    err = capfd.readouterr().err
    assert f"{musan}: not a MUSAN tree: expected folders music, noise, speech" in err
    assert "missing: music" in err
    assert not (out / ".sources.done").exists() and not (out / "noise").exists()
    (tmp_path / "elsewhere").rename(musan / "music")          # speech/ now has no wavs
    assert main(["--musan-dir", str(musan), str(out)]) == 1
    assert (f"{musan / 'speech'}: no <subset>/*.wav files (MUSAN's layout is "
            "musan/speech/<subset>/speech-<subset>-0000.wav)") in capfd.readouterr().err
    assert not (out / ".sources.done").exists()


# --------------------------------------------------------------------------- RIRS_NOISES

def test_rirs_noises(tmp_path):
    base, expected = make_rirs_noises(tmp_path / "corpus")
    out = tmp_path / "out"
    args = FEW_NOISES
    assert main(["--rirs-dir", str(base.parent), *args, str(out)]) == 0
    wav = check_list(out / "rirs")
    assert {k: float(v) for k, v in table(out / "rirs" / "utt2dur").items()} == \
        pytest.approx(expected)
    assert wav["mediumroom-Room002-00001"] == str(
        (base / "simulated_rirs/mediumroom/Room002/Room002-00001.wav").resolve())
    info = table(out / "rirs" / "rir2info")
    loaded = load_source_list(out / "rirs")
    assert (loaded.wav_scp, loaded.rir2info, loaded.failed) == (wav, info, {})
    assert info["smallroom-Room001-00002"] == ("kind=simulated origin=RIRS_NOISES/simulated_rirs/"
                                               "smallroom room_id=smallroom-Room001")
    # The RIRS_NOISES folder itself, and the real RIRs asked for: another signature.
    assert main(["--rirs-dir", str(base), "--rooms", "small,real", *args, str(out)]) == 0
    info = table(out / "rirs" / "rir2info")
    assert sum(v.startswith("kind=real") for v in info.values()) == 2 and len(info) == 6


def test_rirs_noises_missing_and_bad_wavs_are_listed(tmp_path):
    base, expected = make_rirs_noises(tmp_path)
    rir_list = base / "simulated_rirs" / "smallroom" / "rir_list"
    with rir_list.open("a") as f:
        f.write(rir_line("smallroom-Room009-00001", "smallroom-Room009",
                         "RIRS_NOISES/simulated_rirs/smallroom/Room009/Room009-00001.wav"))
        f.write(rir_line("smallroom-Room009-00002", "smallroom-Room009",
                         "RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav"))
    (base / "simulated_rirs/smallroom/Room001/Room001-00001.wav").write_bytes(b"")
    out = tmp_path / "out"
    r = run_cli("--rirs-dir", base, *FEW_NOISES, out)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    failed = table(out / "rirs" / "failed")
    assert load_source_list(out / "rirs").failed == failed
    missing = (base / "simulated_rirs/smallroom/Room009/Room009-00001.wav").resolve()
    assert failed["smallroom-Room009-00001"] == f"{missing}: file not found"
    assert f"{missing}: file not found" in r.stderr
    assert "cannot read audio" in failed["smallroom-Room001-00001"]
    assert sorted(failed) == ["smallroom-Room001-00001", "smallroom-Room009-00001",
                              "smallroom-Room009-00002"]
    assert set(table(out / "rirs" / "wav.scp")) == set(expected) - {"smallroom-Room001-00001"}


@pytest.mark.parametrize("line, message", [
    ("--rir-id x --room-id y", "expected one wav path after the options, found 0"),
    ("--room-id y RIRS_NOISES/a.wav", "no --rir-id"),
    ("--rir-id x --room-id y --rt60 0.3 a.wav", "unknown option '--rt60'"),
    ("--rir-id x --room-id y a.wav b.wav", "expected one wav path after the options, found 2"),
    ("--rir-id mediumroom-Room001-00001 --room-id y a.wav", "rir id 'mediumroom-Room001-00001' already listed at"),
])
def test_rir_list_line_that_does_not_parse(tmp_path, capfd, line, message):
    base, _ = make_rirs_noises(tmp_path, rooms=1, per_room=1)
    rir_list = base / "simulated_rirs" / "mediumroom" / "rir_list"
    with rir_list.open("a") as f:
        f.write("\n" + line + "\n")
    out = tmp_path / "out"
    assert main(["--rirs-dir", str(base), str(out)]) == 1
    err = capfd.readouterr().err
    assert f"{rir_list}:3: {message}" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_rirs_noises_without_its_folders(tmp_path, capfd):
    base, _ = make_rirs_noises(tmp_path)
    (base / "simulated_rirs" / "mediumroom").rename(tmp_path / "moved")
    assert main(["--rirs-dir", str(base), str(tmp_path / "out")]) == 1
    err = capfd.readouterr().err
    assert (f"{base}: not a RIRS_NOISES tree: expected RIRS_NOISES/simulated_rirs/smallroom/"
            "rir_list, RIRS_NOISES/simulated_rirs/mediumroom/rir_list") in err, err
    assert not (tmp_path / "out").exists()
