"""Builders for the tests of issue 16's families 5 and 6: disks that say no, signals, processes.

* :func:`full_disk` makes a directory where writing fails with "No space left on device"
  once ``free`` bytes are used: a real tmpfs of that little free space where this test
  process may mount one (root with CAP_SYS_ADMIN), else the test-only hook of
  ``tests/fault_inject/sitecustomize.py`` (the environment it returns turns it on).
* :func:`read_only` makes a directory that cannot be written: a tmpfs remounted read-only
  (root: "Read-only file system"), else chmod 0555 ("Permission denied").
* :func:`audio_dir` writes a tiny stage-1 data dir whose ``wav.scp`` entries are pipes
  that wait for a gate file, so a test can signal jobs while they are surely running.
* :func:`start`, :func:`procs_under`: commands the way a user runs them, and the
  processes that still mention a test's directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
FAULT_INJECT = Path(__file__).resolve().parent / "fault_inject"
SR = 16000
_mount_ok: list[bool] = []


def base_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                        "DS_TEST_FULL_DISK", "DS_TEST_FULL_DISK_AFTER")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["LC_ALL"] = "C"
    env.update(extra)
    return env


def _sh(*cmd: str) -> bool:
    return subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def can_mount(probe_dir: Path) -> bool:
    """Whether this process may mount a tmpfs (tried once per session)."""
    if not _mount_ok:
        probe_dir.mkdir(parents=True, exist_ok=True)
        ok = os.geteuid() == 0 and _sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                       str(probe_dir))
        if ok:
            _sh("umount", str(probe_dir))
        _mount_ok.append(ok)
    return _mount_ok[0]


def _umount(path: Path) -> None:
    if not _sh("umount", str(path)):
        _sh("umount", "-l", str(path))


@contextlib.contextmanager
def full_disk(path: Path, free: int, kind: str):
    """``path`` with about ``free`` bytes left; yields the extra environment of the command.

    ``kind`` "tmpfs" (a real file system; the test is skipped where none can be mounted)
    or "hook" (tests/fault_inject: the same errors, per process, through ``open``).
    """
    import pytest

    if kind == "hook":
        path.mkdir(parents=True, exist_ok=True)
        yield {"PYTHONPATH": f"{FAULT_INJECT}{os.pathsep}{REPO}",
               "DS_TEST_FULL_DISK": str(path), "DS_TEST_FULL_DISK_AFTER": str(free)}
        return
    if not can_mount(path.parent / ".mount_probe"):
        pytest.skip("cannot mount a tmpfs here (needs root); the 'hook' variant covers it")
    path.mkdir(parents=True, exist_ok=True)
    assert _sh("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path))
    try:
        st = os.statvfs(path)
        with open(path / ".filler", "wb") as f:
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free))
        yield {}
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` (made, then filled by the caller before ``freeze()``) read-only; yields freeze.

    As root a tmpfs remounted read-only (chmod means nothing to root), else chmod 0555
    of ``freeze``'s ``target`` (``path`` or a dir in it: the one the command writes into).
    """
    path.mkdir(parents=True, exist_ok=True)
    mounted = can_mount(path.parent / ".mount_probe")
    if mounted:
        assert _sh("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path))
    frozen: list[Path] = []

    def freeze(target: Path | None = None) -> str:
        """Make it read-only; the reason a write will give."""
        if mounted:
            assert _sh("mount", "-o", "remount,ro", str(path))
            return "Read-only file system"
        frozen.append(target or path)
        frozen[-1].chmod(0o555)
        return "Permission denied"

    try:
        yield freeze
    finally:
        if mounted:
            _umount(path)
        for d in frozen:
            d.chmod(0o755)


def _speechlike(seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = rng.normal(0, 30, n)
    a, b = int(0.2 * SR), int(0.7 * SR)
    x[a:b] += sum(3000 / h * np.sin(2 * np.pi * (100 + 15 * seed) * h * t[a:b]) for h in range(1, 6))
    return np.clip(x, -32768, 32767).astype(np.int16)


def audio_dir(path: Path, wav_dir: Path, num_utts: int = 6, gate: Path | None = None) -> Path:
    """A data dir of ``num_utts`` one-second utterances of 2 speakers.

    With ``gate`` every ``wav.scp`` entry is a pipe that waits until the file ``gate``
    exists: the jobs of stage 1 block on their first utterance until the test opens it.
    """
    wav_dir.mkdir(parents=True, exist_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    utts = [f"spk{i % 2}-u{i}" for i in range(num_utts)]
    lines = []
    for i, utt in enumerate(sorted(utts)):
        wav = wav_dir / f"{utt}.wav"
        if not wav.exists():
            sf.write(wav, _speechlike(i), SR, subtype="PCM_16")
        value = str(wav) if gate is None else (
            f"until test -e {gate}; do sleep 0.05; done; cat {wav} |")
        lines.append(f"{utt} {value}\n")
    (path / "wav.scp").write_text("".join(lines))
    (path / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    spks = sorted({u.split("-")[0] for u in utts})
    (path / "spk2utt").write_text("".join(
        f"{s} {' '.join(u for u in sorted(utts) if u.startswith(s + '-'))}\n" for s in spks))
    return path


def stage1_cmd(data: Path, log: Path | None = None, feats: Path | None = None,
               nj: int = 2) -> list[str]:
    """``compute_fbank_vad --nj NJ DATA [LOG [FEATS]]``."""
    return [sys.executable, "-m", "deepspeaker.bin.compute_fbank_vad", "--nj", str(nj),
            str(data)] + [str(p) for p in (log, feats) if p is not None]


def run(cmd: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, cwd=REPO, env=env or base_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def start(cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    """As from a terminal: SIGINT raises KeyboardInterrupt even if pytest runs with it ignored."""
    return subprocess.Popen(cmd, cwd=REPO, env=env or base_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509


def wait_for(cond, what: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the command ended (rc {proc.returncode}) before {what}:\n"
                                 f"{err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def procs_under(root: Path) -> list[str]:
    """``pid cmdline`` of the live processes (not zombies) whose command line names ``root``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(root) in cmd and state != "Z":
            out.append(f"{d.name} {cmd}")
    return out


def kill_all_under(root: Path) -> None:
    for line in procs_under(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def temp_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob(".*.tmp*"))


def read_feats(data: Path) -> dict[str, np.ndarray]:
    import kaldiio

    return {k: np.asarray(v) for k, v in kaldiio.load_scp(str(data / "feats.scp")).items()}
