"""Issue 16, family 2: ids that are not UTF-8 are refused where they are read, naming file:line.

The rule (``deepspeaker.data.table``): every id must be valid UTF-8; only the value of
``wav.scp`` (an audio path or a command) may hold other bytes, kept as read.  Each test
drives a command a user runs and asserts the exit code, the message (file, line, the
byte and its column), that no traceback is printed and that nothing is left half-written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepspeaker.bin import (compute_fbank_vad, compute_metrics, fix_data_dir, score_embeddings,
                             validate_data_dir)
from deepspeaker.data import DataDirError, write_kaldi_map
from deepspeaker.data.ark import write_ark_scp

REPO = Path(__file__).resolve().parents[1]
SR = 16000
BAD_UTT = b"spkB-caf\xe9"          # Latin-1 "cafe" with an acute e: byte 0xe9, column 9
LATIN1_WAV = b"voix-\xe9t\xe9.wav"  # a file name that is not UTF-8


def _tone(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.6 * SR)) / SR
    bursts = 3000 * np.sin(2 * np.pi * (120 + 15 * seed) * t) * (t % 0.3 < 0.2)
    return (bursts + rng.normal(0, 30, t.size)).astype(np.int16)


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _data_dir(tmp_path: Path, bad_id: bool = False, latin1_path: bool = False) -> Path:
    """data/: spkA-u1, spkA-u2, spkB-u1 with real audio; optionally BAD_UTT of speaker spkB,
    or spkB-u2 whose wav.scp path is a file name in Latin-1."""
    wav = tmp_path / "wav"
    wav.mkdir()
    entries: dict[bytes, bytes] = {}
    for i, utt in enumerate([b"spkA-u1", b"spkA-u2", b"spkB-u1"]):
        sf.write(wav / f"{utt.decode()}.wav", _tone(i), SR, subtype="PCM_16")
        entries[utt] = os.fsencode(wav / f"{utt.decode()}.wav")
    if bad_id:
        entries[BAD_UTT] = entries[b"spkB-u1"]
    if latin1_path:
        target = os.fsencode(wav) + b"/" + LATIN1_WAV
        sf.write(wav / "plain.wav", _tone(7), SR, subtype="PCM_16")
        os.rename(wav / "plain.wav", target)  # soundfile names files in UTF-8 only
        entries[b"spkB-u2"] = target
    d = tmp_path / "data"
    d.mkdir()
    utts = sorted(entries)
    _write_lines(d / "wav.scp", [u + b" " + entries[u] for u in utts])
    _write_lines(d / "utt2spk", [u + b" " + u.split(b"-")[0] for u in utts])
    spks = sorted({u.split(b"-")[0] for u in utts})
    _write_lines(d / "spk2utt", [s + b" " + b" ".join(u for u in utts if u.startswith(s + b"-"))
                                 for s in spks])
    return d


def _line_of(path: Path, needle: bytes) -> int:
    return next(i for i, line in enumerate(path.read_bytes().splitlines(), 1) if needle in line)


def _shell(script: str, *args: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "utils" / script), *map(str, args)], check=False,
                          capture_output=True, text=True, errors="replace", timeout=120)


def _message(d: Path, name: str, needle: bytes = BAD_UTT) -> str:
    """The one message for the line of ``d/name`` holding ``needle``: file:line, byte, column."""
    lineno = _line_of(d / name, needle)
    column = (d / name).read_bytes().splitlines()[lineno - 1].index(0xE9) + 1
    return (f"{d / name}:{lineno}: not valid UTF-8 (byte 0xe9 at column {column}); "
            "Kaldi ids here must be UTF-8")


def test_validate_data_dir_sh_names_every_line_that_is_not_utf8(tmp_path):
    d = _data_dir(tmp_path, bad_id=True)
    r = _shell("validate_data_dir.sh", d)
    assert r.returncode == 1, r.stdout + r.stderr
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        assert f"error: {_message(d, name)}" in r.stdout
    # The id starts the line: "spkB-caf" is 8 bytes.
    assert _message(d, "utt2spk").endswith(":3: not valid UTF-8 (byte 0xe9 at column 9); "
                                           "Kaldi ids here must be UTF-8")
    assert "Traceback" not in r.stdout + r.stderr


def test_fix_data_dir_sh_refuses_and_writes_nothing(tmp_path):
    d = _data_dir(tmp_path, bad_id=True)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    r = _shell("fix_data_dir.sh", d, tmp_path / "fixed")
    assert r.returncode == 1
    assert _message(d, "wav.scp") in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "fixed").exists()
    # In place: refused before the backup is made; the dir is as it was.
    assert fix_data_dir.main([str(d)]) == 1
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_stage1_refuses_before_any_job_starts(tmp_path, capfd):
    d = _data_dir(tmp_path, bad_id=True)
    assert compute_fbank_vad.main([str(d), str(tmp_path / "log"), "--nj", "2"]) == 1
    err = capfd.readouterr().err
    assert _message(d, "utt2spk") in err and "UnicodeEncodeError" not in err
    assert "Traceback" not in err
    # No job ran: no features, no arks, no logs, no temp files.
    assert not (d / "feats.scp").exists() and not (d / "data").exists()
    assert not (tmp_path / "log").exists()


def _scoring_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """data dir of 2 speakers x 2 utterances, their embeddings, a trials file and scores."""
    d = tmp_path / "eval"
    d.mkdir()
    utts = ["a-1", "a-2", "b-1", "b-2"]
    (d / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in utts))
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
    rng = np.random.default_rng(0)
    write_ark_scp(tmp_path / "emb.ark", tmp_path / "emb.scp",
                  {u: rng.standard_normal(8).astype(np.float32) for u in utts})
    trials = d / "trials"
    trials.write_text("a-1 a-2 target\nb-1 a-2 nontarget\nb-1 b-2 target\na-1 b-2 nontarget\n")
    scores = tmp_path / "scores"
    scores.write_text("a-1 a-2 0.9\nb-1 a-2 0.1\nb-1 b-2 0.8\na-1 b-2 0.2\n")
    return d, trials, scores


@pytest.mark.parametrize("which", ["trials", "scores"])
def test_compute_metrics_refuses_a_trials_or_score_line_that_is_not_utf8(tmp_path, capfd, which):
    _, trials, scores = _scoring_tree(tmp_path)
    path = trials if which == "trials" else scores
    path.write_bytes(path.read_bytes().replace(b"b-1 a-2", b"b-1 a-\xe9"))
    out = tmp_path / "m.json"
    assert compute_metrics.main(["--json", str(out), str(trials), str(scores)]) == 1
    err = capfd.readouterr().err
    assert f"{path}:2: not valid UTF-8 (byte 0xe9 at column 7)" in err
    assert "Traceback" not in err and not out.exists()


def test_score_embeddings_refuses_an_enroll2utt_line_that_is_not_utf8(tmp_path, capfd):
    d, trials, _ = _scoring_tree(tmp_path)
    enroll = d / "enroll2utt"
    enroll.write_bytes(b"a-enroll1 a-1\nb-enroll1 b-\xe91\n")
    trials.write_text("a-enroll1 a-2 target\nb-enroll1 a-2 nontarget\n")
    out = tmp_path / "out/scores"
    rc = score_embeddings.main(["--enroll2utt", str(enroll), str(d), str(trials), str(out),
                                str(tmp_path / "emb.scp")])
    assert rc == 1
    err = capfd.readouterr().err
    assert f"{enroll}:2: not valid UTF-8 (byte 0xe9 at column 13)" in err
    assert "Traceback" not in err and not out.exists()


def test_writers_refuse_an_id_that_would_not_read_back(tmp_path):
    """An id made from a Latin-1 file name (os.listdir's surrogates) is refused on writing."""
    spk = os.fsdecode(b"caf\xe9")
    with pytest.raises(DataDirError) as e:
        write_kaldi_map(tmp_path / "spk2gender", {spk: "f"})
    assert str(e.value) == (f"{tmp_path / 'spk2gender'}: refusing to write id {spk!r}: not "
                            "valid UTF-8 (byte 0xe9 at column 4); Kaldi ids here must be UTF-8")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- paths are not ids

def test_a_wav_path_that_is_not_utf8_is_kept_byte_for_byte(tmp_path, capsys):
    d = _data_dir(tmp_path, latin1_path=True)
    assert validate_data_dir.main([str(d)]) == 0
    assert "OK (4 utterances, 2 speakers)" in capsys.readouterr().out
    assert fix_data_dir.main([str(d), str(tmp_path / "fixed")]) == 0
    assert (tmp_path / "fixed/wav.scp").read_bytes() == (d / "wav.scp").read_bytes()
    assert LATIN1_WAV in (tmp_path / "fixed/wav.scp").read_bytes()


def _features_of(d: Path, tmp_path: Path) -> dict[str, str]:
    assert compute_fbank_vad.main([str(d), str(tmp_path / "log"), "--nj", "2"]) == 0
    assert not (d / "failed_utts").exists(), (d / "failed_utts").read_bytes()
    return dict(line.split(" ", 1) for line in (d / "feats.scp").read_text().splitlines())


def test_stage1_reads_a_latin1_path_through_a_command(tmp_path):
    d = _data_dir(tmp_path, latin1_path=True)
    lines = (d / "wav.scp").read_bytes().splitlines()
    piped = [line.replace(b" ", b" cat ", 1) + b" |" if line.startswith(b"spkB-u2 ") else line
             for line in lines]
    _write_lines(d / "wav.scp", piped)
    assert sorted(_features_of(d, tmp_path)) == ["spkA-u1", "spkA-u2", "spkB-u1", "spkB-u2"]


def test_stage1_lists_a_missing_latin1_path_and_finishes_the_others(tmp_path):
    """The reason in failed_utts quotes the path byte for byte; the dir stays valid."""
    d = _data_dir(tmp_path, latin1_path=True)
    missing = os.fsencode(tmp_path / "wav") + b"/" + LATIN1_WAV
    os.unlink(missing)
    rc = compute_fbank_vad.main([str(d), str(tmp_path / "log"), "--nj", "2",
                                 "--max-failed-fraction", "0.5"])
    assert rc == 0
    failed = (d / "failed_utts").read_bytes()
    assert failed.startswith(b"spkB-u2 ") and missing in failed and b"not found" in failed
    feats = (d / "feats.scp").read_text().splitlines()
    assert [line.split()[0] for line in feats] == ["spkA-u1", "spkA-u2", "spkB-u1"]
    assert validate_data_dir.main([str(d)]) == 0
    assert [p for p in tmp_path.rglob("*") if "tmp" in p.name] == []


def test_stage1_reads_a_latin1_path(tmp_path):
    d = _data_dir(tmp_path, latin1_path=True)
    assert sorted(_features_of(d, tmp_path)) == ["spkA-u1", "spkA-u2", "spkB-u1", "spkB-u2"]


def test_score_embeddings_refuses_an_embedding_scp_that_is_not_utf8(tmp_path, capfd):
    d, trials, _ = _scoring_tree(tmp_path)
    scp = tmp_path / "emb.scp"
    lines = scp.read_bytes().splitlines()
    lines[2] = lines[2].replace(b"b-1", b"b-\xe91", 1)
    scp.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / "out/scores"
    assert score_embeddings.main([str(d), str(trials), str(out), str(scp)]) == 1
    err = capfd.readouterr().err
    assert f"{scp}:3: not valid UTF-8 (byte 0xe9 at column 3)" in err, err[-2000:]
    assert "Traceback" not in err and not out.exists()
