"""Kaldi data dirs: map I/O, DataDir, validation of each problem, fix, shell wrappers."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path

import pytest

from deepspeaker.data import (DataDir, DataDirError, Problem, fix_data_dir, read_kaldi_map,
                              spk2utt_from_utt2spk, validate_data_dir, write_kaldi_map)

ROOT = Path(__file__).resolve().parents[1]

# A consistent dir: 2 speakers, 4 utterances, feature-stage outputs for all.
GOOD = {
    "wav.scp": "spkA-u1 /a/1.wav\nspkA-u2 /a/2.wav\nspkB-u1 cat /b/1.wav |\nspkB-u2 /b/2.wav\n",
    "utt2spk": "spkA-u1 spkA\nspkA-u2 spkA\nspkB-u1 spkB\nspkB-u2 spkB\n",
    "spk2utt": "spkA spkA-u1 spkA-u2\nspkB spkB-u1 spkB-u2\n",
    "utt2dur": "spkA-u1 1.5\nspkA-u2 2\nspkB-u1 0.75\nspkB-u2 3.25\n",
    "feats.scp": "spkA-u1 f.ark:10\nspkA-u2 f.ark:20\nspkB-u1 f.ark:30\nspkB-u2 f.ark:40\n",
    "vad.scp": "spkA-u1 v.ark:10\nspkA-u2 v.ark:20\nspkB-u1 v.ark:30\nspkB-u2 v.ark:40\n",
    "utt2num_frames": "spkA-u1 148\nspkA-u2 198\nspkB-u1 73\nspkB-u2 323\n",
}


def make_dir(path: Path, files: dict[str, str], **changes: str | None) -> Path:
    """Write ``files`` (file name -> text) into ``path``; ``changes`` override or drop
    (None) files, with '_' in the keyword standing for '.' (``feats_scp=...``)."""
    files = dict(files)
    for key, text in changes.items():
        name = key.replace("_scp", ".scp")
        if text is None:
            files.pop(name, None)
        else:
            files[name] = text
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_bytes(text.encode("utf-8"))
    return path


def find(problems: list[Problem], name: str, line: int | None, utt: str | None, text: str,
         severity: str = "error") -> Problem:
    """The problem of file ``name`` at ``line`` for ``utt`` whose message has ``text``."""
    for p in problems:
        if (Path(p.file).name == name and p.line == line and p.utt == utt
                and text in p.message and p.severity == severity):
            return p
    pytest.fail(f"no {severity} {name}:{line}: {utt}: ...{text}... in\n"
                + "\n".join(f"{p.severity}: {p}" for p in problems))


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


# --------------------------------------------------------------------------- maps

def test_read_kaldi_map_keeps_order_and_rest_of_line(tmp_path):
    p = tmp_path / "wav.scp"
    p.write_text("b  sox x.wav -t wav - |  \na\t/x y.wav\n")
    assert read_kaldi_map(p) == {"b": "sox x.wav -t wav - |", "a": "/x y.wav"}
    assert list(read_kaldi_map(p)) == ["b", "a"]


@pytest.mark.parametrize("text, num_fields, where, message", [
    ("u1 a\nu2 b\nu1 c\n", None, ":3: u1: ", "duplicate id (first on line 1)"),
    ("u1 a\n\nu2 b\n", None, ":2: ", "empty line"),
    ("u1 a\nu2\n", None, ":2: u2: ", "missing field"),
    ("u1 r 0 1\nu2 r 0\n", 4, ":2: u2: ", "expected 4 fields, found 3"),
])
def test_read_kaldi_map_errors_name_file_and_line(tmp_path, text, num_fields, where, message):
    p = tmp_path / "f"
    p.write_text(text)
    with pytest.raises(DataDirError) as e:
        read_kaldi_map(p, num_fields=num_fields)
    assert str(e.value).startswith(f"{p}{where}")
    assert message in str(e.value)


def test_read_kaldi_map_missing_file(tmp_path):
    with pytest.raises(DataDirError, match="nope: file not found"):
        read_kaldi_map(tmp_path / "nope")


def test_write_kaldi_map_sorts_bytewise_and_round_trips(tmp_path):
    m = {"b": "2", "a": "1", "B": "3", "\u00e9t\u00e9": "4", "a_1": "5", "a-1": "6"}
    p = tmp_path / "sub" / "m"
    write_kaldi_map(p, m)
    keys = [line.split()[0] for line in p.read_text("utf-8").splitlines()]
    # LC_ALL=C order: '-' < 'B' < '_' < 'a' < 'b' < 0xC3 (UTF-8 of e-acute)
    assert keys == ["B", "a", "a-1", "a_1", "b", "\u00e9t\u00e9"]
    assert read_kaldi_map(p) == m
    assert [f.name for f in p.parent.iterdir()] == ["m"]  # no temp file left


def test_write_kaldi_map_refuses_unreadable_content(tmp_path):
    with pytest.raises(DataDirError, match="ids must be non-empty"):
        write_kaldi_map(tmp_path / "m", {"a b": "x"})
    with pytest.raises(DataDirError, match="empty or spans several lines"):
        write_kaldi_map(tmp_path / "m", {"a": ""})
    assert not (tmp_path / "m").exists()


def test_spk2utt_from_utt2spk():
    assert spk2utt_from_utt2spk({"s2-b": "s2", "s1-b": "s1", "s2-a": "s2", "s1-a": "s1"}) == {
        "s1": ["s1-a", "s1-b"], "s2": ["s2-a", "s2-b"]}


# --------------------------------------------------------------------------- DataDir

def test_load_write_round_trip(tmp_path):
    src = make_dir(tmp_path / "src", GOOD, segments=None,
                   failed_utts="spkC-u1 too short: 100 samples\n")
    d = DataDir.load(src)
    assert d.utts == ["spkA-u1", "spkA-u2", "spkB-u1", "spkB-u2"]
    assert d.speakers == ["spkA", "spkB"]
    assert d.spk2utt == {"spkA": ["spkA-u1", "spkA-u2"], "spkB": ["spkB-u1", "spkB-u2"]}
    assert d.utt2dur["spkA-u2"] == 2.0 and d.utt2num_frames["spkB-u2"] == 323
    assert d.wav_scp["spkB-u1"] == "cat /b/1.wav |"
    assert d.segments is None
    d.write(tmp_path / "dst")
    again = DataDir.load(tmp_path / "dst")
    assert again.path == tmp_path / "dst"
    again.path = src
    assert again == d
    # Everything but the float formatting of utt2dur is byte-identical.
    for name in GOOD:
        if name != "utt2dur":
            assert (tmp_path / "dst" / name).read_text() == GOOD[name], name


def test_load_write_segments_round_trip(tmp_path):
    src = make_dir(tmp_path / "src", {
        "wav.scp": "rec1 /r1.wav\n", "utt2spk": "s-1 s\ns-2 s\n", "spk2utt": "s s-1 s-2\n",
        "segments": "s-1 rec1 0.00 1.25\ns-2 rec1 1.25 -1\n"})
    d = DataDir.load(src)
    assert d.segments == {"s-1": ("rec1", 0.0, 1.25), "s-2": ("rec1", 1.25, -1.0)}
    d.write(tmp_path / "dst")
    assert (tmp_path / "dst" / "segments").read_text() == "s-1 rec1 0 1.25\ns-2 rec1 1.25 -1\n"
    assert DataDir.load(tmp_path / "dst").segments == d.segments


def test_load_builds_missing_spk2utt_and_rejects_bad_numbers(tmp_path):
    d = DataDir.load(make_dir(tmp_path / "a", GOOD, spk2utt=None))
    assert d.spk2utt == {"spkA": ["spkA-u1", "spkA-u2"], "spkB": ["spkB-u1", "spkB-u2"]}
    bad = make_dir(tmp_path / "b", GOOD, utt2dur="spkA-u1 1.5\nspkA-u2 abc\n")
    with pytest.raises(DataDirError) as e:
        DataDir.load(bad)
    assert str(e.value) == f"{bad}/utt2dur:2: spkA-u2: duration 'abc' is not a number"
    bad = make_dir(tmp_path / "c", GOOD, utt2num_frames="spkA-u1 1.5\n")
    with pytest.raises(DataDirError, match=r"utt2num_frames:1: spkA-u1: frame count '1.5'"):
        DataDir.load(bad)
    with pytest.raises(DataDirError, match=r"c2/utt2spk: required file is missing"):
        DataDir.load(make_dir(tmp_path / "c2", GOOD, utt2spk=None))


def test_write_removes_stale_known_files_only(tmp_path):
    dst = make_dir(tmp_path / "dst", {"feats.scp": "old x\n", "text": "old y\n",
                                      "notes": "keep me\n"})
    d = DataDir.load(make_dir(tmp_path / "src", GOOD, feats_scp=None))
    d.write(dst)
    # text is a file of the table (FILE_KINDS), so a stale one goes too; notes is not.
    assert not (dst / "feats.scp").exists() and not (dst / "text").exists()
    assert (dst / "notes").read_text() == "keep me\n"


def test_line_of(tmp_path):
    d = DataDir.load(make_dir(tmp_path / "d", GOOD))
    assert d.line_of("wav.scp", "spkB-u1") == 3
    assert d.line_of("wav.scp", "nope") is None
    assert d.line_of("segments", "spkB-u1") is None


# --------------------------------------------------------------------------- validate

def test_good_dir_has_no_problems(tmp_path):
    d = make_dir(tmp_path / "d", GOOD)
    assert validate_data_dir(d, need=("feats.scp", "vad.scp")) == []


def test_missing_required_files(tmp_path):
    d = make_dir(tmp_path / "d", GOOD, wav_scp=None, vad_scp=None)
    problems = validate_data_dir(d, need=("feats.scp", "vad.scp"))
    assert str(find(problems, "wav.scp", None, None, "required file is missing")) == \
        f"{d}/wav.scp: required file is missing"
    find(problems, "vad.scp", None, None, "required file is missing")
    assert validate_data_dir(tmp_path / "nope")[0].message == "data directory not found"


def test_unsorted_reports_first_out_of_order_line(tmp_path):
    d = make_dir(tmp_path / "d", GOOD,
                 utt2spk="spkA-u1 spkA\nspkB-u1 spkB\nspkA-u2 spkA\nspkB-u2 spkB\n")
    problems = validate_data_dir(d)
    p = find(problems, "utt2spk", 3, "spkA-u2", "not sorted")
    assert str(p) == (f"{d}/utt2spk:3: spkA-u2: file is not sorted: this id comes after "
                      "'spkB-u1' (sort with LC_ALL=C)")
    assert len(errors(problems)) == 1


def test_duplicate_id(tmp_path):
    d = make_dir(tmp_path / "d", GOOD, wav_scp=GOOD["wav.scp"] + "spkB-u2 /again.wav\n")
    problems = validate_data_dir(d)
    assert str(find(problems, "wav.scp", 5, "spkB-u2", "duplicate")) == \
        f"{d}/wav.scp:5: spkB-u2: duplicate id (first on line 4)"
    assert len(errors(problems)) == 1


def test_empty_line_and_missing_field(tmp_path):
    d = make_dir(tmp_path / "d", GOOD, spk2utt="spkA spkA-u1 spkA-u2\n\nspkB spkB-u1 spkB-u2\n",
                 feats_scp="spkA-u1 f.ark:10\nspkA-u2\nspkB-u1 f.ark:30\nspkB-u2 f.ark:40\n",
                 utt2dur="spkA-u1 1.5\nspkA-u2 2 3\nspkB-u1 0.75\nspkB-u2 3.25\n")
    problems = validate_data_dir(d)
    find(problems, "spk2utt", 2, None, "empty line")
    find(problems, "feats.scp", 2, "spkA-u2", "missing field")
    find(problems, "utt2dur", 2, "spkA-u2", "expected 2 fields, found 3")
    assert len(errors(problems)) == 3


def test_utt2spk_and_spk2utt_disagree(tmp_path):
    d = make_dir(tmp_path / "d", GOOD, spk2utt="spkA spkA-u1 spkB-u1\nspkB spkB-u2 spkC-u9\n")
    problems = validate_data_dir(d)
    find(problems, "spk2utt", 1, "spkB-u1",
         "listed under speaker 'spkA' but utt2spk (line 3) maps it to 'spkB'")
    find(problems, "spk2utt", 2, "spkC-u9", "listed under speaker 'spkB' but not in utt2spk")
    find(problems, "utt2spk", 2, "spkA-u2", "spk2utt does not list this utterance")
    assert len(errors(problems)) == 3


def test_utt2spk_and_wav_scp_disagree(tmp_path):
    d = make_dir(tmp_path / "d", GOOD,
                 wav_scp="spkA-u1 /a/1.wav\nspkA-u2 /a/2.wav\nspkB-u2 /b/2.wav\nspkC-u1 /c.wav\n")
    problems = validate_data_dir(d)
    find(problems, "utt2spk", 3, "spkB-u1", "no wav.scp entry")
    find(problems, "wav.scp", 4, "spkC-u1", "not in utt2spk")
    assert len(errors(problems)) == 2


SEGMENTED = {
    "wav.scp": "recA /a.wav\nrecB /b.wav\nrecC /c.wav\n",
    "segments": "spkA-1 recA 0 1.5\nspkA-2 recA 1.5 -1\nspkB-1 recB 0.2 0.9\n",
    "utt2spk": "spkA-1 spkA\nspkA-2 spkA\nspkB-1 spkB\n",
    "spk2utt": "spkA spkA-1 spkA-2\nspkB spkB-1\n",
}


def test_segments_problems(tmp_path):
    good = make_dir(tmp_path / "good", SEGMENTED, wav_scp="recA /a.wav\nrecB /b.wav\n")
    assert validate_data_dir(good) == []
    d = make_dir(tmp_path / "d", SEGMENTED,
                 segments="spkA-1 recA 1.5 1.5\nspkA-2 recX 1.5 -1\nspkB-1 recB -0.1 0.9\n"
                 "spkB-2 recB 1 2\n")
    problems = validate_data_dir(d)
    find(problems, "segments", 1, "spkA-1", "segment start 1.5 is not before its end 1.5")
    find(problems, "segments", 2, "spkA-2", "recording 'recX' is not in wav.scp")
    find(problems, "segments", 3, "spkB-1", "segment start -0.1 is negative")
    find(problems, "segments", 4, "spkB-2", "not in utt2spk")
    find(problems, "wav.scp", 3, "recC", "recording used by no segment", "warning")
    assert len(errors(problems)) == 4
    d2 = make_dir(tmp_path / "d2", SEGMENTED, segments="spkA-1 recA 0 1.5\nspkB-1 recB 0 x\n")
    problems = validate_data_dir(d2)
    find(problems, "utt2spk", 2, "spkA-2", "no segments entry")
    find(problems, "segments", 2, "spkB-1", "segment end time 'x' is not a number")


def test_utt2dur_problems(tmp_path):
    d = make_dir(tmp_path / "d", GOOD,
                 utt2dur="spkA-u1 0\nspkA-u2 -1\nspkB-u1 nan\nspkB-u2 3.25\n")
    problems = validate_data_dir(d)
    find(problems, "utt2dur", 1, "spkA-u1", "duration must be > 0, found 0")
    find(problems, "utt2dur", 2, "spkA-u2", "duration must be > 0, found -1")
    find(problems, "utt2dur", 3, "spkB-u1", "duration 'nan' is not a number")
    assert len(errors(problems)) == 3


@pytest.mark.parametrize("name", ["feats.scp", "vad.scp", "utt2num_frames"])
def test_stage_outputs_against_utt2spk(tmp_path, name):
    lines = GOOD[name].splitlines(keepends=True)
    text = lines[0] + lines[1] + lines[3] + "spkC-u1 9\n"  # spkB-u1 missing, spkC-u1 extra
    d = make_dir(tmp_path / "d", GOOD, failed_utts="spkB-u1 too short: 120 samples\n",
                 **{name.replace(".", "_"): text})
    problems = validate_data_dir(d)
    find(problems, name, 4, "spkC-u1", "not in utt2spk")
    p = find(problems, name, None, "spkB-u1", "missing (utt2spk line 3 has it)", "warning")
    assert p.message.endswith("failed_utts line 1: too short: 120 samples")
    assert len(errors(problems)) == 1
    # Without failed_utts the warning has no reason, and it is still a warning.
    (d / "failed_utts").unlink()
    p = find(validate_data_dir(d), name, None, "spkB-u1", "missing", "warning")
    assert "failed_utts" not in p.message


def test_failed_utt_that_has_features_is_a_warning(tmp_path):
    d = make_dir(tmp_path / "d", GOOD, failed_utts="spkA-u2 silence\n")
    find(validate_data_dir(d), "failed_utts", 1, "spkA-u2", "feats.scp has it", "warning")


def test_speaker_not_prefix_is_a_warning(tmp_path):
    d = make_dir(tmp_path / "d", {"wav.scp": "u1 /1.wav\nu2 /2.wav\n",
                                  "utt2spk": "u1 spkA\nu2 spkA\n", "spk2utt": "spkA u1 u2\n"})
    problems = validate_data_dir(d)
    assert [p.severity for p in problems] == ["warning", "warning"]
    find(problems, "utt2spk", 2, "u2", "speaker id 'spkA' is not a prefix", "warning")


def test_whitespace_problems(tmp_path):
    d = make_dir(tmp_path / "d", GOOD,
                 utt2spk="spkA-u1 spkA\r\n spkA-u2 spkA\nspkB-u1 spkB \nspkB-u2 spkB\n",
                 wav_scp="spkA-u1 /a/1.wav\nspkA-u2 /a/2 x.wav\nspkB-u1 cat /b/1.wav |\n"
                 "spkB-u2 /b/2.wav\nspkB\u00a0u3 /b/3.wav\n")
    problems = validate_data_dir(d)
    find(problems, "utt2spk", 1, None, "carriage return")
    find(problems, "utt2spk", 2, "spkA-u2", "line starts with whitespace")
    find(problems, "utt2spk", 3, "spkB-u1", "trailing whitespace", "warning")
    find(problems, "wav.scp", 2, "spkA-u2", "has spaces but does not end in '|'", "warning")
    find(problems, "wav.scp", 5, "spkB\u00a0u3", "whitespace or control character U+00A0")


def test_validation_collects_all_problems(tmp_path):
    d = make_dir(tmp_path / "d", GOOD, utt2spk="spkB-u1 spkB\nspkA-u1 spkA\nspkA-u1 spkA\n",
                 utt2dur="spkA-u1 -1\n", feats_scp=None, vad_scp=None, utt2num_frames=None)
    assert len(errors(validate_data_dir(d))) >= 5


def test_dir_without_errors_loads(tmp_path):
    # Warnings only: trailing whitespace, no spk2utt, utterances without features.
    d = make_dir(tmp_path / "d", GOOD, utt2spk="spkA-u1 spkA\nspkA-u2 spkA  \n"
                 "spkB-u1 spkB\nspkB-u2 spkB\n", spk2utt=None, feats_scp="spkA-u1 f.ark:1\n")
    problems = validate_data_dir(d)
    assert len(problems) == 5 and not errors(problems)
    loaded = DataDir.load(d)
    assert loaded.utt2spk["spkA-u2"] == "spkA"
    assert loaded.spk2utt["spkB"] == ["spkB-u1", "spkB-u2"]


# --------------------------------------------------------------------------- fix

def test_fix_filters_to_common_ids(tmp_path, caplog):
    src = make_dir(tmp_path / "src", GOOD,
                   wav_scp=GOOD["wav.scp"] + "spkC-u1 /c/1.wav\n",             # no utt2spk
                   utt2spk="spkB-u1 spkB\n" + GOOD["utt2spk"].replace("spkB-u1 spkB\n", ""),
                   feats_scp=GOOD["feats.scp"].replace("spkA-u2 f.ark:20\n", ""),
                   vad_scp=GOOD["vad.scp"].replace("spkB-u1 v.ark:30\n", ""),
                   spk2utt="spkA spkA-u2\n", failed_utts="spkA-u2 silence\n")
    (src / "text").write_text("spkA-u1 hello\nspkC-u1 gone\n")
    (src / "spk2gender").write_text("spkA f\nspkB m\nspkC f\n")
    (src / "notes").write_text("not a Kaldi file\n")
    before = digest(src)
    with caplog.at_level(logging.INFO):
        fixed = fix_data_dir(src, tmp_path / "dst")
    assert digest(src) == before
    assert fixed.utts == ["spkA-u1", "spkB-u2"]
    assert fixed.spk2utt == {"spkA": ["spkA-u1"], "spkB": ["spkB-u2"]}
    assert fixed.path == tmp_path / "dst"
    dst = DataDir.load(tmp_path / "dst")
    assert dst == fixed
    assert list(dst.wav_scp) == ["spkA-u1", "spkB-u2"]
    assert list(dst.feats_scp) == list(dst.vad_scp) == list(dst.utt2num_frames) == dst.utts
    assert dst.failed_utts == {"spkA-u2": "silence"}
    assert (tmp_path / "dst" / "spk2utt").read_text() == "spkA spkA-u1\nspkB spkB-u2\n"
    # Every file of the table is filtered: text by utterance, spk2gender by speaker.
    assert (tmp_path / "dst" / "text").read_text() == "spkA-u1 hello\n"
    assert (tmp_path / "dst" / "spk2gender").read_text() == "spkA f\nspkB m\n"
    assert not (tmp_path / "dst" / "notes").exists()
    log = caplog.text
    assert "dropped 1 utterance(s) not in utt2spk (e.g. spkC-u1)" in log
    assert "dropped 2 utterance(s) not in feats.scp (e.g. spkA-u2)" in log
    assert "dropped 2 utterance(s) not in vad.scp (e.g. spkB-u1)" in log
    assert "not copied" in log and "notes" in log
    assert "kept 2 of 5 utterance(s), 2 speaker(s)" in log
    assert not errors(validate_data_dir(tmp_path / "dst", need=("feats.scp", "vad.scp")))


def test_fix_segments_drops_unused_recordings_and_bad_segments(tmp_path, caplog):
    src = make_dir(tmp_path / "src", SEGMENTED,
                   segments="spkA-1 recA 0 1.5\nspkA-2 recX 1.5 -1\nspkB-1 recB 0.9 0.2\n")
    with caplog.at_level(logging.INFO):
        fixed = fix_data_dir(src, tmp_path / "dst")
    assert fixed.utts == ["spkA-1"]
    assert fixed.wav_scp == {"recA": "/a.wav"}
    assert "segment names a recording not in wav.scp" in caplog.text
    assert "invalid segment times" in caplog.text
    assert "dropped 2 recording(s) no kept segment uses" in caplog.text
    assert validate_data_dir(tmp_path / "dst") == []


def test_fix_in_place_keeps_a_backup_and_refuses_an_empty_result(tmp_path):
    # Kaldi's `fix_data_dir.sh DIR`: in place, the old files kept in DIR/.backup/.
    src = make_dir(tmp_path / "src", GOOD, wav_scp=GOOD["wav.scp"] + "spkC-u1 /c/1.wav\n")
    old = (src / "wav.scp").read_text()
    fixed = fix_data_dir(src)
    assert fixed.utts == DataDir.load(src).utts and "spkC-u1" not in (src / "wav.scp").read_text()
    assert (src / ".backup" / "wav.scp").read_text() == old
    assert validate_data_dir(src) == []
    assert fix_data_dir(src, tmp_path / "." / "src").utts == fixed.utts  # the same dir: in place
    bad = make_dir(tmp_path / "bad", GOOD, feats_scp="other f.ark:1\n")
    with pytest.raises(DataDirError, match="no utterance is present in every file"):
        fix_data_dir(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- shell wrappers

def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(["bash", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_shell_wrappers_exit_codes(tmp_path):
    good = make_dir(tmp_path / "good", GOOD)
    r = run_script("utils/validate_data_dir.sh", "--need", "feats.scp,vad.scp", str(good))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"{good}: OK (4 utterances, 2 speakers)"

    bad = make_dir(tmp_path / "bad", GOOD, vad_scp=GOOD["vad.scp"].replace("spkA-u2", "spkA-u3"))
    r = run_script("utils/validate_data_dir.sh", str(bad))
    assert r.returncode == 1
    assert f"error: {bad}/vad.scp:2: spkA-u3: not in utt2spk" in r.stdout.splitlines()
    assert r.stdout.splitlines()[-1] == f"{bad}: 1 error(s), 1 warning(s)"

    r = run_script("utils/validate_data_dir.sh", "--need", "feats.scp", str(tmp_path / "good"))
    assert r.returncode == 0
    warn = make_dir(tmp_path / "warn", GOOD, feats_scp="spkA-u1 f.ark:1\n")
    assert run_script("utils/validate_data_dir.sh", str(warn)).returncode == 0
    r = run_script("utils/validate_data_dir.sh", "--strict-warnings", str(warn))
    assert r.returncode == 1 and "3 warning(s)" in r.stdout

    r = run_script("utils/fix_data_dir.sh", str(bad), str(tmp_path / "fixed"))
    assert r.returncode == 0, r.stderr
    assert DataDir.load(tmp_path / "fixed").utts == ["spkA-u1", "spkB-u1", "spkB-u2"]
    r = run_script("utils/fix_data_dir.sh", str(bad))  # Kaldi's form: in place, with a backup
    assert r.returncode == 0, r.stderr
    assert DataDir.load(bad).utts == ["spkA-u1", "spkB-u1", "spkB-u2"]
    assert (bad / ".backup" / "utt2spk").is_file()
    # Kaldi's validate_data_dir.sh options: not required, but checked when present.
    nowav = make_dir(tmp_path / "nowav", GOOD, wav_scp=None)
    assert run_script("utils/validate_data_dir.sh", str(nowav)).returncode == 1
    r = run_script("utils/validate_data_dir.sh", "--no-feats", "--no-text", "--no-wav", str(nowav))
    assert r.returncode == 0 and r.stdout.strip() == f"{nowav}: OK", r.stdout
    r = run_script("utils/validate_data_dir.sh", "--no-feats", str(tmp_path / "good"))
    assert r.returncode == 0 and "OK (" in r.stdout
    badfeats = make_dir(tmp_path / "badfeats", GOOD, feats_scp="spkA-u1 f.ark:1\nspkA-u1 f.ark:2\n")
    r = run_script("utils/validate_data_dir.sh", "--no-feats", str(badfeats))
    assert r.returncode == 1 and "duplicate id" in r.stdout


def test_subset_speakers_nested_seeded_and_filtered(tmp_path):
    from deepspeaker.data.fix import subset_speakers

    spks = [f"s{i:02d}" for i in range(8)]
    utts = [f"{s}-u{j}" for s in spks for j in range(3)]
    src = tmp_path / "src"
    src.mkdir()
    (src / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
    (src / "utt2spk").write_text("".join(f"{u} {u[:3]}\n" for u in utts))
    (src / "feats.scp").write_text("".join(f"{u} /x/feats.ark:{i}\n" for i, u in enumerate(utts)))
    (src / "utt2num_frames").write_text("".join(f"{u} 100\n" for u in utts))
    (src / "spk2gender").write_text("".join(f"{s} {'mf'[i % 2]}\n" for i, s in enumerate(spks)))
    (src / "spk2age").write_text("".join(f"{s} {20 + i}\n" for i, s in enumerate(spks)))
    quarter = subset_speakers(src, tmp_path / "q", 0.25, seed=3)
    half = subset_speakers(src, tmp_path / "h", 0.5, seed=3)
    assert len(quarter.speakers) == 2 and len(half.speakers) == 4
    assert set(quarter.speakers) < set(half.speakers)            # nested
    assert subset_speakers(src, tmp_path / "h2", 0.5, seed=3).speakers == half.speakers
    assert subset_speakers(src, tmp_path / "h3", 0.5, seed=4).speakers != half.speakers
    back = DataDir.load(tmp_path / "h")
    assert sorted(back.feats_scp) == sorted(back.utt2spk) == sorted(
        u for u in utts if u[:3] in half.speakers)
    # The per-speaker files of the table are kept, filtered to the kept speakers.
    assert back.spk2gender == {s: "mf"[spks.index(s) % 2] for s in half.speakers}
    assert (tmp_path / "h" / "spk2age").read_text() == "".join(
        f"{s} {20 + spks.index(s)}\n" for s in half.speakers)
    assert validate_data_dir(tmp_path / "h") == []
    with pytest.raises(DataDirError, match="fraction must be in"):
        subset_speakers(src, tmp_path / "z", 0.0)
