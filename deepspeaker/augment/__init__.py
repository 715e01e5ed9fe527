"""Data augmentation: the sources (RIRs, noise, music, speech lists) and, later, applying them.

``prep`` makes the source lists (``prepare_aug_sources``; MUSAN and RIRS_NOISES data
prep, or simulated RIRs and generated noise and music), ``rir`` simulates shoebox
room impulse responses (image-source method), ``noise`` generates noise and music.
"""

from .noise import NOISE_KINDS, generate_music, generate_noise
from .prep import SourceError, prepare_aug_sources, prepare_musan, prepare_rirs_noises
from .rir import Room, draw_room, measure_rt60, random_rir, simulate_rir

__all__ = [
    "NOISE_KINDS", "Room", "SourceError", "draw_room", "generate_music", "generate_noise",
    "measure_rt60", "prepare_aug_sources", "prepare_musan", "prepare_rirs_noises",
    "random_rir", "simulate_rir",
]
