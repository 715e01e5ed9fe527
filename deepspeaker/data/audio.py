"""Audio of a data dir's utterances, read from wav.scp (and segments) entries.

Samples come back as float32 on Kaldi's int16 scale (a full-scale PCM_16 sample is
+-32768), which is what Kaldi's fbank and energy VAD thresholds assume.  soundfile
reads PCM_16 as ``int / 32768`` in float32, so multiplying by 32768 gives the int16
values back exactly.

A wav.scp value is either a file name (wav, flac, anything libsndfile reads; relative
names are relative to the current directory, as in Kaldi) or a command ending in
``|`` that writes the audio to stdout; it is run with bash.

A file that is not audio libsndfile reads is "not a readable audio file (reason)"; a
WAV whose header promises more samples than the file holds (a copy cut short, which
libsndfile would read quietly up to where it stops) and a FLAC whose decoding stops
early are "truncated", never features of part of an utterance under its full name.

Every way an utterance can be unusable raises (or, from ``iter_audio``, yields) an
``AudioError`` that names the utterance, the wav.scp or segments line, the file or
command, and the reason; batch stages list the failed utterances and go on.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import soundfile as sf

from ..utils import DeepSpeakerError
from .kaldi_dir import DataDir, segment_problem

INT16_SCALE = 32768.0
# Kaldi's extract-segments clips segments that end at most this far past the end of
# their recording (its --max-overshoot default); more is an error.
MAX_OVERSHOOT_S = 0.5
_STDERR_TAIL_CHARS = 600


class AudioError(DeepSpeakerError):
    """One utterance whose audio cannot be used.

    ``str()`` is ``"{file}:{line}: {utt}: {reason} (audio: {source})"`` where file is
    wav.scp, or segments for a segmented utterance (source then names the recording's
    wav.scp line too).
    """

    def __init__(self, utt: str, reason: str, *, file: str, line: int | None = None,
                 source: str = ""):
        self.utt, self.reason, self.file, self.line, self.source = utt, reason, file, line, source
        where = file if line is None else f"{file}:{line}"
        text = f"{where}: {utt}: {reason}"
        if source:
            text += f" (audio: {source})"
        super().__init__(text)


class _Unusable(Exception):
    """Internal: the reason a recording or slice cannot be used."""


@dataclass
class _Source:
    utt: str
    file: str              # wav.scp or segments path, for messages
    line: int | None
    rec: str               # recording id (== utt without segments)
    value: str             # the wav.scp value: file name or "command |"
    description: str       # what AudioError shows as "audio:"
    span: tuple[float, float] | None = None  # segment start, end in seconds

    def error(self, reason: str) -> AudioError:
        return AudioError(self.utt, reason, file=self.file, line=self.line,
                          source=self.description)


def _source_of(data: DataDir, utt: str) -> _Source:
    wav_name = str(data.path / "wav.scp")
    if data.segments is None:
        if utt not in data.wav_scp:
            raise AudioError(utt, "no wav.scp entry for this utterance", file=wav_name)
        value = data.wav_scp[utt]
        return _Source(utt, wav_name, data.line_of("wav.scp", utt), utt, value, value)
    seg_name = str(data.path / "segments")
    if utt not in data.segments:
        raise AudioError(utt, "no segments entry for this utterance", file=seg_name)
    rec, start, end = data.segments[utt]
    line = data.line_of("segments", utt)
    if rec not in data.wav_scp:
        raise AudioError(utt, f"recording {rec!r} is not in wav.scp", file=seg_name, line=line)
    value = data.wav_scp[rec]
    rec_line = data.line_of("wav.scp", rec)
    rec_where = wav_name if rec_line is None else f"{wav_name}:{rec_line}"
    return _Source(utt, seg_name, line, rec, value,
                   f"recording {rec}, {rec_where}: {value}", (start, end))


def _run_pipe(value: str) -> bytes:
    cmd = value[:-1].strip()
    proc = subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True)
    tail = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL_CHARS:]
    if proc.returncode != 0:
        raise _Unusable(f"command failed with exit status {proc.returncode}"
                        + (f"; stderr: {tail}" if tail else ""))
    if not proc.stdout:
        raise _Unusable("command wrote nothing to stdout" + (f"; stderr: {tail}" if tail else ""))
    return proc.stdout


def _soundfile(source) -> sf.SoundFile:
    """``sf.SoundFile(source)`` whose failure says what is wrong with the file, not with Python.

    libsndfile's reason is kept, without soundfile's "Error opening <_io.BytesIO object
    at 0x...>" prefix; its "does not exist" (which it also says of some files that
    exist but hold no audio it knows) becomes "unknown format or damaged header".
    """
    try:
        return sf.SoundFile(source)
    except sf.LibsndfileError as e:
        why = e.error_string.strip().rstrip(".")
        if "not exist" in why or "not a regular file" in why:
            why = "unknown format or damaged header"
        raise _Unusable(f"cannot read audio: not a readable audio file ({why})") from None
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError, EOFError) as e:
        raise _Unusable(f"cannot read audio: not a readable audio file ({_clean(e)})") from None


def _clean(e: BaseException) -> str:
    """The text of a library error without object reprs (``<_io.BytesIO object at 0x...>``)."""
    return _OBJECT_REPR.sub("the command's output", str(e)).strip() or type(e).__name__


_OBJECT_REPR = re.compile(r"'?<[\w.]+ object at 0x[0-9a-fA-F]+>'?")
# RIFF data sizes that mean "length unknown" (a writer that could not seek back, e.g.
# into a pipe): Kaldi's wave reader reads such data to the end, and so do we.
_STREAMED_SIZES = (0, 0xFFFFFFFF)


def wav_shortfall(raw: BinaryIO, size: int) -> tuple[int, int] | None:
    """(bytes the data chunk's header declares, bytes present) of a truncated RIFF WAV, else None.

    libsndfile quietly shortens a WAV whose header promises more samples than the file
    holds (a copy or download cut short) and reads what is there; Kaldi warns
    "Truncated file?".  A cut-off file gives features for part of an utterance
    under its full name, so we compare the header with the file ourselves.  Files
    that are not RIFF WAV (RF64, FLAC, ...), or whose data size means "unknown",
    give None.
    """
    raw.seek(0)
    head = raw.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= size:
        raw.seek(pos)
        chunk = raw.read(8)
        if len(chunk) < 8:
            return None
        declared = int.from_bytes(chunk[4:8], "little")
        if chunk[:4] == b"data":
            present = size - (pos + 8)
            if declared in _STREAMED_SIZES or declared <= present:
                return None
            return declared, present
        pos += 8 + declared + (declared & 1)   # chunks are padded to an even size
    return None


def _truncation(raw: BinaryIO, size: int, f: sf.SoundFile) -> str | None:
    """Why ``f`` (opened from ``raw``, ``size`` bytes) is cut short, or None."""
    if f.format not in ("WAV", "WAVEX"):
        return None
    short = wav_shortfall(raw, size)
    if short is None:
        return None
    declared, present = short
    per_frame = max(1, f.channels * _BYTES_PER_SAMPLE.get(f.subtype, 2))
    return (f"truncated: the WAV header promises {declared // per_frame} samples "
            f"({declared} bytes), the file holds {present // per_frame} ({present} bytes)")


_BYTES_PER_SAMPLE = {"PCM_U8": 1, "PCM_S8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2,
                     "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


def _open(value: str) -> sf.SoundFile:
    """The recording of a wav.scp value, checked for a WAV header that promises too much."""
    if value.endswith("|"):
        data = _run_pipe(value)
        f = _soundfile(io.BytesIO(data))
        why = _truncation(io.BytesIO(data), len(data), f)
    else:
        if not os.path.exists(value):
            raise _Unusable("audio file not found")
        if not os.path.isfile(value):
            raise _Unusable("not a regular file")
        try:
            with open(value, "rb") as raw:
                # bytes: soundfile encodes a str name as strict UTF-8, and a Latin-1
                # name read from wav.scp (a surrogate-escaped str) would not open.
                f = _soundfile(os.fsencode(value))
                why = _truncation(raw, os.fstat(raw.fileno()).st_size, f)
        except OSError as e:
            raise _Unusable(f"cannot open the file: {e.strerror or e}") from None
    if why:
        f.close()
        raise _Unusable(why)
    return f


def audio_problem(value: str) -> str | None:
    """Why the recording ``value`` (a file name or ``command |``) cannot be opened, or None.

    The checks of every read without decoding: missing, not audio, a WAV cut short.
    For callers that vet files before using them (augmentation's RIR and noise lists),
    so that they refuse what :func:`load_audio` would refuse later.
    """
    try:
        with _open(value):
            return None
    except _Unusable as e:
        return str(e)


def _span_samples(span: tuple[float, float], sr: int, n: int) -> tuple[int, int]:
    """Sample range [a, b) of a segment in a recording of ``n`` samples."""
    start, end = span
    why = segment_problem(start, end)
    if why:
        raise _Unusable(why)
    # round, not truncate: 0.29 * 16000 is 4639.999... in floating point.
    a = round(start * sr)
    b = n if end == -1 else round(end * sr)
    if a >= n:
        raise _Unusable(f"segment starts at {start:g} s, at or past the end of the recording "
                        f"({n / sr:g} s)")
    if b > n:
        if b - n > MAX_OVERSHOOT_S * sr:
            raise _Unusable(f"segment ends at {end:g} s, more than {MAX_OVERSHOOT_S:g} s past "
                            f"the end of the recording ({n / sr:g} s)")
        b = n
    return a, b


def _read(value: str, sample_rate: int, span: tuple[float, float] | None = None) -> np.ndarray:
    """Mono samples of the recording (or its segment ``span``), float32, int16 scale."""
    with _open(value) as f:
        if f.samplerate != sample_rate:
            raise _Unusable(f"sample rate is {f.samplerate} Hz, expected {sample_rate} Hz")
        if f.channels != 1:
            raise _Unusable(f"has {f.channels} channels, expected 1 (mono)")
        n = f.frames
        if n == 0:
            raise _Unusable("empty: 0 samples")
        a, b = (0, n) if span is None else _span_samples(span, f.samplerate, n)
        try:
            if a:
                f.seek(a)
            x = f.read(b - a, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError, EOFError) as e:
            why = e.error_string if isinstance(e, sf.LibsndfileError) else _clean(e)
            raise _Unusable(f"cannot read audio: truncated or damaged, decoding failed "
                            f"({why.strip().rstrip('.')})") from None
    # A decoder that stops early (a FLAC cut short) gives fewer samples than its header.
    if x.shape[0] < b - a:
        raise _Unusable(f"truncated: the header promises {n} samples, only "
                        f"{a + x.shape[0]} could be decoded")
    x = x[:, 0]
    x *= INT16_SCALE
    return x


def _check(x: np.ndarray, min_samples: int) -> np.ndarray:
    """Reasons an utterance's samples are unusable even though the file read fine."""
    if x.size == 0:
        raise _Unusable("empty: 0 samples")
    bad = np.count_nonzero(~np.isfinite(x))
    if bad:
        raise _Unusable(f"contains {bad} NaN or inf sample(s) of {x.size}")
    if x.size < min_samples:
        raise _Unusable(f"too short: {x.size} samples, fewer than one frame of {min_samples}")
    return x


def load_audio(data: DataDir, utt: str, *, sample_rate: int = 16000,
               min_samples: int = 400) -> np.ndarray:
    """Samples of ``utt`` as float32 1-D on the int16 scale; AudioError if unusable.

    A segmented utterance reads only its span of a recording file (a pipe is run
    whole and sliced).  ``min_samples`` defaults to one 25 ms frame at 16 kHz.
    """
    src = _source_of(data, utt)
    try:
        return _check(_read(src.value, sample_rate, src.span), min_samples)
    except _Unusable as e:
        raise src.error(str(e)) from None


def iter_audio(data: DataDir, utts: Iterable[str] | None = None, *, sample_rate: int = 16000,
               min_samples: int = 400
               ) -> Iterator[tuple[str, np.ndarray | None, AudioError | None]]:
    """``(utt, samples, None)`` or ``(utt, None, error)`` for each utterance, in order.

    Order is that of ``utts`` (default: ``data.utts``, sorted), never changed, so a
    caller can write sorted scp files as it goes.  One bad utterance never stops the
    others.  Segments of one recording that come one after another are sliced from a
    single read of the recording (only the current recording is kept in memory); if
    the recording is unusable, each of those segments gets the error.
    """
    cached_rec: str | None = None
    cached: np.ndarray | _Unusable | None = None
    for utt in (data.utts if utts is None else utts):
        try:
            src = _source_of(data, utt)
        except AudioError as e:
            yield utt, None, e
            continue
        try:
            if src.span is None:
                x = _read(src.value, sample_rate)
            else:
                if src.rec != cached_rec:
                    cached_rec = src.rec
                    try:
                        cached = _read(src.value, sample_rate)
                    except _Unusable as e:
                        cached = e
                if isinstance(cached, _Unusable):
                    raise _Unusable(str(cached))
                a, b = _span_samples(src.span, sample_rate, cached.size)
                x = cached[a:b].copy()
            yield utt, _check(x, min_samples), None
        except _Unusable as e:
            yield utt, None, src.error(str(e))
