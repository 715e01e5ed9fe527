"""The i-vector baseline (paper §4.2; SPEC B1-B3).

Front end (``frontend``): 20 MFCC from the stored fbank, deltas and accelerations,
centred sliding-window CMN, voiced frames only (Kaldi's sid/ recipe order).
UBM (``ubm``): a diagonal GMM trained with scikit-learn on a random subset of frames.
Statistics (``stats``): zeroth and first order Baum-Welch statistics, batched.
Extractor (``extractor``): total-variability T-matrix EM with Kaldi's
ivector-extractor-est semantics (minimum-divergence step included), and i-vectors.
Back end: LDA (``lda``) and two-covariance PLDA (``plda``).

Each module's public names are imported below, one block per module; a new module
adds its own ``from deepspeaker.ivector.<module> import ...`` block and its names to
``__all__``.
"""

from deepspeaker.ivector.extractor import (
    IvectorExtractor,
    absorb_prior,
    em_iteration,
    init_extractor,
    train_extractor,
)
from deepspeaker.ivector.frontend import FrontendOptions, add_deltas, compute_frontend, sliding_cmn
from deepspeaker.ivector.lda import LdaTransform, length_normalize, train_lda
from deepspeaker.ivector.plda import PldaConfig, TwoCovPLDA, cosine_scores, train_plda
from deepspeaker.ivector.stats import compute_stats, compute_stats_batch
from deepspeaker.ivector.ubm import DiagGmm, sample_frames, train_ubm

__all__ = [
    # extractor
    "IvectorExtractor",
    "absorb_prior",
    "em_iteration",
    "init_extractor",
    "train_extractor",
    # frontend
    "FrontendOptions",
    "add_deltas",
    "compute_frontend",
    "sliding_cmn",
    # lda
    "LdaTransform",
    "length_normalize",
    "train_lda",
    # plda
    "PldaConfig",
    "TwoCovPLDA",
    "cosine_scores",
    "train_plda",
    # stats
    "compute_stats",
    "compute_stats_batch",
    # ubm
    "DiagGmm",
    "sample_frames",
    "train_ubm",
]
