"""egs/cnceleb/local/prepare_data.py on tiny fake CN-Celeb trees in tmp_path.

The trees have the release's exact layout (CN-Celeb_flac/{data,dev,eval}/..., the
older CN-Celeb/ with wav, CN-Celeb2_flac/data/...) and list formats.  The script
runs as a subprocess, as the recipe runs it: exact ids, trial conversion line by
line, train/eval disjointness and valid data dirs; and for each kind of bad input,
exit code 1, one message naming the path (file:line for lists), and nothing written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepspeaker.data import DataDir, validate_data_dir
from corpus_trees import EVAL_IDS, TRAIN, TRIALS_KALDI, make_cnc1, train_ids, write_audio
from prep_checks import assert_failed

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "egs" / "cnceleb" / "local" / "prepare_data.py"

CNC2 = {"id10001": ["vlog-01-001", "vlog-01-002"], "id10002": ["live_broadcast-03-010"]}


def run(args: list) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def check_valid(d: Path) -> DataDir:
    problems = validate_data_dir(d)
    assert not problems, "\n".join(map(str, problems))
    data = DataDir.load(d)
    for utt, spk in data.utt2spk.items():
        assert utt.startswith(spk + "-")
    for path in data.wav_scp.values():
        assert os.path.isabs(path) and os.path.isfile(path)
    return data


def test_flac_release(tmp_path):
    cnc1 = make_cnc1(tmp_path)
    data = tmp_path / "data"
    r = run(["--cnceleb1-dir", cnc1, "--data-dir", data])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in data.iterdir()) == ["eval", "train"]

    train = check_valid(data / "train")
    assert train.utts == train_ids(TRAIN)
    assert train.wav_scp["id00000-speech-02-003"] == str(
        cnc1 / "CN-Celeb_flac" / "data" / "id00000" / "speech-02-003.flac")

    ev = check_valid(data / "eval")
    assert ev.utts == EVAL_IDS
    assert ev.utt2spk["id00801-enroll"] == "id00801"
    assert ev.utt2spk["id00800-interview-02-003"] == "id00800"
    assert ev.wav_scp["id00800-enroll"] == str(
        cnc1 / "CN-Celeb_flac" / "eval" / "enroll" / "id00800-enroll.flac")
    assert (data / "eval" / "trials_cnceleb").read_text().splitlines() == TRIALS_KALDI
    assert not (data / "eval" / "trials").exists()  # stage 2's name for the paper's list
    assert not set(train.spk2utt) & set(ev.spk2utt)

    # A rerun gives the same files and leaves no temp dir.
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert run(["--cnceleb1-dir", cnc1, "--data-dir", data]).returncode == 0
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert not [p for p in data.iterdir() if p.name.startswith(".")]


def test_old_wav_release_without_dev_list_given_as_the_folder_itself(tmp_path):
    cnc1 = make_cnc1(tmp_path, folder="CN-Celeb", ext=".wav", dev_lst=False)
    # Without dev/dev.lst every speaker of data/ but the eval ones is a training speaker.
    write_audio(cnc1 / "CN-Celeb" / "data" / "id00002" / "vlog-01-001.wav", 500)
    data = tmp_path / "data"
    r = run(["--cnceleb1-dir", cnc1 / "CN-Celeb", "--data-dir", data])
    assert r.returncode == 0, r.stderr
    assert "dev.lst not found" in r.stderr
    train = check_valid(data / "train")
    assert train.utts == train_ids({**TRAIN, "id00002": ["vlog-01-001"]})
    ev = check_valid(data / "eval")
    assert ev.utts == EVAL_IDS
    assert ev.wav_scp["id00801-drama-01-001"].endswith("/eval/test/id00801-drama-01-001.wav")
    assert (data / "eval" / "trials_cnceleb").read_text().splitlines() == TRIALS_KALDI


@pytest.mark.parametrize("layout", ["CN-Celeb2_flac/data", "data"])
def test_with_cnceleb2(tmp_path, layout):
    cnc1 = make_cnc1(tmp_path)
    cnc2 = tmp_path / "cnc2"
    for spk, stems in CNC2.items():
        for stem in stems:
            write_audio(cnc2 / layout / spk / f"{stem}.flac", 250)
    data = tmp_path / "data"
    r = run(["--cnceleb1-dir", cnc1, "--cnceleb2-dir", cnc2, "--data-dir", data])
    assert r.returncode == 0, r.stderr
    train = check_valid(data / "train")
    assert train.utts == train_ids({**TRAIN, **CNC2})
    assert not set(train.spk2utt) & set(check_valid(data / "eval").spk2utt)


def test_missing_dir(tmp_path):
    data = tmp_path / "data"
    assert_failed(run(["--cnceleb1-dir", tmp_path / "nowhere", "--data-dir", data]), data,
                  str(tmp_path / "nowhere"), "not found")


def test_not_a_release(tmp_path):
    (tmp_path / "cnc1" / "something").mkdir(parents=True)
    data = tmp_path / "data"
    assert_failed(run(["--cnceleb1-dir", tmp_path / "cnc1", "--data-dir", data]), data,
                  str(tmp_path / "cnc1" / "CN-Celeb_flac" / "eval"))


@pytest.mark.parametrize("name", ["enroll.lst", "test.lst", "trials.lst"])
def test_missing_list(tmp_path, name):
    cnc1 = make_cnc1(tmp_path)
    path = cnc1 / "CN-Celeb_flac" / "eval" / "lists" / name
    path.unlink()
    data = tmp_path / "data"
    assert_failed(run(["--cnceleb1-dir", cnc1, "--data-dir", data]), data, str(path),
                  "not found")


def test_trial_naming_missing_file(tmp_path):
    cnc1 = make_cnc1(tmp_path)
    lists = cnc1 / "CN-Celeb_flac" / "eval" / "lists"
    with open(lists / "trials.lst", "a") as f:
        f.write("id00800-enroll test/id00800-vlog-09-009.flac 1\n")
    data = tmp_path / "data"
    assert_failed(run(["--cnceleb1-dir", cnc1, "--data-dir", data]), data,
                  f"{lists / 'trials.lst'}:5", "test/id00800-vlog-09-009.flac", "no such file")


def test_test_list_naming_missing_file(tmp_path):
    cnc1 = make_cnc1(tmp_path)
    root = cnc1 / "CN-Celeb_flac"
    (root / "eval" / "test" / "id00801-drama-01-001.flac").unlink()
    data = tmp_path / "data"
    assert_failed(run(["--cnceleb1-dir", cnc1, "--data-dir", data]), data,
                  f"{root / 'eval' / 'lists' / 'test.lst'}:3", "test/id00801-drama-01-001.flac")


@pytest.mark.parametrize("name,text,needle", [
    ("trials.lst", "id00800-enroll test/id00800-singing-01-001.flac\n", ":1: expected 3"),
    ("trials.lst", "id00800-enroll test/id00800-singing-01-001.flac yes\n", ":1: label must"),
    ("trials.lst", "id00999-enroll test/id00800-singing-01-001.flac 0\n",
     ":1: enrollment model id00999-enroll is not in"),
    ("trials.lst", "id00800-enroll test/id00801-drama-01-001.flac 1\n",
     ":1: label 1 (target) but the files are of different speakers: "
     "enroll/id00800-enroll.flac test/id00801-drama-01-001.flac"),
    ("enroll.lst", "id00800-enroll\n", ":1: expected 2"),
])
def test_bad_list_line(tmp_path, name, text, needle):
    cnc1 = make_cnc1(tmp_path)
    path = cnc1 / "CN-Celeb_flac" / "eval" / "lists" / name
    path.write_text(text)
    data = tmp_path / "data"
    assert_failed(run(["--cnceleb1-dir", cnc1, "--data-dir", data]), data, f"{path}{needle}")


def test_repeated_trials(tmp_path):
    """The same pair again: dropped with a warning; with the other label: an error (the
    label of one of the two lines disagrees with the speakers)."""
    cnc1 = make_cnc1(tmp_path)
    trials = cnc1 / "CN-Celeb_flac" / "eval" / "lists" / "trials.lst"
    text = trials.read_text()
    trials.write_text(text + text.splitlines(keepends=True)[1])
    data = tmp_path / "data"
    r = run(["--cnceleb1-dir", cnc1, "--data-dir", data])
    assert r.returncode == 0, r.stderr
    assert "1 repeated trial(s) dropped" in r.stderr
    assert (data / "eval" / "trials_cnceleb").read_text().splitlines() == TRIALS_KALDI

    trials.write_text(text + "id00800-enroll test/id00800-singing-01-001.flac 0\n")
    r = run(["--cnceleb1-dir", cnc1, "--data-dir", tmp_path / "data2"])
    assert_failed(r, tmp_path / "data2", f"{trials}:5: label 0 (nontarget) but the files are "
                  "of the same speaker")


def test_empty_speaker_folder(tmp_path):
    cnc1 = make_cnc1(tmp_path)
    root = cnc1 / "CN-Celeb_flac"
    (root / "data" / "id00002").mkdir()
    with open(root / "dev" / "dev.lst", "a") as f:
        f.write("id00002\n")
    data = tmp_path / "data"
    assert_failed(run(["--cnceleb1-dir", cnc1, "--data-dir", data]), data,
                  str(root / "data" / "id00002"), "no .flac or .wav")


def test_dev_list_naming_eval_speaker(tmp_path):
    cnc1 = make_cnc1(tmp_path)
    dev_lst = cnc1 / "CN-Celeb_flac" / "dev" / "dev.lst"
    with open(dev_lst, "a") as f:
        f.write("id00800\n")
    data = tmp_path / "data"
    assert_failed(run(["--cnceleb1-dir", cnc1, "--data-dir", data]), data, f"{dev_lst}:3",
                  "evaluation speaker")


def test_failed_run_keeps_previous_dirs(tmp_path):
    cnc1 = make_cnc1(tmp_path)
    data = tmp_path / "data"
    assert run(["--cnceleb1-dir", cnc1, "--data-dir", data]).returncode == 0
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    (cnc1 / "CN-Celeb_flac" / "eval" / "enroll" / "id00801-enroll.flac").unlink()
    r = run(["--cnceleb1-dir", cnc1, "--data-dir", data])
    assert r.returncode == 1 and "enroll.lst:2" in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert not [p for p in data.iterdir() if p.name.startswith(".")]
