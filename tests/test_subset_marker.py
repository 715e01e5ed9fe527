"""Stage 11's rerun rule: ``bin/subset_data_dir`` records its signature in DST/.subset.done."""

import json
import os
import subprocess
import sys

from deepspeaker.data.kaldi_dir import read_kaldi_map


def _src(d, n_spk=6):
    d.mkdir()
    utts = [f"s{i:02d}-u{j}" for i in range(n_spk) for j in range(2)]
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
    (d / "utt2spk").write_text("".join(f"{u} {u[:3]}\n" for u in utts))
    return d


def _subset(src, dst, seed, fraction):
    return subprocess.run([sys.executable, "-m", "deepspeaker.bin.subset_data_dir", "--seed",
                           str(seed), "--speaker-fraction", str(fraction), str(src), str(dst)],
                          capture_output=True, text=True, timeout=120)


def test_same_signature_is_a_noop_another_redoes(tmp_path):
    src, dst = _src(tmp_path / "src"), tmp_path / "dst"
    r = _subset(src, dst, 1, 0.5)
    assert r.returncode == 0, r.stderr
    sig = json.loads((dst / ".subset.done").read_text())
    assert sig["options"] == {"seed": 1, "speaker_fraction": 0.5}
    assert str(src / "utt2spk") in sig["inputs"]
    first = read_kaldi_map(dst / "utt2spk")
    assert len(set(first.values())) == 3

    stamp = os.stat(dst / "utt2spk").st_mtime_ns
    r = _subset(src, dst, 1, 0.5)
    assert r.returncode == 0 and "up to date" in r.stderr
    assert os.stat(dst / "utt2spk").st_mtime_ns == stamp         # not rewritten

    r = _subset(src, dst, 1, 1.0)                                 # another fraction: redone
    assert r.returncode == 0 and "options.speaker_fraction" in r.stderr, r.stderr
    assert len(set(read_kaldi_map(dst / "utt2spk").values())) == 6

    (src / "utt2spk").write_text((src / "utt2spk").read_text().replace("s05-u1 s05", "s05-u1 s04"))
    r = _subset(src, dst, 1, 1.0)                                 # another source: redone
    assert r.returncode == 0 and "inputs." in r.stderr, r.stderr
    assert read_kaldi_map(dst / "utt2spk")["s05-u1"] == "s04"


def _subset_list(src, dst, utt_list):
    return subprocess.run([sys.executable, "-m", "deepspeaker.bin.subset_data_dir", "--utt-list",
                           str(utt_list), str(src), str(dst)],
                          capture_output=True, text=True, timeout=120)


def test_utt_list_keeps_the_listed_utterances_and_names_an_unknown_one(tmp_path):
    src, dst = _src(tmp_path / "src"), tmp_path / "dst"
    keep = tmp_path / "keep"
    keep.write_text("s00-u0\ns03-u1 extra fields are ignored\n\ns05-u0\n")
    r = _subset_list(src, dst, keep)
    assert r.returncode == 0, r.stderr
    assert read_kaldi_map(dst / "utt2spk") == {"s00-u0": "s00", "s03-u1": "s03", "s05-u0": "s05"}
    assert read_kaldi_map(dst / "wav.scp")["s03-u1"] == "/x/s03-u1.wav"
    stamp = os.stat(dst / "utt2spk").st_mtime_ns
    assert _subset_list(src, dst, keep).returncode == 0          # same list: nothing to do
    assert os.stat(dst / "utt2spk").st_mtime_ns == stamp

    keep.write_text("s00-u0\ns09-u0\n")
    r = _subset_list(src, tmp_path / "dst2", keep)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{keep}:2: utterance 's09-u0' is not in {src}/utt2spk" in r.stderr
    assert not (tmp_path / "dst2/utt2spk").exists()
