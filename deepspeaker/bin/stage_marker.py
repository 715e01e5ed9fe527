"""Check or write a stage marker from the shell: the rerun rule of ``deepspeaker.marker``.

    python -m deepspeaker.bin.stage_marker check MARKER [--config YAML]... [--input FILE]... [--option K=V]...
    python -m deepspeaker.bin.stage_marker write MARKER [the same arguments]

``check`` exits 0 when MARKER holds exactly the signature of these arguments (the
stage is up to date), else 1 and says on stderr what differs.  ``write`` records it
(atomically) once the stage has succeeded.  A config is compared as parsed YAML, so
comments and key order do not count; an input by its bytes (an ``.scp`` also by the
archives it points into); an option as the string given.
"""

from __future__ import annotations

import argparse
import sys

from ..marker import Marker, signature
from ..utils import ConfigError, DeepSpeakerError, load_yaml
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.stage_marker",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("check", "write"))
    p.add_argument("marker", help="the marker file, e.g. data/train/.fbank_vad.done")
    p.add_argument("--config", action="append", default=[], help="a YAML config the stage reads")
    p.add_argument("--input", action="append", default=[], help="an input file the stage reads")
    p.add_argument("--option", action="append", default=[], metavar="K=V",
                   help="an option that changes what the stage computes")
    return p


def build(args: argparse.Namespace) -> dict:
    options = {}
    for kv in args.option:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {kv!r}: expected KEY=VALUE")
        options[key] = value
    config = {path: load_yaml(path) for path in args.config}
    return signature(config=config, inputs=args.input, options=options)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work() -> int:
        marker = Marker(args.marker)
        try:
            sig = build(args)
        except DeepSpeakerError as e:
            print(f"stage_marker: {e}", file=sys.stderr)
            return 2
        if args.action == "write":
            marker.write(sig)
            return 0
        if marker.matches(sig):
            return 0
        if marker.read() is not None:
            print(f"{marker.path}: made from another "
                  f"{', '.join(marker.differences(sig)[:6])}; redoing", file=sys.stderr)
        return 1

    return run_main(work, argv, echo=False)


if __name__ == "__main__":
    sys.exit(main())
