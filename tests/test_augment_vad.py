"""Stage 1 on augmented dirs: VAD from the clean source (Kaldi v2), and Kaldi's own dirs.

Kaldi's ``steps/data/augment_data_dir.py``, ``reverberate_data_dir.py`` and
``utils/data/perturb_data_dir_speed.sh`` write ``wav-reverberate`` and ``sox`` pipes
into wav.scp; fake executables of those names (first on PATH) write a real WAV to
stdout, so the dirs are read as Kaldi's are.
"""

from __future__ import annotations

import os
import stat
import sys

import kaldiio
import numpy as np
import pytest
from augment_trees import make_data, make_sources, read_map, write_conf, write_map

from deepspeaker.bin import augment_data_dir as augment
from deepspeaker.bin import combine_data_dir as combine
from deepspeaker.bin import compute_fbank_vad as stage1
from deepspeaker.data import DataDir, validate_data_dir

FAKE_WAV_REVERBERATE = """#!{python}
# Fake Kaldi wav-reverberate: [options] <in.wav> <out.wav or ->; the effect is made up
# (an echo for --impulse-response, noise for --additive-signals), the length is kept.
import io, sys
import numpy as np, soundfile as sf
opts = [a for a in sys.argv[1:] if a.startswith("--")]
src, dst = [a for a in sys.argv[1:] if not a.startswith("--")]
x, sr = sf.read(src, dtype="float64")
if any(o.startswith("--impulse-response=") for o in opts):
    x = x + 0.3 * np.concatenate([np.zeros(200), x[:-200]])
if any(o.startswith("--additive-signals=") for o in opts):
    x = x + np.random.default_rng(0).normal(0, 0.05, len(x))
buf = io.BytesIO()
sf.write(buf, np.clip(x, -1, 1), sr, subtype="PCM_16", format="WAV")
sys.stdout.buffer.write(buf.getvalue())
"""

FAKE_SOX = """#!{python}
# Fake sox: sox -t wav <in.wav> -t wav - speed <f>  (resampled by 1/f, as sox speed).
import io, sys
from fractions import Fraction
import soundfile as sf
from scipy.signal import resample_poly
args = sys.argv[1:]
x, sr = sf.read(args[2], dtype="float64")
r = Fraction(1 / float(args[args.index("speed") + 1])).limit_denominator(1000)
y = resample_poly(x, r.numerator, r.denominator)
buf = io.BytesIO()
sf.write(buf, y.clip(-1, 1), sr, subtype="PCM_16", format="WAV")
sys.stdout.buffer.write(buf.getvalue())
"""


@pytest.fixture
def fake_kaldi(tmp_path, monkeypatch):
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, text in (("wav-reverberate", FAKE_WAV_REVERBERATE), ("sox", FAKE_SOX)):
        p = bin_dir / name
        p.write_text(text.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def kaldi_dirs(root, clean):
    """Data dirs as Kaldi's augmentation scripts write them, from the clean dir."""
    d = DataDir.load(clean)
    made = {}
    for kind in ("reverb", "noise", "sp"):
        out = root / f"kaldi_{kind}"
        out.mkdir()
        wav, utt2spk, uniq, dur = {}, {}, {}, {}
        for u in d.utts:
            path, spk = d.wav_scp[u], d.utt2spk[u]
            if kind == "reverb":
                new = f"{u}-reverb"
                wav[new] = (f'wav-reverberate --shift-output=true --impulse-response="sox '
                            f'RIRS_NOISES/simulated_rirs/smallroom/Room001-00001.wav -r 16000 '
                            f'-t wav - |" {path} - |')
            elif kind == "noise":
                new = f"{u}-noise"
                wav[new] = (f"wav-reverberate --shift-output=true --additive-signals='"
                            f"wav-reverberate --duration=1.0 \"/musan/noise-free-sound-0001.wav\""
                            f" - |' --start-times='0' --snrs='15' {path} - |")
            else:
                new, spk = f"sp1.1-{u}", f"sp1.1-{spk}"
                wav[new] = f"sox -t wav {path} -t wav - speed 1.1 |"
            utt2spk[new], uniq[new] = spk, u
            dur[new] = f"{1 / 1.1:.4f}" if kind == "sp" else "1.0"
        write_map(out / "wav.scp", wav)
        write_map(out / "utt2spk", utt2spk)
        write_map(out / "utt2uniq", uniq)
        write_map(out / "utt2dur", dur)
        write_map(out / "reco2dur", dur)
        spks = sorted(set(utt2spk.values()))
        write_map(out / "spk2utt", {s: " ".join(u for u in sorted(utt2spk) if utt2spk[u] == s)
                                    for s in spks})
        made[kind] = out
    return made


def vads(data) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in kaldiio.load_scp(str(data / "vad.scp")).items()}


def test_kaldi_augmented_dirs_are_accepted_as_they_are(tmp_path, fake_kaldi, capfd):
    clean = make_data(tmp_path, num_spk=2)
    dirs = kaldi_dirs(tmp_path, clean)
    for d in dirs.values():
        assert not [p for p in validate_data_dir(d) if p.severity == "error"]
    assert combine.main([str(tmp_path / "kaldi_aug"), *map(str, dirs.values())]) == 0
    aug = tmp_path / "kaldi_aug"
    assert not [p for p in validate_data_dir(aug) if p.severity == "error"]
    assert stage1.main(["--nj", "1", str(clean)]) == 0
    capfd.readouterr()
    assert stage1.main(["--nj", "2", "--vad-from", str(clean), str(aug)]) == 0
    err = capfd.readouterr().err
    assert "VAD of 8 taken from the clean source" in err and "failed" not in err
    frames = {k: int(v) for k, v in read_map(aug / "utt2num_frames").items()}
    assert len(frames) == 12 and frames["sp1.1-s0-u0"] < frames["s0-u0-reverb"] == 98
    clean_vad, aug_vad = vads(clean), vads(aug)
    for utt, src in read_map(aug / "utt2uniq").items():
        if utt.startswith("sp1.1-"):
            assert len(aug_vad[utt]) == frames[utt] != len(clean_vad[src])
        else:
            assert np.array_equal(aug_vad[utt], clean_vad[src])


def test_vad_from_takes_the_clean_vad_and_recomputes_for_speed_copies(tmp_path, capfd):
    clean = make_data(tmp_path, num_spk=2)
    make_sources(tmp_path)
    conf = write_conf(tmp_path / "aug.yaml", {"kinds": ["noise"], "noise": {"snrs": [0]},
                                              "speed": [0.9]})
    assert augment.main(["--config", str(conf), "--sources", str(tmp_path / "src"), "--nj", "1",
                         str(clean), str(tmp_path / "out")]) == 0
    aug = tmp_path / "out" / "train_aug"
    assert stage1.main(["--nj", "1", str(clean)]) == 0
    assert stage1.main(["--nj", "1", str(aug)]) == 0
    own = vads(aug)
    capfd.readouterr()
    # Another signature (the option): recomputed, now with the clean VAD.
    assert stage1.main(["--nj", "1", "--vad-from", str(clean), str(aug)]) == 0
    err = capfd.readouterr().err
    assert "VAD of 4 taken from the clean source" in err
    assert "VAD of 4 of 8 utterances taken from" in (aug / "log" / "make_fbank_vad.1.log").read_text()
    clean_vad, taken = vads(clean), vads(aug)
    noisy = [u for u in taken if u.endswith("-noise")]
    assert len(noisy) == 4
    for u in noisy:
        assert np.array_equal(taken[u], clean_vad[u[:-len("-noise")]])
    # At 0 dB the copies' own VAD marks more frames voiced than the clean one.
    assert sum(own[u].sum() for u in noisy) > sum(taken[u].sum() for u in noisy)
    for u in (u for u in taken if u.startswith("sp0.9-")):
        assert np.array_equal(taken[u], own[u]) and len(taken[u]) > len(clean_vad[u[6:]])
    assert stage1.main(["--nj", "1", "--vad-from", str(clean), str(aug)]) == 0
    assert "nothing to do" in capfd.readouterr().err


def test_vad_from_without_clean_vad_is_named(tmp_path, capfd):
    clean = make_data(tmp_path, num_spk=1, num_utt=1)
    other = make_data(tmp_path / "x", "copy", num_spk=1, num_utt=1)
    write_map(other / "utt2uniq", {"s0-u0": "s0-u0"})
    assert stage1.main(["--nj", "1", "--vad-from", str(clean), str(other)]) == 1
    err = capfd.readouterr().err
    assert f"{clean / 'vad.scp'}: --vad-from needs the clean dir's VAD" in err
    assert "Traceback" not in err
