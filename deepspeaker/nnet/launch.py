"""A training on several processes or machines: the torchrun command, run, and what went wrong.

The recipes' stages 6-7 train with one plain ``python -m deepspeaker.bin.train_embedding``
when ``--nproc-per-node 1 --nnodes 1`` (the default, unchanged).  Anything more goes
through :func:`launch`, once per node, which runs WeSpeaker's launch::

    python -m torch.distributed.run --nnodes N --nproc_per_node M \\
        --rdzv_backend c10d --rdzv_endpoint HOST:PORT --rdzv_id ID \\
        --rdzv_conf join_timeout=T,read_timeout=T,is_host=0|1 -m deepspeaker.bin.train_embedding ...

Why each piece:

* **c10d rendezvous**, not a static one: the nodes may start in any order within
  ``--rdzv-timeout`` seconds (Slurm starts them when it likes), and a node that never
  comes is a ``RendezvousTimeoutError`` after that time, not a hang.  torchrun 2.13
  ignores ``--node_rank`` with c10d (it warns): the global ranks follow the sorted node
  addresses, so the trainer's rank 0 (which writes; the file system is shared) may run
  on any node.  The node rank says who serves the rendezvous (``is_host``): node 0 does,
  at ``--rdzv-endpoint``, the others only connect, so a node pointed at an address that
  nobody serves fails after the timeout instead of serving one itself.
* **One node**: the endpoint is ``127.0.0.1:0``, as torchrun's ``--standalone``: port 0
  makes the kernel pick a free port while node 0's store holds it, so two trainings
  side by side (``--nnet-parallel``) never collide, and no port is guessed and lost
  between the choice and the bind.
* ``join_timeout`` is how long the rendezvous waits for every node; ``read_timeout``
  how long a node connects to the rendezvous store (its default, 60 s, would make a
  node started a minute before node 0 fail): both are ``--rdzv-timeout``.
* **The rendezvous id** is the experiment's (its dir name and a hash of its path, with
  ``--rdzv-id`` in front when given), the same on every node that runs the same recipe
  command, and another for each training, so trainings never join each other's round.
* **Threads**: each rank gets its share of the cores (``OMP_NUM_THREADS``), as
  ``deepspeaker.threads`` would; torchrun would set 1.

torchrun's own output (its agent, every local rank's stdout and stderr, the tracebacks)
goes to ``EXP_DIR/log/torchrun.log`` (``torchrun.node<K>.log`` with several nodes); the
terminal gets the trainer's rank-0 log as it grows and, on failure, one line saying
what failed (:func:`failure_reason`), the log, and the failing rank's last lines.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from deepspeaker.jobs import _die_with_parent_fn
from deepspeaker.threads import core_budget
from deepspeaker.utils import DeepSpeakerError

logger = logging.getLogger(__name__)

TRAIN_MODULE = "deepspeaker.bin.train_embedding"
LOOPBACK = "127.0.0.1:0"       # one node: the kernel's free port (torchrun --standalone's way)
TAIL_LINES = 10
STOP_WAIT_S = 60               # torchrun's own shutdown timeout is 30 s per worker group
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                 "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


class LaunchError(DeepSpeakerError):
    """Launch options that cannot work, or a launched training that failed."""


class TrainingInterrupted(KeyboardInterrupt):
    """torchrun stopped by a signal: an interrupt (exit 128 + signum), not a failure."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True)
class LaunchOptions:
    """Where a training runs: processes per node, nodes, this node, the rendezvous."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""
    rdzv_id: str = ""
    rdzv_timeout: int = 900

    @property
    def single_process(self) -> bool:
        return self.nproc_per_node == 1 and self.nnodes == 1

    @property
    def endpoint(self) -> str:
        return self.rdzv_endpoint or LOOPBACK


def _positive(name: str, value: str, problems: list[str], what: str) -> int:
    if not re.fullmatch(r"[0-9]+", value.strip()) or int(value) < 1:
        problems.append(f"--{name} '{value}': must be a positive integer ({what})")
        return 1
    return int(value)


def parse_launch_options(nproc_per_node: str = "1", nnodes: str = "1", node_rank: str = "0",
                         rdzv_endpoint: str = "", rdzv_id: str = "",
                         rdzv_timeout: str = "900") -> LaunchOptions:
    """The recipe options as given (strings), checked together; every problem in one error."""
    problems: list[str] = []
    nproc = _positive("nproc-per-node", nproc_per_node, problems, "processes on each node")
    nodes = _positive("nnodes", nnodes, problems, "the number of nodes")
    timeout = _positive("rdzv-timeout", rdzv_timeout, problems, "seconds")
    rank = 0
    if not re.fullmatch(r"[0-9]+", node_rank.strip()):
        problems.append(f"--node-rank '{node_rank}': must be 0..{nodes - 1} (this node's number)")
    else:
        rank = int(node_rank)
        if rank >= nodes:
            problems.append(f"--node-rank {rank}: must be < --nnodes {nodes} (nodes are "
                            f"numbered 0..{nodes - 1}, node 0 serves the rendezvous)")
    endpoint = rdzv_endpoint.strip()
    if endpoint:
        host, _, port = endpoint.rpartition(":")
        if not host or not re.fullmatch(r"[0-9]+", port) or int(port) > 65535 \
                or (int(port) == 0 and nodes > 1):
            problems.append(f"--rdzv-endpoint '{endpoint}': HOST:PORT (node 0's address and a "
                            f"free port 1-65535, the same on every node)")
    elif nodes > 1:
        problems.append(f"--nnodes {nodes} needs --rdzv-endpoint HOST:PORT (node 0's address "
                        f"and a free port, the same on every node)")
    if rdzv_id and not re.fullmatch(r"[A-Za-z0-9_.-]+", rdzv_id):
        problems.append(f"--rdzv-id '{rdzv_id}': letters, digits, '_', '.' and '-' only")
    if problems:
        raise LaunchError("; ".join(problems))
    return LaunchOptions(nproc, nodes, rank, endpoint, rdzv_id, timeout)


def rendezvous_id(opts: LaunchOptions, exp_dir) -> str:
    """The experiment's own id: ``[<--rdzv-id>-]<dir name>-<hash of its absolute path>``.

    The same on every node that runs the same recipe command in the same (shared) tree;
    another for each experiment.
    """
    path = os.path.abspath(exp_dir)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(path)) or "exp"
    digest = hashlib.sha1(path.encode()).hexdigest()[:10]
    return "-".join(x for x in (opts.rdzv_id, name, digest) if x)


def torchrun_log(opts: LaunchOptions, exp_dir) -> Path:
    """Where torchrun's output goes: one file per node, beside the ranks' train.rank<r>.log."""
    node = f".node{opts.node_rank}" if opts.nnodes > 1 else ""
    return Path(exp_dir) / "log" / f"torchrun{node}.log"


def torchrun_command(opts: LaunchOptions, exp_dir, args, module: str = TRAIN_MODULE) -> list[str]:
    """The argv of torchrun on this node: ``python -m torch.distributed.run ... -m MODULE ARGS``."""
    t = opts.rdzv_timeout
    conf = f"join_timeout={t},read_timeout={t},is_host={int(opts.node_rank == 0)}"
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(opts.nnodes),
            "--nproc_per_node", str(opts.nproc_per_node), "--rdzv_backend", "c10d",
            "--rdzv_endpoint", opts.endpoint, "--rdzv_id", rendezvous_id(opts, exp_dir),
            "--rdzv_conf", conf, "--max_restarts", "0", "-m", module, *args]


def worker_env(opts: LaunchOptions, env=None) -> dict:
    """The environment of torchrun: no torchrun variables inherited, each rank's thread share."""
    env = dict(os.environ if env is None else env)
    for k in _TORCHRUN_ENV:
        env.pop(k, None)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, core_budget(env)[0] // opts.nproc_per_node))
    return env


# --------------------------------------------------------------------------- running


def launch(opts: LaunchOptions, exp_dir, args, what: str = "training",
           module: str = TRAIN_MODULE) -> None:
    """Run torchrun for this node until the training ends; a failure is one :class:`LaunchError`.

    ``what`` names the step in messages ("stage 6").  Before the error, the failing
    rank's last lines (or torchrun's, without its traceback frames) go to stderr.
    """
    exp_dir = Path(exp_dir)
    log_path = torchrun_log(opts, exp_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = torchrun_command(opts, exp_dir, args, module)
    where = (f"node {opts.node_rank} of {opts.nnodes}, " if opts.nnodes > 1 else "") + \
        f"{opts.nproc_per_node} process(es)"
    logger.info("%s: %s on %s, rendezvous %s (torchrun's output: %s)", what, exp_dir, where,
                opts.endpoint, log_path)
    followed = exp_dir / "log" / "train.rank0.log"
    with open(log_path, "w") as log, LogFollower(followed):
        log.write(f"# {shlex.join(cmd)}\n")
        log.flush()
        rc = _run(cmd, log, worker_env(opts))
    if rc == 0:
        return
    text = log_path.read_text(errors="replace")
    stopped = re.search(r"SignalException: Process \d+ got signal: (\d+)", text)
    if stopped:   # Ctrl-C or SIGTERM reached torchrun (and its workers) before us
        raise TrainingInterrupted(int(stopped.group(1)))
    reason, rank = failure_reason(text, opts)
    rank_log = exp_dir / "log" / f"train.rank{rank}.log"
    tail_of = rank_log if rank is not None and rank_log.is_file() else log_path
    if tail_of != followed:   # rank 0's lines are on the terminal already
        lines = meaningful_lines(tail_of.read_text(errors="replace"))[-TAIL_LINES:]
        sys.stderr.write(f"--- the last lines of {tail_of} ---\n" + "".join(f"{x}\n" for x in lines))
    raise LaunchError(f"{what}: training {exp_dir} failed ({where}): {reason}; log: {log_path}")


def _run(cmd: list[str], log, env: dict) -> int:
    """torchrun's exit code; on an exception here (Ctrl-C, SIGTERM) it is stopped first."""
    # preexec_fn only calls prctl and getppid, which are safe between fork and exec.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, preexec_fn=_die_with_parent_fn())  # noqa: PLW1509
    try:
        return proc.wait()
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)   # torchrun passes it on to every worker
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


# torchrun's noise between the lines that say something: traceback frames, C++ frames.
_NOISE = re.compile(r"^(\s|Traceback |frame #|<omitting|The above exception|Exception raised from "
                    r"|\*+$|=+$|-+$)")


def meaningful_lines(text: str) -> list[str]:
    """The lines of a log without traceback frames and banners (what a tail should show)."""
    return [x for x in text.splitlines() if x.strip() and not _NOISE.match(x)]


def failure_reason(text: str, opts: LaunchOptions) -> tuple[str, int | None]:
    """(what went wrong, the global rank that failed first or None) from torchrun's output."""
    t, ep, node = opts.rdzv_timeout, opts.endpoint, opts.node_rank
    if "RendezvousTimeoutError" in text:
        return (f"the rendezvous of {opts.nnodes} nodes at {ep} timed out after {t} s (every "
                f"node must start within --rdzv-timeout, with the same --rdzv-endpoint, "
                f"--nnodes and --rdzv-id)"), None
    if "RendezvousConnectionError" in text or "DistNetworkError" in text:
        if node > 0:
            return (f"node {node} could not reach the rendezvous at {ep} within {t} s (node 0 "
                    f"serves it: start it, with --rdzv-endpoint naming its address)"), None
        if re.search(r"address already in use", text, re.I):
            return f"node 0 cannot serve the rendezvous at {ep}: the port is in use", None
        return (f"node 0 cannot serve the rendezvous at {ep} (--rdzv-endpoint must be this "
                f"machine's address and a free port)"), None
    if "RendezvousClosedError" in text:
        return (f"the rendezvous at {ep} was closed by another node (a node still in the "
                f"previous training's rendezvous? rerun)"), None
    cause = re.search(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", text, re.S)
    if cause is None:
        return "torchrun failed before starting the workers", None
    rank, code = int(cause.group(1)), int(cause.group(2))
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    error = worker_error(text)
    return f"rank {rank} failed ({how}){': ' + error if error else ''}", rank


_WORKER_ERROR = re.compile(r"^\S+ \S+ ERROR \[[^\]]+\] (.*)$", re.M)


def worker_error(text: str) -> str | None:
    """The first error a worker logged (in our log format), not an interrupt torchrun caused."""
    for m in _WORKER_ERROR.finditer(text):
        if not m.group(1).startswith("interrupted ("):
            return m.group(1)
    return None


class LogFollower:
    """Echoes to stderr the lines appended to ``path`` (the trainer's rank-0 log) meanwhile.

    torchrun's output goes to its log, so without this the terminal would say nothing
    for the whole training.  Only lines written after the start (a rerun appends).
    """

    def __init__(self, path: Path, interval: float = 1.0):
        self.path, self.interval = Path(path), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        try:
            self._offset = self.path.stat().st_size
        except OSError:
            self._offset = 0

    def __enter__(self) -> "LogFollower":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._echo()
        self._echo()

    def _echo(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        if end:
            self._offset += end
            sys.stderr.write(data[:end].decode("utf-8", "replace"))
            sys.stderr.flush()


__all__ = ["LaunchError", "LaunchOptions", "LogFollower", "failure_reason", "launch",
           "meaningful_lines", "parse_launch_options", "rendezvous_id", "torchrun_command",
           "torchrun_log", "TrainingInterrupted", "worker_env"]
