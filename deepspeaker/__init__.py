"""deepspeaker: Deep Speaker (Baidu, 2017) embeddings beside a Kaldi-style i-vector baseline.

Subpackages: ``data`` (Kaldi data dirs), ``features`` (fbank, VAD, CMVN),
``scoring`` (trials and metrics); ``bin`` holds one thin entry point per stage.

Use a trained system: ``deepspeaker.load("exp/<tag>")`` (:mod:`deepspeaker.system`),
or the console command ``deepspeaker`` (:mod:`deepspeaker.cli`).
"""

__version__ = "0.1.0"

import os as _os

# OpenMP's wait policy is read once, when torch loads libgomp, so it is set here, before
# any deepspeaker module imports torch (``python -m deepspeaker.bin.X`` imports this
# package first).  See deepspeaker/threads.py for why; a user's own value wins.
DEFAULT_OMP_WAIT_POLICY = "PASSIVE"
_os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_OMP_WAIT_POLICY)


def load(exp_dir, method=None, device="cpu", feature_config=None, asnorm=False):
    """The trained system of ``exp_dir``: see :func:`deepspeaker.system.load`.

    Imported on first use, so that ``python -m deepspeaker.bin.X`` (which imports this
    package first) does not pay for torch and the models when it needs neither.
    """
    from .system import load as _load

    return _load(exp_dir, method=method, device=device, feature_config=feature_config,
                 asnorm=asnorm)
