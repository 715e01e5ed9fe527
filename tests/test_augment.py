"""Offline augmentation: the command a user runs, on tiny dirs, with measured numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from augment_trees import (
    SR,
    make_data,
    make_sources,
    parse_aug,
    read_map,
    rir,
    speechlike,
    write_conf,
    write_map,
    write_wav,
)

from deepspeaker.augment import perturb
from deepspeaker.augment.config import augment_config_from_dict, load_augment_config
from deepspeaker.bin import augment_data_dir as stage
from deepspeaker.data import DataDir, validate_data_dir

KIND_DIRS = ("reverb", "noise", "music", "babble")


def run(tmp_path, *extra, cfg=None, out="out", data="train", nj=1):
    conf = write_conf(tmp_path / "aug.yaml", cfg if cfg is not None else {})
    argv = ["--config", str(conf), "--sources", str(tmp_path / "src"), "--nj", str(nj),
            *extra, str(tmp_path / data), str(tmp_path / out)]
    return stage.main(argv)


@pytest.fixture
def tree(tmp_path):
    make_data(tmp_path)
    make_sources(tmp_path)
    return tmp_path


def wav(path) -> np.ndarray:
    x, sr = sf.read(path, dtype="int16")
    assert sr == SR
    return x.astype(np.float64)


def snr_db(clean, noisy) -> float:
    return 10 * np.log10(perturb.power(clean) / perturb.power(noisy - clean))


# --------------------------------------------------------------------------- the dirs

def test_every_kind_makes_its_dir_ids_and_files(tree):
    assert run(tree, cfg={"speed": [0.9, 1.1]}) == 0
    out = tree / "out"
    clean = DataDir.load(tree / "train")
    for kind in KIND_DIRS:
        d = DataDir.load(out / f"train_{kind}")
        assert d.utts == [f"{u}-{kind}" for u in clean.utts]
        assert all(d.utt2spk[f"{u}-{kind}"] == clean.utt2spk[u] for u in clean.utts)
        assert d.utt2uniq == {f"{u}-{kind}": u for u in clean.utts}
        assert d.spk2gender == clean.spk2gender
        aug = read_map(out / f"train_{kind}" / "utt2aug")
        assert set(aug) == set(d.utts)
        assert all(parse_aug(v)["kind"] == kind and parse_aug(v)["seed"] == "0"
                   for v in aug.values())
        assert all(p.severity != "error" for p in validate_data_dir(out / f"train_{kind}"))
        for path in d.wav_scp.values():
            assert path.startswith(str(out / "wav" / kind))
            assert len(wav(path)) == SR  # 1 s utterances keep their length
    sp = DataDir.load(out / "train_sp")
    assert sp.utts == sorted(f"sp{f}-{u}" for f in ("0.9", "1.1") for u in clean.utts)
    assert sp.utt2spk["sp1.1-s2-u0"] == "sp1.1-s2"
    assert sp.spk2gender == {f"sp{f}-{s}": g for f in ("0.9", "1.1")
                             for s, g in clean.spk2gender.items()}
    assert sp.utt2uniq["sp0.9-s0-u1"] == "s0-u1"
    assert parse_aug(read_map(out / "train_sp" / "utt2aug")["sp0.9-s0-u1"])["speed"] == "0.9"
    aug = DataDir.load(out / "train_aug")
    assert len(aug.utts) == 4 * 8 + 16 and not set(aug.utts) & set(clean.utts)
    assert set(read_map(out / "train_aug" / "utt2aug")) == set(aug.utts)
    assert all(p.severity != "error" for p in validate_data_dir(out / "train_aug"))


def test_noisy_copies_have_the_drawn_snr(tree):
    assert run(tree, cfg={"kinds": ["music", "babble"],
                          "music": {"snrs": "5:10"}, "babble": {"speakers": [3]}}) == 0
    clean = DataDir.load(tree / "train")
    for kind in ("music", "babble"):
        d = DataDir.load(tree / "out" / f"train_{kind}")
        aug = read_map(tree / "out" / f"train_{kind}" / "utt2aug")
        for utt in clean.utts:
            copy = f"{utt}-{kind}"
            snrs = [float(s) for s in parse_aug(aug[copy])["snr"].split(",")]
            # Several babble speakers: their powers add up.
            want = -10 * np.log10(sum(10 ** (-s / 10) for s in snrs))
            got = snr_db(wav(clean.wav_scp[utt]), wav(d.wav_scp[copy]))
            assert abs(got - want) < 0.5, (copy, got, want)
    babble = parse_aug(aug["s0-u0-babble"])["noise"].split(",")
    assert len(babble) == 3 and not any(b.startswith("s0-") for b in babble)


def test_noise_shorter_than_the_utterance_is_tiled():
    """0.4 s of noise under 1 s of speech: tiled with crossfades, no gap, power kept."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1000, int(0.4 * SR))
    y = perturb.fit_length(noise, SR, np.random.default_rng(1))
    assert len(y) == SR
    frame = 160
    rms = np.sqrt(np.mean(y[: len(y) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    assert rms.min() > 0.6 * 1000  # no silent stretch at a seam
    assert abs(10 * np.log10(perturb.power(y) / perturb.power(noise))) < 0.5
    x = speechlike(0).astype(np.float64)
    assert abs(snr_db(x, perturb.add_noise(x, noise, 5.0, rng)) - 5.0) < 0.01
    long = rng.normal(0, 1000, 3 * SR)
    a = perturb.fit_length(long, SR, np.random.default_rng(1))
    b = perturb.fit_length(long, SR, np.random.default_rng(2))
    assert not np.array_equal(a, b)  # a longer noise is cut at a seeded offset


def xcorr_peak(x, y) -> int:
    """Lag of the cross-correlation peak of ``y`` against ``x`` (first differences: sharper)."""
    a, b = np.diff(x), np.diff(y)
    return int(np.argmax(np.correlate(b, a, "full"))) - (len(a) - 1)


def test_reverberated_copy_keeps_length_and_alignment(tree):
    assert run(tree, cfg={"kinds": ["reverb"]}) == 0
    clean = DataDir.load(tree / "train")
    d = DataDir.load(tree / "out" / "train_reverb")
    rirs = {k: wav(v) for k, v in read_map(tree / "src" / "rirs" / "wav.scp").items()}
    aug = read_map(tree / "out" / "train_reverb" / "utt2aug")
    for utt in clean.utts:
        x, y = wav(clean.wav_scp[utt]), wav(d.wav_scp[f"{utt}-reverb"])
        assert len(y) == len(x) and not np.array_equal(x, y)
        assert xcorr_peak(x, y) == 0, utt
        # Without the shift the copy would lag by the direct path's delay (30 or 50).
        h = rirs[parse_aug(aug[f"{utt}-reverb"])["rir"]]
        assert xcorr_peak(x, np.convolve(x, h)[:len(x)]) == int(np.argmax(np.abs(h))) > 0
    # Unit-energy RIR: the reverberant speech keeps about the dry speech's power.
    x = speechlike(3).astype(np.float64)
    for h in (rir(5), 0.01 * rir(6)):  # whatever the RIR's gain
        y = perturb.reverberate(x, h)
        assert len(y) == len(x) and abs(10 * np.log10(perturb.power(y) / perturb.power(x))) < 2


def test_speed_changes_length_and_pitch():
    x = 8000 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)
    for factor, (up, down) in ((1.1, (10, 11)), (0.9, (10, 9))):
        assert perturb.speed_ratio(factor) == (up, down)
        y = perturb.speed(x, factor)
        assert abs(len(y) - SR / factor) <= 1
        spec = np.abs(np.fft.rfft(y))
        peak = np.argmax(spec) * SR / len(y)
        assert abs(peak - 200 * factor) < 3, (factor, peak)


def test_speed_copies_through_the_command(tree):
    assert run(tree, cfg={"kinds": [], "speed": [1.1]}) == 0
    clean = DataDir.load(tree / "train")
    sp = DataDir.load(tree / "out" / "train_sp")
    for utt in clean.utts:
        n = len(wav(sp.wav_scp[f"sp1.1-{utt}"]))
        assert abs(n - SR / 1.1) <= 1
        assert abs(sp.utt2dur[f"sp1.1-{utt}"] - n / SR) < 1e-6
    assert sorted(p.name for p in (tree / "out").iterdir() if p.is_dir()) == \
        [".augment_train", "log", "train_aug", "train_sp", "wav"]


# --------------------------------------------------------------------------- determinism

def _snapshot(out, prefix):
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and ".augment_" not in str(p) and "/log/" not in str(p) \
                and not p.name.startswith("."):
            data = p.read_bytes()
            files[str(p.relative_to(out))] = data.replace(str(out).encode(), b"OUT")
    return files


def test_same_bytes_whatever_nj_and_seed_changes_them(tree):
    assert run(tree, out="o1", nj=1, cfg={"speed": [0.9]}) == 0
    assert run(tree, out="o3", nj=3, cfg={"speed": [0.9]}) == 0
    a, b = _snapshot(tree / "o1", "o1"), _snapshot(tree / "o3", "o3")
    assert len(a) > 40 and a == b
    assert run(tree, "--seed", "1", out="o5", nj=2, cfg={"speed": [0.9]}) == 0
    c = _snapshot(tree / "o5", "o5")
    assert c.keys() == a.keys()
    changed = [k for k in a if a[k] != c[k]]
    assert "train_noise/utt2aug" in changed and "wav/noise/s0/s0-u0-noise.wav" in changed
    assert "wav/sp/sp0.9-s0/sp0.9-s0-u0.wav" not in changed  # speed draws nothing


def test_copies_do_not_depend_on_the_other_utterances(tree):
    """Augmenting a subset gives the same copies of its utterances (seeded per utterance)."""
    sub = tree / "sub"
    sub.mkdir()
    full = DataDir.load(tree / "train")
    keep = [u for u in full.utts if u.endswith("u1")]
    write_map(sub / "wav.scp", {u: full.wav_scp[u] for u in keep})
    write_map(sub / "utt2spk", {u: full.utt2spk[u] for u in keep})
    cfg = {"kinds": ["reverb", "noise", "music"], "noise": {"fraction": 0.5}}
    assert run(tree, out="a", cfg=cfg) == 0
    assert run(tree, out="b", data="sub", cfg=cfg) == 0
    for kind in ("reverb", "noise", "music"):
        a = read_map(tree / "a" / f"train_{kind}" / "utt2aug")
        b = read_map(tree / "b" / f"sub_{kind}" / "utt2aug")
        assert b and b == {k: v for k, v in a.items() if k.split("-")[1] == "u1"}
    noise = DataDir.load(tree / "a" / "train_noise").utts
    assert 0 < len(noise) < len(full.utts)  # fraction 0.5: a seeded subset


def test_rerun_skips_and_a_changed_config_redoes(tree, capfd):
    assert run(tree, cfg={"kinds": ["reverb"]}) == 0
    path = tree / "out" / "train_reverb" / "wav.scp"
    before = path.stat().st_mtime_ns
    capfd.readouterr()
    assert run(tree, cfg={"kinds": ["reverb"]}) == 0
    err = capfd.readouterr().err
    assert "nothing to do" in err and "augmenting in" not in err
    assert path.stat().st_mtime_ns == before
    # A crash after the jobs, before the dirs were written: the jobs are not run again.
    (tree / "out" / "train_reverb" / ".augment.done").unlink()
    (tree / "out" / ".augment_train" / ".done.1").unlink()
    assert run(tree, cfg={"kinds": ["reverb"]}, nj=2) == 0
    err = capfd.readouterr().err
    assert "augmenting in 2 jobs (2 to run)" in err  # another nj: every job again
    (tree / "out" / "train_reverb" / ".augment.done").unlink()
    (tree / "out" / ".augment_train" / ".done.2").unlink()
    assert run(tree, cfg={"kinds": ["reverb"]}, nj=2) == 0
    assert "augmenting in 2 jobs (1 to run)" in capfd.readouterr().err
    assert run(tree, cfg={"kinds": ["reverb"], "reverb": {"fraction": 0.5}}) == 0
    assert len(read_map(path)) < 8


def test_segmented_data_dir(tree):
    seg = tree / "seg"
    seg.mkdir()
    full = DataDir.load(tree / "train")
    write_map(seg / "wav.scp", {"rec0": full.wav_scp["s0-u0"], "rec1": full.wav_scp["s1-u0"]})
    write_map(seg / "segments", {"s0-a": "rec0 0.0 0.5", "s0-b": "rec0 0.5 1.0",
                                 "s1-a": "rec1 0.2 0.9"})
    write_map(seg / "utt2spk", {"s0-a": "s0", "s0-b": "s0", "s1-a": "s1"})
    assert run(tree, data="seg", cfg={"kinds": ["reverb", "babble"],
                                      "babble": {"speakers": [1]}}) == 0
    d = DataDir.load(tree / "out" / "seg_reverb")
    assert d.segments is None and d.utt2dur == {"s0-a-reverb": 0.5, "s0-b-reverb": 0.5,
                                                "s1-a-reverb": 0.7}
    assert len(wav(d.wav_scp["s1-a-reverb"])) == int(0.7 * SR)


# --------------------------------------------------------------------------- bad input

def test_corrupt_rir_fails_the_copies_that_drew_it(tree, capfd):
    (tree / "srcaudio" / "rirs" / "rir1.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)
    assert run(tree, cfg={"kinds": ["reverb", "music"]}) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and "copies failed" in err
    assert run(tree, "--max-failed-fraction", "1.0", cfg={"kinds": ["reverb", "music"]}) == 0
    failed = read_map(tree / "out" / "train_reverb" / "failed_utts")
    drew = {u for u, v in read_map(tree / "out" / "train_reverb" / "utt2aug").items()}
    assert failed and drew and len(failed) + len(drew) == 8
    for reason in failed.values():
        assert "rirs/wav.scp:2: rir1:" in reason and "cannot read audio" in reason
    assert all(parse_aug(v)["rir"] == "rir0"
               for v in read_map(tree / "out" / "train_reverb" / "utt2aug").values())
    assert len(DataDir.load(tree / "out" / "train_music").utts) == 8  # the rest finishes


def test_bad_utterance_is_listed_and_the_rest_finish(tree):
    (tree / "audio" / "s1-u0.wav").write_bytes(b"not a wav")
    assert run(tree, "--max-failed-fraction", "0.2",
               cfg={"kinds": ["reverb", "noise", "babble"]}) == 0
    for kind in ("reverb", "noise", "babble"):
        failed = read_map(tree / "out" / f"train_{kind}" / "failed_utts")
        assert list(failed) == [f"s1-u0-{kind}"]
        assert "train/wav.scp:3: s1-u0: cannot read audio" in failed[f"s1-u0-{kind}"]
        assert len(DataDir.load(tree / "out" / f"train_{kind}").utts) == 7
    # Babble from the data dir passes over the unreadable utterance.
    babble = read_map(tree / "out" / "train_babble" / "utt2aug").values()
    assert not any("s1-u0" in parse_aug(v)["noise"] for v in babble)


@pytest.mark.parametrize("cfg, needle", [
    ({"noise": {"snrs": "15:abc"}}, "aug.yaml: noise.snrs: cannot parse '15:abc'"),
    ({"reverb": {"fraction": "high"}}, "aug.yaml: reverb.fraction: expected a number, got 'high'"),
    ({"babble": {"speakers": [3, 4.5]}}, "aug.yaml: babble.speakers: expected an integer"),
    ({"noise": {"snr": [5]}}, "aug.yaml: noise: unknown key(s) snr"),
    ({"kind": ["noise"]}, "aug.yaml: unknown key(s) kind"),
    ({"kinds": ["noise", "wind"]}, "aug.yaml: kinds: unknown kind(s) wind"),
    ({"speed": [1.0]}, "aug.yaml: speed: factors must be > 0 and not 1.0"),
])
def test_config_errors_name_file_and_key(tree, capfd, cfg, needle):
    assert run(tree, cfg=cfg) == 1
    err = capfd.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tree / "out" / "train_noise").exists()


def test_missing_source_list_is_named(tree, capfd):
    (tree / "src" / "music" / "wav.scp").unlink()
    assert run(tree) == 1
    err = capfd.readouterr().err
    assert "src/music/wav.scp: source list not found" in err and "Traceback" not in err


def test_config_forms():
    cfg = augment_config_from_dict({"noise": {"snrs": "15:10:5:0"}, "music": {"snrs": [5, 10]},
                                    "babble": {"snrs": 13, "speakers": "3:4"}})
    assert cfg.noise.snrs == [15.0, 10.0, 5.0, 0.0] and cfg.music.snrs == [5.0, 10.0]
    assert cfg.babble.snrs == [13.0] and cfg.babble.speakers == [3, 4]


def test_shared_conf_parses():
    root = Path(__file__).resolve().parents[1]
    cfg = load_augment_config(root / "conf" / "augment.yaml")
    assert cfg.kinds == list(KIND_DIRS) and cfg.noise.snrs == [15, 10, 5, 0]
    assert cfg.speed == [0.9, 1.1] and cfg.reverb_prob == 0
    quick = load_augment_config(root / "conf" / "augment_quick.yaml")
    assert quick.speed == [0.9, 1.1] and quick.noise.fraction == 0.25


def test_reverb_prob_reverberates_noisy_copies(tree):
    assert run(tree, cfg={"kinds": ["music"], "reverb_prob": 1.0}) == 0
    aug = read_map(tree / "out" / "train_music" / "utt2aug")
    assert all(parse_aug(v)["rir"] in ("rir0", "rir1") for v in aug.values())


def test_unreadable_music_is_named_once_per_file(tree):
    write_wav(tree / "srcaudio" / "music" / "music0.wav", np.zeros(0, np.int16))
    assert run(tree, "--max-failed-fraction", "1", cfg={"kinds": ["music"]}) == 0
    failed = read_map(tree / "out" / "train_music" / "failed_utts")
    assert failed and all("music/wav.scp:1: music0: empty" in r for r in failed.values())
    logs = "".join(p.read_text() for p in (tree / "out" / "log").glob("augment.*.log"))
    assert logs.count("music0: empty") == 1  # once per job, not once per copy
