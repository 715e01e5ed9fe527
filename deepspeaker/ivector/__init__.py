"""The i-vector baseline (paper §4.2; SPEC B1-B3).

Front end (``frontend``): 20 MFCC from the stored fbank, deltas and accelerations,
centred sliding-window CMN, voiced frames only (Kaldi's sid/ recipe order).
UBM (``ubm``): a diagonal GMM trained with scikit-learn on a random subset of frames.
Statistics (``stats``): zeroth and first order Baum-Welch statistics, batched.
Extractor (``extractor``): total-variability T-matrix EM with Kaldi's
ivector-extractor-est semantics (minimum-divergence step included), and i-vectors.
Back end: LDA (``lda``) and two-covariance PLDA (``plda``).

Each module's public names are listed in ``_EXPORTS`` and imported on first use
(PEP 562): ``train_plda`` / ``score_plda`` need only ``lda`` and ``plda``, and importing
the extractor (torch) and the UBM (scikit-learn) cost each of their starts ~2 s of CPU.
"""

import importlib

_EXPORTS = {
    "extractor": ("IvectorExtractor", "absorb_prior", "em_iteration", "init_extractor",
                  "train_extractor"),
    "frontend": ("FrontendOptions", "add_deltas", "compute_frontend", "sliding_cmn"),
    "lda": ("LdaTransform", "length_normalize", "train_lda"),
    "plda": ("PldaConfig", "TwoCovPLDA", "cosine_scores", "train_plda"),
    "stats": ("compute_stats", "compute_stats_batch"),
    "ubm": ("DiagGmm", "sample_frames", "train_ubm"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
