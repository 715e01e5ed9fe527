"""utils/slurm_jobs.sh on a real one-node Slurm cluster (utils/slurm_cluster.sh, issue 13).

The module starts a private cluster in a temp dir (installing Debian's slurm-wlm and
munge first where they are missing and this is root), drives the runner as the stages
and a user do, and stops the cluster at the end even when a test fails.  Where Slurm
cannot be had (not root, no apt-get, no registry: slurm_cluster.sh exits 3) the module
is skipped with the reason; a cluster that should start and does not is a failure on CI
(CI=true) and a skip elsewhere, with the daemons' log tails either way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import yaml
from builders import write_data_dir
from system_builders import IVECTOR_CONF, write_data, write_wavs

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "utils" / "slurm_cluster.sh"
SLURM_JOBS = ROOT / "utils" / "slurm_jobs.sh"
RUN_JOBS = ROOT / "utils" / "run_jobs.sh"
CANNOT = 3                          # slurm_cluster.sh: not possible on this machine
SLURM_COMMANDS = {"sbatch", "squeue", "scontrol", "scancel", "sacct", "srun", "salloc"}


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    """The environment of a client of the module's cluster (SLURM_CONF, the worktree)."""
    r = _cluster("install", timeout=900)
    if r.returncode == CANNOT:
        pytest.skip(f"no Slurm here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stdout + r.stderr
    d = tmp_path_factory.mktemp("slurm")
    t0 = time.monotonic()
    r = _cluster("start", d, timeout=120)
    try:
        if r.returncode != 0:
            why = f"the Slurm cluster did not start (exit {r.returncode}):\n{r.stderr}"
            if r.returncode == CANNOT or os.environ.get("CI", "").lower() != "true":
                pytest.skip(why)
            pytest.fail(why)
        print(f"cluster started in {time.monotonic() - t0:.1f} s")
        yield {**os.environ, "SLURM_CONF": str(d / "slurm.conf"), "DS_ROOT": str(ROOT),
               "PYTHONPATH": str(ROOT), "DS_SLURM_POLL_S": "1", "LC_ALL": "C"}
    finally:
        _cluster("stop", d, timeout=120)


def _cluster(action, *args, timeout):
    return subprocess.run(["bash", str(CLUSTER), action, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _runner(script, *args, env, cwd, timeout=60):
    return subprocess.run(["bash", str(script), *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _masked(log: Path) -> str:
    """A log with its dates and times replaced: what must be equal between runners."""
    text = log.read_text()
    text = re.sub(r"^(# Started at|# Ended \(code \d+\) at) .*$", r"\1 DATE", text, flags=re.M)
    return re.sub(r"^# Accounting: time=\d+", "# Accounting: time=T", text, flags=re.M)


def _footer_code(log: Path) -> int:
    return int(re.search(r"^# Ended \(code (\d+)\) at ", log.read_text(), re.M)[1])


def _squeue(env, *args) -> str:
    return subprocess.run(["squeue", "-h", *args], env=env, capture_output=True, text=True,
                          check=True, timeout=30).stdout


# A pipeline with quotes and spaces, as one word and as words (run_jobs.sh joins them).
PIPELINE = "echo \"it's JOB\" 'a  b' | tr a-z A-Z; echo err-JOB >&2"
WORDS = ["printf", "'%s|\\n'", "\"it's JOB\"", "'a  b'", "|", "tr", "a-z", "A-Z"]


@pytest.mark.parametrize("cmd", [[PIPELINE], WORDS], ids=["one-word", "words"])
def test_logs_are_those_of_run_jobs(slurm_env, tmp_path, cmd):
    for runner, sub in ((SLURM_JOBS, "slurm"), (RUN_JOBS, "local")):
        r = _runner(runner, "JOB=1:3", f"{sub}/log/p.JOB.log", *cmd, env=slurm_env,
                    cwd=tmp_path)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), (runner, r.stderr)
    for j in (1, 2, 3):
        got = _masked(tmp_path / f"slurm/log/p.{j}.log")
        assert got == _masked(tmp_path / f"local/log/p.{j}.log")
        assert (f"IT'S {j} A  B\nerr-{j}\n" if cmd == [PIPELINE]
                else f"IT'S {j}|\nA  B|\n") in got
    q = tmp_path / "slurm/log/q"
    assert "#SBATCH --array=1-3\n" in (q / "p.sh").read_text()
    assert len(list(q.glob("p-*_[123].out"))) == 3


def test_stage_1_and_ivectors_through_slurm_equal_the_local_runner(slurm_env, tmp_path):
    from deepspeaker.bin import extract_ivectors, train_ivector_extractor, train_ubm

    wavs = write_wavs(tmp_path)
    local, slurm = write_data(tmp_path / "train", wavs), write_data(tmp_path / "train_s", wavs)
    stage1 = [sys.executable, "-m", "deepspeaker.bin.compute_fbank_vad", "--nj", "2"]
    env_local = {k: v for k, v in slurm_env.items() if k != "DS_CMD"}
    for d, env in ((local, env_local), (slurm, {**slurm_env, "DS_CMD": "slurm_jobs.sh"})):
        r = subprocess.run([*stage1, str(d)], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
    for scp in ("feats.scp", "vad.scp"):
        want, got = kaldiio.load_scp(str(local / scp)), kaldiio.load_scp(str(slurm / scp))
        assert sorted(got) == sorted(want) and len(want) == 16
        for utt in want:
            np.testing.assert_array_equal(got[utt], want[utt])
    for j in (1, 2):
        assert _footer_code(slurm / "log" / f"make_fbank_vad.{j}.log") == 0
    q = slurm / "log" / "q"       # Slurm ran them: its output of each task is there
    assert (q / "make_fbank_vad.sh").is_file()
    assert len(list(q.glob("make_fbank_vad-*_[12].out"))) == 2

    # A tiny i-vector system trained here, its extraction of the Slurm set run by Slurm.
    exp = tmp_path / "exp"
    conf = tmp_path / "ivector.yaml"
    conf.write_text(yaml.safe_dump(IVECTOR_CONF))
    train_ubm.run(local, exp, conf)
    train_ivector_extractor.run(local, exp)
    # The stage's own jobs through Slurm ($DS_CMD, --nj 2: 260 utterances are 2 blocks of
    # the job plan), against one local process: the same bytes.
    import shutil
    big = write_data_dir(tmp_path / "big", "bg", 65, 4, 3)
    shutil.copytree(big, tmp_path / "big_s")
    extract_ivectors.run(exp, big)
    r = subprocess.run([sys.executable, "-m", "deepspeaker.bin.extract_ivectors", "--nj", "2",
                        str(exp), str(tmp_path / "big_s")],
                       env={**slurm_env, "DS_CMD": "slurm_jobs.sh"}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    logs = exp / "log"
    for j in (1, 2):
        assert _footer_code(logs / f"extract_ivectors_big_s.{j}.log") == 0
    assert len(list((logs / "q").glob("extract_ivectors_big_s-*_[12].out"))) == 2
    assert (exp / "big" / "ivector.ark").read_bytes() == (exp / "big_s" / "ivector.ark").read_bytes()
    want = (exp / "big" / "ivector.scp").read_text()
    assert (exp / "big_s" / "ivector.scp").read_text() == want.replace("/big/", "/big_s/")


def _start_sleeping_jobs(env, cwd, log):
    """JOB=1:3 where job 2 sleeps; returns (the runner, the Slurm id of task 2) once it runs."""
    proc = subprocess.Popen(["bash", str(SLURM_JOBS), "JOB=1:3", log,
                             "echo start JOB; [ JOB != 2 ] || sleep 60; echo end JOB"],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = _squeue(env, "-r", "-t", "RUNNING", "-o", "%i").split()
        task = next((t for t in running if t.endswith("_2")), None)
        if task and (cwd / log.replace("JOB", "2")).exists():
            return proc, task
        time.sleep(0.2)
    proc.kill()
    pytest.fail("task 2 did not start within 30 s")


def test_a_job_cancelled_by_the_scheduler_is_named(slurm_env, tmp_path):
    proc, task = _start_sleeping_jobs(slurm_env, tmp_path, "log/k.JOB.log")
    subprocess.run(["scancel", task], env=slurm_env, check=True, timeout=30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == ""
    assert f"slurm_jobs.sh: 1/3 jobs failed (exit codes 143); log: log/k.2.log (Slurm job {task})" in err
    assert f"job 2 (Slurm job {task}): killed by the scheduler (CANCELLED); log: log/k.2.log" in err
    assert "start 2" in err and "CANCELLED AT" in err      # the log's and Slurm's tails
    for j in (1, 3):
        log = tmp_path / f"log/k.{j}.log"
        assert _footer_code(log) == 0 and f"end {j}" in log.read_text()


def test_sigterm_cancels_the_array(slurm_env, tmp_path):
    proc, task = _start_sleeping_jobs(slurm_env, tmp_path, "log/t.JOB.log")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    array = task.split("_")[0]
    assert proc.returncode == 143
    assert f"got SIGTERM; cancelled Slurm job {array}" in err
    assert _squeue(slurm_env, "-j", array) == ""
    assert _footer_code(tmp_path / "log/t.2.log") == 143


def test_an_impossible_request_is_cancelled_with_its_reason(slurm_env, tmp_path):
    t0 = time.monotonic()
    r = _runner(SLURM_JOBS, "--num-threads", 9999, "--pending-timeout", 5, "JOB=1:2",
                "log/c.JOB.log", "true", env=slurm_env, cwd=tmp_path)
    assert r.returncode == 1 and time.monotonic() - t0 < 30
    m = re.fullmatch(r"slurm_jobs.sh: Slurm job (\d+) \(log: log/c.JOB.log\) was pending for "
                     r"5 s with reason 'PartitionConfig': no node can run it as asked "
                     r"\(--cpus-per-task=9999\); cancelled it\n", r.stderr)
    assert m, r.stderr
    assert _squeue(slurm_env, "-j", m[1]) == ""


def test_scheduler_options_become_sbatch_lines(slurm_env, tmp_path):
    """The node has no GPU: sbatch refuses the array, after the script shows the mapping."""
    r = _runner(SLURM_JOBS, "--gpu", 1, "--mem", "1G", "--num-threads", 2, "--time", "0:10",
                "--partition", "debug", "--max-jobs-run", 1, "--nj", 2, "log/g.JOB.log",
                "true", env=slurm_env, cwd=tmp_path)
    script = tmp_path / "log/q/g.sh"
    assert r.returncode == 1
    assert r.stderr.startswith("slurm_jobs.sh: sbatch failed (exit 1: sbatch: error: ")
    assert f"no job run for the log log/g.JOB.log; batch script: {script}\n" in r.stderr
    assert r.stderr.count("\n") == 1
    lines = [x for x in script.read_text().splitlines() if x.startswith("#SBATCH")]
    assert lines[1:2] + lines[4:] == [
        "#SBATCH --array=1-2%1", "#SBATCH --gres=gpu:1", "#SBATCH --mem=1G",
        "#SBATCH --cpus-per-task=2", "#SBATCH --time=0:10", "#SBATCH --partition=debug"]


def test_no_sbatch_is_one_clear_line(slurm_env, tmp_path):
    """PATH without Slurm's commands: the runner says so, and so does stage 1 (no traceback)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in slurm_env["PATH"].split(os.pathsep):
        for p in Path(d).glob("*") if Path(d).is_dir() else ():
            if p.name not in SLURM_COMMANDS and not (bin_dir / p.name).exists():
                (bin_dir / p.name).symlink_to(p)
    env = {**slurm_env, "PATH": str(bin_dir)}
    r = _runner(SLURM_JOBS, "--nj", 2, "log/x.JOB.log", "true", env=env, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, "slurm_jobs.sh: sbatch is not on PATH (not a Slurm "
                                           "submit host?); no job run for the log log/x.JOB.log\n")
    data = write_data(tmp_path / "train", write_wavs(tmp_path))
    r = subprocess.run([sys.executable, "-m", "deepspeaker.bin.compute_fbank_vad", "--nj", "2",
                        str(data)], env={**env, "DS_CMD": "slurm_jobs.sh"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "slurm_jobs.sh: sbatch is not on PATH" in r.stderr
    assert "feature jobs failed" in r.stderr


def test_the_training_batch_script_under_slurm(slurm_env, tmp_path):
    """utils/slurm_train.sbatch submitted for real (1 node without GPUs: --gres none; 2 gloo
    ranks): scontrol names the rendezvous host, srun starts the recipe's stages 6-7, torchrun
    trains on both ranks."""
    data = tmp_path / "data"
    write_data_dir(data / "train", "tr", 8, 4, 0)
    write_data_dir(data / "dev", "dv", 4, 3, 1)
    exp, out = tmp_path / "exp", tmp_path / "train.out"
    r = subprocess.run(["sbatch", "--wait", "--nodes", "1", "--gres", "none", "--output", str(out),
                        "--export", "ALL,DS_NUM_THREADS=1", str(ROOT / "utils/slurm_train.sbatch"),
                        "egs/mini", "--data", str(data), "--exp", str(exp), "--augment-conf", "",
                        "--nnet-models", "gru", "--nnet-strategies", "softmax",
                        "--nnet-conf-dir", str(ROOT / "tests/conf_nnet_tiny"),
                        "--nproc-per-node", "2", "--rdzv-timeout", "60"],
                       env=slurm_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = out.read_text() if out.exists() else ""
    assert r.returncode == 0, r.stderr + text[-3000:]
    job = re.search(r"slurm_train.sbatch: job (\d+), 1 node\(s\) \(localhost\), rendezvous at "
                    r"localhost:(\d+)", text)
    assert job and int(job[2]) == 29400 + int(job[1]) % 1000, text[-2000:]
    tag = exp / "gru_softmax"
    torchrun = (tag / "log/torchrun.log").read_text().splitlines()[0]
    assert f"--nnodes 1 --nproc_per_node 2 --rdzv_backend c10d --rdzv_endpoint localhost:{job[2]}" \
        in torchrun and f"--rdzv_id slurm{job[1]}-gru_softmax-" in torchrun
    assert "rank 1 of 2" in (tag / "log/train.rank1.log").read_text()
    assert (tag / "system.yaml").is_file() and (tag / "best.pt").is_file()
