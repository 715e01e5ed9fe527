"""egs/voxceleb/local/prepare_data.py on tiny fake VoxCeleb trees in tmp_path.

The trees have the corpus' exact layouts (wav/<spk>/<youtube_id>/<nnnnn>.wav, the
dev/ + test/ split, VoxCeleb2's dev/aac/... m4a) and official-format trial lists.
The script runs as a subprocess, as the recipe runs it: exact ids, trial conversion
line by line, train/test disjointness and a valid data dir; and for each kind of bad
input, exit code 1, one message naming the path (file:line for lists), and nothing
written.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from deepspeaker.data import DataDir, validate_data_dir
from corpus_trees import (
    LIST_ALL2, LIST_ALL2_KALDI, LIST_HARD2, LIST_HARD2_KALDI, VERI_TEST2, VERI_TEST2_KALDI,
    VOX1_DEV, VOX1_TEST, VOX2_DEV, fake_ffmpeg, make_vox1, make_vox2, utt_ids)
from prep_checks import assert_failed

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "egs" / "voxceleb" / "local" / "prepare_data.py"


def run(args: list, path_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if path_dir is not None:
        env["PATH"] = str(path_dir)
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def check_valid(d: Path) -> DataDir:
    problems = validate_data_dir(d)
    assert not problems, "\n".join(map(str, problems))
    data = DataDir.load(d)
    for utt, spk in data.utt2spk.items():
        assert utt.startswith(spk + "-")
    return data


def test_vox1_flat_layout_with_all_lists(tmp_path):
    vox1 = make_vox1(tmp_path)
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--data-dir", data])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in data.iterdir()) == ["train", "vox1_all", "vox1_test"]

    test = check_valid(data / "vox1_test")
    assert test.utts == utt_ids(VOX1_TEST)
    assert set(test.spk2utt) == {"id10270", "id10271"}
    assert test.wav_scp["id10271-1gtz-CUIygI-00001"] == str(
        vox1 / "wav" / "id10271" / "1gtz-CUIygI" / "00001.wav")
    assert read_lines(data / "vox1_test" / "trials_vox1_o") == VERI_TEST2_KALDI

    every = check_valid(data / "vox1_all")
    assert every.utts == utt_ids({**VOX1_DEV, **VOX1_TEST})
    assert read_lines(data / "vox1_all" / "trials_vox1_e") == LIST_ALL2_KALDI
    assert read_lines(data / "vox1_all" / "trials_vox1_h") == LIST_HARD2_KALDI
    assert not (data / "vox1_all" / "trials_vox1_o").exists()

    train = check_valid(data / "train")
    assert train.utts == utt_ids(VOX1_DEV)
    assert not set(train.spk2utt) & set(test.spk2utt)
    for d in (train, test, every):
        for path in d.wav_scp.values():
            assert os.path.isabs(path) and os.path.isfile(path)
    # E/H test on the Vox1 dev speakers that train holds: the log says so.
    assert "--train-vox1 none" in r.stderr

    # A rerun replaces the dirs with the same content and leaves no temp dir.
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert run(["--vox1-dir", vox1, "--data-dir", data]).returncode == 0
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert not [p for p in data.iterdir() if p.name.startswith(".")]


def test_split_layout_uncleaned_lists_and_vox2(tmp_path):
    vox1 = make_vox1(tmp_path, layout="split",
                     lists={"veri_test.txt": VERI_TEST2, "list_test_all.txt": LIST_ALL2})
    vox2 = make_vox2(tmp_path)
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--vox2-dir", vox2, "--data-dir", data, "--train-vox1", "none"],
            path_dir=fake_ffmpeg(tmp_path))
    assert r.returncode == 0, r.stderr
    assert read_lines(data / "vox1_test" / "trials_vox1_o") == VERI_TEST2_KALDI
    assert read_lines(data / "vox1_all" / "trials_vox1_e") == LIST_ALL2_KALDI
    assert not (data / "vox1_all" / "trials_vox1_h").exists()

    train = check_valid(data / "train")
    assert train.utts == utt_ids(VOX2_DEV)  # --train-vox1 none: VoxCeleb2 dev only
    m4a = vox2 / "dev" / "aac" / "id00012" / "21Uxsk56VDQ" / "00002.m4a"
    assert train.wav_scp["id00012-21Uxsk56VDQ-00002"] == (
        f"ffmpeg -nostdin -v error -i {shlex.quote(str(m4a))} -f wav -ac 1 -ar 16000 - |")
    assert "'" in train.wav_scp["id00012-21Uxsk56VDQ-00002"]
    assert check_valid(data / "vox1_test").utts == utt_ids(VOX1_TEST)


def test_vox2_aac_layout_plus_vox1_dev(tmp_path):
    vox1 = make_vox1(tmp_path, layout="split", lists={})
    vox2 = make_vox2(tmp_path, layout="aac")
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--vox2-dir", vox2, "--data-dir", data],
            path_dir=fake_ffmpeg(tmp_path))
    assert r.returncode == 0, r.stderr
    # No lists: the test speakers are those of test/wav, and there is no Vox1-O/E/H.
    assert sorted(p.name for p in data.iterdir()) == ["train", "vox1_test"]
    assert sorted(p.name for p in (data / "vox1_test").iterdir()) == ["spk2utt", "utt2spk",
                                                                      "wav.scp"]
    assert check_valid(data / "vox1_test").utts == utt_ids(VOX1_TEST)
    train = check_valid(data / "train")
    assert train.utts == utt_ids({**VOX2_DEV, **VOX1_DEV})


def test_trial_lists_dir_option(tmp_path):
    vox1 = make_vox1(tmp_path, lists={})
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "veri_test2.txt").write_text(VERI_TEST2)
    (lists / "veri_test.txt").write_text("this one is ignored: the cleaned list wins\n")
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--data-dir", data, "--trial-lists", lists])
    assert r.returncode == 0, r.stderr
    assert read_lines(data / "vox1_test" / "trials_vox1_o") == VERI_TEST2_KALDI
    assert not (data / "vox1_all").exists()
    assert check_valid(data / "train").utts == utt_ids(VOX1_DEV)


def test_missing_vox1_dir(tmp_path):
    data = tmp_path / "data"
    r = run(["--vox1-dir", tmp_path / "nowhere", "--data-dir", data])
    assert_failed(r, data, str(tmp_path / "nowhere"), "not found")


def test_no_wav_folder(tmp_path):
    (tmp_path / "vox1" / "txt").mkdir(parents=True)
    data = tmp_path / "data"
    r = run(["--vox1-dir", tmp_path / "vox1", "--data-dir", data])
    assert_failed(r, data, str(tmp_path / "vox1"), "wav/<spk>/<youtube_id>/<nnnnn>.wav")


def test_empty_speaker_folder(tmp_path):
    vox1 = make_vox1(tmp_path)
    (vox1 / "wav" / "id10003" / "someVideo").mkdir(parents=True)
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--data-dir", data])
    assert_failed(r, data, str(vox1 / "wav" / "id10003"), "no .wav")


def test_trial_naming_missing_file(tmp_path):
    vox1 = make_vox1(tmp_path)
    (vox1 / "wav" / "id10270" / "x6uYqmx31kE" / "00001.wav").unlink()
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--data-dir", data])
    assert_failed(r, data, f"{vox1 / 'veri_test2.txt'}:1", "id10270/x6uYqmx31kE/00001.wav",
                  "not on disk")


@pytest.mark.parametrize("name,text,needle", [
    ("list_test_hard2.txt", LIST_HARD2 + "1 id10001/1zcIwhmdeo4/00001.wav\n", ":2: expected 3"),
    ("veri_test2.txt", VERI_TEST2 + "\n" + "target id10270/5r0dWxy17C8/00001.wav "
     "id10270/x6uYqmx31kE/00001.wav\n", ":6: label must be 1"),
    ("list_test_all2.txt", "0 id10001/1zcIwhmdeo4/00001.wav id10001/7w0IBEWc9Qw/00001.wav\n",
     ":1: label 0 (nontarget) but the files are of the same speaker"),
])
def test_bad_trial_line(tmp_path, name, text, needle):
    vox1 = make_vox1(tmp_path)
    (vox1 / name).write_text(text)
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--data-dir", data])
    assert_failed(r, data, f"{vox1 / name}{needle}")


def test_no_way_to_tell_test_speakers(tmp_path):
    vox1 = make_vox1(tmp_path, lists={"list_test_all2.txt": LIST_ALL2})
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--data-dir", data])
    assert_failed(r, data, str(vox1), "veri_test2.txt", "test speakers")


def test_m4a_without_ffmpeg(tmp_path):
    vox1 = make_vox1(tmp_path)
    vox2 = make_vox2(tmp_path)
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    data = tmp_path / "data"
    r = run(["--vox1-dir", vox1, "--vox2-dir", vox2, "--data-dir", data], path_dir=empty)
    assert_failed(r, data, str(vox2), "ffmpeg", "m4a", "--vox2-dir")


def test_failed_run_keeps_previous_dirs(tmp_path):
    vox1 = make_vox1(tmp_path)
    data = tmp_path / "data"
    assert run(["--vox1-dir", vox1, "--data-dir", data]).returncode == 0
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    (vox1 / "veri_test2.txt").write_text(VERI_TEST2 + "1 id10270/nope/00001.wav "
                                         "id10270/5r0dWxy17C8/00001.wav\n")
    r = run(["--vox1-dir", vox1, "--data-dir", data])
    assert r.returncode == 1 and f"{vox1 / 'veri_test2.txt'}:5" in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert not [p for p in data.iterdir() if p.name.startswith(".")]
