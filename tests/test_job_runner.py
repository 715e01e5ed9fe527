"""The job runner a stage uses (``DS_CMD``, the recipes' --cmd) and the jobs' progress.

A stage's jobs go through whatever runner ``DS_CMD`` names (Kaldi's cmd.sh): here a
wrapper script that records its arguments and hands them to run_jobs.sh shows that
stage 1 really goes through it, with the same features as the default runner.  Each
job logs ``progress: DONE/TOTAL`` lines, and the stage follows them in the logs.
"""

import logging
import os
import sys

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from deepspeaker import jobs
from deepspeaker.bin import compute_fbank_vad as stage
from deepspeaker.utils import DeepSpeakerError

SR = 16000


def _data_dir(path, num_utts=5):
    rng = np.random.default_rng(0)
    (path / "wav").mkdir(parents=True)
    lines = []
    for i in range(num_utts):
        utt = f"spk{i % 2}-u{i}"
        x = (rng.normal(0, 3000, SR) * (np.arange(SR) % 4000 < 2000)).astype(np.int16)
        sf.write(path / "wav" / f"{utt}.wav", x, SR, subtype="PCM_16")
        lines.append((utt, f"spk{i % 2}", str(path / "wav" / f"{utt}.wav")))
    d = path / "data"
    d.mkdir()
    lines.sort()
    (d / "wav.scp").write_text("".join(f"{u} {w}\n" for u, _, w in lines))
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _ in lines))
    return d


def test_runner_command_resolves_utils_scripts_and_user_commands(monkeypatch):
    monkeypatch.delenv(jobs.CMD_ENV, raising=False)
    assert jobs.runner_command() == ["bash", str(jobs.utils_dir() / "run_jobs.sh")]
    assert jobs.runner_command("run_jobs.sh --mem 4G") == [
        "bash", str(jobs.utils_dir() / "run_jobs.sh"), "--mem", "4G"]
    assert jobs.runner_command("queue.pl -q all.q") == ["queue.pl", "-q", "all.q"]
    with pytest.raises(DeepSpeakerError, match="does not parse"):
        jobs.runner_command("run_jobs.sh 'unclosed")
    with pytest.raises(DeepSpeakerError, match="nope.sh .* does not exist"):
        jobs.runner_command("/tmp/nope.sh")


def test_stage_1_goes_through_the_runner_of_DS_CMD(tmp_path, monkeypatch):
    ref = _data_dir(tmp_path / "a")
    stage.compute_fbank_vad(ref, nj=2)
    d = _data_dir(tmp_path / "b")
    record = tmp_path / "runner_args"
    wrapper = tmp_path / "my_runner.sh"
    wrapper.write_text(f'#!/bin/bash\necho "$@" >> {record}\n'
                       f'exec bash {jobs.run_jobs_script()} "$@"\n')
    monkeypatch.setenv(jobs.CMD_ENV, f"{wrapper} --mem 1G")
    monkeypatch.setenv(jobs.PROGRESS_ENV, "0")
    stage.compute_fbank_vad(d, nj=2)
    args = record.read_text()
    assert args.startswith("--mem 1G JOB=1:2 ") and "make_fbank_vad.JOB.log" in args
    for scp in ("feats.scp", "vad.scp"):
        want = dict(kaldiio.load_scp(str(ref / scp)))
        got = dict(kaldiio.load_scp(str(d / scp)))
        assert sorted(got) == sorted(want)
        for utt in want:
            np.testing.assert_array_equal(got[utt], want[utt])
    # Each job's log: a progress line per batch (interval 0) ending at its share.
    totals = []
    for j in (1, 2):
        log = (d / "log" / f"make_fbank_vad.{j}.log").read_text()
        assert "progress: " in log
        totals.append(jobs.last_progress(d / "log" / f"make_fbank_vad.{j}.log"))
    assert totals == [3, 2]


def test_a_missing_runner_is_one_clear_error(tmp_path, monkeypatch):
    d = _data_dir(tmp_path)
    monkeypatch.setenv(jobs.CMD_ENV, "no-such-runner-here --mem 1G")
    with pytest.raises(DeepSpeakerError, match="cannot start the job runner no-such-runner-here"):
        stage.compute_fbank_vad(d, nj=2)


def test_job_progress_writes_a_line_per_interval(caplog):
    caplog.set_level(logging.INFO, logger="deepspeaker.jobs")
    p = jobs.JobProgress(10, interval=3600)
    for _ in range(10):
        p.add()
    assert not caplog.records          # within one interval: nothing yet
    p.finish()
    assert [r.getMessage() for r in caplog.records] == ["progress: 10/10 utterances"]


def test_watch_sums_the_jobs_logs_and_counts_finished_jobs(tmp_path, caplog, monkeypatch):
    """Jobs 2 and 3 of 3 run (job 1 finished earlier): 4 + 3 of 10 items done."""
    for j, n in ((2, 2), (3, 3)):
        (tmp_path / f"x.{j}.log").write_text(f"# cmd\nprogress: 1/3 utterances\n"
                                             f"junk\nprogress: {n}/3 utterances\n")
    w = jobs.JobWatch.of_jobs(tmp_path / "x.JOB.log", 3, [2, 3], 10, "test")
    assert w.done_before == 4 and w.done() == 4 + 5
    assert jobs.last_progress(tmp_path / "missing.log") == 0
    # Not a terminal: a log line per interval with the figures.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.setenv(jobs.PROGRESS_ENV, "1")
    caplog.set_level(logging.INFO, logger="deepspeaker.jobs")
    import time
    with w:
        time.sleep(1.5)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("test:")]
    assert lines and lines[0].startswith("test: 9/10 utterances (90%)")


def test_run_jobs_sh_ignores_scheduler_options(tmp_path):
    import subprocess
    r = subprocess.run(["bash", str(jobs.run_jobs_script()), "--gpu", "2", "--mem=4G",
                        "--num-threads", "3", "--time", "1:00:00", "JOB=1:2",
                        str(tmp_path / "l.JOB.log"), "echo", "job", "JOB"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "job 2" in (tmp_path / "l.2.log").read_text()
    assert os.path.exists(tmp_path / "l.1.log")
