"""Augmentation sources: lists of room impulse responses, noise, music and speech.

A *source list* is a directory ``OUT/<list>/`` with a Kaldi-style ``wav.scp``
(``<id> <absolute wav path>``, sorted bytewise), ``utt2dur`` (``<id> <seconds>``), for
RIRs ``rir2info`` (``<id> key=value ...``) and, when some listed files could not be
used, ``failed`` (``<id> <file>: <reason>``).  :func:`prepare_aug_sources` makes
``OUT/rirs``, ``OUT/noise``, ``OUT/music`` and, from MUSAN only, ``OUT/speech``:

* RIRs from the ``RIRS_NOISES`` layout (:func:`prepare_rirs_noises`), else simulated
  (:func:`simulate_rirs`, ``deepspeaker.augment.rir``);
* noise, music and speech from MUSAN's layout (:func:`prepare_musan`), else noise
  and music generated (:func:`generate_sources`, ``deepspeaker.augment.noise``).

Files at another sample rate than asked are refused (listed in ``failed``), not
resampled: both corpora are 16 kHz, and a recipe at 8 kHz is better served by
resampling the corpus once than by copies made here on every rerun.  The same for
several channels (the 8-channel REVERB RIRs of ``real_rirs_isotropic_noises``):
which channel to keep is the user's choice, not ours.

Every list is written to a hidden staging dir and renamed into place whole; the
marker ``OUT/.sources.done`` is written last (``deepspeaker.marker``), so a rerun with
the same arguments does nothing, another seed or option redoes everything, and an
interrupted run starts again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ..data.audio import audio_problem
from ..data.kaldi_dir import read_kaldi_map, write_kaldi_map
from ..data.table import fmt_float, iter_lines
from ..marker import Marker, signature
from ..utils import DeepSpeakerError
from .noise import DURATION_RANGE_S, NOISE_KINDS, generate_music, generate_noise
from .rir import ROOM_SIDES_M, measure_rt60, random_rir

logger = logging.getLogger(__name__)

MUSAN_KINDS = ("music", "noise", "speech")
RIR_SETS = {"small": "simulated_rirs/smallroom", "medium": "simulated_rirs/mediumroom",
            "large": "simulated_rirs/largeroom", "real": "real_rirs_isotropic_noises"}
# Options of Kaldi's rir_list lines (steps/data/reverberate_data_dir.py reads these).
RIR_LIST_OPTIONS = ("--rir-id", "--room-id", "--receiver-position-id", "--source-position-id",
                    "--rt-60", "--drr", "--probability")
MARKER = ".sources.done"


class SourceError(DeepSpeakerError):
    """A corpus tree or list that is not in the layout the source prep expects."""


@dataclass
class SourceList:
    """One source list in memory, written by :func:`write_source_lists`."""

    wav_scp: dict[str, str] = field(default_factory=dict)
    utt2dur: dict[str, str] = field(default_factory=dict)
    rir2info: dict[str, str] | None = None
    failed: dict[str, str] = field(default_factory=dict)
    # Files to write with the list: name under wav/ -> (16-bit samples, sample rate).
    audio: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)

    def add(self, key: str, path: Path, duration: float, info: str | None = None) -> None:
        self.wav_scp[key] = str(path)
        self.utt2dur[key] = fmt_float(duration)
        if info is not None:
            self.rir2info = self.rir2info if self.rir2info is not None else {}
            self.rir2info[key] = info


# --------------------------------------------------------------------------- writing

def pcm16(samples: np.ndarray) -> np.ndarray:
    """Samples in [-1, 1] as 16-bit PCM (what is kept in memory until written)."""
    return np.round(np.clip(samples, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def write_source_lists(lists: dict[str, SourceList], out: Path) -> None:
    """Write every list as ``out/<name>/`` (replacing what was there), all or nothing."""
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".sources.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for name, sl in lists.items():
            d = staging / name
            (d / "wav").mkdir(parents=True)
            for file, (samples, sr) in sl.audio.items():
                sf.write(str(d / "wav" / file), samples, sr, subtype="PCM_16", format="WAV")
            if not sl.wav_scp:
                raise SourceError(f"{out / name}: no usable files "
                                  f"({len(sl.failed)} failed: see the warnings above)")
            write_kaldi_map(d / "wav.scp", sl.wav_scp)
            write_kaldi_map(d / "utt2dur", sl.utt2dur)
            if sl.rir2info is not None:
                write_kaldi_map(d / "rir2info", sl.rir2info)
            if sl.failed:
                write_kaldi_map(d / "failed", sl.failed)
            if not sl.audio:
                (d / "wav").rmdir()
        for name in lists:
            old = staging / f"old.{name}"
            if (out / name).exists():
                (out / name).rename(old)
            (staging / name).rename(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name, sl in lists.items():
        logger.info("%s: %d files%s", out / name, len(sl.wav_scp),
                    f", {len(sl.failed)} failed (listed in {out / name / 'failed'})"
                    if sl.failed else "")


def load_source_list(path: str | os.PathLike) -> SourceList:
    """Read a source list dir back (what the augment stage reads); DataDirError names file:line.

    ``wav.scp`` and ``utt2dur`` are required and must hold the same ids; ``rir2info``
    and ``failed`` are read when present.
    """
    d = Path(path)
    wav_scp = read_kaldi_map(d / "wav.scp")
    utt2dur = read_kaldi_map(d / "utt2dur", num_fields=2)
    if set(wav_scp) != set(utt2dur):
        odd = sorted(set(wav_scp) ^ set(utt2dur))
        raise SourceError(f"{d}: wav.scp and utt2dur do not list the same ids "
                          f"({len(odd)} differ, e.g. {odd[0]})")
    info = read_kaldi_map(d / "rir2info") if (d / "rir2info").is_file() else None
    failed = read_kaldi_map(d / "failed") if (d / "failed").is_file() else {}
    return SourceList(wav_scp, utt2dur, info, failed)


# --------------------------------------------------------------------------- checking files

def _problem(path: Path, sample_rate: int) -> tuple[str | None, float]:
    """(why ``path`` cannot be a source or None, its duration in seconds)."""
    if not path.is_file():
        return "file not found", 0.0
    # the checks of every audio read (a WAV whose header promises more than the file
    # holds, random bytes): a source refused here is not a failed utterance later
    why = audio_problem(str(path))
    if why:
        return f"cannot read audio: {why}", 0.0
    try:
        info = sf.info(str(path))
        with sf.SoundFile(str(path)) as f:   # a header that promises more than is there
            if f.frames:
                f.seek(f.frames - 1)
                f.read(1)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError, EOFError) as e:
        return f"cannot read audio: {e}", 0.0
    if info.samplerate != sample_rate:
        return f"sample rate is {info.samplerate} Hz, expected {sample_rate} Hz", 0.0
    if info.channels != 1:
        return f"has {info.channels} channels, expected 1 (mono)", 0.0
    if info.frames == 0:
        return "empty: 0 samples", 0.0
    return None, info.frames / info.samplerate


def _add_checked(sl: SourceList, key: str, path: Path, sample_rate: int, failed_file: Path,
                 info: str | None = None) -> None:
    why, duration = _problem(path, sample_rate)
    if why is None:
        sl.add(key, path, duration, info)
        return
    logger.warning("%s: %s; skipped (listed in %s)", path, why, failed_file)
    sl.failed[key] = f"{path}: {why}"


# --------------------------------------------------------------------------- MUSAN

def _musan_root(root: Path) -> Path:
    for cand in (root / "musan", root):
        if all((cand / kind).is_dir() for kind in MUSAN_KINDS):
            return cand
    missing = [k for k in MUSAN_KINDS if not (root / k).is_dir()]
    raise SourceError(f"{root}: not a MUSAN tree: expected folders {', '.join(MUSAN_KINDS)} "
                      f"(musan/<kind>/<subset>/*.wav) in it or in {root / 'musan'}; "
                      f"missing: {', '.join(missing)}")


def musan_files(root: str | os.PathLike) -> dict[str, list[Path]]:
    """``kind -> sorted wav files`` of a MUSAN tree (``root`` = musan/ or its parent)."""
    musan = _musan_root(Path(root))
    out = {}
    for kind in MUSAN_KINDS:
        files = sorted((musan / kind).glob("*/*.wav"))
        if not files:
            raise SourceError(f"{musan / kind}: no <subset>/*.wav files (MUSAN's layout is "
                              f"musan/{kind}/<subset>/{kind}-<subset>-0000.wav)")
        out[kind] = files
    return out


def prepare_musan(root: str | os.PathLike, out: str | os.PathLike, *,
                  sample_rate: int = 16000) -> dict[str, SourceList]:
    """Lists ``music``, ``noise`` and ``speech`` of a MUSAN tree; ids are the file stems."""
    out = Path(out)
    lists = {}
    for kind, files in musan_files(root).items():
        sl = SourceList()
        for path in files:
            if path.stem in sl.wav_scp or path.stem in sl.failed:
                raise SourceError(f"{path}: file name {path.stem!r} appears twice under "
                                  f"{path.parents[1]}")
            _add_checked(sl, path.stem, path.resolve(), sample_rate, out / kind / "failed")
        lists[kind] = sl
    return lists


# --------------------------------------------------------------------------- RIRS_NOISES

def _rirs_root(root: Path, sets: Sequence[str]) -> Path:
    for cand in (root / "RIRS_NOISES", root):
        if all((cand / RIR_SETS[s]).is_dir() for s in sets):
            return cand
    wanted = ", ".join(f"RIRS_NOISES/{RIR_SETS[s]}/rir_list" for s in sets)
    raise SourceError(f"{root}: not a RIRS_NOISES tree: expected {wanted} "
                      f"in it or in its RIRS_NOISES folder")


def parse_rir_list_line(text: str) -> tuple[dict[str, str], str]:
    """``--rir-id ID --room-id ROOM [--opt value ...] path`` -> (options, path).

    ValueError (the caller adds file:line) for unknown options, a missing value, a
    missing id or path, or more than one path.
    """
    fields = text.split()
    opts: dict[str, str] = {}
    i = 0
    while i < len(fields) and fields[i].startswith("--"):
        if fields[i] not in RIR_LIST_OPTIONS:
            raise ValueError(f"unknown option {fields[i]!r}; known: {', '.join(RIR_LIST_OPTIONS)}")
        if i + 1 >= len(fields):
            raise ValueError(f"option {fields[i]} has no value")
        opts[fields[i][2:]] = fields[i + 1]
        i += 2
    rest = fields[i:]
    for need in ("rir-id", "room-id"):
        if need not in opts:
            raise ValueError(f"no --{need}; expected '--rir-id ID --room-id ROOM path'")
    if len(rest) != 1:
        raise ValueError(f"expected one wav path after the options, found {len(rest)}: "
                         f"{' '.join(rest)!r}")
    return opts, rest[0]


def prepare_rirs_noises(root: str | os.PathLike, out: str | os.PathLike, *,
                        sample_rate: int = 16000, sets: Sequence[str] = ("small", "medium")
                        ) -> dict[str, SourceList]:
    """The ``rirs`` list of the RIRs of ``sets`` (keys of RIR_SETS) in a RIRS_NOISES tree.

    Paths in a rir_list are relative to the parent of RIRS_NOISES, as in Kaldi.
    """
    base = _rirs_root(Path(root), sets)
    sl, seen = SourceList(), {}
    failed_file = Path(out) / "rirs" / "failed"
    for s in sets:
        rir_list = base / RIR_SETS[s] / "rir_list"
        kind = "real" if s == "real" else "simulated"
        for ln in iter_lines(rir_list):
            if not ln.stripped:
                continue
            try:
                opts, rel = parse_rir_list_line(ln.stripped)
            except ValueError as e:
                raise SourceError(str(e), path=rir_list, line=ln.lineno) from None
            key = opts.pop("rir-id")
            if key in seen:
                raise SourceError(f"rir id {key!r} already listed at {seen[key]}",
                                  path=rir_list, line=ln.lineno)
            seen[key] = f"{rir_list}:{ln.lineno}"
            path = Path(rel) if os.path.isabs(rel) else base.parent / rel
            info = " ".join([f"kind={kind}", f"origin=RIRS_NOISES/{RIR_SETS[s]}",
                             *(f"{k.replace('-', '_')}={v}" for k, v in opts.items())])
            _add_checked(sl, key, path.resolve(), sample_rate, failed_file, info)
    return {"rirs": sl}


# --------------------------------------------------------------------------- generated

def simulate_rirs(num: int, seed: int, sample_rate: int, rooms: Sequence[str],
                  out: Path) -> dict[str, SourceList]:
    """``num`` image-method RIRs of rooms drawn from ``rooms`` (keys of ROOM_SIDES_M)."""
    sl = SourceList()
    width = max(5, len(str(num)))
    for i in range(num):
        rng = np.random.default_rng([seed, 1, i])
        kind = rooms[int(rng.integers(len(rooms)))]
        room, rir = random_rir(rng, kind, sample_rate)
        samples = rir.samples * (0.9 / np.max(np.abs(rir.samples)))
        key = f"sim-{kind}room-{i + 1:0{width}d}"
        sl.audio[f"{key}.wav"] = (pcm16(samples), sample_rate)
        try:   # as written: 16-bit
            measured = f"{measure_rt60(sl.audio[f'{key}.wav'][0], sample_rate):.3f}"
        except ValueError:
            measured = "none"
        info = (f"{room.info()} absorption_fitted={rir.absorption:.4f} "
                f"rt60_measured={measured} image_seconds={rir.image_seconds:.3f}")
        sl.add(key, out / "rirs" / "wav" / f"{key}.wav", samples.size / sample_rate, info)
    return {"rirs": sl}


def generate_sources(num_noises: int, num_music: int, seed: int, sample_rate: int,
                     out: Path) -> dict[str, SourceList]:
    """``noise`` (the kinds of NOISE_KINDS in turn) and ``music`` lists of generated audio."""
    lists = {"noise": SourceList(), "music": SourceList()}
    for name, code, num in (("noise", 2, num_noises), ("music", 3, num_music)):
        width = max(4, len(str(num)))
        for i in range(num):
            rng = np.random.default_rng([seed, code, i])
            n = int(rng.uniform(*DURATION_RANGE_S) * sample_rate)
            if name == "noise":
                kind = NOISE_KINDS[i % len(NOISE_KINDS)]
                key = f"gen-noise-{i + 1:0{width}d}-{kind}"
                samples = generate_noise(kind, n, sample_rate, rng)
            else:
                key = f"gen-music-{i + 1:0{width}d}"
                samples = generate_music(n, sample_rate, rng)
            lists[name].audio[f"{key}.wav"] = (pcm16(samples), sample_rate)
            lists[name].add(key, out / name / "wav" / f"{key}.wav", n / sample_rate)
    return lists


# --------------------------------------------------------------------------- the command

def _listing_digest(files: Iterable[Path]) -> str:
    """What a rerun must notice of a corpus tree: its files' names, sizes and mtimes."""
    h = hashlib.sha1()
    for p in files:
        try:
            st = p.stat()
            h.update(f"{p} {st.st_size} {st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{p} missing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _signature(out: Path, rirs_dir: Path | None, musan_dir: Path | None, rooms: Sequence[str],
               options: dict) -> dict:
    inputs, opts = [], dict(options, rooms=list(rooms))
    if rirs_dir is not None:
        base = _rirs_root(rirs_dir, rooms)
        lists = [base / RIR_SETS[s] / "rir_list" for s in rooms]
        inputs += lists
        opts["rirs_dir"] = str(rirs_dir.resolve())
        opts["rirs_files"] = _listing_digest(
            sorted(p for s in rooms for p in (base / RIR_SETS[s]).rglob("*.wav")))
    if musan_dir is not None:
        opts["musan_dir"] = str(musan_dir.resolve())
        opts["musan_files"] = _listing_digest(
            p for files in musan_files(musan_dir).values() for p in files)
    return signature(inputs=inputs, options=opts)


def prepare_aug_sources(out: str | os.PathLike, *, rirs_dir: str | os.PathLike | None = None,
                        musan_dir: str | os.PathLike | None = None, seed: int = 0,
                        sample_rate: int = 16000, num_rirs: int = 200, num_noises: int = 100,
                        num_music: int = 50, rooms: Sequence[str] = ("small", "medium")) -> bool:
    """Make ``out/{rirs,noise,music}`` (and ``out/speech`` from MUSAN); False if up to date."""
    out = Path(out).absolute()
    rirs_dir = Path(rirs_dir) if rirs_dir is not None else None
    musan_dir = Path(musan_dir) if musan_dir is not None else None
    for r in rooms:
        if r not in RIR_SETS or (r == "real" and rirs_dir is None):
            known = ", ".join(RIR_SETS if rirs_dir is not None else ROOM_SIDES_M)
            raise SourceError(f"unknown room kind {r!r}; known: {known}")
    for what, num in (("--num-rirs", num_rirs), ("--num-noises", num_noises),
                      ("--num-music", num_music)):
        if num < 1:
            raise SourceError(f"{what} must be at least 1, got {num}")
    names = ["rirs", "noise", "music"] + (["speech"] if musan_dir is not None else [])
    options = {"seed": seed, "sample_rate": sample_rate}
    if rirs_dir is None:
        options["num_rirs"] = num_rirs
    if musan_dir is None:
        options.update(num_noises=num_noises, num_music=num_music)
    sig = _signature(out, rirs_dir, musan_dir, rooms, options)
    marker = Marker(out / MARKER)
    if marker.outputs_current(sig, [out / n / "wav.scp" for n in names]):
        logger.info("%s: the augmentation sources are up to date (%s)", out, marker.path)
        return False
    if rirs_dir is not None:
        lists = prepare_rirs_noises(rirs_dir, out, sample_rate=sample_rate, sets=rooms)
    else:
        lists = simulate_rirs(num_rirs, seed, sample_rate, rooms, out)
    if musan_dir is not None:
        lists.update(prepare_musan(musan_dir, out, sample_rate=sample_rate))
    else:
        lists.update(generate_sources(num_noises, num_music, seed, sample_rate, out))
    write_source_lists(lists, out)
    if musan_dir is None and (out / "speech").exists():
        shutil.rmtree(out / "speech")   # from an earlier run with MUSAN: not of this one
        logger.info("%s: removed (no MUSAN in this run)", out / "speech")
    marker.write(sig)
    return True


__all__ = [
    "MUSAN_KINDS",
    "RIR_SETS",
    "SourceError",
    "SourceList",
    "generate_sources",
    "load_source_list",
    "musan_files",
    "parse_rir_list_line",
    "pcm16",
    "prepare_aug_sources",
    "prepare_musan",
    "prepare_rirs_noises",
    "simulate_rirs",
    "write_source_lists",
]
