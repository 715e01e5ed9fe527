"""Broken audio in stage 1 (issue 16, family 1): truncated, damaged and non-audio files.

Every way of reading audio (a plain file, a ``command |`` pipe whose bytes are read into
memory, a segment of a recording) refuses a WAV cut short (its header still promising the
full length, which libsndfile would read quietly up to where it stops), a FLAC cut short
and bytes that are no audio at all: each is a failed utterance in ``failed_utts`` and the
job log, naming the utterance, ``wav.scp:line`` (or ``segments:line``) and the path, with
the file's own reason, never an object repr or libsndfile's "does not exist".  The good
utterances, a WAV streamed with an "unknown length" header among them, finish.
"""

from __future__ import annotations

import io
from pathlib import Path

import kaldiio
import numpy as np
import soundfile as sf

from deepspeaker.bin import compute_fbank_vad as stage
from deepspeaker.data.audio import wav_shortfall
from deepspeaker.features import compute_fbank_and_energy

SR = 16000
N = 19200  # 1.2 s


def tone(seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 3000 * np.sin(2 * np.pi * (120 + 30 * seed) * t) + rng.normal(0, 30, n)
    return x.astype(np.int16)


def wav_bytes(x: np.ndarray, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SR, subtype="PCM_16", format=fmt)
    return buf.getvalue()


def streamed(data: bytes) -> bytes:
    """``data`` with the data chunk's size set to 0xFFFFFFFF, as a writer into a pipe leaves it."""
    at = data.index(b"data") + 4
    return data[:at] + b"\xff\xff\xff\xff" + data[at + 4:]


def write_dir(d: Path, wav: dict[str, str], segments: dict | None = None) -> Path:
    d.mkdir()
    utts = sorted(segments or wav)
    (d / "wav.scp").write_text("".join(f"{k} {wav[k]}\n" for k in sorted(wav)))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    spk = sorted({u.split("-")[0] for u in utts})
    (d / "spk2utt").write_text("".join(
        f"{s} {' '.join(u for u in utts if u.split('-')[0] == s)}\n" for s in spk))
    if segments:
        (d / "segments").write_text("".join(f"{u} {r} {a} {b}\n"
                                            for u, (r, a, b) in sorted(segments.items())))
    return d


def run_stage(d: Path, tmp_path: Path, capfd) -> tuple[dict[str, str], str]:
    """Stage 1 through its CLI: (failed_utts, everything the user sees: stderr + job log)."""
    rc = stage.main([str(d), str(tmp_path / "log"), "--nj", "1", "--max-failed-fraction", "1.0"])
    err = capfd.readouterr().err + (tmp_path / "log" / "make_fbank_vad.1.log").read_text()
    assert rc == 0, err[-3000:]
    failed = dict(line.split(" ", 1) for line in (d / "failed_utts").read_text().splitlines())
    for bad_words in ("Traceback", " object at 0x", "not exist", "BytesIO"):
        assert bad_words not in err, (bad_words, err[-3000:])
    assert [p for p in tmp_path.rglob("*") if ".tmp" in p.name] == []
    return failed, err


def test_wav_shortfall_reads_the_header():
    full = wav_bytes(tone(0))
    header = len(full) - 2 * N
    assert wav_shortfall(io.BytesIO(full), len(full)) is None
    cut = full[:len(full) - 1000]
    assert wav_shortfall(io.BytesIO(cut), len(cut)) == (2 * N, 2 * N - 1000)
    assert header == 44
    # "length unknown" (a pipe writer that could not seek back) is not truncation
    s = streamed(cut)
    assert wav_shortfall(io.BytesIO(s), len(s)) is None
    flac = wav_bytes(tone(0), "FLAC")
    assert wav_shortfall(io.BytesIO(flac), len(flac)) is None


def test_broken_audio_fails_its_utterance_and_the_rest_finish(tmp_path, capfd):
    audio = tmp_path / "audio"
    audio.mkdir()
    full = wav_bytes(tone(1))
    (audio / "good.wav").write_bytes(full)
    (audio / "cut.wav").write_bytes(full[:len(full) // 2])
    (audio / "streamed.wav").write_bytes(streamed(wav_bytes(tone(2))))
    flac = wav_bytes(tone(3), "FLAC")
    (audio / "cut.flac").write_bytes(flac[:len(flac) // 2])
    (audio / "random.bin").write_bytes(np.random.default_rng(0).bytes(4000))
    # bytes of which libsndfile says "File does not exist or is not a regular file"
    (audio / "random100.bin").write_bytes(np.random.default_rng(1).bytes(100))
    (audio / "riff.wav").write_bytes(b"RIFF\x00\x01garbage" * 40)
    wav = {"a-good": str(audio / "good.wav"),
           "b-cutwav": str(audio / "cut.wav"),
           "c-cutflac": str(audio / "cut.flac"),
           "d-random": str(audio / "random.bin"),
           "e-riff": str(audio / "riff.wav"),
           "e2-random100": str(audio / "random100.bin"),
           "f-pipecut": f"cat {audio / 'cut.wav'} |",
           "g-piperandom": f"cat {audio / 'random.bin'} |",
           "h-streamed": f"cat {audio / 'streamed.wav'} |",
           "i-goodpipe": f"cat {audio / 'good.wav'} |"}
    d = write_dir(tmp_path / "data", wav)
    failed, err = run_stage(d, tmp_path, capfd)
    present = len(full) // 2 - 44
    cut_reason = (f"truncated: the WAV header promises {N} samples ({2 * N} bytes), the file "
                  f"holds {present // 2} ({present} bytes)")
    expect = {"b-cutwav": cut_reason, "f-pipecut": cut_reason,
              "c-cutflac": "truncated",
              "d-random": "cannot read audio: not a readable audio file (",
              "e-riff": "cannot read audio: not a readable audio file (",
              "e2-random100": "cannot read audio: not a readable audio file (unknown format or "
                              "damaged header)",
              "g-piperandom": "cannot read audio: not a readable audio file ("}
    assert sorted(failed) == sorted(expect)
    lines = {u: i for i, u in enumerate(sorted(wav), 1)}
    for utt, reason in expect.items():
        msg = f"{d}/wav.scp:{lines[utt]}: {utt}: "
        assert failed[utt].startswith(msg) and reason in failed[utt], failed[utt]
        assert failed[utt].endswith(f"(audio: {wav[utt]})"), failed[utt]
        assert failed[utt] in err   # the job log says the same
    # The good ones finish, the streamed WAV and the pipes read to the end.
    feats = kaldiio.load_scp(str(d / "feats.scp"))
    assert sorted(feats) == ["a-good", "h-streamed", "i-goodpipe"]
    np.testing.assert_array_equal(feats["h-streamed"], compute_fbank_and_energy(
        tone(2).astype(np.float32))[0])
    np.testing.assert_array_equal(feats["i-goodpipe"], feats["a-good"])


def test_segments_of_a_truncated_recording_fail(tmp_path, capfd):
    audio = tmp_path / "audio"
    audio.mkdir()
    full = wav_bytes(tone(4))
    (audio / "rec1.wav").write_bytes(full)
    (audio / "rec2.wav").write_bytes(full[:len(full) - 2000])
    wav = {"rec1": str(audio / "rec1.wav"), "rec2": str(audio / "rec2.wav")}
    segs = {"a-s1": ("rec1", 0.0, 0.5), "a-s2": ("rec1", 0.5, 1.2),
            "b-s1": ("rec2", 0.0, 0.5), "b-s2": ("rec2", 0.5, 1.0)}
    d = write_dir(tmp_path / "data", wav, segs)
    failed, _ = run_stage(d, tmp_path, capfd)
    assert sorted(failed) == ["b-s1", "b-s2"]
    for line, utt in ((3, "b-s1"), (4, "b-s2")):
        assert failed[utt].startswith(f"{d}/segments:{line}: {utt}: truncated: the WAV header "
                                      f"promises {N} samples"), failed[utt]
        assert f"recording rec2, {d}/wav.scp:2: {audio / 'rec2.wav'}" in failed[utt]
    assert sorted(kaldiio.load_scp(str(d / "feats.scp"))) == ["a-s1", "a-s2"]
