"""Fixing and subsetting a Kaldi data dir, both driven by the one table ``FILE_KINDS``.

* ``fix_data_dir(src, dst)``: keep the utterances every per-utterance file agrees on,
  as Kaldi's ``utils/fix_data_dir.sh`` does.  With ``dst`` None (Kaldi's
  ``fix_data_dir.sh DIR``) the dir is fixed in place and the files it changes are kept
  first in ``DIR/.backup/``, as Kaldi keeps them.
* ``subset_speakers``: a seeded, nested share of the speakers (paper T7).

Both go through :func:`restrict`, which filters every file of the table by what its
keys are: utterance files to the kept utterances, speaker files (spk2gender, spk2age,
cmvn.scp) to their speakers, recording files to the recordings kept segments use;
spk2utt is rebuilt from utt2spk.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

from .kaldi_dir import DataDir, DataDirError, spk2utt_from_utt2spk
from .table import FILE_KINDS, KNOWN_FILES, REC, SPK, UTT, segment_problem, sorted_ids

logger = logging.getLogger(__name__)
BACKUP = ".backup"


def restrict(data: DataDir, keep: set[str], dst: Path, *, filter_failed: bool) -> DataDir:
    """``data`` with only the utterances ``keep``, as a new DataDir at ``dst`` (not written)."""
    utt2spk = {u: s for u, s in data.utt2spk.items() if u in keep}
    speakers = set(utt2spk.values())
    recs = keep if data.segments is None else {
        seg[0] for u, seg in data.segments.items() if u in keep}
    values = {}
    for kind in FILE_KINDS:
        m = getattr(data, kind.attr)
        if kind.derived or m is None:
            values[kind.attr] = m
            continue
        if kind.name == "wav.scp" or kind.keyed_by == REC:
            allowed = recs
        elif kind.keyed_by == SPK:
            allowed = speakers
        elif kind.name == "failed_utts" and not filter_failed:
            values[kind.attr] = dict(m)  # the record of what an earlier stage dropped
            continue
        else:
            allowed = keep
        values[kind.attr] = {k: v for k, v in m.items() if k in allowed}
    values["utt2spk"] = utt2spk
    values["spk2utt"] = spk2utt_from_utt2spk(utt2spk)
    return dataclasses.replace(data, path=dst, **values)


def _agreeing_utts(data: DataDir, src: Path) -> tuple[set[str], set[str]]:
    """(utterances every restricting file has, every utterance any of them names)."""
    keeps: list[tuple[str, set[str]]] = [("not in utt2spk", set(data.utt2spk))]
    universe = set(data.utt2spk)
    if data.segments is not None:
        keeps.append(("whose segment names a recording not in wav.scp",
                      {u for u, s in data.segments.items() if s[0] in data.wav_scp}))
        keeps.append(("with invalid segment times",
                      {u for u, s in data.segments.items() if not segment_problem(s[1], s[2])}))
    else:
        universe |= set(data.wav_scp)
        keeps.append(("not in wav.scp", set(data.wav_scp)))
    for kind in FILE_KINDS:
        m = getattr(data, kind.attr)
        if kind.restricts and kind.keyed_by == UTT and kind.name != "utt2spk" and m is not None:
            universe |= set(m)
            keeps.append((f"not in {kind.name}", set(m)))
    if data.utt2dur is not None:
        keeps.append(("with utt2dur <= 0", {u for u, x in data.utt2dur.items() if x > 0}))
    keep = set(universe)
    for reason, ok in keeps:
        dropped = universe - ok
        if dropped:
            logger.warning("%s: dropped %d utterance(s) %s (e.g. %s)", src, len(dropped),
                           reason, sorted_ids(dropped)[0])
        keep &= ok
    return keep, universe


def fix_data_dir(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> DataDir:
    """Write to ``dst`` (None: ``src`` itself) the part of ``src`` every file agrees on.

    Keeps the utterances present in utt2spk, wav.scp (or segments, with a valid
    recording and times) and each other restricting file of ``FILE_KINDS`` that
    exists (feats.scp, vad.scp, utt2num_frames, utt2dur > 0); drops recordings no kept
    segment uses; filters the per-speaker files; rebuilds spk2utt from utt2spk; copies
    failed_utts unchanged.  In place, every file that changes is first copied to
    ``src/.backup/``.  Logs how many utterances each file made it drop.
    """
    src = Path(src)
    in_place = dst is None or Path(dst).resolve() == src.resolve()
    dst = src if in_place else Path(dst)
    data = DataDir.load(src)
    keep, universe = _agreeing_utts(data, src)
    if not keep:
        raise DataDirError(f"{src}: no utterance is present in every file; nothing to write")
    fixed = restrict(data, keep, dst, filter_failed=False)
    if len(fixed.wav_scp) < len(data.wav_scp) and data.segments is not None:
        logger.warning("%s: dropped %d recording(s) no kept segment uses", src,
                       len(data.wav_scp) - len(fixed.wav_scp))
    unknown = sorted(p.name for p in src.iterdir()
                     if p.is_file() and p.name not in KNOWN_FILES and not p.name.startswith("."))
    if unknown:
        logger.warning("%s: %s (fix_data_dir does not know how to filter them): %s", src,
                       "left as they are" if in_place else f"not copied to {dst}",
                       ", ".join(unknown))
    if in_place:
        _backup(src)
    fixed.write(dst)
    logger.info("%s -> %s: kept %d of %d utterance(s), %d speaker(s)", src, dst, len(keep),
                len(universe), len(fixed.spk2utt))
    return fixed


def _backup(d: Path) -> None:
    """Copy the known files of ``d`` to ``d/.backup/`` before an in-place fix (Kaldi's habit)."""
    backup = d / BACKUP
    backup.mkdir(exist_ok=True)
    for name in KNOWN_FILES:
        if (d / name).is_file():
            shutil.copy2(d / name, backup / name)
    logger.info("%s: the files before fixing are in %s", d, backup)


def subset_speakers(src: str | os.PathLike, dst: str | os.PathLike, fraction: float,
                    seed: int = 0) -> DataDir:
    """Write to ``dst`` the utterances of a seeded ``fraction`` of the speakers of ``src``.

    The speakers are one seeded permutation of the sorted speaker list, cut at
    ``round(fraction * n)`` (at least 1): the subsets for 0.25, 0.5 and 1.0 are nested,
    so a training-size study (paper T7) compares like with like.  Every file of the
    table (features and per-speaker files included) is filtered, nothing is
    recomputed; ``src`` is untouched.
    """
    src, dst = Path(src), Path(dst)
    if not 0 < fraction <= 1:
        raise DataDirError(f"speaker fraction must be in (0, 1], got {fraction}")
    if dst.resolve() == src.resolve():
        raise DataDirError(f"{dst}: subset_speakers writes a new dir; it must differ from {src}")
    import numpy as np

    data = DataDir.load(src)
    speakers = data.speakers
    n = max(1, int(round(fraction * len(speakers))))
    order = np.random.default_rng([seed, 7, len(speakers)]).permutation(len(speakers))
    keep_spk = {speakers[i] for i in order[:n]}
    keep = {u for u, s in data.utt2spk.items() if s in keep_spk}

    out = restrict(data, keep, dst, filter_failed=True)
    out.write(dst)
    logger.info("%s: %d of %d speakers (fraction %g, seed %d), %d of %d utterances", dst, n,
                len(speakers), fraction, seed, len(keep), len(data.utt2spk))
    return out


__all__ = ["BACKUP", "fix_data_dir", "restrict", "subset_speakers"]
