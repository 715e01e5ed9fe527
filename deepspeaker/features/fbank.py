"""Kaldi-compatible log mel filterbank features (paper §4.3, SPEC F1).

The numerics follow Kaldi's ``compute-fbank-feats`` (and kaldi-native-fbank, which the
tests use as the reference) step by step, so that features, VAD decisions and every
model trained on them mean the same thing as in a Kaldi recipe:

1. frames of ``frame_length_ms`` every ``frame_shift_ms`` (``snip_edges``: frames must
   fit inside the signal; otherwise frames are centred on multiples of the shift and the
   signal is mirrored at its ends);
2. per frame: optional Gaussian dither, DC removal, raw log energy, pre-emphasis
   (``x[i] -= c * x[i-1]``, ``x[0] -= c * x[0]``), window;
3. zero padding to the next power of two, power spectrum;
4. triangular filters equally spaced on Kaldi's mel scale ``1127 ln(1 + f / 700)``,
   applied to FFT bins ``0 .. N/2 - 1``; ``log(max(x, FLT_EPSILON))``.

Samples are on the int16 scale (-32768..32767), not in [-1, 1]: that is what Kaldi reads
from a wav file, and the absolute level matters downstream: the VAD threshold
(``vad_energy_threshold = 5``) is an absolute log energy, and ``energy_floor`` and the
``FLT_EPSILON`` floors are tuned for that scale. Audio read as floats in [-1, 1] would
give features shifted by ``2 ln 32768 = 20.8`` and a VAD that keeps nothing.

Everything runs in float32 with torch: the frames of all utterances in a batch go
through one FFT and one filterbank matmul per cache-sized chunk (``compute_fbank_batch``).
Why float32: it is about twice as fast as float64 here (bench/bench_features.py), and
float64 would not bring us closer to kaldi-native-fbank, which computes in float32
itself. Mel bins more than ~18 nats below the loudest bin of their frame (a loud tone
leaking into a near-empty band, mostly the lowest bins that pre-emphasis cuts) are below
float32's resolution: there knf and we each differ from an exact float64 computation by
up to ~1e-2 on real speech (~0.7 on a clean synthetic tone), and from each other by as
much. Elsewhere the two agree within 1e-3, typically ~1e-4. Kaldi, with its own float32
FFT, is in the same position.

Threads: run one job per core with ``torch.set_num_threads(1)`` (as Kaldi's ``nj``
does). The work per torch call is small, and with more threads than free cores (another
job, another user) torch's thread pool slowed extraction 20-100x in our tests.

Where Kaldi and kaldi-native-fbank differ we follow knf: Kaldi's feature-fbank.cc (the
version we read) floors the mel energies at FLT_MIN (log = -87.3) where knf and
torchaudio use FLT_EPSILON (log = -15.9); it matters only for bins with exactly zero
power (digital silence without dither).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from deepspeaker.utils import SizeMismatchError, UnusableDataError, dataclass_from_dict

logger = logging.getLogger(__name__)

# Kaldi floors the raw frame energy, and kaldi-native-fbank also the mel energies, at
# FLT_EPSILON before the log, so digital silence gives log(FLT_EPSILON) = -15.94, not -inf.
FLT_EPSILON = float(np.finfo(np.float32).eps)

WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular")

# Frames processed per FFT call: large enough that per-call overhead is negligible,
# small enough that the working set (frames, padded frames, spectrum) stays in cache
# and that a very long recording does not need gigabytes at once.
_CHUNK_FRAMES = 512

# The dtype of the whole computation (outputs are float32 either way); see the module
# docstring and bench/bench_features.py for why float32.
_DTYPE = torch.float32
_NP_DTYPE = np.float32


@dataclass
class FbankOptions:
    """Fbank options under Kaldi's names, with Kaldi's defaults except two.

    ``num_mel_bins`` is 64 as in the paper (Kaldi: 23). ``dither`` is 0 (Kaldi: 1.0):
    extraction must be deterministic so that rerunning a stage, or extracting an
    enrollment utterance twice, gives the same features and the same scores; dither
    only exists to keep log() away from exact zeros, which the FLT_EPSILON floor
    already does.
    """

    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    num_mel_bins: int = 64  # paper §4.3
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0 means nyquist + high_freq (Kaldi)
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    dither: float = 0.0
    energy_floor: float = 0.0
    raw_energy: bool = True
    snip_edges: bool = True
    seed: int | None = None  # dither RNG seed; only used when dither > 0

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, (int, np.integer)) or self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {self.sample_rate!r}")
        if not isinstance(self.num_mel_bins, (int, np.integer)) or self.num_mel_bins < 3:
            raise ValueError(f"num_mel_bins must be an integer >= 3 (Kaldi), got {self.num_mel_bins!r}")
        if not self.frame_shift_ms > 0 or self.frame_shift_samples < 1:
            raise ValueError(f"frame_shift_ms={self.frame_shift_ms} gives a shift of "
                             f"{self.frame_shift_samples} samples; it must be at least 1")
        if not self.frame_length_ms > 0 or self.frame_length_samples < 2:
            raise ValueError(f"frame_length_ms={self.frame_length_ms} gives a frame of "
                             f"{self.frame_length_samples} samples; it must be at least 2")
        if self.window_type not in WINDOW_TYPES:
            raise ValueError(f"window_type must be one of {', '.join(WINDOW_TYPES)}, "
                             f"got {self.window_type!r}")
        if not 0.0 <= self.preemph_coeff <= 1.0:
            raise ValueError(f"preemph_coeff must be in [0, 1], got {self.preemph_coeff}")
        if not self.dither >= 0.0:
            raise ValueError(f"dither must be >= 0, got {self.dither}")
        if not self.energy_floor >= 0.0:
            raise ValueError(f"energy_floor must be >= 0, got {self.energy_floor}")
        nyquist = 0.5 * self.sample_rate
        high = self.effective_high_freq
        if not (0.0 <= self.low_freq < nyquist and 0.0 < high <= nyquist and high > self.low_freq):
            raise ValueError(f"need 0 <= low_freq < high_freq <= nyquist ({nyquist:g} Hz); got "
                             f"low_freq={self.low_freq}, high_freq={self.high_freq} "
                             f"(effective {high:g})")

    # Kaldi's FrameExtractionOptions::WindowSize / WindowShift / PaddedWindowSize.
    @property
    def frame_length_samples(self) -> int:
        return int(self.sample_rate * 0.001 * self.frame_length_ms)

    @property
    def frame_shift_samples(self) -> int:
        return int(self.sample_rate * 0.001 * self.frame_shift_ms)

    @property
    def padded_length(self) -> int:
        return 1 << (self.frame_length_samples - 1).bit_length()

    @property
    def effective_high_freq(self) -> float:
        return self.high_freq if self.high_freq > 0 else 0.5 * self.sample_rate + self.high_freq


def num_frames(num_samples: int, opts: FbankOptions) -> int:
    """Number of frames Kaldi makes from ``num_samples`` samples (its NumFrames, flush=true)."""
    length, shift = opts.frame_length_samples, opts.frame_shift_samples
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if opts.snip_edges:
        return 0 if num_samples < length else 1 + (num_samples - length) // shift
    # Rounds num_samples / shift to the nearest integer: frames are centred on the shifts.
    return (num_samples + shift // 2) // shift


# ---------------------------------------------------------------------------------------
# Tables cached per options: window and mel matrix
# ---------------------------------------------------------------------------------------

def _mel_scale(freq: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def _window_function(window_type: str, length: int) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    a = 2.0 * math.pi / (length - 1)
    if window_type == "hanning":
        w = 0.5 - 0.5 * np.cos(a * n)
    elif window_type == "hamming":
        w = 0.54 - 0.46 * np.cos(a * n)
    elif window_type == "povey":
        # Like Hann but raised to 0.85: Kaldi's default, zero at both ends.
        w = (0.5 - 0.5 * np.cos(a * n)) ** 0.85
    elif window_type == "rectangular":
        w = np.ones(length)
    else:  # FbankOptions.__post_init__ already refused it
        raise ValueError(f"unknown window_type {window_type!r}")
    return w


def mel_filterbank(opts: FbankOptions) -> np.ndarray:
    """The (padded_length // 2 + 1, num_mel_bins) float64 matrix mapping power spectra to mel energies.

    Filters are triangles in Kaldi's mel scale, with ``num_mel_bins + 2`` equally spaced
    edges between ``low_freq`` and the effective ``high_freq``; each FFT bin's weight is
    evaluated at the bin's own mel value (not interpolated in Hz). The Nyquist row is
    zero, as Kaldi only looks at bins ``0 .. N/2 - 1``.
    """
    num_fft_bins = opts.padded_length // 2
    bin_width = opts.sample_rate / opts.padded_length
    mel_low = _mel_scale(opts.low_freq)
    mel_high = _mel_scale(opts.effective_high_freq)
    delta = (mel_high - mel_low) / (opts.num_mel_bins + 1)
    left = mel_low + delta * np.arange(opts.num_mel_bins)
    center = left + delta
    right = center + delta
    mel = _mel_scale(bin_width * np.arange(num_fft_bins))[:, None]
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    weights = np.where(mel <= center, rising, falling)
    weights = np.where((mel > left) & (mel < right), weights, 0.0)
    empty = np.flatnonzero(~(weights > 0).any(axis=0))
    if empty.size:
        raise SizeMismatchError(f"mel bin(s) {empty.tolist()} cover no FFT bin: num_mel_bins="
                                f"{opts.num_mel_bins} is too large for a "
                                f"{opts.padded_length}-point FFT between {opts.low_freq:g} and "
                                f"{opts.effective_high_freq:g} Hz")
    return np.vstack([weights, np.zeros((1, opts.num_mel_bins))])


# The filterbank is applied as a few dense blocks of neighbouring filters, each over only
# the FFT bins those filters touch: the matrix is mostly zeros (every bin feeds at most two
# filters), and four blocks halve the work of the dense product on 64 bins.
_MEL_BLOCKS = 4


@dataclass(frozen=True)
class _MelBlock:
    rows: slice               # rows of the interleaved (re, im) spectrum this block reads
    cols: slice               # the mel bins it produces
    weights: torch.Tensor     # (rows, cols) of the filterbank with each row repeated twice


@dataclass(frozen=True)
class _Tables:
    window: torch.Tensor      # (frame_length,)
    mel_blocks: tuple[_MelBlock, ...]
    log_energy_floor: float   # -inf when energy_floor == 0


def _mel_blocks(weights: np.ndarray, num_blocks: int) -> tuple[_MelBlock, ...]:
    # Rows repeated twice: squaring the interleaved (re, im) spectrum and multiplying by
    # this matrix sums re^2 + im^2 inside the matmul, one pass cheaper than forming the
    # power spectrum first.
    interleaved = np.repeat(weights, 2, axis=0)
    bounds = np.linspace(0, weights.shape[1], min(num_blocks, weights.shape[1]) + 1).round().astype(int)
    blocks = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        used = np.flatnonzero((interleaved[:, start:stop] != 0).any(axis=1))
        rows = slice(int(used[0]), int(used[-1]) + 1)
        block = np.ascontiguousarray(interleaved[rows, start:stop]).astype(_NP_DTYPE)
        blocks.append(_MelBlock(rows=rows, cols=slice(int(start), int(stop)),
                                weights=torch.from_numpy(block)))
    return tuple(blocks)


_TABLES: dict[tuple, _Tables] = {}


def _tables(opts: FbankOptions) -> _Tables:
    """Window and mel matrix for ``opts``, built once per distinct setting."""
    # The fields that shape the tables; dither, seed and friends do not.
    key = (opts.sample_rate, opts.frame_length_samples, opts.window_type, opts.num_mel_bins,
           float(opts.low_freq), float(opts.effective_high_freq), float(opts.energy_floor))
    tables = _TABLES.get(key)
    if tables is None:
        window = _window_function(opts.window_type, opts.frame_length_samples)
        tables = _Tables(
            window=torch.from_numpy(window.astype(_NP_DTYPE)),
            mel_blocks=_mel_blocks(mel_filterbank(opts), _MEL_BLOCKS),
            log_energy_floor=math.log(opts.energy_floor) if opts.energy_floor > 0 else -math.inf)
        if len(_TABLES) >= 16:
            _TABLES.clear()
        _TABLES[key] = tables
    return tables


# ---------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------

def check_samples(samples, opts: FbankOptions, sample_rate: int | None = None) -> np.ndarray:
    """``samples`` as a contiguous array of the compute dtype, or ValueError saying what is wrong.

    Messages do not name the utterance: the caller (who knows the utterance id, file and
    line) adds that. ``sample_rate`` is the rate of the audio, checked against
    ``opts.sample_rate`` when given: we never resample silently, as features at the wrong
    rate look plausible and quietly ruin a model. Fewer samples than one frame is an
    error even with snip_edges=False (where Kaldi would mirror them into frames): 25 ms
    says nothing about a speaker and almost always means a broken segment.
    """
    if sample_rate is not None and sample_rate != opts.sample_rate:
        raise UnusableDataError(f"audio sample rate {sample_rate} Hz does not match the fbank "
                                f"config ({opts.sample_rate} Hz); resample the audio or change "
                                f"sample_rate")
    x = np.asarray(samples)
    if x.ndim != 1:
        raise UnusableDataError(f"expected 1-D (mono) samples, got an array of shape {x.shape}; "
                                f"pick or mix down a channel first")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise UnusableDataError(f"expected real-valued samples, got dtype {x.dtype}")
    length = opts.frame_length_samples
    if x.shape[0] < length:
        raise UnusableDataError(f"{x.shape[0]} samples is shorter than one "
                                f"{opts.frame_length_ms:g} ms frame ({length} samples at "
                                f"{opts.sample_rate} Hz)")
    if np.issubdtype(x.dtype, np.floating):
        # min and max propagate NaN and see inf: two cheap passes, no temporaries.
        low, high = float(x.min()), float(x.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            bad = np.flatnonzero(~np.isfinite(x))
            raise UnusableDataError(f"samples contain {bad.size} NaN/inf value(s), the first at "
                                    f"sample {bad[0]} ({x[bad[0]]})")
        peak = max(-low, high)
        if peak > float(np.finfo(np.float32).max):
            raise UnusableDataError(f"samples peak at {peak:.3g}, beyond float32's range; "
                                    f"they are not audio samples")
        if 0.0 < peak <= 1.0:
            logger.warning("samples peak at %.3g: audio read as floats in [-1, 1]? fbank "
                           "expects Kaldi's int16 scale (read with dtype='int16')", peak)
    x = np.ascontiguousarray(x, dtype=_NP_DTYPE)
    # torch.from_numpy warns on read-only arrays (memmaps, frombuffer) even though we
    # never write to them; a copy is cheap next to the FFT.
    return x if x.flags.writeable else x.copy()


# ---------------------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------------------

def _frame_signal(x: np.ndarray, opts: FbankOptions) -> np.ndarray:
    """The samples frame f reads start at ``f * shift`` of the returned signal.

    With snip_edges that is ``x`` itself. Otherwise frame f is centred on
    ``f * shift + shift // 2`` and samples outside the signal are mirrored with the edge
    sample repeated (-1 -> 0, N -> N - 1), repeatedly if the signal is shorter than the
    overhang, as Kaldi does; the mirrored copy is returned.
    """
    if opts.snip_edges:
        return x
    length, shift = opts.frame_length_samples, opts.frame_shift_samples
    n = num_frames(x.shape[0], opts)
    start = shift // 2 - length // 2
    idx = np.arange(start, (n - 1) * shift + start + length)
    period = 2 * x.shape[0]
    idx = np.mod(idx, period)
    idx = np.where(idx >= x.shape[0], period - 1 - idx, idx)
    return x[idx]


def _frames_view(signal: torch.Tensor, opts: FbankOptions) -> torch.Tensor:
    """(num_frames, frame_length) strided view of ``signal`` (no copy)."""
    n = 1 + (signal.shape[0] - opts.frame_length_samples) // opts.frame_shift_samples
    return signal.as_strided((n, opts.frame_length_samples), (opts.frame_shift_samples, 1))


def _process_chunk(pieces: list[tuple[torch.Tensor, torch.Tensor | None]], opts: FbankOptions,
                   tables: _Tables, frames: torch.Tensor, padded: torch.Tensor,
                   mel_out: torch.Tensor, energy_out: torch.Tensor) -> None:
    """Mel energies and frame energies of ``pieces``, both before the log.

    Each piece is a (strided frames view, dither noise or None); their rows add up to the
    rows of ``frames`` (scratch, (rows, L)), ``padded`` (scratch, (rows, P), zero beyond
    L), ``mel_out`` (rows, M) and ``energy_out`` (rows,). Every step runs on the whole
    chunk at once, fused where torch allows, so each pass over the frames is one call.
    """
    length, c = opts.frame_length_samples, opts.preemph_coeff
    r = 0
    for view, noise in pieces:
        out = frames[r:r + view.shape[0]]
        if noise is not None:
            torch.add(view, noise, out=out)
            view = out
        if opts.remove_dc_offset:
            torch.sub(view, view.mean(dim=1, keepdim=True), out=out)
        elif noise is None:
            out.copy_(view)
        r += view.shape[0]
    if opts.raw_energy:
        # Kaldi's raw energy: after dither and DC removal, before pre-emphasis and window.
        torch.linalg.vecdot(frames, frames, out=energy_out)
    # Pre-emphasis and window into the zero-padded FFT input:
    # y[i] = w[i] (x[i] - c x[i-1]) for i >= 1, y[0] = w[0] (1 - c) x[0].
    windowed = padded[:, :length]
    torch.mul(frames, tables.window, out=windowed)
    if c != 0.0:
        windowed[:, 1:].addcmul_(frames[:, :-1], tables.window[1:], value=-c)
        windowed[:, 0] *= 1.0 - c
    if not opts.raw_energy:
        torch.linalg.vecdot(windowed, windowed, out=energy_out)

    spectrum = torch.view_as_real(torch.fft.rfft(padded, dim=1)).reshape(padded.shape[0], -1)
    spectrum.square_()
    for block in tables.mel_blocks:
        mel_out[:, block.cols] = torch.matmul(spectrum[:, block.rows], block.weights)


def _dither_noise(num_frames_: int, opts: FbankOptions) -> torch.Tensor:
    # Kaldi dithers each frame separately (overlapping samples get different noise).
    rng = np.random.default_rng(opts.seed)
    noise = rng.standard_normal((num_frames_, opts.frame_length_samples), dtype=_NP_DTYPE)
    return torch.from_numpy(noise).mul_(opts.dither)


def compute_fbank_batch(batch: Sequence[np.ndarray],
                        opts: FbankOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fbank and raw log energy of each utterance: ``[(fbank (T, M), log_energy (T,)), ...]``, float32.

    The frames of all utterances go through one FFT and one mel matmul per chunk of a
    few hundred frames (sized to stay in cache), which is what makes extraction fast;
    the result is the same as calling ``compute_fbank_and_energy`` on each utterance.
    Each element is checked as by ``check_samples`` (errors name the batch index; the
    caller adds the utterance id). The caller checks each file's sample rate against
    ``opts.sample_rate``. With ``dither > 0`` and a ``seed``, every utterance is
    dithered from that seed, so a result does not depend on the batch it landed in.
    """
    if not isinstance(opts, FbankOptions):
        raise TypeError(f"opts must be FbankOptions, got {type(opts).__name__}")
    checked = []
    for i, samples in enumerate(batch):
        try:
            checked.append(check_samples(samples, opts))
        except ValueError as e:
            raise UnusableDataError(f"batch item {i}: {e}") from None
    return _compute_checked(checked, opts)


def _compute_checked(batch: list[np.ndarray], opts: FbankOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """compute_fbank_batch on arrays that check_samples has already returned."""
    tables = _tables(opts)
    views, noises = [], []
    for x in batch:
        view = _frames_view(torch.from_numpy(_frame_signal(x, opts)), opts)
        assert view.shape[0] == num_frames(x.shape[0], opts)
        views.append(view)
        noises.append(_dither_noise(view.shape[0], opts) if opts.dither > 0 else None)
    if not views:
        return []

    counts = [v.shape[0] for v in views]
    total = sum(counts)
    mel = torch.empty(total, opts.num_mel_bins, dtype=_DTYPE)
    energy = torch.empty(total, dtype=_DTYPE)
    chunk = min(_CHUNK_FRAMES, total)
    frames = torch.empty(chunk, opts.frame_length_samples, dtype=_DTYPE)
    padded = torch.zeros(chunk, opts.padded_length, dtype=_DTYPE)

    # Chunks of _CHUNK_FRAMES frames; an utterance may be split across chunks.
    done, rows = 0, 0
    pieces: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    for view, noise in zip(views, noises):
        start = 0
        while start < view.shape[0]:
            take = min(view.shape[0] - start, chunk - rows)
            pieces.append((view[start:start + take],
                           None if noise is None else noise[start:start + take]))
            rows += take
            start += take
            if rows == chunk or done + rows == total:
                _process_chunk(pieces, opts, tables, frames[:rows], padded[:rows],
                               mel[done:done + rows], energy[done:done + rows])
                done += rows
                pieces, rows = [], 0

    # log(max(x, FLT_EPSILON)) as Kaldi, then the optional energy floor.
    mel.clamp_min_(FLT_EPSILON).log_()
    energy.clamp_min_(FLT_EPSILON).log_()
    if opts.energy_floor > 0:
        energy.clamp_min_(tables.log_energy_floor)
    fbank_np = mel.numpy().astype(np.float32, copy=False)
    energy_np = energy.numpy().astype(np.float32, copy=False)
    out, start = [], 0
    for n in counts:
        out.append((fbank_np[start:start + n].copy(), energy_np[start:start + n].copy()))
        start += n
    return out


def _options(options: dict, opts: FbankOptions | None) -> FbankOptions:
    if opts is not None:
        if options:
            raise ValueError(f"pass either opts or option keywords, not both "
                             f"(got {', '.join(sorted(options))})")
        return opts
    return dataclass_from_dict(FbankOptions, options, where="fbank options")


def compute_fbank_and_energy(samples, sample_rate: int = 16000, *, opts: FbankOptions | None = None,
                             **options) -> tuple[np.ndarray, np.ndarray]:
    """(fbank float32 (T, num_mel_bins), raw log energy float32 (T,)) of one utterance.

    ``samples`` is 1-D on Kaldi's int16 scale; ``sample_rate`` is the audio's rate and
    must equal the configured one. Options are FbankOptions field names (unknown names
    raise ConfigError), or a ready ``opts``. The log energy is Kaldi's MFCC/fbank
    ``use_energy`` column: it is what compute-vad-energy thresholds.
    """
    opts = _options(options, opts)
    x = check_samples(samples, opts, sample_rate)
    return _compute_checked([x], opts)[0]


def compute_fbank(samples, sample_rate: int = 16000, *, opts: FbankOptions | None = None,
                  **options) -> np.ndarray:
    """float32 (T, num_mel_bins) log mel fbank of one utterance; see compute_fbank_and_energy."""
    return compute_fbank_and_energy(samples, sample_rate, opts=opts, **options)[0]
