"""Run one step of a recipe and record its wall time, CPU time and peak memory.

    python -m deepspeaker.bin.time_step --table exp/timing.tsv --size 1000 --step 3 -- \\
        ./run.sh --size 1000 --stage 3 --stop-stage 3

Appends ``size step wall_s cpu_s max_rss_mb finished`` to the table when the command
succeeds (:mod:`deepspeaker.timing`); exits with the command's exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..timing import run_timed
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.time_step",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, required=True, help="the TSV the row is added to")
    p.add_argument("--size", type=int, required=True, help="the point of the study")
    p.add_argument("--step", required=True, help="the step's name (a stage number)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        get_parser().error("no command after --")
    return run_main(lambda: run_timed(cmd, args.table, args.size, args.step), argv, echo=False,
                    outputs=[args.table.parent])


if __name__ == "__main__":
    sys.exit(main())
