"""Stage 4b: posterior-mean i-vectors of a data dir (paper §4.2; SPEC B2).

    python -m deepspeaker.bin.extract_ivectors exp/ivector data/eval

Writes ``exp/ivector/<set>/ivector.scp`` + ark (float32 vectors, readable with
kaldiio or Kaldi's copy-vector) and ``<set>/failed_utts`` for utterances without
voiced frames or whose feats.scp / vad.scp entries point into a truncated or damaged
ark (each line names the scp file and line and the ark), which get no i-vector and
are never scored as zeros; the rest are written.

I-vectors are derived data: the marker ``<set>/.ivector.done`` records the config
sections (frontend, stats), the set's features and the UBM and extractor they came
from.  A rerun with all of these unchanged does nothing; any change extracts again.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..data import DataDir
from ..data.ark import scan_feature_entries, write_ark_scp
from ..ivector.extractor import IvectorExtractor
from ..ivector.pipeline import (feature_files, iter_frontend, load_exp_config, load_ubm,
                                stage_signature, write_failed)
from ..ivector.stats import stats_of_utterances
from ..marker import Marker
from ..utils import DeepSpeakerError, SizeMismatchError
from ._cli import run_main

logger = logging.getLogger(__name__)

SECTIONS = ("frontend", "stats")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.extract_ivectors",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path)
    return p


def run(exp: Path, data: Path) -> Path:
    cfg = load_exp_config(exp)
    out_dir = exp / data.resolve().name
    scp = out_dir / "ivector.scp"
    ubm_path, ext_path = exp / "models" / "ubm.npz", exp / "models" / "extractor.npz"
    marker = Marker(out_dir / ".ivector.done")
    sig = stage_signature(cfg, SECTIONS, exp, feature_files(data), [ubm_path, ext_path])
    if marker.outputs_current(sig, [scp, out_dir / "ivector.ark"]):
        logger.info("%s is up to date (same features, UBM and extractor, %s); nothing to do",
                    scp, marker.path)
        return scp
    ubm = load_ubm(exp, cfg)
    ext = IvectorExtractor.load(ext_path)
    if ext.means.shape != ubm.means.shape:
        raise SizeMismatchError(f"{ext_path} is for a {ext.means.shape} UBM, {ubm_path} is "
                                f"{ubm.means.shape}")
    t0 = time.time()
    d = DataDir.load(data)
    failed = damaged_utterances(d)
    items = iter_frontend(data, cfg.frontend, utts=usable_utts(d, failed), failed=failed)
    keys, n, f = stats_of_utterances(ubm, items, cfg.stats.top_k, cfg.stats.batch_utts)
    if not keys:
        raise DeepSpeakerError(f"{data}: no utterance could be used ({len(failed)} listed in "
                               f"{out_dir / 'failed_utts'}, e.g. {next(iter(failed.items()), '')})")
    ivectors = ext.extract(n, f).astype(np.float32)
    write_ark_scp(out_dir / "ivector.ark", scp, zip(keys, ivectors))
    write_failed(out_dir / "failed_utts", failed)
    marker.write(sig)
    logger.info("%s: %d i-vectors of dim %d in %.1f s", scp, len(keys), ivectors.shape[1],
                time.time() - t0)
    return scp


def damaged_utterances(d: DataDir) -> dict[str, str]:
    """``{utt: reason}`` of the utterances whose feats.scp / vad.scp entries are damaged.

    A header check of every entry (:func:`~deepspeaker.data.ark.scan_feature_entries`)
    before any work: a truncated or overwritten ark costs only the utterances that
    point into the damage, listed in ``failed_utts``; the others get their i-vectors.
    """
    bad = scan_feature_entries(d)
    for e in bad.values():
        logger.warning("%s; no i-vector", e)
    return {utt: e.listing for utt, e in bad.items()}


def usable_utts(d: DataDir, damaged: dict[str, str]) -> list[str] | None:
    """The utterances with features and VAD, less the damaged ones (None: let the reader say why)."""
    if d.feats_scp is None or d.vad_scp is None:
        return None
    return [u for u in sorted(set(d.feats_scp) & set(d.vad_scp)) if u not in damaged]


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: run(args.exp, args.data), argv,
                    outputs=[args.exp / args.data.resolve().name] if args.exp.is_dir() else [])


if __name__ == "__main__":
    sys.exit(main())
