"""Checks shared by the data-prep tests (tests/test_prep_*.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def assert_failed(r: subprocess.CompletedProcess, data: Path, *needles: str) -> None:
    """Exit code 1, one message naming what is wrong, no data dir and no temp dir."""
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, f"{needle!r} not in:\n{r.stderr}"
    assert not data.exists(), sorted(p.name for p in data.iterdir())
    if data.parent.exists():
        assert not [p.name for p in data.parent.iterdir() if p.name.startswith(".")]
