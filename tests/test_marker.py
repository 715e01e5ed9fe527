"""The rerun rule: a marker matches only the signature that made it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deepspeaker.marker import MISSING, Marker, StageRefused, file_digest, signature


def test_signature_tracks_config_inputs_options(tmp_path):
    f = tmp_path / "wav.scp"
    f.write_text("u1 a.wav\n")
    m = Marker(tmp_path / ".x.done")
    sig = signature({"a": 1, "b": {"c": 2}}, [f], {"seed": 0})
    assert not m.matches(sig)
    m.write(sig)
    assert m.matches(signature({"b": {"c": 2}, "a": 1}, [f], {"seed": 0}))
    assert not m.matches(signature({"a": 1, "b": {"c": 3}}, [f], {"seed": 0}))
    assert m.differences(signature({"a": 1, "b": {"c": 3}}, [f], {"seed": 1})) == \
        ["config.b.c", "options.seed"]
    f.write_text("u1 b.wav\n")
    assert not m.matches(signature({"a": 1, "b": {"c": 2}}, [f], {"seed": 0}))
    assert file_digest(tmp_path / "nope") == MISSING


def test_scp_digest_sees_rewritten_archive(tmp_path):
    ark = tmp_path / "feats.ark"
    ark.write_bytes(b"x" * 10)
    scp = tmp_path / "feats.scp"
    scp.write_text(f"u1 {ark}:0\n")
    before = file_digest(scp)
    ark.write_bytes(b"y" * 11)
    assert file_digest(scp) != before


def test_empty_old_marker_is_stale_and_refuse_names_force(tmp_path):
    m = Marker(tmp_path / ".old.done")
    m.path.write_text("")
    sig = signature({"k": 1})
    assert m.read() is None and not m.matches(sig)
    m.write(signature({"k": 2}))
    err = m.refuse(sig, "exp/ubm.npz", "rm -r exp/ivector and rerun")
    assert isinstance(err, StageRefused)
    assert "config.k" in str(err) and "rm -r exp/ivector and rerun" in str(err)


def test_cli_check_and_write(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("a: 1  # comment\n")
    marker = tmp_path / ".s.done"
    base = [sys.executable, "-m", "deepspeaker.bin.stage_marker"]
    args = [str(marker), "--config", str(conf), "--option", "seed=0"]
    assert subprocess.run(base + ["check", *args]).returncode == 1
    assert subprocess.run(base + ["write", *args]).returncode == 0
    assert subprocess.run(base + ["check", *args]).returncode == 0
    conf.write_text("a: 1\n")  # only a comment changed
    assert subprocess.run(base + ["check", *args]).returncode == 0
    r = subprocess.run(base + ["check", str(marker), "--config", str(conf), "--option", "seed=1"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "options.seed" in r.stderr
    r = subprocess.run(base + ["check", str(marker), "--option", "bad"], capture_output=True, text=True)
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr


@pytest.mark.parametrize("text", ["not json", "[1, 2]"])
def test_garbage_marker_is_stale(tmp_path, text):
    m = Marker(tmp_path / ".g.done")
    m.path.write_text(text)
    assert m.read() is None
