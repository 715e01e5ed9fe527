"""The feature front end: Kaldi-compatible fbank, energy VAD, per-utterance normalisation.

Extraction (stage 1) calls ``compute_fbank_batch`` on batches of utterances read on the
int16 scale and ``compute_vad_energy`` on the log energy it returns, and writes
feats.scp / vad.scp. Training and embedding extraction read them back and call
``prepare_features`` (voiced frames only, zero mean and unit variance per utterance),
as the paper does in §4.3.
"""

from deepspeaker.features.cmvn import normalize_utterance, prepare_features, select_voiced
from deepspeaker.features.fbank import (
    FbankOptions,
    check_samples,
    compute_fbank,
    compute_fbank_and_energy,
    compute_fbank_batch,
    mel_filterbank,
    num_frames,
)
from deepspeaker.features.mfcc import mfcc_from_fbank
from deepspeaker.features.vad import VadOptions, compute_vad_energy

__all__ = [
    "FbankOptions",
    "VadOptions",
    "check_samples",
    "compute_fbank",
    "compute_fbank_and_energy",
    "compute_fbank_batch",
    "compute_vad_energy",
    "mel_filterbank",
    "mfcc_from_fbank",
    "normalize_utterance",
    "num_frames",
    "prepare_features",
    "select_voiced",
]
