"""Checks shared by the data-prep tests (tests/test_prep_*.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deepspeaker.data.kaldi_dir import sorted_ids

ROOT = Path(__file__).resolve().parents[1]


def run_prep(script: Path, args: list, cwd: Path) -> subprocess.CompletedProcess:
    """``python <recipe>/local/prepare_data.py ARGS`` in ``cwd``, as a recipe runs it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stderr
    return r


def table(path: Path) -> dict[str, str]:
    """``key value`` lines, asserting the keys are unique and sorted bytewise."""
    lines = [line.split(" ", 1) for line in path.read_text().splitlines()]
    keys = [k for k, _ in lines]
    assert keys == sorted_ids(keys) and len(set(keys)) == len(keys), path
    return dict(lines)


def assert_failed(r: subprocess.CompletedProcess, data: Path, *needles: str) -> None:
    """Exit code 1, one message naming what is wrong, no data dir and no temp dir."""
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, f"{needle!r} not in:\n{r.stderr}"
    assert not data.exists(), sorted(p.name for p in data.iterdir())
    if data.parent.exists():
        assert not [p.name for p in data.parent.iterdir() if p.name.startswith(".")]
