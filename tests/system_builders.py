"""A tiny trained recipe for the system API and CLI tests: audio, stage 1, two systems.

``build_recipe(root)`` makes ``root/data/train`` (4 synthetic voices x 4 one-second
utterances, 16 kHz wav files, features from the real stage 1) and two trained systems
beside it, as ``./run.sh`` leaves them: ``exp/gru`` (a random-weight network with its
system.yaml and stage-8 embeddings of the set) and ``exp/ivector`` (UBM, extractor,
LDA and PLDA trained by the real stages, i-vectors of the set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from builders import make_exp

RATE = 16000
NUM_SPK, NUM_UTT = 4, 4
IVECTOR_CONF = {"ubm": {"num_components": 4, "max_frames": 20000, "max_iter": 5},
                "stats": {"top_k": 4}, "extractor": {"rank": 6, "num_iters": 2},
                "backend": {"lda_dim": 3, "plda": {"num_em_iters": 3}}}


def voice(spk: int, utt: int, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """A harmonic voice (F0 and spectral tilt per speaker) with pauses, on soundfile's scale."""
    rng = np.random.default_rng(1000 * spk + utt)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 100.0 + 45.0 * spk + 3.0 * rng.standard_normal()
    x = sum((0.6 ** (k * (1 + 0.3 * spk))) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6))
            for k in range(1, 12))
    env = (np.sin(2 * np.pi * (2.0 + 0.5 * utt) * t) > -0.3).astype(float)
    env[: rate // 10] = 0.0  # a pause the VAD drops
    return (0.3 * x * env + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def write_wavs(root: Path) -> dict[str, str]:
    wavs = {}
    for s in range(NUM_SPK):
        for u in range(NUM_UTT):
            utt = f"spk{s}-u{u}"
            path = root / "wav" / f"{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, voice(s, u), RATE, subtype="PCM_16")
            wavs[utt] = str(path)
    return wavs


def write_data(data: Path, wavs: dict[str, str]) -> Path:
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wavs.items())))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(wavs)))
    spk = sorted({u.split("-")[0] for u in wavs})
    (data / "spk2utt").write_text("".join(
        f"{s} {' '.join(u for u in sorted(wavs) if u.startswith(s + '-'))}\n" for s in spk))
    return data


def build_recipe(root: Path) -> Path:
    from deepspeaker.bin import (extract_ivectors, train_ivector_extractor, train_plda,
                                 train_ubm)
    from deepspeaker.bin.compute_fbank_vad import compute_fbank_vad
    from deepspeaker.nnet.extract import ExtractOptions, extract_embeddings
    from deepspeaker.scoring.experiment import SystemInfo, write_system_info

    data = write_data(root / "data" / "train", write_wavs(root))
    compute_fbank_vad(data, nj=1)
    gru = make_exp(root / "exp" / "gru", "gru", width=0.0625)
    write_system_info(gru, SystemInfo(kind="deepspeaker", model="gru", strategy="softmax",
                                      train_set="data/train"))
    extract_embeddings(gru, data, ExtractOptions(device="cpu"))
    ivec = root / "exp" / "ivector"
    conf = root / "ivector.yaml"
    conf.write_text(yaml.safe_dump(IVECTOR_CONF))
    train_ubm.run(data, ivec, conf)
    train_ivector_extractor.run(data, ivec)
    extract_ivectors.run(ivec, data)
    train_plda.run(ivec, data)
    write_system_info(ivec, SystemInfo(kind="ivector", train_set="data/train"))
    return root
