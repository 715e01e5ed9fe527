"""Tests of the shared shell helpers: utils/parse_options.sh, utils/log.sh and
utils/run_jobs.sh, driven through bash in tmp_path."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parent.parent / "utils"
PARSE_OPTIONS = UTILS / "parse_options.sh"
LOG_SH = UTILS / "log.sh"
RUN_JOBS = UTILS / "run_jobs.sh"

ENV = {**os.environ, "LC_ALL": "C"}


def bash(script: Path, *args, cwd=None, timeout=20):
    return subprocess.run(
        ["bash", str(script), *map(str, args)],
        cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_jobs(*args, cwd, timeout=20):
    return subprocess.run(
        [str(RUN_JOBS), *map(str, args)],
        cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------- parse_options

OPTIONS_SCRIPT = f"""#!/usr/bin/env bash
set -euo pipefail
foo_bar=default
nj=4
use_gpu=false
help_message="Usage: opts.sh [options] <in> <out>"
before=$(set -o; shopt)
. "{PARSE_OPTIONS}"
[[ "$before" == "$(set -o; shopt)" ]] || echo "shell options changed"
set | grep '^_po_' || true
printf 'foo_bar=%s\\n' "$foo_bar"
printf 'nj=%s\\n' "$nj"
printf 'use_gpu=%s\\n' "$use_gpu"
printf 'nargs=%s\\n' "$#"
for a in "$@"; do printf 'arg=%s\\n' "$a"; done
"""


@pytest.fixture
def opts_script(tmp_path):
    script = tmp_path / "opts.sh"
    script.write_text(OPTIONS_SCRIPT)
    return script


def parsed(proc):
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_defaults_kept_and_nothing_leaks(opts_script):
    assert parsed(bash(opts_script)) == [
        "foo_bar=default", "nj=4", "use_gpu=false", "nargs=0"]


@pytest.mark.parametrize("args", [["--foo-bar", "v"], ["--foo-bar=v"],
                                  ["--foo_bar", "v"]])
def test_declared_option_is_set(opts_script, args):
    assert "foo_bar=v" in parsed(bash(opts_script, *args))


def test_value_with_spaces_and_equals(opts_script):
    out = parsed(bash(opts_script, "--foo-bar", "a  b=c", "--nj=x y"))
    assert "foo_bar=a  b=c" in out
    assert "nj=x y" in out


def test_unknown_option_fails_naming_it_and_the_script(opts_script):
    proc = bash(opts_script, "--no-such", "1", "pos")
    assert proc.returncode == 1
    assert f"{opts_script}: unknown option --no-such" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("value", ["true", "false"])
def test_boolean_accepts_true_false(opts_script, value):
    assert f"use_gpu={value}" in parsed(bash(opts_script, "--use-gpu", value))


@pytest.mark.parametrize("args", [["--use-gpu", "yes"], ["--use-gpu=1"]])
def test_boolean_rejects_other_values(opts_script, args):
    proc = bash(opts_script, *args)
    assert proc.returncode == 1
    assert "--use-gpu" in proc.stderr
    bad = args[-1].split("=")[-1]
    assert f"'{bad}'" in proc.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_help_message(opts_script, flag):
    proc = bash(opts_script, "--nj", "2", flag, "x")
    assert proc.returncode == 0
    assert "Usage: opts.sh [options] <in> <out>" in proc.stderr
    assert proc.stdout == ""


def test_missing_value_is_an_error(opts_script):
    proc = bash(opts_script, "--nj")
    assert proc.returncode == 1
    assert "--nj" in proc.stderr


def test_config_file_is_sourced_and_later_options_override(opts_script, tmp_path):
    conf = tmp_path / "my.conf"
    conf.write_text("nj=7\nfoo_bar='from config'\n")
    out = parsed(bash(opts_script, "--config", conf, "--nj", "9"))
    assert "foo_bar=from config" in out
    assert "nj=9" in out


def test_missing_config_is_an_error(opts_script, tmp_path):
    proc = bash(opts_script, "--config", tmp_path / "nope.conf")
    assert proc.returncode == 1
    assert "nope.conf" in proc.stderr


def test_positional_args_are_kept(opts_script):
    out = parsed(bash(opts_script, "--nj", "3", "data/a b", "-x", "--nj", "5"))
    assert out == ["foo_bar=default", "nj=3", "use_gpu=false", "nargs=4",
                   "arg=data/a b", "arg=-x", "arg=--nj", "arg=5"]


def test_double_dash_ends_options(opts_script):
    out = parsed(bash(opts_script, "--nj", "2", "--", "--foo-bar", "x"))
    assert out == ["foo_bar=default", "nj=2", "use_gpu=false", "nargs=2",
                   "arg=--foo-bar", "arg=x"]


def test_works_inside_a_function(tmp_path):
    script = tmp_path / "fn.sh"
    script.write_text(f"""#!/usr/bin/env bash
set -euo pipefail
f() {{
  local beam=10
  . "{PARSE_OPTIONS}"
  echo "beam=$beam n=$#"
}}
f --beam 13 x y
""")
    assert parsed(bash(script)) == ["beam=13 n=2"]


def test_found_on_path_like_recipes_do(tmp_path):
    # path.sh puts utils/ on PATH; recipes then write `. parse_options.sh`.
    script = tmp_path / "recipe.sh"
    script.write_text("""#!/usr/bin/env bash
set -euo pipefail
stage=0
. parse_options.sh
. log.sh
log "stage=$stage rest=$*"
""")
    env = {**ENV, "PATH": f"{UTILS}:{ENV['PATH']}"}
    proc = subprocess.run(["bash", str(script), "--stage", "3", "a"], env=env,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.rstrip().endswith("(recipe.sh:6:main) stage=3 rest=a")


# ------------------------------------------------------------------------ log

LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \((?P<file>[^:]+):(?P<line>\d+):"
    r"(?P<func>[^)]+)\) (?P<msg>.*)$")


def test_log_and_die_name_their_caller(tmp_path):
    script = tmp_path / "stage.sh"
    script.write_text(f"""#!/usr/bin/env bash
set -euo pipefail
. "{LOG_SH}"
log "hello world"
check() {{
  log "in check"
  die "fatal: $1"
}}
check data/x
echo "not reached"
""")
    proc = bash(script)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = [LOG_LINE.match(x) for x in proc.stderr.splitlines()]
    assert all(lines), proc.stderr
    got = [(m["file"], m["line"], m["func"], m["msg"]) for m in lines]
    assert got == [("stage.sh", "4", "main", "hello world"),
                   ("stage.sh", "6", "check", "in check"),
                   ("stage.sh", "7", "check", "fatal: data/x")]


def test_sourcing_log_has_no_side_effects(tmp_path):
    script = tmp_path / "quiet.sh"
    script.write_text(f"""#!/usr/bin/env bash
set -euo pipefail
before=$(set -o; shopt)
. "{LOG_SH}"
[[ "$before" == "$(set -o; shopt)" ]] || echo "shell options changed"
""")
    proc = bash(script)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


# ------------------------------------------------------------------- run_jobs

HEADER = re.compile(r"\A# (?P<cmd>.*)\n# Started at .+\n")
FOOTER = re.compile(
    r"# Accounting: time=\d+ threads=1\n# Ended \(code (?P<rc>\d+)\) at .+\n\Z")


def check_log(path: Path, rc: int) -> str:
    text = path.read_text()
    head, foot = HEADER.search(text), FOOTER.search(text)
    assert head and foot, text
    assert int(foot["rc"]) == rc
    return head["cmd"]


def test_three_jobs_substitute_job_everywhere(tmp_path):
    proc = run_jobs("JOB=1:3", "exp/log/echo.JOB.log",
                    "echo", "index", "JOB", ">", "out.JOB.txt", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    for i in (1, 2, 3):
        assert (tmp_path / f"out.{i}.txt").read_text() == f"index {i}\n"
        cmd = check_log(tmp_path / f"exp/log/echo.{i}.log", 0)
        assert cmd == f"echo index {i} > out.{i}.txt"


def test_nj_means_job_1_to_n_and_output_goes_to_log(tmp_path):
    proc = run_jobs("--nj", "2", "log/a.JOB.log",
                    "echo out JOB; echo err JOB >&2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for i in (1, 2):
        text = (tmp_path / f"log/a.{i}.log").read_text()
        assert f"out {i}\nerr {i}\n" in text
        check_log(tmp_path / f"log/a.{i}.log", 0)
    assert not (tmp_path / "log/a.3.log").exists()


def test_single_job_without_range(tmp_path):
    proc = run_jobs("log/one.log", "echo", "JOB", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "log/one.log").read_text()
    assert "\nJOB\n" in text
    check_log(tmp_path / "log/one.log", 0)


def test_failing_job_fails_the_call_after_the_others_finish(tmp_path):
    proc = run_jobs(
        "JOB=1:3", "log/f.JOB.log",
        "echo line-JOB; if [ JOB = 2 ]; then echo boom; exit 3; fi;"
        " sleep 0.2; touch done.JOB", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "run_jobs.sh: 1/3 jobs failed (exit codes 3); log: log/f.2.log" \
        in proc.stderr
    assert "boom" in proc.stderr and "# Ended (code 3)" in proc.stderr
    check_log(tmp_path / "log/f.2.log", 3)
    for i in (1, 3):
        check_log(tmp_path / f"log/f.{i}.log", 0)
        assert (tmp_path / f"done.{i}").exists()


def test_several_failures_report_the_first(tmp_path):
    proc = run_jobs("JOB=1:4", "log/g.JOB.log",
                    "[ JOB -lt 3 ] || exit JOB", cwd=tmp_path)
    assert proc.returncode == 1
    assert "2/4 jobs failed (exit codes 3 4); log: log/g.3.log" in proc.stderr


def intervals(tmp_path, n):
    spans = []
    for i in range(1, n + 1):
        start, end = (tmp_path / f"t.{i}").read_text().split()
        spans.append((int(start), int(end)))
    return spans


def max_overlap(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


TIMED = "s=$(date +%s%N); sleep 0.2; echo $s $(date +%s%N) > t.JOB"


def test_max_jobs_run_1_is_sequential(tmp_path):
    proc = run_jobs("--max-jobs-run", "1", "JOB=1:3", "log/s.JOB.log", TIMED,
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    spans = intervals(tmp_path, 3)
    assert max_overlap(spans) == 1
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)


def test_max_jobs_run_2_caps_concurrency(tmp_path):
    proc = run_jobs("JOB=1:5", "--max-jobs-run=2", "log/s.JOB.log", TIMED,
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert max_overlap(intervals(tmp_path, 5)) <= 2


def test_default_runs_all_jobs_at_once(tmp_path):
    # Each job waits until all three have started: only parallel jobs pass.
    barrier = ("touch started.JOB; for i in $(seq 100); do"
               " [ $(ls started.* | wc -l) -ge 3 ] && exit 0; sleep 0.05; done;"
               " exit 9")
    proc = run_jobs("JOB=1:3", "log/b.JOB.log", barrier, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_pipeline_in_one_quoted_argument(tmp_path):
    proc = run_jobs("JOB=1:2", "log/p.JOB.log",
                    "printf 'b\\na\\nJOB\\n' | sort | tr -d '\\n' > p.JOB",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.1").read_text() == "1ab"
    assert (tmp_path / "p.2").read_text() == "2ab"


def test_pipefail_inside_the_job(tmp_path):
    proc = run_jobs("log/pf.log", "false | cat", cwd=tmp_path)
    assert proc.returncode == 1
    check_log(tmp_path / "log/pf.log", 1)


@pytest.mark.parametrize("args", [
    [],                                   # nothing
    ["log/x.log"],                        # no command
    ["JOB=3:1", "log/x.JOB.log", "true"],  # start > end
    ["JOB=a:b", "log/x.JOB.log", "true"],  # not numbers
    ["JOB=1:2", "log/x.log", "true"],      # jobs would share one log
    ["--nj", "0", "log/x.JOB.log", "true"],
    ["--nj", "2", "JOB=1:2", "log/x.JOB.log", "true"],
    ["--max-jobs-run", "log/x.log"],       # value missing (log taken as value)
    ["--memory", "4G", "log/x.log", "true"],  # unknown option (--mem is a cluster option)
])
def test_usage_errors(tmp_path, args):
    proc = run_jobs(*args, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Usage: run_jobs.sh" in proc.stderr
    assert not (tmp_path / "log").exists()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143),
                                       (signal.SIGINT, 130)])
def test_signal_kills_running_jobs(tmp_path, sig, code):
    proc = subprocess.Popen(
        [str(RUN_JOBS), "JOB=1:3", "--max-jobs-run", "2", "log/k.JOB.log",
         "sleep 30 & echo $! > pid.JOB; wait"],
        cwd=tmp_path, env=ENV, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As under a terminal's Ctrl-C: a shell started with SIGINT ignored
        # (e.g. pytest run in the background) could not trap it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 10
        while not all((tmp_path / f"pid.{i}").is_file()
                      and (tmp_path / f"pid.{i}").read_text().strip()
                      for i in (1, 2)):
            assert time.time() < deadline, "jobs did not start"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code
    assert "killed the running jobs" in err
    for i in (1, 2):
        assert not alive(int((tmp_path / f"pid.{i}").read_text()))
        check_log(tmp_path / f"log/k.{i}.log", 143)
    assert not (tmp_path / "log/k.3.log").exists()


def test_single_index_and_other_range_names(tmp_path):
    proc = run_jobs("SPLIT=2", "log/s.SPLIT.log", "echo SPLIT JOB > o.SPLIT",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.2").read_text() == "2 JOB\n"
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["s.2.log"]
