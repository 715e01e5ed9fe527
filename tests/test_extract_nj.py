"""Embedding extraction in --nj jobs (issue 13): the same bytes as one process, reruns
that redo only unfinished jobs, progress lines in the job logs."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
from builders import make_exp

from deepspeaker.bin import extract_embeddings as extract_bin
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.jobs import run_jobs_script

# 7 utterances: blocks of 2 are (a-1 a-2) (a-3 b-1) (b-2 b-3) (b-4); --nj 3 gets 2+1+1 blocks.
UTTS = ["a-1", "a-2", "a-3", "b-1", "b-2", "b-3", "b-4"]
SILENT, DAMAGED = "a-3", "b-2"


@pytest.fixture()
def data(tmp_path) -> Path:
    """Features of 7 utterances; a-3 has no voiced frame, b-2's ark entry is overwritten."""
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(4)
    lengths = [50 + 13 * i for i in range(len(UTTS))]
    write_ark_scp(d / "feats.ark", d / "feats.scp",
                  {u: rng.standard_normal((n, 64)).astype(np.float32) for u, n in zip(UTTS, lengths)})
    vad = {u: (rng.random(n) > 0.2).astype(np.float32) for u, n in zip(UTTS, lengths)}
    vad[SILENT][:] = 0
    write_ark_scp(d / "vad.ark", d / "vad.scp", vad)
    entry = dict(line.split() for line in (d / "feats.scp").read_text().splitlines())[DAMAGED]
    raw = bytearray((d / "feats.ark").read_bytes())
    off = int(entry.rpartition(":")[2])
    raw[off:off + 8] = b"garbage!"
    (d / "feats.ark").write_bytes(bytes(raw))
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in UTTS))
    (d / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in UTTS))
    (d / "spk2utt").write_text("a a-1 a-2 a-3\nb b-1 b-2 b-3 b-4\n")
    return d


def extract(exp: Path, data: Path, *opts: str) -> int:
    return extract_bin.main([str(exp), str(data), "--device", "cpu", "--block-size", "2", *opts])


def outputs(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("embedding.ark", "embedding.scp", "failed")}


def test_jobs_write_the_bytes_of_one_process(tmp_path, data, capfd):
    exp = make_exp(tmp_path / "exp")
    out = exp / "data"
    assert extract(exp, data) == 0
    one = outputs(out)
    assert not (out / "log").exists()          # one job: in this process, no job log
    assert sorted(kaldiio.load_scp(str(out / "embedding.scp"))) == sorted(
        set(UTTS) - {SILENT, DAMAGED})
    failed = one["failed"].decode()
    assert f"{SILENT} {data}/feats.scp:3: " in failed and "the VAD rejects all" in failed
    assert f"{DAMAGED} {data}/feats.scp:5: no Kaldi object at offset" in failed
    capfd.readouterr()
    assert extract(exp, data, "--nj", "3", "--force") == 0
    err = capfd.readouterr().err
    assert outputs(out) == one
    assert not (out / "jobs").exists()         # merged: the job files are gone
    # Each job's share (4, 2 and 1 utterances) in its log's progress lines.
    for job, share in ((1, 4), (2, 2), (3, 1)):
        log = (out / "log" / f"extract.{job}.log").read_text()
        assert f"progress: {share}/{share} utterances" in log and "Ended (code 0)" in log, log
    assert "in 3 jobs" in err
    # --nj is how, not what: another --nj on the finished set does nothing.
    logs = {p: p.stat().st_mtime_ns for p in (out / "log").iterdir()}
    assert extract(exp, data, "--nj", "2") == 0
    assert "up to date" in capfd.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (out / "log").iterdir()} == logs
    # More jobs than blocks: one job per block (4), the same bytes.
    assert extract(exp, data, "--nj", "9", "--force") == 0
    assert outputs(out) == one and (out / "log" / "extract.4.log").exists()
    assert not (out / "log" / "extract.5.log").exists()


def test_rerun_after_a_failed_job_redoes_only_the_unfinished_jobs(tmp_path, data, capfd,
                                                                  monkeypatch):
    exp = make_exp(tmp_path / "exp")
    out = exp / "data"
    assert extract(exp, data) == 0
    one = outputs(out)
    # A runner (a recipe's --cmd) that loses job 2: it runs only jobs 1 and 3, then fails.
    runner = tmp_path / "lose_job2.sh"
    runner.write_text(f'set -eu\nshift\nlog=$1\nshift\nbash {run_jobs_script()} JOB=1:1 "$log" "$@"\n'
                      f'bash {run_jobs_script()} JOB=3:3 "$log" "$@"\nexit 1\n')
    monkeypatch.setenv("DS_CMD", str(runner))
    capfd.readouterr()
    assert extract(exp, data, "--nj", "3", "--force") == 1
    err = capfd.readouterr().err
    assert (f"extract_embeddings of {data.resolve()}: 1 of 3 jobs failed (logs: "
            f"{out}/log/extract.JOB.log); rerun the same command to redo only the "
            f"unfinished jobs") in err, err[-2000:]
    assert "Traceback" not in err
    assert not (out / ".embedding.done").exists()
    assert (out / "jobs/.done.1").exists() and not (out / "jobs/.done.2").exists()
    (out / "jobs/embedding.3.ark").unlink()    # a finished job's output lost: redone too
    monkeypatch.delenv("DS_CMD")
    assert extract(exp, data, "--nj", "3") == 0
    assert outputs(out) == one
    logs = {j: (out / "log" / f"extract.{j}.log").read_text() for j in (1, 2, 3)}
    assert "job 1: already complete" in logs[1] and "progress:" not in logs[1]
    assert "progress: 2/2 utterances" in logs[2] and "progress: 1/1 utterances" in logs[3]


def test_nothing_embedded_in_any_job_is_one_message(tmp_path, data, capfd):
    exp = make_exp(tmp_path / "exp")
    vad = {u: np.zeros(50 + 13 * i, dtype=np.float32) for i, u in enumerate(UTTS)}
    write_ark_scp(data / "vad.ark", data / "vad.scp", vad)
    assert extract(exp, data, "--nj", "2") == 1
    err = capfd.readouterr().err
    assert f"{data}: no utterance could be embedded (7 failed, e.g. ('a-1', " in err, err[-2000:]
    assert not (exp / "data/embedding.scp").exists() and "Traceback" not in err


def test_jobs_spread_over_the_gpus_of_their_machine(monkeypatch):
    """The CUDA placement forced on a CPU machine: cuda without an index is GPU (JOB-1) % count."""
    import torch

    from deepspeaker.nnet.extract_jobs import job_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [job_device("cuda", j) for j in (1, 2, 3)] == \
        [torch.device("cuda", 0), torch.device("cuda", 1), torch.device("cuda", 0)]
    assert [job_device("auto", j).index for j in (1, 2, 3, 4)] == [0, 1, 0, 1]
    assert {job_device("cuda:1", j) for j in (1, 2, 3)} == {torch.device("cuda", 1)}
    assert job_device("cpu", 2) == torch.device("cpu")
