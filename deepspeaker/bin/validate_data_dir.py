"""Check a Kaldi data dir against the contract and print every problem found.

One line per problem (``error: file:line: utt: message``), then a summary line.
Exit status 1 if there is an error (or, with --strict-warnings, a warning), else 0
with ``DATA: OK (N utterances, M speakers)``.

    python -m deepspeaker.bin.validate_data_dir [--need feats.scp,vad.scp] [--strict-warnings]
        [--no-feats] [--no-text] [--no-wav] DATA

``--no-feats``, ``--no-text`` and ``--no-wav`` are Kaldi's ``validate_data_dir.sh``
options: that file is not required, but checked when it is there.

Ids must be valid UTF-8 (``deepspeaker.data.table``): a line that is not is an error
``file:line: not valid UTF-8 (byte 0xe9 at column 7); ...``; the path or command of a
``wav.scp`` line may hold any bytes (a file name in Latin-1 stays openable).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..data import DataDir, validate_data_dir
from ..data.kaldi_dir import ERROR
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.validate_data_dir",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--need", default="",
                   help="comma-separated files that must exist besides wav.scp and utt2spk, "
                   "e.g. feats.scp,vad.scp")
    p.add_argument("--strict-warnings", action="store_true",
                   help="exit 1 on warnings too")
    for name, what in (("feats", "feats.scp"), ("text", "text"), ("wav", "wav.scp")):
        p.add_argument(f"--no-{name}", dest="skip", action="append_const", const=what,
                       default=[], help=f"do not require {what}; check it if present (Kaldi's option)")
    p.add_argument("data", type=Path, help="data dir")
    return p


def check_data_dir(data: Path, need: list[str], strict_warnings: bool,
                   skip: list[str] = ()) -> int:
    """Print the problems of ``data`` and a summary; return the exit status."""
    problems = validate_data_dir(data, need=need, skip=skip)
    for p in problems:
        print(f"{p.severity}: {p}")
    n_err = sum(p.severity == ERROR for p in problems)
    n_warn = len(problems) - n_err
    if n_err or (strict_warnings and n_warn):
        print(f"{data}: {n_err} error(s), {n_warn} warning(s)")
        return 1
    warn = f"; {n_warn} warning(s)" if n_warn else ""
    if "wav.scp" in skip and not (data / "wav.scp").is_file():
        print(f"{data}: OK{warn}")
        return 0
    d = DataDir.load(data)
    print(f"{data}: OK ({len(d.utt2spk)} utterances, {len(d.spk2utt)} speakers{warn})")
    return 0


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: check_data_dir(args.data, [n for n in args.need.split(",") if n],
                                           args.strict_warnings, args.skip), argv, echo=False)

if __name__ == "__main__":
    sys.exit(main())
