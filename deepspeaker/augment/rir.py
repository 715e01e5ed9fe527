"""Simulated room impulse responses of shoebox rooms: the image-source method.

Allen & Berkley (1979): a rectangular room with rigid-ish walls is replaced by a
lattice of mirror images of the source; each image ``(nx, ny, nz, px, py, pz)`` sits
at ``2 n L +- s`` on each axis, reaches the microphone after ``d / c`` seconds with
amplitude ``beta**k / (4 pi d)``, where ``k`` is the number of walls it was mirrored
in and ``beta = sqrt(1 - alpha)`` the walls' pressure reflection coefficient.  Every
image is placed with a fractional delay (a Hann-windowed sinc of ``SINC_TAPS`` taps),
so the direct path arrives at exactly ``distance / c`` and not at the nearest sample.

The requested RT60 becomes the walls' absorption by Eyring's formula
``RT60 = 24 ln(10) V / (-c S ln(1 - alpha))``, not Sabine's: in a diffuse field the
image lattice loses ``beta**2`` of its energy ``c S / 4V`` times a second, which is
Eyring's decay, and Sabine's ``alpha`` (its first-order expansion) is more than 1 for
small rooms with short RT60s.

Eyring's formula assumes a diffuse field, which a shoebox with one absorption for all
walls is not (the images that travel nearly level in a flat room meet a wall only
every 10-30 m): with Eyring's absorption the measured RT60 of medium rooms came out
1.6-2.9 times the one asked for.  So Eyring's value is the starting point of a
bisection on the decay of the images (:func:`fit_absorption`), ``rir2info`` records
both, and a room whose walls cannot give its RT60 at all is drawn again
(:func:`random_rir`).

The number of images within reach grows as ``t**3 / V``: a 1 x 1 x 2 m room needs ten
million of them for one second of response.  So the images are computed for the
first ``IMAGE_S`` after the direct sound (the early reflections, which are heard as
such), at most ``max_images`` of them, and the rest is the diffuse tail of Lehmann &
Johansson's fast image method (2010): Gaussian noise that goes on from the images'
energy envelope (its fitted line, so that a medium room's sparse last images do not
set its level) and decays 60 dB per RT60.  The tests check that the measured RT60
(Schroeder backward integration, T20 and T30) is the one asked for, and that the
direct path and the first reflection land at ``distance / c``.  Of the 200 responses
that ``prepare_aug_sources`` makes by default, 199 measure within 20% of their RT60
(median ratio 1.00) as written to 16-bit wav; they take about 2 s of one core.

Rooms are drawn as Kaldi's simulated RIRs were (Ko et al., ICASSP 2017): length and
width uniform in 1-10 m (small), 10-30 m (medium) or 30-50 m (large); the height,
uniform in 2-5 m, and the RT60, uniform in 0.2-1.0 s, are our choice; source and
microphone uniform in the room at least ``WALL_MARGIN_M`` from every wall.
The response is cut at ``min(max_length_s, direct delay + RT60)``: by then it has
decayed by 60 dB, below what a 16-bit wav can hold next to its direct path anyway.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.signal

SPEED_OF_SOUND = 343.0          # m/s, air at 20 C
ROOM_SIDES_M = {"small": (1.0, 10.0), "medium": (10.0, 30.0), "large": (30.0, 50.0)}
ROOM_HEIGHT_M = (2.0, 5.0)
RT60_RANGE_S = (0.2, 1.0)
WALL_MARGIN_M = 0.5
MIN_DISTANCE_M = 0.5            # source to microphone; a closer pair is redrawn
SINC_TAPS = 32
MAX_IMAGES = 40_000
IMAGE_S = 0.12                  # images up to this long after the direct sound
MAX_LENGTH_S = 1.0
HIGHPASS_HZ = 80.0
DIRECT_SKIP_S = 0.005
FITTED_RT60_TOLERANCE = 0.15
MAX_ABSORPTION = 0.99           # beyond it a response is its first reflections, no decay
_DECAY_60DB = 3.0 * math.log(10.0)   # amplitude falls by 10**3 (60 dB) per RT60
_MIN_IMAGES_S = 0.05                 # images for at least 50 ms after the direct sound


@dataclass(frozen=True)
class Room:
    """One simulated set-up: the room, its RT60 and the two positions (metres, seconds)."""

    size: tuple[float, float, float]
    rt60: float
    source: tuple[float, float, float]
    mic: tuple[float, float, float]
    kind: str = "small"

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(np.subtract(self.source, self.mic)))

    @property
    def absorption(self) -> float:
        """Eyring's wall absorption for this room's RT60 (see the module docstring)."""
        lx, ly, lz = self.size
        volume, surface = lx * ly * lz, 2.0 * (lx * ly + lx * lz + ly * lz)
        return 1.0 - math.exp(-24.0 * math.log(10.0) * volume
                              / (SPEED_OF_SOUND * surface * self.rt60))

    def info(self) -> str:
        """The ``key=value`` fields of this room's line in ``rir2info``."""
        def xyz(v):
            return ",".join(f"{c:.2f}" for c in v)
        return (f"kind=simulated room={'x'.join(f'{c:.2f}' for c in self.size)} "
                f"roomkind={self.kind} rt60={self.rt60:.3f} absorption={self.absorption:.4f} "
                f"source={xyz(self.source)} mic={xyz(self.mic)} distance={self.distance:.3f}")


def draw_room(rng: np.random.Generator, kind: str = "small",
              rt60_range: tuple[float, float] = RT60_RANGE_S) -> Room:
    """A random room of ``kind`` (a key of ROOM_SIDES_M), RT60 and positions from ``rng``."""
    if kind not in ROOM_SIDES_M:
        raise ValueError(f"unknown room kind {kind!r}; known: {', '.join(ROOM_SIDES_M)}")
    lo, hi = ROOM_SIDES_M[kind]
    size = (rng.uniform(lo, hi), rng.uniform(lo, hi), rng.uniform(*ROOM_HEIGHT_M))
    rt60 = rng.uniform(*rt60_range)
    for _ in range(100):
        source, mic = (tuple(rng.uniform(WALL_MARGIN_M, side - WALL_MARGIN_M) for side in size)
                       for _ in range(2))
        if np.linalg.norm(np.subtract(source, mic)) >= MIN_DISTANCE_M:
            break
    # Rounded as rir2info prints them, so the info line describes the response exactly.
    return Room(_rounded(size), round(float(rt60), 3), _rounded(source), _rounded(mic), kind)


def _rounded(v) -> tuple[float, float, float]:
    return tuple(round(float(c), 2) for c in v)


def _axis_images(side: float, src: float, mic: float, reach: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the mic of the images on one axis within ``reach``, and their reflections.

    Images sit at ``2nL + s`` (``2|n|`` reflections) and ``2nL - s`` (``|2n - 1|``).
    """
    n_max = math.ceil((reach + side) / (2.0 * side)) + 1
    n = np.arange(-n_max, n_max + 1)
    offsets = np.concatenate([2 * n * side + src, 2 * n * side - src]) - mic
    reflections = np.concatenate([2 * np.abs(n), np.abs(2 * n - 1)])
    keep = np.abs(offsets) <= reach
    return offsets[keep], reflections[keep]


def _images(room: Room, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances (m) and reflection counts of every image within ``reach`` metres."""
    axes = [_axis_images(L, s, m, reach) for L, s, m in zip(room.size, room.source, room.mic)]
    (dx, kx), (dy, ky), (dz, kz) = axes
    dist = np.sqrt(dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2)
    refl = kx[:, None, None] + ky[None, :, None] + kz[None, None, :]
    keep = dist <= reach
    return dist[keep], refl[keep]


def _image_response(dist: np.ndarray, gain: np.ndarray, num_samples: int,
                    sample_rate: int) -> np.ndarray:
    """The images as Hann-windowed sinc fractional delays, summed (``num_samples`` long)."""
    delay = dist * (sample_rate / SPEED_OF_SOUND)
    half = SINC_TAPS // 2
    taps = np.floor(delay)[:, None] + np.arange(1 - half, half + 1)[None, :]
    x = taps - delay[:, None]
    weights = gain[:, None] * np.sinc(x) * (0.5 + 0.5 * np.cos(np.pi * x / half))
    idx = taps.astype(np.int64).ravel()
    ok = (idx >= 0) & (idx < num_samples)
    return np.bincount(idx[ok], weights=weights.ravel()[ok], minlength=num_samples)


@functools.lru_cache(maxsize=8)
def _highpass(sample_rate: int) -> np.ndarray:
    return scipy.signal.butter(2, HIGHPASS_HZ, "highpass", fs=sample_rate, output="sos")


class _DecayModel:
    """The energy of a response as a function of the walls' reflection coefficient.

    Images are binned by arrival (1 ms) and reflection count, so the energy per bin for
    a given ``beta`` is one small matrix product (the images' energies add: their
    phases are as good as random once the high-pass has taken out their common DC).
    The diffuse tail goes on from the images' *envelope*, the least-squares line of
    their level in dB over 5 ms blocks from the direct sound on, and decays at the
    requested RT60.  :meth:`rt60` is what the absorption is fitted on: the RT60 of that
    envelope's slope (so that images and tail are one decay), or, when the images make
    the whole response, its RT60 as :func:`measure_rt60` measures a response.
    :meth:`response_rt60` measures images and tail together, the check of the fit.
    """

    bin_s = 0.001
    block = 5

    def __init__(self, dist, refl, direct_s: float, image_end_s: float, end_s: float,
                 rt60: float):
        n_img = int(image_end_s / self.bin_s)
        b = np.minimum((dist / SPEED_OF_SOUND / self.bin_s).astype(np.int64), n_img)
        k_max = int(refl.max()) + 1
        hist = np.bincount(refl * (n_img + 1) + b, weights=(4.0 * math.pi * dist) ** -2.0,
                           minlength=k_max * (n_img + 1)).reshape(k_max, n_img + 1)
        self.hist, self.k = hist[:, :n_img], np.arange(k_max)
        self.has_tail = image_end_s < end_s
        self.image_end_s = n_img * self.bin_s
        n_end = max(round(end_s / self.bin_s), n_img)
        self.tail = np.exp(-2 * _DECAY_60DB * (np.arange(n_end - n_img) + 0.5) * self.bin_s / rt60)
        self.first = int((direct_s + DIRECT_SKIP_S) / self.bin_s)

    def envelope(self, beta: float) -> tuple[float, float]:
        """(slope dB/s, level dB at time 0) of the images' energy per 1 ms bin, least squares."""
        energy = (beta ** (2.0 * self.k)) @ self.hist
        late = energy[self.first:]
        late = late[:late.size // self.block * self.block].reshape(-1, self.block).sum(axis=1)
        ok = late > 0
        if np.count_nonzero(ok) < 3:
            raise ValueError("too few images after the direct sound to measure a decay")
        t = (self.first + (np.flatnonzero(ok) + 0.5) * self.block) * self.bin_s
        slope, level = np.polyfit(t, 10.0 * np.log10(late[ok] / self.block), 1)
        return float(slope), float(level)

    def rt60(self, beta: float) -> float:
        if self.has_tail:
            slope = self.envelope(beta)[0]
            return -60.0 / slope if slope < 0 else math.inf
        energy = (beta ** (2.0 * self.k)) @ self.hist
        return measure_rt60(np.sqrt(energy), 1.0 / self.bin_s)

    def response_rt60(self, beta: float) -> float:
        energy = (beta ** (2.0 * self.k)) @ self.hist
        if self.has_tail:
            slope, level = self.envelope(beta)
            energy = np.concatenate([energy, 10 ** ((level + slope * self.image_end_s) / 10)
                                     * self.tail])
        return measure_rt60(np.sqrt(energy), 1.0 / self.bin_s)


def fit_absorption(model: _DecayModel, rt60: float, first_guess: float) -> float:
    """The wall absorption whose response has the measured RT60 (T20) ``rt60``.

    A bisection in ``log(1 - alpha)`` (the decay rate) from Eyring's ``first_guess``
    (see the module docstring for why that alone is not enough).
    """
    def measured(alpha: float) -> float:
        try:
            return model.rt60(math.sqrt(1.0 - alpha))
        except ValueError:  # decays too fast to measure
            return 0.0
    # Bounds on log(1 - alpha), i.e. on the decay rate: lo MAX_ABSORPTION, hi a quarter of Eyring.
    lo, hi = math.log(1.0 - MAX_ABSORPTION), math.log(1.0 - first_guess) / 4.0
    while measured(1.0 - math.exp(hi)) < rt60 and hi < -1e-6:
        hi /= 4.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if measured(1.0 - math.exp(mid)) < rt60:
            lo = mid
        else:
            hi = mid
    return 1.0 - math.exp(0.5 * (lo + hi))


@dataclass(frozen=True)
class SimulatedRir:
    """A simulated response: samples (float64; direct path ``1 / (4 pi d)``) and how it was made."""

    samples: np.ndarray
    absorption: float      # the walls' absorption that gives the room's RT60
    image_seconds: float   # images up to here, the diffuse tail after
    fitted_rt60: float     # the RT60 of the images' decay with that absorption


def simulate_rir(room: Room, sample_rate: int = 16000, *, rng: np.random.Generator | None = None,
                 max_images: int = MAX_IMAGES, max_length_s: float = MAX_LENGTH_S,
                 image_s: float = IMAGE_S) -> SimulatedRir:
    """The impulse response of ``room``.

    ``rng`` draws the diffuse tail; it is needed only when the images stop before the
    end (all but the shortest RT60s), and is then required, so that a response is
    always reproducible.
    """
    c = SPEED_OF_SOUND
    volume = float(np.prod(room.size))
    end_s = min(max_length_s, room.distance / c + room.rt60)
    num_samples = math.ceil(end_s * sample_rate)
    # Images within a sphere of radius r: about 4/3 pi r^3 / V.
    budget = (3.0 * max_images * volume / (4.0 * math.pi)) ** (1.0 / 3.0)
    reach = min(c * end_s, room.distance + c * image_s,
                max(budget, room.distance + c * _MIN_IMAGES_S))
    dist, refl = _images(room, reach)
    model = _DecayModel(dist, refl, room.distance / c, reach / c, end_s, room.rt60)
    alpha = fit_absorption(model, room.rt60, room.absorption)
    gain = math.sqrt(1.0 - alpha) ** refl / (4.0 * math.pi * dist)
    h = _image_response(dist, gain, num_samples + SINC_TAPS, sample_rate)[:num_samples]
    # All images are positive pulses: where they overlap their sum is mostly DC, which
    # would outgrow the incoherent energy the decay model counts (Allen & Berkley's
    # high-pass; causal, so nothing arrives before the direct path).
    h = scipy.signal.sosfilt(_highpass(sample_rate), h)
    start = int(reach / c * sample_rate) - SINC_TAPS // 2   # first incomplete sample
    if start < num_samples:
        if rng is None:
            raise ValueError("simulate_rir: this room needs a diffuse tail; pass rng")
        # The tail goes on from the images' envelope (its fitted line, not the last few
        # images, which are few in a large room), energy per 1 ms bin -> per sample.
        slope, level_db = model.envelope(math.sqrt(1.0 - alpha))
        t0 = start / sample_rate
        level = math.sqrt(10 ** ((level_db + slope * t0) / 10) / (model.bin_s * sample_rate))
        t = np.arange(start, num_samples) / sample_rate - t0
        h[start:] = level * np.exp(-_DECAY_60DB * t / room.rt60) * rng.standard_normal(t.size)
    try:
        fitted = model.response_rt60(math.sqrt(1.0 - alpha))
    except ValueError:
        fitted = math.nan
    return SimulatedRir(h, alpha, min(reach / c, end_s), fitted)


def measure_rt60(rir: np.ndarray, sample_rate: float = 16000, *,
                 decay_db: tuple[float, float] = (-5.0, -25.0),
                 skip_direct_s: float = DIRECT_SKIP_S) -> float:
    """RT60 by Schroeder backward integration, a line fitted on ``decay_db`` (T20) x 3.

    The energy decay curve is the energy still to come at each sample, in dB of the
    total, least squares over the samples between the two levels gives dB/s.  It
    starts ``skip_direct_s`` after the direct sound (the first sample at 30% of the
    peak): RT60 is the decay of the reverberant field, and a close source whose
    direct sound holds most of the energy would otherwise put the -5 dB point on the
    direct pulse (ISO 3382's -5 dB start is there to skip it, for far sources).
    """
    x = np.abs(np.asarray(rir, dtype=np.float64))
    onset = int(np.argmax(x >= 0.3 * x.max()))
    energy = x[onset + round(skip_direct_s * sample_rate):] ** 2
    if energy.size == 0 or energy.sum() <= 0:
        raise ValueError("the response has nothing after its direct sound")
    edc = np.cumsum(energy[::-1])[::-1]
    edc_db = 10.0 * np.log10(np.maximum(edc / edc[0], 1e-30))
    hi, lo = decay_db
    i0 = int(np.argmax(edc_db <= hi))
    i1 = int(np.argmax(edc_db <= lo))
    if i1 <= i0 + 1:
        raise ValueError(f"the response does not decay from {hi:g} to {lo:g} dB")
    t = np.arange(i0, i1) / sample_rate
    slope = np.polyfit(t, edc_db[i0:i1], 1)[0]
    return -60.0 / slope


def random_rir(rng: np.random.Generator, kind: str = "small", sample_rate: int = 16000,
               max_tries: int = 20) -> tuple[Room, SimulatedRir]:
    """A room of ``kind`` drawn from ``rng`` and its response.

    A room whose walls cannot give its RT60 is drawn again: one that needs more
    absorption than MAX_ABSORPTION, or whose whole response (images and tail, as the
    decay model predicts it before any noise is drawn) would still measure more than
    FITTED_RT60_TOLERANCE off, in practice a short RT60 in a large flat room with the
    source and microphone far apart, where the level images decay too slowly for
    any absorption and the response is a few strong reflections.
    """
    for _ in range(max_tries):
        room = draw_room(rng, kind)
        rir = simulate_rir(room, sample_rate, rng=rng)
        if (rir.absorption < MAX_ABSORPTION - 1e-3
                and abs(rir.fitted_rt60 / room.rt60 - 1) < FITTED_RT60_TOLERANCE):
            break
    return room, rir
