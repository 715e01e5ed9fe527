"""Tiny data dirs and source lists for the augmentation tests (not tests themselves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

SR = 16000


def speechlike(seed: int, seconds: float = 1.0, f0: float | None = None) -> np.ndarray:
    """Quiet floor with two loud harmonic bursts (int16 scale), like a short utterance."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = rng.normal(0, 20, n)
    t = np.arange(n) / SR
    f0 = f0 or 100 + 15 * seed
    for start in (0.1, 0.55):
        a, b = int(start * SR), min(n, int((start + 0.3) * SR))
        x[a:b] += sum(2500 / h * np.sin(2 * np.pi * f0 * h * t[a:b]) for h in range(1, 6))
    return np.clip(x, -32768, 32767).astype(np.int16)


def write_wav(path: Path, x: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.asarray(x, dtype=np.int16), SR, subtype="PCM_16")
    return path


def write_map(path: Path, m: dict[str, str]) -> None:
    path.write_text("".join(f"{k} {m[k]}\n" for k in sorted(m)))


def make_data(root: Path, name: str = "train", num_spk: int = 4, num_utt: int = 2,
              seconds: float = 1.0, gender: bool = True) -> Path:
    """``root/<name>``: speakers ``s0..``, utterances ``s0-u0..``, wavs under ``root/audio``."""
    d = root / name
    d.mkdir(parents=True)
    wav, utt2spk, utt2dur = {}, {}, {}
    for s in range(num_spk):
        for u in range(num_utt):
            utt = f"s{s}-u{u}"
            x = speechlike(10 * s + u, seconds, f0=110 + 30 * s)
            wav[utt] = str(write_wav(root / "audio" / f"{utt}.wav", x))
            utt2spk[utt] = f"s{s}"
            utt2dur[utt] = f"{len(x) / SR:g}"
    write_map(d / "wav.scp", wav)
    write_map(d / "utt2spk", utt2spk)
    write_map(d / "utt2dur", utt2dur)
    spks = sorted(set(utt2spk.values()))
    write_map(d / "spk2utt", {s: " ".join(u for u in sorted(utt2spk) if utt2spk[u] == s)
                              for s in spks})
    if gender:
        write_map(d / "spk2gender", {s: "mf"[i % 2] for i, s in enumerate(spks)})
    return d


def rir(seed: int, delay: int = 40, seconds: float = 0.15) -> np.ndarray:
    """A synthetic RIR: silence, a direct-path peak at ``delay``, an exponential tail.

    The tail starts 2.5 ms after the direct path (the first reflection of a small room)
    and holds about 0.4 of its energy (a direct-to-reverberant ratio of +4 dB).
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    h = np.zeros(n)
    first = delay + 40
    t = np.arange(n - first)
    h[first:] = rng.normal(0, 0.05, len(t)) * np.exp(-t / (0.02 * SR))
    h[delay] = 1.0
    return (h / np.abs(h).max() * 20000).astype(np.int16)


def make_sources(root: Path, noise_seconds: float = 0.4, music_seconds: float = 3.0) -> Path:
    """``root/src`` with rirs/, noise/ (shorter than the utterances), music/ lists."""
    src = root / "src"
    rng = np.random.default_rng(7)
    lists = {
        "rirs": {f"rir{i}": rir(i, delay=30 + 20 * i) for i in range(2)},
        "noise": {f"noise{i}": rng.normal(0, 3000, int(noise_seconds * SR)).astype(np.int16)
                  for i in range(3)},
        "music": {f"music{i}": (8000 * np.sin(2 * np.pi * (220 + 110 * i)
                                              * np.arange(int(music_seconds * SR)) / SR)
                                ).astype(np.int16) for i in range(2)},
    }
    for name, items in lists.items():
        d = src / name
        d.mkdir(parents=True)
        write_map(d / "wav.scp", {k: str(write_wav(root / "srcaudio" / name / f"{k}.wav", x))
                                  for k, x in items.items()})
        write_map(d / "utt2dur", {k: f"{len(x) / SR:g}" for k, x in items.items()})
    return src


def write_conf(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_map(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(" ")
        out[k] = v
    return out


def parse_aug(value: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in value.split())
