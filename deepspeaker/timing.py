"""Wall time, CPU time and peak resident memory of one step of a recipe, kept in a table.

The training-size study (egs/mini_scale) must show that no stage grows faster than
linearly with the training set and say which one dominates; so every step it runs goes
through :func:`run_timed`, which appends one row to ``exp/timing.tsv``:

    size  step  wall_s  cpu_s  max_rss_mb  finished

``max_rss_mb`` is the peak resident set of the largest single process the step ran
(``getrusage(RUSAGE_CHILDREN)``: Linux keeps the largest descendant's peak, not the sum
of processes that ran at once; two networks trained side by side are each about half
of a step's memory).  A failed or interrupted step writes no row.  A rerun that finds
the work done appends a row of a few seconds; :func:`read_timing` keeps the longest row
of each (size, step), the run that did the work.
"""

from __future__ import annotations

import datetime
import resource
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .utils import DeepSpeakerError, atomic_write

COLUMNS = ("size", "step", "wall_s", "cpu_s", "max_rss_mb", "finished")


@dataclass(frozen=True)
class StepTime:
    size: int
    step: str
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    finished: str


def run_timed(cmd: Sequence[str], table: Path, size: int, step: str) -> int:
    """Run ``cmd``; when it succeeds, append its costs to ``table``.  Returns its exit code.

    An interrupt reaching this process (Ctrl-C reaches the whole process group, so the
    command has it too) waits for the command to stop before it is passed on.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(list(cmd))
    try:
        rc = proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc == 0:
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        finished = datetime.datetime.now().isoformat(timespec="seconds")
        append_row(table, StepTime(size, step, wall, cpu, after.ru_maxrss / 1024, finished))
    return rc


def append_row(table: Path, row: StepTime) -> None:
    """Add ``row`` to ``table`` (written whole to a temp file, then renamed)."""
    text = table.read_text() if table.is_file() else "\t".join(COLUMNS) + "\n"
    line = (f"{row.size}\t{row.step}\t{row.wall_s:.2f}\t{row.cpu_s:.2f}\t"
            f"{row.max_rss_mb:.1f}\t{row.finished}\n")
    with atomic_write(table) as f:
        f.write(text + line)


def read_timing(table: Path) -> dict[tuple[int, str], StepTime]:
    """The longest recorded run of each (size, step) of ``table``; {} when there is none."""
    if not table.is_file():
        return {}
    best: dict[tuple[int, str], StepTime] = {}
    for lineno, line in enumerate(table.read_text().splitlines(), 1):
        fields = line.split("\t")
        if lineno == 1 and fields[0] == COLUMNS[0]:
            continue
        try:
            row = StepTime(int(fields[0]), fields[1], float(fields[2]), float(fields[3]),
                           float(fields[4]), fields[5])
        except (IndexError, ValueError):
            raise DeepSpeakerError(f"{table}:{lineno}: not a row of {len(COLUMNS)} tab-separated "
                                   f"fields ({' '.join(COLUMNS)}): {line!r}") from None
        key = (row.size, row.step)
        if key not in best or row.wall_s > best[key].wall_s:
            best[key] = row
    return best
