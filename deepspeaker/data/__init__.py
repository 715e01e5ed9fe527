"""Kaldi data directories: the contract every stage reads and writes.

A data dir ``data/<set>/`` holds text files of ``key value`` lines, split on spaces
and tabs, sorted bytewise by key (``LC_ALL=C sort``; Python's sort of the ids'
UTF-8 bytes), keys unique and free of whitespace, no empty lines:

* ``wav.scp``: ``utt path`` or ``utt command |`` (a command writing audio to stdout);
  keyed by recording id instead when ``segments`` exists;
* ``utt2spk``: ``utt spk``; ``spk2utt``: ``spk utt1 utt2 ...``, its inverse;
* ``segments`` (optional): ``utt rec start end`` in seconds, end -1 = to the end;
* ``utt2dur`` (optional): ``utt seconds``;
* stage outputs: ``feats.scp`` and ``vad.scp`` (kaldiio scp), ``utt2num_frames``, and
  ``failed_utts`` (``utt reason...``, the utterances the feature stage dropped).

Read a dir with ``DataDir.load`` (strict: raises ``DataDirError`` naming file:line),
check it with ``validate_data_dir`` (returns every ``Problem``), repair it with
``fix_data_dir`` (filters to the common ids into a new dir), and read its audio with
``load_audio`` / ``iter_audio`` (``AudioError`` names utterance, file:line and reason).
"""

from .audio import AudioError, iter_audio, load_audio
from .kaldi_dir import (DataDir, DataDirError, Problem, fix_data_dir, read_kaldi_map,
                        spk2utt_from_utt2spk, validate_data_dir, write_kaldi_map)

__all__ = [
    "AudioError", "DataDir", "DataDirError", "Problem", "fix_data_dir", "iter_audio",
    "load_audio", "read_kaldi_map", "spk2utt_from_utt2spk", "validate_data_dir",
    "write_kaldi_map",
]
