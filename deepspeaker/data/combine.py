"""The union of data dirs, as Kaldi's ``utils/combine_data.sh DEST SRC...``.

* Per-utterance files (utt2spk, wav.scp, segments, feats.scp, vad.scp, utt2num_frames,
  utt2dur, utt2uniq, utt2aug, utt2lang, text) and per-speaker files (spk2gender,
  spk2age) and reco2dur are unioned; spk2utt is rebuilt from utt2spk.
* A file is kept only if every source has it: a union with holes would break the
  one-id-set contract (a feats.scp lacking the utterances of one source reads as if
  they had failed).  The dropped file is logged, as Kaldi warns.  The exception is
  segments, as in Kaldi: a source without it gets whole-recording segments
  (``utt utt 0 -1``), so clean recordings and segmented ones combine; and utt2uniq,
  as in Kaldi: a source without it (the clean set beside its copies) maps each of its
  utterances to itself.
* cmvn.scp is dropped (per-speaker statistics are recomputed, Kaldi's advice);
  failed_utts is the union of those present (no file means none failed).
* An utterance id in two sources is an error naming both; so is a speaker (or a
  recording) with different values in two sources.  Output is sorted bytewise.
* ``prefixes`` (one per source, e.g. the corpus names) keep the speakers of several
  corpora apart, as Kaldi's ``utils/copy_data_dir.sh --utt-prefix P --spk-prefix P``
  before ``combine_data.sh``: the prefix goes in front of every utterance and speaker id
  (so an utterance id still starts with its speaker's), of the utterance ids that
  utt2uniq and failed_utts name, and of the recording ids when there are no segments
  (the recording is then the utterance); with segments, the recordings keep their ids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .kaldi_dir import (
    DataDirError,
    read_kaldi_map,
    spk2utt_from_utt2spk,
    write_kaldi_map,
)
from .table import KINDS_BY_NAME, KNOWN_FILES

logger = logging.getLogger(__name__)

UTT_FILES = ("utt2spk", "wav.scp", "segments", "feats.scp", "vad.scp", "utt2num_frames",
             "utt2dur", "utt2uniq", "utt2aug", "utt2lang", "text")
SHARED_FILES = ("spk2gender", "spk2age", "reco2dur")  # same key may recur with one value
REQUIRED = ("utt2spk", "wav.scp")


def _read(src: Path, name: str) -> dict[str, str] | None:
    path = src / name
    if not path.is_file():
        return None
    kind = KINDS_BY_NAME.get(name)
    return read_kaldi_map(path, num_fields=kind.num_fields if kind else None)


def _merge_shared(name: str, maps: list[tuple[Path, dict[str, str]]]) -> dict[str, str]:
    out: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for src, m in maps:
        for key, value in m.items():
            if key in out and out[key] != value:
                raise DataDirError(f"{key} is {out[key]!r} in {origin[key] / name} but "
                                   f"{value!r} in {src / name}; cannot combine")
            out[key] = value
            origin.setdefault(key, src)
    return out


# The files whose values are utterance ids (utt2spk's are speakers: prefixed too).
_UTT_VALUES = ("utt2uniq",)


def _prefixed(m: dict[str, dict[str, str] | None], prefix: str) -> dict[str, dict[str, str] | None]:
    """The loaded files of one source with ``prefix`` in front of its ids (see above): every
    file's keys are utterance, speaker or recording ids, so all keys get it but those of
    the recording files of a segmented dir."""
    segmented = m["segments"] is not None
    out: dict[str, dict[str, str] | None] = {}
    for name, mapping in m.items():
        if mapping is None:
            out[name] = None
            continue
        recording_keys = name in ("wav.scp", "reco2dur")
        if recording_keys and segmented:
            out[name] = dict(mapping)
            continue
        out[name] = {prefix + k: v for k, v in mapping.items()}
    out["utt2spk"] = {k: prefix + v for k, v in out["utt2spk"].items()}
    for name in _UTT_VALUES:
        if out[name] is not None:
            out[name] = {k: prefix + v for k, v in out[name].items()}
    return out


def combine_data_dirs(dest: str | os.PathLike, sources: Iterable[str | os.PathLike],
                      prefixes: Iterable[str] | None = None) -> dict:
    """Write the union of ``sources`` into ``dest``; returns ``{file: entries}`` written.

    ``prefixes``: one id prefix per source (see the module's docstring), or None.
    """
    dest = Path(dest)
    sources = [Path(s) for s in sources]
    if not sources:
        raise DataDirError("combine: no source data dirs given")
    prefixes = None if prefixes is None else list(prefixes)
    if prefixes is not None and len(prefixes) != len(sources):
        raise DataDirError(f"combine: {len(prefixes)} prefixes for {len(sources)} source dirs; "
                           "give one --prefix per source, in the same order")
    for p in prefixes or ():
        if not p or any(c.isspace() for c in p):
            raise DataDirError(f"combine: prefix {p!r} must be non-empty and without blanks")
    for src in sources:
        if src.resolve() == dest.resolve():
            raise DataDirError(f"{dest}: the destination is also a source")
        for name in REQUIRED:
            if not (src / name).is_file():
                raise DataDirError(f"{src / name}: required file is missing")
    loaded = [{name: _read(src, name) for name in UTT_FILES + SHARED_FILES + ("failed_utts",)}
              for src in sources]
    if prefixes is not None:
        loaded = [_prefixed(m, p) for m, p in zip(loaded, prefixes)]
    seg_any = any(m["segments"] is not None for m in loaded)
    out: dict[str, dict[str, str]] = {}

    owner: dict[str, Path] = {}
    utt2spk: dict[str, str] = {}
    for src, m in zip(sources, loaded):
        for utt, spk in m["utt2spk"].items():
            if utt in owner:
                raise DataDirError(f"utterance {utt} is in both {owner[utt] / 'utt2spk'} and "
                                   f"{src / 'utt2spk'}; utterance ids must be unique across "
                                   f"the combined dirs")
            owner[utt] = src
            utt2spk[utt] = spk
    out["utt2spk"] = utt2spk

    if seg_any:
        for m in loaded:
            if m["segments"] is None:  # whole recordings: one segment each
                m["segments"] = {u: f"{u} 0 -1" for u in m["utt2spk"]}
    if any(m["utt2uniq"] is not None for m in loaded):
        for m in loaded:
            if m["utt2uniq"] is None:  # its own utterances are the originals
                m["utt2uniq"] = {u: u for u in m["utt2spk"]}
    for name in UTT_FILES[1:] + SHARED_FILES:
        have = [(src, m[name]) for src, m in zip(sources, loaded) if m[name] is not None]
        if not have:
            continue
        if len(have) < len(sources):
            lacking = [str(s) for s, m in zip(sources, loaded) if m[name] is None]
            logger.warning("combine: %s is not in every source (missing in %s); %s has none",
                           name, ", ".join(lacking), dest)
            continue
        if name in SHARED_FILES or (name == "wav.scp" and seg_any):
            out[name] = _merge_shared(name, have)
        else:
            out[name] = {k: v for _, m in have for k, v in m.items()}
    failed = {k: v for m in loaded if m["failed_utts"] for k, v in m["failed_utts"].items()}
    if failed:
        out["failed_utts"] = failed

    dest.mkdir(parents=True, exist_ok=True)
    for name, mapping in out.items():
        write_kaldi_map(dest / name, mapping)
    spk2utt = spk2utt_from_utt2spk(utt2spk)
    write_kaldi_map(dest / "spk2utt", {s: " ".join(us) for s, us in spk2utt.items()})
    for name in (*KNOWN_FILES, "utt2aug"):  # stale files of an earlier combine
        if name not in out and name != "spk2utt" and (dest / name).is_file():
            (dest / name).unlink()
    logger.info("combined %d dirs into %s: %d utterances, %d speakers", len(sources), dest,
                len(utt2spk), len(spk2utt))
    return out


__all__ = ["SHARED_FILES", "UTT_FILES", "combine_data_dirs"]
