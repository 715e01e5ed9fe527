"""Shared pieces of corpus data preparation (``egs/<corpus>/local/``).

A data prep either writes a whole, valid data dir or nothing: the files are built in
a hidden sibling directory, validated there, and only then moved into place (an
existing dir is replaced as a whole).  A crash or Ctrl-C leaves the old dir, or no
dir, never a half-written one; a rerun starts again from the corpus on disk, which
is cheap next to everything after it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Mapping

from ..utils import DeepSpeakerError
from .kaldi_dir import DataDir, spk2utt_from_utt2spk, validate_data_dir

logger = logging.getLogger(__name__)


class DataPrepError(DeepSpeakerError):
    """The corpus on disk is not in the layout (or state) a data prep needs."""


def publish_data_dir(path: str | os.PathLike, wav_scp: Mapping[str, str],
                     utt2spk: Mapping[str, str], *, utt2dur: Mapping[str, float] | None = None,
                     extra_files: Mapping[str, str] | None = None) -> DataDir:
    """Write ``path`` as a complete Kaldi data dir, atomically as a directory.

    ``extra_files`` maps file names to text written verbatim beside the Kaldi files
    (e.g. a converted trial list).  Raises DataPrepError, writing nothing at
    ``path``, when the result would not pass ``validate_data_dir``.
    """
    path = Path(path)
    if not utt2spk:
        raise DataPrepError(f"{path}: no utterances to write")
    tmp = path.parent / f".{path.name}.tmp{os.getpid()}"
    old = path.parent / f".{path.name}.old{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        data = DataDir(path=tmp, wav_scp=dict(wav_scp), utt2spk=dict(utt2spk),
                       spk2utt=spk2utt_from_utt2spk(utt2spk),
                       utt2dur=dict(utt2dur) if utt2dur is not None else None)
        data.write(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        errors = [p for p in validate_data_dir(tmp) if p.severity == "error"]
        if errors:
            shown = "\n  ".join(str(p).replace(str(tmp), str(path)) for p in errors[:10])
            raise DataPrepError(f"{path}: the prepared data dir is not valid "
                                f"({len(errors)} problem(s)), nothing written:\n  {shown}")
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("%s: %d utterances of %d speakers", path, len(utt2spk), len(set(utt2spk.values())))
    return DataDir.load(path)


__all__ = ["DataPrepError", "publish_data_dir"]
