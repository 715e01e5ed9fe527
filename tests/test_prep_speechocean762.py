"""egs/speechocean762 data prep (local/prepare_data.py).

Tiny fake trees in tmp_path with the corpus' own layout (``WAVE/SPEAKER<spk>/<utt>``
as FLAC or ``.WAV``, the Kaldi-style lists of ``train/`` and, when present, ``test/``;
corpus_trees.make_speechocean762), 20 speakers of every age group and gender with 3
utterances each.  The script runs as a subprocess, as the recipe runs it: ids
prefixed by the speaker, valid sorted data dirs, disjoint sets, a seeded split
stratified by age group and gender, the ``.WAV`` tree giving the data of the FLAC
tree, the official test split as the eval set; for each kind of bad input exit code
1, one message naming ``file:line`` and nothing written.  One test reads the real
corpus when it is on disk.  Stage 0 of the recipe itself: test_recipes_stage0.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from corpus_trees import (
    SO_TEST,
    SO_TRAIN,
    SO_UTTS,
    make_speechocean762,
    snapshot,
    so_kaldi_ids,
    so_utt,
)
from prep_checks import assert_failed, ok, run_prep, table

from deepspeaker.data import validate_data_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "egs" / "speechocean762" / "local" / "prepare_data.py"
REAL = Path(os.environ.get("DS_SPEECHOCEAN762",
                           ROOT.parent / "shared" / "data" / "speechocean762"))
SETS = ("train", "dev", "eval")
FILES = ("spk2age", "spk2gender", "spk2utt", "text", "utt2dur", "utt2spk", "wav.scp")
SPLIT = ["--eval-fraction", "0.5", "--dev-fraction", "0.25"]


def run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    return run_prep(SCRIPT, args, cwd)


def prep(corpus: Path, data: Path, *args) -> subprocess.CompletedProcess:
    return ok(run(["--corpus-dir", corpus, "--data-dir", data, *args], data.parent))


def stratum(gender: str, age: int) -> str:
    group = "child" if age <= 12 else "teen" if age <= 17 else "adult"
    return f"{group} {gender}"


def check_set(d: Path, speakers: dict) -> dict[str, dict[str, str]]:
    """A valid data dir of some of ``speakers``, every file consistent with the corpus."""
    problems = validate_data_dir(d)
    assert problems == [], [str(p) for p in problems]
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)
    files = {name: table(d / name) for name in FILES}
    spks = set(files["spk2utt"])
    assert spks <= set(speakers)
    assert sorted(files["utt2spk"]) == so_kaldi_ids({s: speakers[s] for s in spks})
    for utt, spk in files["utt2spk"].items():
        assert utt.startswith(f"{spk}-"), utt
        path = files["wav.scp"][utt]
        assert os.path.isabs(path) and Path(path).is_file()
        assert Path(path).stem == utt.split("-", 1)[1]
        assert float(files["utt2dur"][utt]) == sf.info(path).duration
        k = int(utt[-4:])
        assert files["text"][utt] == f"READ WORD {k} BY {spk}"
    assert files["spk2gender"] == {s: speakers[s][0] for s in spks}
    assert files["spk2age"] == {s: str(speakers[s][1]) for s in spks}
    return files


def strata(files: dict[str, dict[str, str]]) -> Counter:
    return Counter(stratum(files["spk2gender"][s], int(files["spk2age"][s]))
                   for s in files["spk2utt"])


def written(data: Path, speakers: dict) -> dict[str, dict[str, dict[str, str]]]:
    return {name: check_set(data / name, speakers) for name in SETS if (data / name).exists()}


@pytest.fixture
def corpus(tmp_path):
    return make_speechocean762(tmp_path / "speechocean762")


# --------------------------------------------------------------------------- splits


def test_split_stratified_by_age_group_and_gender(tmp_path, corpus):
    data = tmp_path / "data"
    r = prep(corpus, data, *SPLIT)
    assert sorted(p.name for p in data.iterdir()) == sorted(SETS)
    sets = written(data, SO_TRAIN)
    spk_sets = {name: set(s["spk2utt"]) for name, s in sets.items()}
    assert set.union(*spk_sets.values()) == set(SO_TRAIN)
    assert sum(map(len, spk_sets.values())) == len(SO_TRAIN)  # disjoint
    assert sum(len(s["utt2spk"]) for s in sets.values()) == SO_UTTS * len(SO_TRAIN)
    # Strata of 4 children, 2 teens, 4 adults per gender: eval 0.5 of each exactly;
    # dev 0.25 is 1 of each 4 and 0.5 of each teen pair, whose largest remainder
    # (the first stratum on a tie: teen f) gets the fifth of round(0.25 x 20).
    assert strata(sets["eval"]) == Counter({"child f": 2, "child m": 2, "teen f": 1,
                                            "teen m": 1, "adult f": 2, "adult m": 2})
    assert strata(sets["dev"]) == Counter({"child f": 1, "child m": 1, "teen f": 1,
                                           "adult f": 1, "adult m": 1})
    assert strata(sets["train"]) == Counter({"child f": 1, "child m": 1, "teen m": 1,
                                             "adult f": 1, "adult m": 1})
    assert "eval: 10 speakers (child f 2, child m 2, teen f 1, teen m 1" in r.stderr


def test_default_fractions(tmp_path, corpus):
    """0.2 and 0.08 of 20: 4 eval and 2 dev speakers, to the largest remainders."""
    data = tmp_path / "data"
    prep(corpus, data)
    sets = written(data, SO_TRAIN)
    assert strata(sets["eval"]) == Counter({"child f": 1, "child m": 1, "adult f": 1,
                                            "adult m": 1})
    assert strata(sets["dev"]) == Counter({"child f": 1, "child m": 1})
    assert len(sets["train"]["spk2utt"]) == 14


def test_same_seed_same_split_other_seed_other_split(tmp_path, corpus):
    def split(seed: int) -> dict[str, str]:
        data = tmp_path / f"seed{seed}" / "data"
        data.parent.mkdir()
        prep(corpus, data, *SPLIT, "--seed", seed)
        return snapshot(data)

    first = split(0)
    again = tmp_path / "again" / "data"
    again.parent.mkdir()
    prep(corpus, again, *SPLIT, "--seed", "0")
    assert snapshot(again) == first
    others = [split(seed) for seed in (1, 2, 3)]
    assert any(o["eval/spk2utt"] != first["eval/spk2utt"] for o in others)
    for seed in (1, 2, 3):  # whatever the seed: the same strata
        sets = written(tmp_path / f"seed{seed}" / "data", SO_TRAIN)
        assert sum(strata(sets["eval"]).values()) == 10
        assert set(strata(sets["eval"]).values()) == {1, 2}


def test_split_depends_on_the_speaker_list_only(tmp_path, corpus):
    """Lists in another order (and a tree elsewhere) give the same split."""
    moved = tmp_path / "elsewhere" / "so"
    shutil.copytree(corpus, moved)
    for name in ("wav.scp", "utt2spk", "spk2utt", "spk2gender"):
        path = moved / "train" / name
        path.write_text("".join(reversed(path.read_text().splitlines(keepends=True))))
    a, b = tmp_path / "a", tmp_path / "b"
    prep(corpus, a, *SPLIT)
    prep(moved, b, *SPLIT)
    strip = {k: v.replace(str(moved), str(corpus)) for k, v in snapshot(b).items()}
    assert strip == snapshot(a)


def _without_paths(data: Path) -> dict[str, str]:
    return {k: v for k, v in snapshot(data).items() if not k.endswith("wav.scp")}


def test_wav_tree_gives_the_data_of_the_flac_tree(tmp_path, corpus):
    wav_tree = make_speechocean762(tmp_path / "official", suffix=".WAV")
    a, b = tmp_path / "flac", tmp_path / "wav"
    prep(corpus, a, *SPLIT)
    prep(wav_tree, b, *SPLIT)
    assert _without_paths(b) == _without_paths(a)
    for name in SETS:
        wav = table(b / name / "wav.scp")
        assert wav.keys() == table(a / name / "wav.scp").keys()
        assert all(p.startswith(f"{wav_tree}/WAVE/SPEAKER") and p.endswith(".WAV")
                   for p in wav.values())


def test_flac_tree_with_the_official_wav_scp(tmp_path):
    """Audio converted to FLAC, wav.scp still naming .WAV: the FLAC file is used."""
    tree = make_speechocean762(tmp_path / "so", listed_suffix=".WAV")
    data = tmp_path / "data"
    prep(tree, data)
    assert all(p.endswith(".flac") for p in table(data / "eval" / "wav.scp").values())


def test_official_test_split_is_the_eval_set(tmp_path, corpus):
    make_speechocean762(corpus, split="test", speakers=SO_TEST)
    data = tmp_path / "data"
    r = prep(corpus, data, *SPLIT)
    assert "official test split is the eval set" in r.stderr
    assert set(table(data / "eval" / "spk2utt")) == set(SO_TEST)
    sets = {"eval": check_set(data / "eval", SO_TEST),
            **{name: check_set(data / name, SO_TRAIN) for name in ("train", "dev")}}
    assert set(sets["train"]["spk2utt"]) | set(sets["dev"]["spk2utt"]) == set(SO_TRAIN)
    assert not set(sets["train"]["spk2utt"]) & set(sets["dev"]["spk2utt"])
    assert sum(strata(sets["dev"]).values()) == 5  # 0.25 of the train split's 20
    # --dev-fraction 0: no dev set, and the old one goes.
    prep(corpus, data, "--dev-fraction", "0")
    assert sorted(p.name for p in data.iterdir()) == ["eval", "train"]
    assert len(table(data / "train" / "spk2utt")) == len(SO_TRAIN)


# --------------------------------------------------------------------------- bad input


def line_of(path: Path, key: str) -> str:
    """``path:N`` of the line whose first field is ``key``."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.split()[0] == key:
            return f"{path}:{n}"
    raise AssertionError(f"{key} not in {path}")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line)


U = so_utt("0022", 1)  # an utterance of speaker 0022
# case -> (how to break the tree at c, the messages' needles given c)
ERRORS = {
    "no train split": (lambda c: shutil.rmtree(c / "train"),
                       lambda c: [f"{c}/train: split dir not found"]),
    "no train/wav.scp": (lambda c: (c / "train" / "wav.scp").unlink(),
                         lambda c: [f"{c}/train/wav.scp: list not found"]),
    "no train/spk2age": (lambda c: (c / "train" / "spk2age").unlink(),
                         lambda c: [f"{c}/train/spk2age: list not found"]),
    "no test/text": (lambda c: (make_speechocean762(c, split="test", speakers=SO_TEST),
                                (c / "test" / "text").unlink()),
                     lambda c: [f"{c}/test/text: list not found"]),
    "audio file not on disk": (
        lambda c: (c / "WAVE" / "SPEAKER0022" / f"{U}.flac").unlink(),
        lambda c: [line_of(c / "train" / "wav.scp", U), "audio file not found",
                   f"{c}/WAVE/SPEAKER0022/{U}.flac"]),
    "empty speaker in spk2utt": (
        lambda c: _append(c / "train" / "spk2utt", "0099\n"),
        lambda c: [f"{c}/train/spk2utt:{len(SO_TRAIN) + 1}: speaker 0099 has no utterances"]),
    "spk2gender speaker without utterances": (
        lambda c: _append(c / "train" / "spk2gender", "0099\tf\n"),
        lambda c: [f"{c}/train/spk2gender:{len(SO_TRAIN) + 1}: speaker 0099 has no utterances"]),
    "malformed utt2spk line": (
        lambda c: _edit(c / "train" / "utt2spk", f"{U} 0022\n", f"{U} 0022 extra\n"),
        lambda c: [line_of(c / "train" / "utt2spk", U), "expected 2 field(s)"]),
    "utterance of utt2spk without audio": (
        lambda c: _edit(c / "train" / "wav.scp", f"{U}\tWAVE/SPEAKER0022/{U}.flac\n", ""),
        lambda c: [line_of(c / "train" / "utt2spk", U), f"utterance {U} has no audio"]),
    "utterance of utt2spk missing from spk2utt": (
        lambda c: _edit(c / "train" / "spk2utt", f" {U}", ""),
        lambda c: [line_of(c / "train" / "utt2spk", U), "spk2utt"]),
    "unknown gender": (
        lambda c: _edit(c / "train" / "spk2gender", "0022\tm", "0022\tx"),
        lambda c: [line_of(c / "train" / "spk2gender", "0022"), "gender must be f or m"]),
    "unknown age": (
        lambda c: _edit(c / "train" / "spk2age", "0022\t7", "0022\tseven"),
        lambda c: [line_of(c / "train" / "spk2age", "0022"), "age must be a whole number"]),
    "speaker without age": (
        lambda c: _edit(c / "train" / "spk2age", "0022\t7\n", ""),
        lambda c: [line_of(c / "train" / "spk2utt", "0022"), "no line in", "spk2age"]),
    "duplicate utterance": (
        lambda c: _append(c / "train" / "utt2spk", f"{U} 0022\n"),
        lambda c: [f"{c}/train/utt2spk:{len(SO_TRAIN) * SO_UTTS + 1}: {U} listed twice"]),
    "not an audio file": (
        lambda c: _edit(c / "train" / "wav.scp", f"{U}.flac", f"{U}.mp3"),
        lambda c: [line_of(c / "train" / "wav.scp", U), "not a .flac or .wav file"]),
    "corrupt audio": (
        lambda c: (c / "WAVE" / "SPEAKER0022" / f"{U}.flac").write_bytes(b"fLaC"),
        lambda c: [f"{c}/WAVE/SPEAKER0022/{U}.flac: cannot read the audio header"]),
    "speaker in train and test": (
        lambda c: make_speechocean762(c, split="test", speakers={"0022": ("m", 7)}),
        lambda c: ["0022 in both train/ and test/"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input(tmp_path, corpus, case):
    breaks, needles = ERRORS[case]
    breaks(corpus)
    data = tmp_path / "out" / "data"
    r = run(["--corpus-dir", corpus, "--data-dir", data], tmp_path)
    assert_failed(r, data, *needles(corpus))
    assert len([line for line in r.stderr.splitlines() if "ERROR" in line]) == 1


@pytest.mark.parametrize("args, needle", [
    (["--eval-fraction", "0"], "--eval-fraction"),
    (["--eval-fraction", "0.6", "--dev-fraction", "0.4"], "--dev-fraction"),
    (["--seed", "-1"], "--seed"),
    (["--eval-fraction", "0.01"], "fewer than 2 eval speakers"),
    (["--dev-fraction", "0.01"], "no dev speaker"),
])
def test_bad_options(tmp_path, corpus, args, needle):
    data = tmp_path / "data"
    assert_failed(run(["--corpus-dir", corpus, "--data-dir", data, *args], tmp_path), data,
                  needle)


def test_failed_rerun_leaves_the_old_dirs(tmp_path, corpus):
    data = tmp_path / "data"
    prep(corpus, data, *SPLIT)
    before = snapshot(data)
    (corpus / "WAVE" / "SPEAKER0022" / f"{U}.flac").unlink()
    assert run(["--corpus-dir", corpus, "--data-dir", data], tmp_path).returncode == 1
    assert snapshot(data) == before


# --------------------------------------------------------------------------- the real corpus


@pytest.mark.skipif(not (REAL / "train").is_dir(), reason=f"{REAL} not present")
def test_real_corpus(tmp_path):
    """125 speakers x 20 utterances: 90 / 10 / 25 speakers, every stratum in eval."""
    data = tmp_path / "data"
    prep(REAL, data)
    sets = {name: {f: table(data / name / f) for f in FILES} for name in SETS}
    for name in SETS:
        assert validate_data_dir(data / name) == []
    assert {n: len(s["spk2utt"]) for n, s in sets.items()} == {"train": 90, "dev": 10,
                                                               "eval": 25}
    assert {n: len(s["utt2spk"]) for n, s in sets.items()} == {"train": 1800, "dev": 200,
                                                               "eval": 500}
    assert len(set().union(*(s["spk2utt"] for s in sets.values()))) == 125
    # Strata of the train split: child f 22, child m 30, teen f 4, teen m 2, adult f 41,
    # adult m 26; eval takes 0.2 of each by largest remainders, dev 0.08.
    assert strata(sets["eval"]) == Counter({"child f": 5, "child m": 6, "teen f": 1,
                                            "adult f": 8, "adult m": 5})
    assert strata(sets["dev"]) == Counter({"child f": 2, "child m": 3, "adult f": 3,
                                           "adult m": 2})
    assert all(path.startswith(f"{REAL}/WAVE/SPEAKER")
               for path in sets["eval"]["wav.scp"].values())
