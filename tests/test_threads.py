"""Thread counts on a shared machine (deepspeaker/threads.py, bin/_cli.run_main,
utils/run_jobs.sh) and bench/bench_train.py --with-load (issue 11, item 6)."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepspeaker import threads

ROOT = Path(__file__).resolve().parent.parent
RUN_JOBS = ROOT / "utils" / "run_jobs.sh"
BENCH = ROOT / "bench" / "bench_train.py"
THREAD_VARS = ("OMP_NUM_THREADS", "DS_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "LOCAL_WORLD_SIZE", "OMP_WAIT_POLICY", "DS_CGROUP_CPU_MAX")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["LC_ALL"] = "C"
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


@pytest.fixture
def eight_cores(monkeypatch, tmp_path):
    """A process allowed on 8 cores with no cgroup quota; returns the cpu.max path to write."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", str(cpu_max))
    return cpu_max


# ---------------------------------------------------------------- the count


@pytest.mark.parametrize("jobs, expected", [(None, 8), (1, 8), (2, 4), (3, 2), (16, 1)])
def test_count_is_the_affinity_divided_by_the_jobs(eight_cores, jobs, expected):
    n, why = threads.thread_count(jobs, env={})
    assert n == expected
    assert why == f"8 usable cores / {jobs or 1} job(s)"


def test_torchrun_local_world_size_is_the_job_count(eight_cores):
    assert threads.thread_count(env={"LOCAL_WORLD_SIZE": "4"})[0] == 2
    # An explicit job count from the caller beats the environment's.
    assert threads.thread_count(2, env={"LOCAL_WORLD_SIZE": "4"})[0] == 4


@pytest.mark.parametrize("cpu_max, expected", [
    ("200000 100000\n", 2),    # docker --cpus 2
    ("150000 100000\n", 2),    # 1.5 cores: rounded up
    ("50000 100000\n", 1),     # half a core: still one thread
    ("max 100000\n", 8),       # no quota
    ("1600000 100000\n", 8),   # a quota above the affinity: the affinity rules
    ("garbage\n", 8),
])
def test_a_cgroup_quota_caps_the_cores(eight_cores, cpu_max, expected):
    eight_cores.write_text(cpu_max)
    assert threads.usable_cores() == expected
    assert threads.thread_count(1, env={})[0] == expected


def test_omp_num_threads_wins_over_everything(eight_cores):
    env = {"OMP_NUM_THREADS": "3", "DS_NUM_THREADS": "6", "LOCAL_WORLD_SIZE": "2"}
    assert threads.thread_count(4, env=env) == (3, "OMP_NUM_THREADS=3")
    # OpenMP's per-level list: the first level is ours.
    assert threads.thread_count(env={"OMP_NUM_THREADS": "5,2"})[0] == 5


def test_ds_num_threads_is_a_budget_split_among_the_jobs(eight_cores):
    assert threads.thread_count(env={"DS_NUM_THREADS": "6"}) == (6, "DS_NUM_THREADS=6 / 1 job(s)")
    assert threads.thread_count(2, env={"DS_NUM_THREADS": "6"})[0] == 3
    assert threads.thread_count(4, env={"DS_NUM_THREADS": "3"})[0] == 1


def test_a_bad_value_is_ignored_with_a_warning(eight_cores, caplog):
    with caplog.at_level(logging.WARNING, logger=threads.__name__):
        n, why = threads.thread_count(2, env={"OMP_NUM_THREADS": "lots", "DS_NUM_THREADS": "0"})
    assert (n, why) == (4, "8 usable cores / 2 job(s)")
    assert "ignoring OMP_NUM_THREADS='lots': not a positive integer" in caplog.text
    assert "ignoring DS_NUM_THREADS='0': not a positive integer" in caplog.text


def test_the_real_affinity_is_counted():
    assert threads.usable_cores() == min(len(os.sched_getaffinity(0)),
                                         threads.cgroup_cpu_limit() or math.inf)


# ---------------------------------------------------------------- entry points

ENTRY = """
import sys
from deepspeaker.bin._cli import run_main
import torch
def work():
    print("torch", torch.get_num_threads(), torch.get_num_interop_threads())
torch.set_num_threads(2)
run_main(lambda: print("in-process", torch.get_num_threads()), ["--in-process"])
sys.argv = ["entry"]
run_main(work)
run_main(work)
"""


def test_an_entry_point_sets_torch_and_logs_the_count_once():
    """main(argv) called in a process keeps its threads; the process's entry point sets them."""
    proc = subprocess.run([sys.executable, "-c", ENTRY], env=clean_env(DS_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["in-process 2", "torch 1 1", "torch 1 1"]
    logged = [ln for ln in proc.stderr.splitlines() if "threads:" in ln]
    assert len(logged) == 1, proc.stderr
    assert logged[0].endswith("threads: 1 intra-op, 1 inter-op (DS_NUM_THREADS=1 / 1 job(s); "
                              "OMP_WAIT_POLICY=PASSIVE)")
    assert "[threads.py:" in logged[0]


def test_a_stage_logs_its_count_before_its_error(tmp_path):
    """A real stage under taskset: one allowed core, one thread, whatever the machine has."""
    proc = subprocess.run(["taskset", "-c", "0", sys.executable, "-m",
                           "deepspeaker.bin.fix_data_dir", str(tmp_path / "nodata"),
                           str(tmp_path / "out")],
                          env=clean_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 1, proc.stderr
    assert ("threads: 1 intra-op, 1 inter-op (1 usable cores / 1 job(s); "
            "OMP_WAIT_POLICY=PASSIVE)") in proc.stderr
    assert "nodata" in proc.stderr.splitlines()[-1]


def test_a_quiet_command_keeps_the_count_out_of_its_output(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deepspeaker.bin.validate_data_dir",
                           str(tmp_path / "nodata")], env=clean_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "data directory not found" in proc.stdout
    assert "threads:" not in proc.stderr + proc.stdout


# ---------------------------------------------------------------- run_jobs.sh

ECHO = "echo DS=${DS_NUM_THREADS:-} OB=${OPENBLAS_NUM_THREADS:-} OMP=${OMP_NUM_THREADS:-}"


def job_env(tmp_path, *args, taskset=None, **env) -> list[str]:
    """What each job of ``run_jobs.sh ARGS log.JOB ECHO`` saw, job by job."""
    cmd = [str(RUN_JOBS), *args, str(tmp_path / "log.JOB"), ECHO]
    if taskset:
        cmd = ["taskset", "-c", taskset, *cmd]
    proc = subprocess.run(cmd, env=clean_env(**env), capture_output=True, text=True, check=False,
                          timeout=20, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    logs = sorted(tmp_path.glob("log.*"), key=lambda p: p.name)
    return [re.search(r"^DS=.*$", p.read_text(), re.MULTILINE).group(0) for p in logs]


def test_run_jobs_gives_each_job_its_share_of_the_cores(tmp_path):
    cores = len(os.sched_getaffinity(0))
    share = max(1, cores // 2)
    assert job_env(tmp_path, "--nj", "2") == [f"DS={share} OB={share} OMP="] * 2


def test_run_jobs_counts_the_jobs_running_at_once_not_all(tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert job_env(tmp_path, "--nj", "3", "--max-jobs-run", "1") == [f"DS={cores} OB={cores} OMP="] * 3


def test_run_jobs_counts_the_cores_it_may_use(tmp_path):
    assert job_env(tmp_path, "JOB=1", taskset="0") == ["DS=1 OB=1 OMP="]


def test_run_jobs_honours_a_cgroup_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    assert job_env(tmp_path, "JOB=1", DS_CGROUP_CPU_MAX=str(cpu_max)) == ["DS=1 OB=1 OMP="]


def test_run_jobs_splits_an_inherited_budget(tmp_path):
    assert job_env(tmp_path, "--nj", "2", DS_NUM_THREADS="6") == ["DS=3 OB=3 OMP="] * 2
    assert job_env(tmp_path, "--nj", "2", DS_NUM_THREADS="6",
                   OPENBLAS_NUM_THREADS="1") == ["DS=3 OB=1 OMP="] * 2


def test_run_jobs_leaves_a_users_omp_num_threads_alone(tmp_path):
    assert job_env(tmp_path, "--nj", "2", OMP_NUM_THREADS="3") == ["DS= OB= OMP=3"] * 2


# ---------------------------------------------------------------- the bench


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    stat = (entry / "stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":
                        pids.append(int(entry.name))
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                pass
    return pids


@pytest.mark.parametrize("own_session", [True, False])
def test_competitors_are_niced_and_all_killed(own_session):
    bench = load_bench()
    with bench.Competitors(3, "spin", 60.0, own_session=own_session) as load:
        leader = load.leader.pid
        members = group_members(leader)
        assert len(members) == 3
        nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        assert [os.getpriority(os.PRIO_PROCESS, p) for p in members] == [nice] * 3
        assert (os.getsid(leader) == leader) == own_session
    assert load.leader.returncode == -9
    deadline = time.monotonic() + 5  # the forked ones are reaped by init
    while group_members(leader) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(leader) == []


def test_bench_with_load_prints_a_positive_ratio(monkeypatch, capsys):
    """The command a user runs, its parent in this process (torch is loaded already)."""
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    bench = load_bench()
    assert bench.main(["--with-load", "--model", "gru", "--stage", "softmax", "--batch-size",
                       "4", "--chunk-frames", "20", "--steps", "2", "--warmup", "1",
                       "--speakers", "4", "--repeats", "1", "--load-settings",
                       "auto/PASSIVE"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^(\d+) threads, wait policy passive +([\d.]+) +([\d.]+) +([\d.]+)$",
                      out, re.MULTILINE)
    assert len(rows) == 1, out
    threads_used, quiet, contended, ratio = rows[0]
    assert int(threads_used) == threads.usable_cores()
    assert float(quiet) > 0 and float(contended) > 0
    assert float(ratio) == pytest.approx(float(contended) / float(quiet), rel=0.05, abs=2e-3)
    assert "target >= 0.5" in out


def test_bench_settings_are_parsed_and_bad_ones_named():
    bench = load_bench()
    assert bench.parse_settings("auto/PASSIVE, all/default,3/active") == [
        ("auto", "PASSIVE"), ("all", "DEFAULT"), ("3", "ACTIVE")]
    with pytest.raises(SystemExit) as e:
        bench.parse_settings("2/LAZY")
    assert str(e.value).startswith("--load-settings: bad item '2/LAZY'")
