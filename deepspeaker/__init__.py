"""deepspeaker: Deep Speaker (Baidu, 2017) embeddings beside a Kaldi-style i-vector baseline.

Subpackages: ``data`` (Kaldi data dirs), ``features`` (fbank, VAD, CMVN),
``scoring`` (trials and metrics); ``bin`` holds one thin entry point per stage.
"""

__version__ = "0.1.0"

import os as _os

# OpenMP's wait policy is read once, when torch loads libgomp, so it is set here, before
# any deepspeaker module imports torch (``python -m deepspeaker.bin.X`` imports this
# package first).  See deepspeaker/threads.py for why; a user's own value wins.
DEFAULT_OMP_WAIT_POLICY = "PASSIVE"
_os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_OMP_WAIT_POLICY)
