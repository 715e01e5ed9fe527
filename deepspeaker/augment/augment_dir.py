"""Augmented copies of a data dir, Kaldi v2's shape: one new data dir per kind.

For a data dir ``<x>`` the copies are ``<x>_reverb``, ``<x>_noise``, ``<x>_music``,
``<x>_babble`` (utterance ``<utt>-<kind>``, same speaker: Kaldi's suffix, which keeps
the speaker prefix and so the sort order) and ``<x>_sp`` (speed copies ``sp<f>-<utt>``
of new speakers ``sp<f>-<spk>``, as ``perturb_data_dir_speed.sh`` names them).  Each
copy is a 16-bit wav under ``<out>/wav/<kind>/<spk>/``; ``utt2uniq`` maps it to its
clean utterance and ``utt2aug`` says what was done to it.

What a copy is depends only on ``(seed, utterance, kind)``: its generator is
``np.random.default_rng([seed, crc32(utt), kind_index])`` and every draw for it comes
from there, in a fixed order, whether or not the copy is then kept.  So the output
does not depend on ``--nj``, on the order jobs run in, or on which other utterances
exist (babble from the data dir's own speakers is the one exception: which other
utterances it can draw is the data dir's list).

A source file (RIR, noise, music, babble speech) that cannot be read is reported
once per job, naming its list's ``wav.scp`` line; every copy that drew it is listed
as failed with that reason (no redraw, so a fixed list gives the same copies as
before).  Babble mixed from the data dir's own utterances passes over an unreadable
one (it is listed as failed itself) and draws another.
"""

from __future__ import annotations

import io
import json
import logging
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ..data import AudioError, DataDir, iter_audio, load_audio
from ..data.kaldi_dir import spk2utt_from_utt2spk, write_kaldi_map
from ..data.table import iter_lines
from ..utils import DeepSpeakerError, atomic_write
from . import perturb
from .config import KINDS, AugmentConfig

logger = logging.getLogger(__name__)

SPEED = "sp"
# The sources dir's lists (made by the sources stage): a wav.scp (+ utt2dur) each.
SOURCE_DIRS = {"reverb": "rirs", "noise": "noise", "music": "music", "babble": "speech"}
CACHE_ITEMS = 256


def copy_rng(seed: int, utt: str, kind: str) -> np.random.Generator:
    """The generator of one copy: a function of seed, utterance and kind only."""
    return np.random.default_rng([seed, zlib.crc32(utt.encode("utf-8")), KINDS.index(kind)])


def copy_id(utt: str, kind: str, factor: float | None = None) -> str:
    return f"sp{factor:g}-{utt}" if kind == SPEED else f"{utt}-{kind}"


def speed_speaker(spk: str, factor: float) -> str:
    return f"sp{factor:g}-{spk}"


# --------------------------------------------------------------------------- sources

class SourceAudio:
    """The files of one list (a ``wav.scp``), read on demand with a small cache.

    ``load`` raises AudioError naming the list's ``wav.scp:line``; an unreadable file is
    logged once and its error remembered, so the copies that draw it fail quickly.
    """

    def __init__(self, ids: list[str], reader: Callable[[str], np.ndarray],
                 speaker_of: dict[str, str] | None = None, where: str = ""):
        self.ids, self.reader, self.speaker_of, self.where = ids, reader, speaker_of, where
        self._cache: OrderedDict[str, np.ndarray | AudioError] = OrderedDict()

    @classmethod
    def from_dir(cls, path: Path, sample_rate: int) -> SourceAudio:
        wav_scp = path / "wav.scp"
        if not wav_scp.is_file():
            raise DeepSpeakerError("source list not found (make it with the sources stage, "
                                   "or disable the kinds that need it)", path=wav_scp)
        entries: dict[str, str] = {}
        for ln in iter_lines(wav_scp):
            key, value = ln.key_value()
            if not key or not value:
                raise DeepSpeakerError("expected '<id> <wav path or command |>'",
                                       path=wav_scp, line=ln.lineno)
            entries[key] = value
        if not entries:
            raise DeepSpeakerError("the source list is empty", path=wav_scp)
        ids = sorted(entries)
        d = DataDir(path=path, wav_scp=entries, utt2spk={k: k for k in ids},
                    spk2utt={k: [k] for k in ids})
        return cls(ids, lambda i: load_audio(d, i, sample_rate=sample_rate, min_samples=1),
                   where=str(wav_scp))

    @classmethod
    def from_data(cls, data: DataDir, sample_rate: int) -> SourceAudio:
        """The data dir's own utterances, for babble without a speech list."""
        return cls(data.utts, lambda u: load_audio(data, u, sample_rate=sample_rate),
                   speaker_of=data.utt2spk, where=str(data.path / "wav.scp"))

    def load(self, key: str) -> np.ndarray:
        hit = self._cache.get(key)
        if hit is None:
            try:
                hit = self.reader(key)
            except AudioError as e:
                logger.error("%s (not usable as a source)", e)
                hit = e
            self._cache[key] = hit
            if len(self._cache) > CACHE_ITEMS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        if isinstance(hit, AudioError):
            raise hit
        return hit

    def draw(self, rng: np.random.Generator) -> str:
        return self.ids[int(rng.integers(len(self.ids)))]


def load_sources(src: Path | None, cfg: AugmentConfig, kinds: Iterable[str],
                 data: DataDir) -> dict[str, SourceAudio]:
    """The lists the enabled kinds need; a missing list is an error naming its path."""
    kinds = list(kinds)
    need = {k for k in kinds if k in ("reverb", "noise", "music")}
    if cfg.reverb_prob > 0 and set(kinds) & {"noise", "music", "babble"}:
        need.add("reverb")
    out = {}
    for kind in sorted(need):
        if src is None:
            raise DeepSpeakerError(f"kind {kind!r} needs --sources (a dir with "
                                   f"{SOURCE_DIRS[kind]}/wav.scp)")
        out[kind] = SourceAudio.from_dir(src / SOURCE_DIRS[kind], cfg.sample_rate)
    if "babble" in kinds:
        speech = None if src is None else src / "speech"
        if speech is not None and (speech / "wav.scp").is_file():
            out["babble"] = SourceAudio.from_dir(speech, cfg.sample_rate)
        else:
            out["babble"] = SourceAudio.from_data(data, cfg.sample_rate)
            if len(set(data.utt2spk.values())) < 2:
                raise DeepSpeakerError(f"{data.path}: babble without {speech or 'a speech list'}"
                                       f" is mixed from other speakers, and this data dir has "
                                       f"only one")
    return out


# --------------------------------------------------------------------------- one copy

@dataclass
class Copy:
    """One augmented copy: its samples and what ``utt2aug`` says of it."""

    samples: np.ndarray
    info: dict = field(default_factory=dict)

    def describe(self, kind: str, seed: int) -> str:
        parts = [f"kind={kind}", f"seed={seed}"]
        parts += [f"{k}={v}" for k, v in self.info.items()]
        return " ".join(parts)


def _fmt(values: Iterable[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _babble(src: SourceAudio, spk: str, count: int, rng: np.random.Generator
            ) -> list[tuple[str, np.ndarray]]:
    """``count`` ``(id, samples)`` of distinct speakers other than ``spk`` (fewer if there are not).

    From a speech list, an unreadable file fails the copy (AudioError), as for noise.
    From the data dir's own utterances, an unreadable one is passed over: it is listed
    as failed already, and the copies of good utterances need not fail with it.
    """
    if src.speaker_of is None:
        count = min(count, len(src.ids))
        ids = [src.ids[i] for i in rng.choice(len(src.ids), size=count, replace=False)]
        return [(i, src.load(i)) for i in ids]
    chosen: list[tuple[str, np.ndarray]] = []
    speakers = {spk}
    for _ in range(50 * count):
        if len(chosen) == count:
            break
        u = src.draw(rng)
        if src.speaker_of[u] in speakers:
            continue
        try:
            chosen.append((u, src.load(u)))
        except AudioError:
            continue
        speakers.add(src.speaker_of[u])
    return chosen


def make_copy(kind: str, x: np.ndarray, spk: str, rng: np.random.Generator,
              cfg: AugmentConfig, sources: dict[str, SourceAudio]) -> Copy:
    """The ``kind`` copy of samples ``x`` (of speaker ``spk``); AudioError if a source fails.

    Draw order (fixed, so that a config change in one place does not reshuffle the
    rest): the reverb-of-noisy coin, then the kind's own draws.
    """
    sr = cfg.sample_rate
    info: dict[str, str] = {}
    coin = rng.random()
    if kind != "reverb" and coin < cfg.reverb_prob:
        rid = sources["reverb"].draw(rng)
        x = perturb.reverberate(x, sources["reverb"].load(rid))
        info["rir"] = rid
    if kind == "reverb":
        rid = sources["reverb"].draw(rng)
        y = perturb.reverberate(x, sources["reverb"].load(rid))
        info["rir"] = rid
    elif kind == "noise":
        y, ids, snrs, starts = _noise_events(x, rng, cfg, sources["noise"])
        info.update(snr=_fmt(snrs), noise=",".join(ids), start=_fmt(s / sr for s in starts))
    elif kind == "music":
        mid = sources["music"].draw(rng)
        snr = float(rng.choice(cfg.music.snrs))
        y = perturb.add_noise(x, sources["music"].load(mid), snr, rng)
        info.update(snr=_fmt([snr]), noise=mid)
    elif kind == "babble":
        count = int(rng.choice(cfg.babble.speakers))
        chosen = _babble(sources["babble"], spk, count, rng)
        ids = [i for i, _ in chosen]
        snrs = [float(rng.choice(cfg.babble.snrs)) for _ in ids]
        sp = perturb.power(x)
        y = np.asarray(x, dtype=np.float64).copy()
        for (_, other), snr in zip(chosen, snrs):
            y += perturb.scale_to_snr(perturb.fit_length(other, len(x), rng), sp, snr)
        info.update(snr=_fmt(snrs), noise=",".join(ids))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    info.setdefault("rir", "none")
    info["speed"] = "1.0"
    return Copy(y, info)


def _noise_events(x, rng, cfg: AugmentConfig, src: SourceAudio):
    """Kaldi's foreground noise: events one after another, ``interval`` s apart, to the end."""
    n, gap = len(x), round(cfg.noise.interval * cfg.sample_rate)
    events, ids, snrs, starts = [], [], [], []
    t = 0
    while t < n:
        nid = src.draw(rng)
        snr = float(rng.choice(cfg.noise.snrs))
        u = rng.random()
        noise = src.load(nid)
        length = min(len(noise), n - t)
        off = int(u * (len(noise) - length + 1))
        events.append((t, noise[off:off + length], snr))
        ids.append(nid)
        snrs.append(snr)
        starts.append(t)
        t += length + max(gap, 1)
    return perturb.add_events(x, events), ids, snrs, starts


# --------------------------------------------------------------------------- one job

def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """A 16-bit wav, clipped to the int16 range, written under a temp name and renamed.

    Encoded in memory first (one utterance), so that writing the file goes through
    :func:`~deepspeaker.utils.atomic_write`: a full disk is ``cannot write <wav>: No space
    left on device`` and no temp file stays (libsndfile writing to a name says neither).
    """
    buf = io.BytesIO()
    sf.write(buf, perturb.to_int16(samples), sample_rate, subtype="PCM_16", format="WAV")
    # No fsync per copy (thousands of small files): the job's .done marker is the record.
    with atomic_write(path, "wb", fsync=False) as f:
        f.write(buf.getbuffer())


def wav_path(out: Path, kind: str, spk: str, utt: str) -> Path:
    return out / "wav" / kind / spk.replace("/", "_") / f"{utt}.wav"


def planned_copies(utt: str, cfg: AugmentConfig, seed: int) -> list[tuple]:
    """``(kind, speed factor or None, generator)`` of each copy ``utt`` gets.

    The first draw of a kind's generator decides whether the utterance is in that
    kind's ``fraction`` (a seeded Bernoulli draw per utterance, so the subset does not
    depend on the other utterances); the copy's own draws follow from the same one.
    """
    out = []
    for kind in (k for k in KINDS if k in cfg.kinds):
        rng = copy_rng(seed, utt, kind)
        if rng.random() < cfg.section(kind).fraction:
            out.append((kind, None, rng))
    return out + [(SPEED, f, None) for f in cfg.speed]


def augment_utts(data: DataDir, utts: list[str], out: Path, cfg: AugmentConfig,
                 sources: dict[str, SourceAudio], seed: int, progress=None
                 ) -> tuple[list[dict], list[dict]]:
    """Write every copy of ``utts``; ``(done records, failed records)``.

    ``progress`` (a :class:`deepspeaker.jobs.JobProgress`) counts the source utterances.
    """
    done: list[dict] = []
    failed: list[dict] = []
    sr = cfg.sample_rate
    for utt, x, err in iter_audio(data, utts, sample_rate=sr):
        if progress is not None:
            progress.add()
        spk = data.utt2spk[utt]
        planned = planned_copies(utt, cfg, seed)
        if err is not None:
            reason = str(err).replace("\n", " ")
            logger.error("%s", reason)
            failed += [{"kind": k, "utt": copy_id(utt, k, f), "reason": reason}
                       for k, f, _ in planned]
            continue
        for kind, factor, rng in planned:
            new = copy_id(utt, kind, factor)
            try:
                if kind == SPEED:
                    new_spk = speed_speaker(spk, factor)
                    y = perturb.speed(x, factor)
                    aug = f"kind=speed seed={seed} rir=none speed={factor:g}"
                else:
                    new_spk = spk
                    c = make_copy(kind, x, spk, rng, cfg, sources)
                    y, aug = c.samples, c.describe(kind, seed)
            except AudioError as e:
                failed.append({"kind": kind, "utt": new,
                               "reason": f"{utt}: source of the {kind} copy unusable: {e}"})
                continue
            path = wav_path(out, kind, new_spk, new)
            write_wav(path, y, sr)
            done.append({"kind": kind, "utt": new, "spk": new_spk, "src": utt,
                         "wav": str(path), "dur": len(y) / sr, "aug": aug})
    return done, failed


def write_records(path: Path, done: list[dict], failed: list[dict]) -> None:
    with atomic_write(path) as f:
        for r in done:
            f.write(json.dumps({"ok": True, **r}, sort_keys=True) + "\n")
        for r in failed:
            f.write(json.dumps({"ok": False, **r}, sort_keys=True) + "\n")


def read_records(path: Path) -> tuple[list[dict], list[dict]]:
    done, failed = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            (done if r.pop("ok") else failed).append(r)
    return done, failed




# --------------------------------------------------------------------------- the dirs

def write_copy_dir(data: DataDir, dest: Path, kind: str, done: list[dict],
                   failed: list[dict]) -> int:
    """The data dir of one kind's copies (``done`` records); returns its utterance count."""
    done = [r for r in done if r["kind"] == kind]
    failed = [r for r in failed if r["kind"] == kind]
    uniq = data.utt2uniq or {}
    utt2spk = {r["utt"]: r["spk"] for r in done}
    old_spk = {r["spk"]: data.utt2spk[r["src"]] for r in done}

    def per_speaker(m: dict[str, str] | None) -> dict[str, str] | None:
        if m is None:
            return None
        return {new: m[old] for new, old in old_spk.items() if old in m}

    d = DataDir(path=dest, wav_scp={r["utt"]: r["wav"] for r in done}, utt2spk=utt2spk,
                spk2utt=spk2utt_from_utt2spk(utt2spk),
                utt2dur={r["utt"]: r["dur"] for r in done},
                utt2uniq={r["utt"]: uniq.get(r["src"], r["src"]) for r in done},
                spk2gender=per_speaker(data.spk2gender), spk2age=per_speaker(data.spk2age),
                failed_utts={r["utt"]: r["reason"] for r in failed} or None)
    d.write(dest)
    write_kaldi_map(dest / "utt2aug", {r["utt"]: r["aug"] for r in done})
    if not done:
        logger.warning("%s: no copies (fraction 0, or every one failed)", dest)
    else:
        logger.info("%s: %d copies of %d speakers%s", dest, len(done), len(d.spk2utt),
                    f"; {len(failed)} failed, listed in {dest / 'failed_utts'}" if failed else "")
    return len(done)


__all__ = [
    "SOURCE_DIRS",
    "SPEED",
    "Copy",
    "SourceAudio",
    "augment_utts",
    "copy_id",
    "copy_rng",
    "load_sources",
    "make_copy",
    "planned_copies",
    "read_records",
    "speed_speaker",
    "write_copy_dir",
    "write_records",
    "write_wav",
]
