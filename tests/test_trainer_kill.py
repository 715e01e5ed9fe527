"""A training run killed with SIGKILL and started again ends where an uninterrupted run ends.

``python -m deepspeaker.bin.train_embedding`` runs in a subprocess on a tiny softmax
config that writes ``last.pt`` every step; once the log shows that a checkpoint at
step >= KILL_AFTER exists the process gets SIGKILL (no handler, no cleanup), and the
same command is run again to the end.  Its final ``last.pt`` must match that of an
uninterrupted run of the same config in another exp dir (run at the same time, so
the test costs about one run more than the straight run).  Every run is one CPU
thread on the CPU, so the two compute the same bits; the tolerance allows for
nothing more than float32 rounding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deepspeaker.nnet.trainer import load_checkpoint
from builders import REPO, base_config, write_config, write_data_dir

TOL = 1e-6            # max abs difference of parameters and momenta (exact in practice)
EPOCHS = 12           # 3 steps per epoch: 36 steps, a few seconds
TOTAL_STEPS = 3 * EPOCHS
KILL_AFTER = 4        # kill once last.pt holds at least this many steps
TIMEOUT_S = 120       # per run; generous for a loaded machine (normally ~10 s)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=_env(), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _finish(proc: subprocess.Popen, log: Path, what: str) -> None:
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{what} did not finish in {TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
    assert proc.returncode == 0, f"{what} failed:\n{log.read_text()[-3000:]}"


def test_sigkill_and_rerun_matches_uninterrupted_run(tmp_path):
    train_dir = write_data_dir(tmp_path / "train", "tr", 12, 4, 0)
    conf = write_config(tmp_path / "c.yaml", base_config(epochs=EPOCHS, save_every_steps=1,
                                                         log_every_steps=1))

    def command(exp: Path) -> list[str]:
        return [sys.executable, "-m", "deepspeaker.bin.train_embedding", "--config", str(conf),
                "--device", "cpu", str(train_dir), "-", str(exp)]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight_proc = _start(command(straight), tmp_path / "straight.out")
    try:
        proc = _start(command(killed), tmp_path / "killed.out")
        try:
            # The log line of step KILL_AFTER + 1 comes after the checkpoint of step KILL_AFTER.
            marker = f"(global {KILL_AFTER + 1})"
            rank_log = killed / "log" / "train.rank0.log"
            deadline = time.monotonic() + TIMEOUT_S
            while not (rank_log.exists() and marker in rank_log.read_text()):
                if proc.poll() is not None:
                    pytest.fail(f"the run ended (rc {proc.returncode}) before step {KILL_AFTER + 1}"
                                f":\n{(tmp_path / 'killed.out').read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no '{marker}' in {rank_log} after {TIMEOUT_S}s")
                time.sleep(0.05)
            assert proc.poll() is None, "the run finished before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        step_at_kill = load_checkpoint(killed / "last.pt")["global_step"]
        assert KILL_AFTER <= step_at_kill < TOTAL_STEPS
        # What a kill inside save_checkpoint leaves (its cleanup never runs); the rerun removes it.
        (killed / ".last.pt.tmp999999").write_bytes(b"half a checkpoint")

        rerun = _start(command(killed), tmp_path / "rerun.out")
        _finish(rerun, tmp_path / "rerun.out", "the rerun after SIGKILL")
        _finish(straight_proc, tmp_path / "straight.out", "the uninterrupted run")
    finally:
        if straight_proc.poll() is None:
            straight_proc.kill()
            straight_proc.wait()

    log = (killed / "log" / "train.rank0.log").read_text()
    assert f"resuming {killed / 'last.pt'} at epoch" in log
    assert ".last.pt.tmp999999, left by a run killed while writing a checkpoint" in log
    assert "training completed after" in log
    for exp in (straight, killed):
        left = sorted(p.name for p in exp.iterdir() if ".tmp" in p.name)
        assert not left, f"temp files left in {exp}: {left}"

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["global_step"] == b["global_step"] == TOTAL_STEPS
    assert a["epoch"] == b["epoch"] == EPOCHS
    assert a["history"] == b["history"]
    for part_a, part_b in ((a["model"], b["model"]), (a["objective"]["head"], b["objective"]["head"])):
        assert part_a.keys() == part_b.keys()
        for key, value in part_a.items():
            assert torch.allclose(value.float(), part_b[key].float(), atol=TOL, rtol=0), key
    momenta_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momenta_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert len(momenta_a) == len(momenta_b) > 0
    assert all(torch.allclose(x, y, atol=TOL, rtol=0) for x, y in zip(momenta_a, momenta_b))
