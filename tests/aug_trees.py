"""Tiny fake trees of the augmentation corpora's own layouts, for tests/test_aug_sources.py.

MUSAN (``musan/{music,noise,speech}/<subset>/<kind>-<subset>-NNNN.wav`` with the
ANNOTATIONS and LICENSE files its subsets hold) and RIRS_NOISES
(``RIRS_NOISES/simulated_rirs/<size>room/rir_list`` with ``--rir-id ... --room-id ...
RIRS_NOISES/simulated_rirs/<size>room/RoomNNN/RoomNNN-MMMMM.wav`` lines, and
``real_rirs_isotropic_noises/rir_list``), made of short noise and decaying-noise wavs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
MUSAN_SUBSETS = {"music": ("fma", "hd-classical"), "noise": ("free-sound", "sound-bible"),
                 "speech": ("librivox", "us-gov")}


def write_wav(path: Path, num_samples: int, seed: int, sample_rate: int = SR,
              channels: int = 1, decay: bool = False) -> Path:
    """Noise (an exponentially decaying one with ``decay``, like an RIR) as 16-bit PCM wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).standard_normal((num_samples, channels)) * 0.1
    if decay:
        x *= np.exp(-np.arange(num_samples) / (0.05 * sample_rate))[:, None]
    sf.write(str(path), x if channels > 1 else x[:, 0], sample_rate, subtype="PCM_16",
             format="WAV")
    return path


def make_musan(root: Path, per_subset: int = 2) -> tuple[Path, dict[str, dict[str, float]]]:
    """``root/musan`` with ``per_subset`` files per subset; returns (musan dir, kind -> id -> s)."""
    musan = root / "musan"
    expected: dict[str, dict[str, float]] = {}
    seed = 0
    for kind, subsets in MUSAN_SUBSETS.items():
        expected[kind] = {}
        for subset in subsets:
            d = musan / kind / subset
            for i in range(per_subset):
                seed += 1
                n = 4000 + 800 * seed
                name = f"{kind}-{subset}-{i:04d}"
                write_wav(d / f"{name}.wav", n, seed)
                expected[kind][name] = n / SR
            (d / "ANNOTATIONS").write_text(f"{kind}-{subset}-0000 some annotation\n")
            (d / "LICENSE").write_text("fake\n")
    (musan / "README").write_text("MUSAN (fake)\n")
    return musan, expected


def rir_line(rir_id: str, room_id: str, rel: str) -> str:
    return f"--rir-id {rir_id} --room-id {room_id} {rel}\n"


RIR_SIZES = ("smallroom", "mediumroom", "largeroom")


def make_rirs_noises(root: Path, rooms: int = 2, per_room: int = 2
                     ) -> tuple[Path, dict[str, float]]:
    """``root/RIRS_NOISES`` with simulated small/medium/large rooms and two real RIRs.

    Returns (the RIRS_NOISES dir, rir id -> seconds) of the small and medium rooms
    (the sets read by default).
    """
    base = root / "RIRS_NOISES"
    expected: dict[str, float] = {}
    seed = 100
    for size in RIR_SIZES:
        lines = []
        for r in range(1, rooms + 1):
            room = f"Room{r:03d}"
            for k in range(1, per_room + 1):
                seed += 1
                rel = f"RIRS_NOISES/simulated_rirs/{size}/{room}/{room}-{k:05d}.wav"
                n = 1600 + 160 * seed % 3200
                write_wav(root / rel, n, seed, decay=True)
                rir_id = f"{size}-{room}-{k:05d}"
                lines.append(rir_line(rir_id, f"{size}-{room}", rel))
                if size != "largeroom":
                    expected[rir_id] = n / SR
        (base / "simulated_rirs" / size / "rir_list").write_text("".join(lines))
    real = base / "real_rirs_isotropic_noises"
    lines = []
    for name in ("air_type1_air_binaural_aula_carolina_1_1_3_0_3", "RWCP_type1_rir_circle_e1a_imp000"):
        write_wav(real / f"{name}.wav", 4000, seed, decay=True)
        lines.append(rir_line(name, name, f"RIRS_NOISES/real_rirs_isotropic_noises/{name}.wav"))
    (real / "rir_list").write_text("".join(lines))
    return base, expected
