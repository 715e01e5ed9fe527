"""egs/librispeech and egs/librispeech_mini data prep (local/prepare_data.py).

Tiny fake corpora in tmp_path with the exact layouts and metadata formats of the
real ones (LibriSpeech's ``<subset>/<spk>/<chapter>/*.flac`` and SPEAKERS.TXT,
librispeech-mini's ``<spk>/*_seg<k>.flac`` and SPEAKERS.tsv), made of short noise
flac files.  The scripts run as subprocesses, as the recipes run them: exact ids,
sorted and valid data dirs, disjoint speakers, a reproducible sex-stratified split
with 1-segment speakers kept out of eval; for each kind of bad input, exit code 1,
a message naming the path, and nothing written (no data dir, no temp dir, or the
previous dirs untouched).  One test runs the mini prep on the real corpus when it
is there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf
from corpus_trees import (
    LS_ARGS,
    LS_SETS,
    LS_TREE,
    MINI,
    READERS,
    SINGLE,
    SPEAKERS_TXT_HEAD,
    ls_expected,
    make_librispeech,
    make_mini,
    mini_utt,
    snapshot,
    speakers_txt_line,
    write_flac,
)
from prep_checks import assert_failed, ok, table
from prep_checks import run_prep as run

from deepspeaker.data import prep, validate_data_dir
from deepspeaker.data.kaldi_dir import sorted_ids
from deepspeaker.data.prep import DataPrepError

ROOT = Path(__file__).resolve().parents[1]
LS_SCRIPT = ROOT / "egs" / "librispeech" / "local" / "prepare_data.py"
MINI_SCRIPT = ROOT / "egs" / "librispeech_mini" / "local" / "prepare_data.py"
REAL_MINI = ROOT.parent / "shared" / "data" / "librispeech-mini"
SETS = ("train", "dev", "eval")
KALDI_FILES = ("wav.scp", "utt2spk", "spk2utt", "utt2dur", "spk2gender")


# --------------------------------------------------------------------------- helpers


def check_data_dir(d: Path) -> dict[str, dict[str, str]]:
    """The data dir is valid without even a warning; returns its files as tables."""
    problems = validate_data_dir(d)
    assert problems == [], [str(p) for p in problems]
    assert sorted(p.name for p in d.iterdir()) == sorted(KALDI_FILES)
    files = {name: table(d / name) for name in KALDI_FILES}
    for utt, spk in files["utt2spk"].items():
        assert utt.startswith(f"{spk}-"), utt
    assert set(files["spk2gender"]) == set(files["spk2utt"])
    assert set(files["spk2gender"].values()) <= {"m", "f"}
    for utt, path in files["wav.scp"].items():
        assert os.path.isabs(path) and Path(path).is_file() and Path(path).stem == utt
    for utt, dur in files["utt2dur"].items():
        assert float(dur) == sf.info(files["wav.scp"][utt]).duration
    return files


# --------------------------------------------------------------------------- LibriSpeech


@pytest.fixture
def librispeech(tmp_path):
    return make_librispeech(tmp_path / "corpus")


@pytest.mark.parametrize("point_at", ["parent", "LibriSpeech"])
def test_librispeech_layout(tmp_path, librispeech, point_at):
    corpus = librispeech.parent if point_at == "parent" else librispeech
    data = tmp_path / "data"
    ok(run(LS_SCRIPT, ["--corpus-dir", corpus, "--data-dir", data, *LS_ARGS], tmp_path))
    assert sorted(p.name for p in data.iterdir()) == sorted(SETS)  # no temp dir left
    sex = {spk: s.lower() for spk, s, _, _ in READERS}
    owners: dict[str, str] = {}
    for name, subset in LS_SETS.items():
        files = check_data_dir(data / name)
        want = ls_expected(librispeech, subset)
        assert list(files["utt2spk"]) == sorted_ids(want)
        assert files["wav.scp"] == {utt: str(path) for utt, path in want.items()}
        assert files["spk2gender"] == {spk: sex[spk] for spk in LS_TREE[subset]}
        for spk in files["spk2utt"]:
            assert owners.setdefault(spk, name) == name, f"{spk} in {owners[spk]} and {name}"
    train = table(data / "train" / "utt2spk")
    assert list(train) == ["103-1240-0000", "103-1240-0001", "1034-121119-0000",
                           "19-198-0000", "19-198-0001", "19-227-0000", "60-121082-0000"]
    assert list(table(data / "train" / "spk2utt")) == ["103", "1034", "19", "60"]
    assert table(data / "eval" / "spk2utt") == {
        "1089": "1089-134686-0000 1089-134691-0000", "121": "121-121726-0000 121-121726-0001"}
    assert table(data / "dev" / "utt2dur") == {"84-121123-0000": "0.85", "84-121123-0001": "0.9"}


def test_librispeech_relative_corpus_dir(tmp_path, librispeech):
    """wav.scp holds absolute paths even when --corpus-dir is relative."""
    ok(run(LS_SCRIPT, ["--corpus-dir", "corpus", "--data-dir", "data", *LS_ARGS], tmp_path))
    wav = table(tmp_path / "data" / "eval" / "wav.scp")
    assert wav["121-121726-0000"] == str(librispeech / "test-clean/121/121726/121-121726-0000.flac")


def test_librispeech_default_subsets_missing(tmp_path, librispeech):
    data = tmp_path / "data"
    r = run(LS_SCRIPT, ["--corpus-dir", librispeech.parent, "--data-dir", data], tmp_path)
    assert_failed(r, data, str(librispeech / "train-clean-360"),
                  "dev-clean, test-clean, train-clean-100")


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True)


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _shared_speaker(ls: Path) -> None:
    write_flac(ls / "test-clean/19/500/19-500-0000.flac", 8000, 99)


# name -> (how to break the corpus, what the message must name, relative to LibriSpeech/)
LS_ERRORS = {
    "empty speaker folder": (lambda ls: _mkdir(ls / "train-clean-100/200"),
                             ["train-clean-100/200"]),
    "speaker folder without flac chapters": (
        lambda ls: (_mkdir(ls / "dev-clean/251"), (ls / "dev-clean/251/notes.txt").write_text("x")),
        ["dev-clean/251"]),
    "empty chapter folder": (lambda ls: _mkdir(ls / "train-clean-100/19/999"),
                             ["train-clean-100/19/999"]),
    "chapter with transcript only": (
        lambda ls: (_mkdir(ls / "test-clean/121/5"), (ls / "test-clean/121/5/121-5.trans.txt")
                    .write_text("121-5-0000 A\n")), ["test-clean/121/5"]),
    "flac of another chapter": (
        lambda ls: shutil.copy(ls / "train-clean-100/19/198/19-198-0000.flac",
                               ls / "train-clean-100/19/198/19-199-0002.flac"),
        ["train-clean-100/19/198/19-199-0002.flac"]),
    "flac of another speaker": (
        lambda ls: shutil.copy(ls / "dev-clean/84/121123/84-121123-0000.flac",
                               ls / "dev-clean/84/121123/85-121123-0002.flac"),
        ["dev-clean/84/121123/85-121123-0002.flac"]),
    "flac not named by ids": (
        lambda ls: shutil.copy(ls / "dev-clean/84/121123/84-121123-0000.flac",
                               ls / "dev-clean/84/121123/take2.flac"),
        ["dev-clean/84/121123/take2.flac"]),
    "corrupt flac": (lambda ls: (ls / "test-clean/121/121726/121-121726-0003.flac")
                     .write_bytes(b"not audio"), ["test-clean/121/121726/121-121726-0003.flac"]),
    "speaker in train and eval": (_shared_speaker,
                                  ["speaker 19", "train-clean-100/19", "test-clean/19"]),
    "no SPEAKERS.TXT": (lambda ls: (ls / "SPEAKERS.TXT").unlink(), ["SPEAKERS.TXT"]),
    "SPEAKERS.TXT bad sex": (
        lambda ls: _append(ls / "SPEAKERS.TXT", speakers_txt_line("200", "X", "dev-clean", "N")),
        [f"SPEAKERS.TXT:{SPEAKERS_TXT_HEAD.count(chr(10)) + len(READERS) + 1}"]),
    "SPEAKERS.TXT short line": (
        lambda ls: _append(ls / "SPEAKERS.TXT", "200 | F | dev-clean\n"),
        [f"SPEAKERS.TXT:{SPEAKERS_TXT_HEAD.count(chr(10)) + len(READERS) + 1}"]),
    "SPEAKERS.TXT duplicate speaker": (
        lambda ls: _append(ls / "SPEAKERS.TXT", speakers_txt_line("84", "F", "dev-clean", "N")),
        [f"SPEAKERS.TXT:{SPEAKERS_TXT_HEAD.count(chr(10)) + len(READERS) + 1}", "84"]),
}


@pytest.mark.parametrize("case", list(LS_ERRORS))
def test_librispeech_errors(tmp_path, librispeech, case):
    breaks, needles = LS_ERRORS[case]
    breaks(librispeech)
    data = tmp_path / "out" / "data"
    r = run(LS_SCRIPT, ["--corpus-dir", librispeech.parent, "--data-dir", data, *LS_ARGS],
            tmp_path)
    assert_failed(r, data, *(str(librispeech / n) if "/" in n or n.startswith("SPEAKERS")
                             else n for n in needles))


def test_librispeech_corpus_dir_missing(tmp_path):
    data = tmp_path / "data"
    r = run(LS_SCRIPT, ["--corpus-dir", tmp_path / "nowhere", "--data-dir", data], tmp_path)
    assert_failed(r, data, str(tmp_path / "nowhere"))


def test_librispeech_speaker_not_in_speakers_txt(tmp_path, librispeech):
    """A warning naming the speaker's folder; that set gets no (partial) spk2gender."""
    txt = librispeech / "SPEAKERS.TXT"
    txt.write_text("".join(line for line in txt.read_text().splitlines(keepends=True)
                           if not line.startswith("1089 ")))
    data = tmp_path / "data"
    r = ok(run(LS_SCRIPT, ["--corpus-dir", librispeech.parent, "--data-dir", data, *LS_ARGS],
               tmp_path))
    assert "WARNING" in r.stderr and str(librispeech / "test-clean/1089") in r.stderr
    assert not (data / "eval" / "spk2gender").exists()
    assert validate_data_dir(data / "eval") == []
    assert (data / "train" / "spk2gender").is_file()


def test_librispeech_rerun_replaces_dirs(tmp_path, librispeech):
    data = tmp_path / "data"
    args = ["--corpus-dir", librispeech.parent, "--data-dir", data, *LS_ARGS]
    ok(run(LS_SCRIPT, args, tmp_path))
    first = snapshot(data)
    # Outputs of later stages and a stray file: a new data prep must not keep them.
    (data / "train" / "feats.scp").write_text("103-1240-0000 x.ark:9\n")
    (data / "train" / ".fbank_vad.done").write_text("")
    (data / "eval" / "trials").write_text("a b target\n")
    ok(run(LS_SCRIPT, args, tmp_path))
    assert snapshot(data) == first
    # No dev set asked for: the old one goes, it could hold speakers of the new train.
    ok(run(LS_SCRIPT, [*args, "--dev-subsets", ""], tmp_path))
    assert sorted(p.name for p in data.iterdir()) == ["eval", "train"]
    # A failing rerun leaves the previous dirs exactly as they were.
    before = snapshot(data)
    _shared_speaker(librispeech)
    r = run(LS_SCRIPT, args, tmp_path)
    assert r.returncode == 1 and "speaker 19" in r.stderr
    assert snapshot(data) == before
    assert sorted(p.name for p in data.iterdir()) == ["eval", "train"]


# --------------------------------------------------------------------------- librispeech-mini

def tsv_line(spk: str) -> int:
    return list(MINI).index(spk) + 2


@pytest.fixture
def mini(tmp_path):
    return make_mini(tmp_path / "librispeech-mini")


def mini_sets(data: Path) -> dict[str, dict[str, dict[str, str]]]:
    """Set name -> its files as tables, for every set written (checked valid)."""
    return {name: check_data_dir(data / name) for name in SETS if (data / name).exists()}


def test_mini_split(tmp_path, mini):
    data = tmp_path / "data"
    ok(run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", data, "--eval-fraction", "0.4",
                         "--dev-fraction", "0.2", "--seed", "0"], tmp_path))
    assert sorted(p.name for p in data.iterdir()) == sorted(SETS)
    sets = mini_sets(data)
    all_utts = {mini_utt(spk, k): mini / spk / f"{mini_utt(spk, k)}.flac"
                for spk, (_, _, segs) in MINI.items() for k in segs}
    assert sorted(u for s in sets.values() for u in s["utt2spk"]) == sorted(all_utts)
    spk_sets = {name: set(s["spk2utt"]) for name, s in sets.items()}
    assert set.union(*spk_sets.values()) == set(MINI)
    assert sum(len(v) for v in spk_sets.values()) == len(MINI)  # disjoint
    for name, s in sets.items():
        assert s["wav.scp"] == {u: str(all_utts[u]) for u in s["utt2spk"]}
        assert s["spk2gender"] == {spk: MINI[spk][0].lower() for spk in s["spk2utt"]}
        for spk, utts in s["spk2utt"].items():
            assert utts.split() == sorted_ids(mini_utt(spk, k) for k in MINI[spk][2])
    # round(0.4 * 6) = 2 eval and round(0.2 * 6) = 1 dev speaker of each sex.
    counts = {name: sorted(s["spk2gender"].values()) for name, s in sets.items()}
    assert counts == {"train": ["f"] * 3 + ["m"] * 3, "dev": ["f", "m"],
                      "eval": ["f", "f", "m", "m"]}
    assert SINGLE <= spk_sets["train"]
    for name in ("dev", "eval"):
        assert all(len(MINI[spk][2]) >= 2 for spk in spk_sets[name])


def test_mini_split_is_reproducible(tmp_path, mini):
    def split(seed: int, out: str) -> dict[str, str]:
        ok(run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", tmp_path / out,
                             "--dev-fraction", "0.2", "--seed", seed], tmp_path))
        return snapshot(tmp_path / out)

    first = split(0, "a")
    assert split(0, "b") == first
    evals = {seed: table(tmp_path / f"s{seed}" / "eval" / "spk2gender")
             for seed in (1, 2, 3) if split(seed, f"s{seed}")}
    assert any(e != table(tmp_path / "a" / "eval" / "spk2gender") for e in evals.values())
    for e in evals.values():  # whatever the seed: stratified, 1-segment speakers train
        assert sorted(e.values()) == ["f", "f", "m", "m"] and not SINGLE & set(e)


def test_mini_one_segment_speakers_always_train(tmp_path, mini):
    """Asked for more eval speakers than have two segments: all of them, and a warning."""
    data = tmp_path / "data"
    r = ok(run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", data, "--eval-fraction", "0.95"],
               tmp_path))
    assert "only 5 with >= 2 segments" in r.stderr
    assert set(table(data / "train" / "spk2utt")) == SINGLE
    assert len(table(data / "eval" / "spk2utt")) == 10


def test_mini_rerun_replaces_dirs(tmp_path, mini):
    data = tmp_path / "data"
    ok(run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", data, "--dev-fraction", "0.2"],
           tmp_path))
    (data / "eval" / "trials").write_text("a b target\n")
    (data / "train" / ".fbank_vad.done").write_text("")
    # --dev-fraction 0 (the default): no dev set, and the old one is removed.
    ok(run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", data], tmp_path))
    assert sorted(p.name for p in data.iterdir()) == ["eval", "train"]
    assert sorted(p.name for p in (data / "eval").iterdir()) == sorted(KALDI_FILES)
    assert not (data / "train" / ".fbank_vad.done").exists()
    fresh = tmp_path / "fresh"
    ok(run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", fresh], tmp_path))
    assert snapshot(data) == snapshot(fresh)
    # A failing rerun leaves the previous dirs exactly as they were.
    before = snapshot(data)
    (mini / "27" / f"{mini_utt('27', 3)}.flac").unlink()
    assert run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", data], tmp_path).returncode == 1
    assert snapshot(data) == before
    assert sorted(p.name for p in data.iterdir()) == ["eval", "train"]


def _rewrite_tsv(mini: Path, old: str, new: str) -> None:
    tsv = mini / "SPEAKERS.tsv"
    text = tsv.read_text()
    assert old in text
    tsv.write_text(text.replace(old, new, 1))


# name -> (how to break the corpus, what the message must name, relative to the corpus)
MINI_ERRORS = {
    "segment missing (n_utts differs)": (
        lambda m: (m / "27" / f"{mini_utt('27', 3)}.flac").unlink(),
        [f"SPEAKERS.tsv:{tsv_line('27')}", "27"]),
    "flac in another speaker's folder": (
        lambda m: (m / "27" / f"{mini_utt('27', 3)}.flac").rename(
            m / "1034" / f"{mini_utt('27', 3)}.flac"),
        [f"1034/{mini_utt('27', 3)}.flac"]),
    "flac not named by ids": (
        lambda m: (m / "40" / f"{mini_utt('40', 3)}.flac").rename(m / "40" / "40-222-0000.flac"),
        ["40/40-222-0000.flac"]),
    "speaker folder not in SPEAKERS.tsv": (
        lambda m: write_flac(m / "999" / "999-1-0000_seg0.flac", 8000, 7), ["999"]),
    "empty speaker folder": (lambda m: (shutil.rmtree(m / "1069"), _mkdir(m / "1069")),
                             ["1069"]),
    "speaker without folder": (lambda m: shutil.rmtree(m / "118"),
                               [f"SPEAKERS.tsv:{tsv_line('118')}", "118"]),
    "header without n_utts": (lambda m: _rewrite_tsv(m, "\tn_utts\t", "\tcount\t"),
                              ["SPEAKERS.tsv:1", "n_utts"]),
    "header without gender": (lambda m: _rewrite_tsv(m, "\tgender\t", "\tg\t"),
                              ["SPEAKERS.tsv:1", "gender"]),
    "bad gender": (lambda m: _rewrite_tsv(m, "200\tM\t", "200\tX\t"),
                   [f"SPEAKERS.tsv:{tsv_line('200')}"]),
    "short row": (lambda m: _rewrite_tsv(m, "Reader 200\t3\t", "Reader 200\t"),
                  [f"SPEAKERS.tsv:{tsv_line('200')}"]),
    "no SPEAKERS.tsv": (lambda m: (m / "SPEAKERS.tsv").unlink(), ["SPEAKERS.tsv"]),
    "corrupt flac": (lambda m: (m / "32" / f"{mini_utt('32', 2)}.flac").write_bytes(b"RIFF"),
                     [f"32/{mini_utt('32', 2)}.flac"]),
}


@pytest.mark.parametrize("case", list(MINI_ERRORS))
def test_mini_errors(tmp_path, mini, case):
    breaks, needles = MINI_ERRORS[case]
    breaks(mini)
    data = tmp_path / "out" / "data"
    r = run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", data], tmp_path)
    assert_failed(r, data, *(str(mini / n) if "/" in n or n.startswith("SPEAKERS") else n
                             for n in needles))


@pytest.mark.parametrize("args, needle", [
    (["--eval-fraction", "0"], "--eval-fraction"),
    (["--eval-fraction", "0.6", "--dev-fraction", "0.4"], "--dev-fraction"),
    (["--seed", "-1"], "--seed"),
    (["--eval-fraction", "0.01"], "fewer than 2 eval speakers"),
])
def test_mini_bad_options(tmp_path, mini, args, needle):
    data = tmp_path / "data"
    r = run(MINI_SCRIPT, ["--corpus-dir", mini, "--data-dir", data, *args], tmp_path)
    assert_failed(r, data, needle)


def test_mini_failure_while_writing_leaves_old_dirs(tmp_path, mini, monkeypatch):
    """A set that fails to publish after another succeeded: no set is replaced."""
    spec = importlib.util.spec_from_file_location("librispeech_mini_prepare_data", MINI_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    data = tmp_path / "data"
    module.prepare_librispeech_mini(mini, data, dev_fraction=0.2, seed=0)
    before = snapshot(data)
    real_write = prep._write_checked

    def write_but_eval(tmp, path, *args, **kwargs):
        if Path(path).name == "eval":
            raise DataPrepError(f"{path}: disk full (simulated)")
        return real_write(tmp, path, *args, **kwargs)

    # publish_sets writes every set (train and dev first) before it moves any into place.
    monkeypatch.setattr(prep, "_write_checked", write_but_eval)
    with pytest.raises(DataPrepError, match="simulated"):
        module.prepare_librispeech_mini(mini, data, dev_fraction=0.0, seed=1)
    assert snapshot(data) == before
    assert sorted(p.name for p in data.iterdir()) == sorted(SETS)
    fresh = tmp_path / "new" / "data"
    with pytest.raises(DataPrepError, match="simulated"):
        module.prepare_librispeech_mini(mini, fresh)
    assert not (tmp_path / "new").exists()


def test_mini_corpus_dir_missing(tmp_path):
    data = tmp_path / "data"
    r = run(MINI_SCRIPT, ["--corpus-dir", tmp_path / "nowhere", "--data-dir", data], tmp_path)
    assert_failed(r, data, str(tmp_path / "nowhere"))


@pytest.mark.skipif(not REAL_MINI.is_dir(), reason=f"{REAL_MINI} not present")
def test_mini_real_corpus(tmp_path):
    """The real corpus through the default --corpus-dir: everything used, eval usable."""
    data = tmp_path / "data"
    r = ok(run(MINI_SCRIPT, ["--data-dir", data], tmp_path))
    assert "data/eval: 100 speakers (50 f, 50 m)" in r.stderr
    assert sorted(p.name for p in data.iterdir()) == ["eval", "train"]
    sets = mini_sets(data)
    assert sum(len(s["spk2utt"]) for s in sets.values()) == 251
    assert sum(len(s["utt2spk"]) for s in sets.values()) == 552
    assert not set(sets["train"]["spk2utt"]) & set(sets["eval"]["spk2utt"])
    assert min(len(utts.split()) for utts in sets["eval"]["spk2utt"].values()) >= 2
    assert all(path.startswith(f"{REAL_MINI}/")
               for path in sets["eval"]["wav.scp"].values())
