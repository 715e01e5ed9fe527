"""deepspeaker: Deep Speaker (Baidu, 2017) embeddings beside a Kaldi-style i-vector baseline.

Subpackages: ``data`` (Kaldi data dirs), ``features`` (fbank, VAD, CMVN),
``scoring`` (trials and metrics); ``bin`` holds one thin entry point per stage.
"""

__version__ = "0.1.0"
