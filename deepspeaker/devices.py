"""Where a stage computes (``--device auto|cpu|cuda[:N]``): how, never what.

The device is no part of any signature (``deepspeaker.marker``): a set extracted on a GPU
is not redone on a CPU.  The i-vector stages keep one code path for both devices: every
tensor is made on ``device``, a batch is moved there at once (:func:`to_device`) and its
results come back once, so that on a CPU the path is today's code with no-op moves.
"""

from __future__ import annotations

import numpy as np
import torch

from .utils import DeepSpeakerError

CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto``: the first CUDA device when torch sees one, else the CPU.

    A CUDA device torch cannot use is one DeepSpeakerError line saying what it sees.
    """
    text = str(name)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise DeepSpeakerError(f"--device {text}: not a device ({CHOICES})") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeepSpeakerError(f"--device {text}: not a device ({CHOICES})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else \
                "built without CUDA"
            raise DeepSpeakerError(f"--device {text}: torch {torch.__version__} ({built}) sees "
                                   f"no CUDA device; use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeepSpeakerError(f"--device {text}: torch sees {count} CUDA device(s), "
                                   f"cuda:0 to cuda:{count - 1}")
    return dev


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``; on a CPU the same memory (no copy).

    To a GPU through pinned memory with ``non_blocking``: the copy overlaps the work
    already queued, and torch's pinned-memory cache keeps the host buffer until it is done.
    """
    t = torch.as_tensor(array)
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


__all__ = ["resolve_device", "to_device"]
