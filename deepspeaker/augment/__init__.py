"""Data augmentation: the sources (RIRs, noise, music, speech lists) and, later, applying them.

``prep`` makes the source lists (``prepare_aug_sources``; MUSAN and RIRS_NOISES data
prep, or simulated RIRs and generated noise and music), ``rir`` simulates shoebox
room impulse responses (image-source method), ``noise`` generates noise and music.
"""

from .noise import NOISE_KINDS, generate_music, generate_noise
from .prep import (
    SourceError,
    SourceList,
    load_source_list,
    prepare_aug_sources,
    prepare_musan,
    prepare_rirs_noises,
)
from .rir import Room, draw_room, measure_rt60, random_rir, simulate_rir

__all__ = [
    "NOISE_KINDS", "Room", "SourceError", "SourceList", "draw_room", "generate_music",
    "generate_noise", "load_source_list", "measure_rt60", "prepare_aug_sources",
    "prepare_musan", "prepare_rirs_noises", "random_rir", "simulate_rir",
]
