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

The files a dir may hold (these and text, cmvn.scp, spk2gender, spk2age, utt2lang,
utt2uniq, reco2dur) are the one table ``table.FILE_KINDS``; every text table is read
by ``table.iter_lines``.  The modules: ``kaldi_dir`` reads and writes (``DataDir.load``
is strict: raises ``DataDirError`` naming file:line), ``qa`` validates
(``validate_data_dir`` returns every ``Problem``), ``fix`` repairs (``fix_data_dir``:
the common ids, in place with a backup or into a new dir) and subsets
(``subset_speakers``), ``audio`` reads the audio (``load_audio`` / ``iter_audio``;
``AudioError`` names utterance, file:line and reason).
"""

from .audio import AudioError, iter_audio, load_audio
from .fix import fix_data_dir, subset_speakers
from .kaldi_dir import DataDir, DataDirError, Problem, read_kaldi_map, spk2utt_from_utt2spk, write_kaldi_map
from .qa import require_valid_data_dir, validate_data_dir
from .table import FILE_KINDS, iter_lines

__all__ = [
    "FILE_KINDS", "AudioError", "DataDir", "DataDirError", "Problem", "fix_data_dir", "iter_audio",
    "iter_lines", "load_audio", "read_kaldi_map", "spk2utt_from_utt2spk", "subset_speakers",
    "require_valid_data_dir", "validate_data_dir", "write_kaldi_map",
]
