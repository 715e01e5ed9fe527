"""Issue 16, family 5: the disk says no.  One line ``cannot write <file>: <reason>``, no temp file.

Each test runs the command a user runs (``python -m deepspeaker.bin.X``) against an output
dir that is full or read-only, and asserts the exit code (1), that the message names the
file and the OS's reason, that no traceback is printed and that no temp file is left.

A full disk is a real tmpfs with a few KiB free where the test may mount one (root), and
in every case also the test-only hook of ``tests/fault_inject/sitecustomize.py`` (the
"hook" variant: the same ENOSPC from ``open``ed files under one dir, per process), so the
tests run unprivileged too.  A read-only dir is a tmpfs remounted read-only as root
("Read-only file system"), else chmod 0555 ("Permission denied").
"""

from __future__ import annotations

import errno
import sys

import pytest
from builders import base_config, make_exp, write_config, write_data_dir
from fault_helpers import (
    audio_dir,
    base_env,
    full_disk,
    read_only,
    run,
    stage1_cmd,
    temp_files,
)

NO_SPACE = "No space left on device"


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text[-3000:]


def _logs(d) -> str:
    return "".join(p.read_text() for p in sorted(d.rglob("*.log"))) if d.exists() else ""


# --------------------------------------------------------------------------- full disk


@pytest.mark.parametrize("kind", ["tmpfs", "hook"])
def test_stage1_on_a_full_disk_names_the_ark_and_leaves_no_temp(tmp_path, kind):
    data = audio_dir(tmp_path / "data", tmp_path / "wav")
    feats, log = tmp_path / "feats", tmp_path / "log"
    # Room for the stage's own small files (a marker, the saved config), not for an ark.
    with full_disk(feats, 3 * 4096, kind) as env:
        proc = run(stage1_cmd(data, log, feats), env=base_env(**env))
        left = temp_files(feats)
    job_logs = _logs(log)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"cannot write {feats}/raw_fbank_data." in job_logs + proc.stderr
    assert NO_SPACE in job_logs and NO_SPACE in proc.stderr
    _no_traceback(proc.stderr, job_logs)
    assert not left, left
    assert not (data / "feats.scp").exists() and not (data / ".fbank_vad.done").exists()


@pytest.mark.parametrize("kind", ["tmpfs", "hook"])
def test_extraction_on_a_full_disk_names_the_ark_and_leaves_no_temp(tmp_path, kind):
    exp = make_exp(tmp_path / "exp")
    data = write_data_dir(tmp_path / "eval", "ev", 4, 3, 0)
    out = exp / "eval"
    with full_disk(out, 4096, kind) as env:
        proc = run([sys.executable, "-m", "deepspeaker.bin.extract_embeddings", "--device",
                    "cpu", str(exp), str(data)], env=base_env(**env))
        left = temp_files(out)
        written = sorted(p.name for p in out.iterdir() if p.name != ".filler")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"cannot write {out}/embedding.ark: {NO_SPACE}" in proc.stderr
    _no_traceback(proc.stderr)
    assert not left, left
    assert written == [], written


@pytest.mark.parametrize("kind", ["tmpfs", "hook"])
def test_training_on_a_full_disk_says_no_space_not_unexpected_pos(tmp_path, kind):
    train = write_data_dir(tmp_path / "train", "tr", 8, 4, 0)
    conf = write_config(tmp_path / "c.yaml", base_config(epochs=1, save_every_steps=1))
    exp = tmp_path / "exp"
    # Room for config.yaml and the log, not for a checkpoint (hundreds of KiB).
    with full_disk(exp, 64 * 1024, kind) as env:
        proc = run([sys.executable, "-m", "deepspeaker.bin.train_embedding", "--config",
                    str(conf), "--device", "cpu", str(train), "-", str(exp)],
                   env=base_env(**env))
        left = temp_files(exp)
        has_ckpt = (exp / "last.pt").exists()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"cannot write {exp}/last.pt: {NO_SPACE}" in proc.stderr
    assert "unexpected pos" not in proc.stderr
    _no_traceback(proc.stderr)
    assert not left, left
    assert not has_ckpt


# --------------------------------------------------------------------------- read-only


def _stage1_ro_data(tmp_path, freeze):
    data = audio_dir(tmp_path / "data", tmp_path / "wav")
    return data, freeze(), stage1_cmd(data), f"cannot write {data}"


def _stage1_ro_log(tmp_path, freeze):
    data = audio_dir(tmp_path / "d" / "data", tmp_path / "wav")
    log = tmp_path / "data"      # the read-only dir is the log dir here
    return data, freeze(), stage1_cmd(data, log, tmp_path / "feats"), f"cannot write {log}: "


def _extract_ro(tmp_path, freeze):
    exp = make_exp(tmp_path / "data" / "exp")
    feats = write_data_dir(tmp_path / "eval", "ev", 2, 2, 0)
    return feats, freeze(exp), [sys.executable, "-m", "deepspeaker.bin.extract_embeddings",
                             "--device", "cpu", str(exp), str(feats)], f"cannot write {exp}/eval"


def _train_ro(tmp_path, freeze):
    train = write_data_dir(tmp_path / "train", "tr", 4, 4, 0)
    conf = write_config(tmp_path / "c.yaml", base_config(epochs=1))
    exp = tmp_path / "data"
    return train, freeze(), [sys.executable, "-m", "deepspeaker.bin.train_embedding", "--config",
                             str(conf), "--device", "cpu", str(train), "-", str(exp)], \
        f"cannot write {exp}/"


def _fuse_ro(tmp_path, freeze):
    """A scorer (every score_* stage and fuse_scores declare the score file's dir)."""
    trials = tmp_path / "trials"
    trials.write_text("a x target\nb x nontarget\n")
    scores = []
    for k in (1, 2):
        scores.append(tmp_path / f"s{k}")
        scores[-1].write_text(f"a x 0.{k}\nb x -0.{k}\n")
    out = tmp_path / "data" / "fused"
    return trials, freeze(), [sys.executable, "-m", "deepspeaker.bin.fuse_scores", str(trials),
                              str(out), *map(str, scores)], f"cannot write {tmp_path / 'data'}"


@pytest.mark.parametrize("case", [_stage1_ro_data, _stage1_ro_log, _extract_ro, _train_ro, _fuse_ro],
                         ids=["stage1-data-dir", "stage1-log-dir", "extract", "train", "scores"])
def test_read_only_output_dir_is_one_line_naming_it(tmp_path, case):
    with read_only(tmp_path / "data") as freeze:
        _, reason, cmd, expected = case(tmp_path, freeze)
        proc = run(cmd)
        left = temp_files(tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert expected in proc.stderr and reason in proc.stderr, proc.stderr[-3000:]
    _no_traceback(proc.stderr)
    assert not left, left
    if case is _stage1_ro_log:   # refused before any job started
        assert not list((tmp_path / "d" / "data").glob("feats*"))
        assert "computing fbank" not in proc.stderr


# --------------------------------------------------------------------------- run_main


def test_run_main_turns_os_errors_of_writing_into_one_line(tmp_path, capsys):
    from deepspeaker.bin._cli import run_main

    def full():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.ark"))

    def denied():
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "new" / "f"))

    assert run_main(full, argv=[]) == 1
    assert run_main(denied, argv=[]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'x.ark'}: No space left on device" in err
    assert f"cannot write {tmp_path / 'new' / 'f'}: Permission denied" in err
    assert "Traceback" not in err

    def bug():
        raise OSError(errno.EBADF, "Bad file descriptor")   # ours, not the user's: a bug

    with pytest.raises(OSError, match="Bad file descriptor"):
        run_main(bug, argv=[])


def test_run_main_checks_declared_outputs_before_the_work(tmp_path, capsys):
    from deepspeaker.bin._cli import run_main

    called = []
    with read_only(tmp_path / "out") as freeze:
        reason = freeze()
        rc = run_main(lambda: called.append(1), argv=[], outputs=[tmp_path / "out"])
    assert rc == 1 and not called
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'out'}: {reason}" in err and "Traceback" not in err
