"""Stage 4 in ``--nj`` jobs and on ``--device`` (issue 13): the same bits whatever either.

Through the commands a user runs: the i-vector statistics of the training set and the
extraction of a set in 1 and 3 jobs give the same extractor arrays and the same bytes
of ivector.{ark,scp} and failed_utts (with a silent utterance and a damaged ark entry
among them); a crash during the EM does not redo the statistics; a rerun after one
job's output is lost redoes that job only; job logs carry progress lines.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import write_data_dir
from test_damaged_files import damage

from deepspeaker.bin import extract_ivectors, train_ivector_extractor, train_ubm
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.devices import resolve_device
from deepspeaker.ivector.extractor import IvectorExtractor
from deepspeaker.ivector.stage_jobs import plan_shares
from deepspeaker.ivector.stats import compute_stats_batch
from deepspeaker.ivector.ubm import DiagGmm
from deepspeaker.utils import DeepSpeakerError

# Blocks of 8 listed utterances for the statistics: 40 training utterances are 5 blocks.
CONF = """frontend: {num_ceps: 20, delta_order: 2}
ubm: {num_components: 8, max_frames: 20000, max_iter: 5}
stats: {top_k: 4, batch_utts: 8}
extractor: {rank: 10, num_iters: 3}
"""
SILENT = "tr00-u0"


def _silence(data: Path, utt: str) -> None:
    """Rewrite the VAD ark with ``utt`` all silence (no voiced frames: no statistics)."""
    import kaldiio

    vad = {u: np.asarray(v) for u, v in kaldiio.load_scp(str(data / "vad.scp")).items()}
    vad[utt] = np.zeros_like(vad[utt])
    write_ark_scp(data / "vad.ark", data / "vad.scp", vad)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(train dir, eval dir, exp with a UBM and an extractor trained in one process)."""
    root = tmp_path_factory.mktemp("ivjobs")
    train = write_data_dir(root / "data" / "train", "tr", 10, 4, 0)
    _silence(train, SILENT)
    # 2 blocks of 256 listed utterances and a part one: 3 extraction jobs.
    ev = write_data_dir(root / "data" / "eval", "ev", 130, 4, 1)
    _silence(ev, "ev05-u1")
    damage(ev / "feats.ark", ev / "feats.scp", garbage="ev100-u2", cut_inside=None)
    conf = root / "ivector.yaml"
    conf.write_text(CONF)
    exp = root / "exp"
    assert train_ubm.main(["--config", str(conf), str(train), str(exp)]) == 0
    assert train_ivector_extractor.main([str(train), str(exp)]) == 0
    return train, ev, exp


def _copy_ubm_exp(exp: Path, to: Path) -> Path:
    (to / "models").mkdir(parents=True)
    for name in ("config.yaml", "models/ubm.npz", "models/.ubm.done"):
        shutil.copy(exp / name, to / name)
    return to


def _main_dying_in(monkeypatch, module, name: str, args: list[str]) -> int:
    """``module.main(args)`` with ``module.<name>`` raising an interrupt when called."""
    def interrupt(*_, **__):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(module, name, interrupt)
        return module.main(args)


def _log(exp: Path, pattern: str, job: int) -> str:
    return (exp / "log" / pattern.replace("JOB", str(job))).read_text()


def test_shares_start_on_blocks_and_cover_the_list():
    assert plan_shares(41, 8, 3) == [(0, 16), (16, 32), (32, 41)]
    assert plan_shares(41, 8, 10) == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40), (40, 41)]
    assert plan_shares(520, 256, 3) == [(0, 256), (256, 512), (512, 520)]
    assert plan_shares(0, 8, 4) == [(0, 0)]


def test_statistics_in_jobs_train_the_extractor_of_one_process(trained, tmp_path, monkeypatch,
                                                              capfd):
    train, _, exp = trained
    ref = IvectorExtractor.load(exp / "models/extractor.npz")
    exp3 = _copy_ubm_exp(exp, tmp_path / "exp3")
    args = ["--nj", "3", "--device", "cpu", str(train), str(exp3)]
    # the EM dies: the stats stay
    assert _main_dying_in(monkeypatch, train_ivector_extractor, "train_extractor", args) == 130
    stats = exp3 / "stats" / "train"
    assert sorted(p.name for p in stats.glob("[NF].*.npy")) == [
        "F.1.npy", "F.2.npy", "F.3.npy", "N.1.npy", "N.2.npy", "N.3.npy"]
    # 40 listed utterances in blocks of 8: jobs of 2, 2 and 1 blocks
    shares = [16, 16, 8]
    for job, n in enumerate(shares, 1):
        assert f"progress: {n}/{n} utterances" in _log(exp3, "ivector_stats_train.JOB.log", job)
    assert np.load(stats / "N.1.npy").shape == (15, 8)     # the silent one has none

    logs = [_log(exp3, "ivector_stats_train.JOB.log", job) for job in (1, 2, 3)]
    capfd.readouterr()
    assert train_ivector_extractor.main(args) == 0     # no job runs again
    assert "statistics of train: all 3 jobs already complete" in capfd.readouterr().err
    assert logs == [_log(exp3, "ivector_stats_train.JOB.log", job) for job in (1, 2, 3)]
    got = IvectorExtractor.load(exp3 / "models/extractor.npz")
    for name in ("T", "sigma", "means", "weights"):
        assert np.array_equal(getattr(got, name), getattr(ref, name)), name
    assert got.meta["objective_trace"] == ref.meta["objective_trace"]
    assert not (exp3 / "stats").exists()
    failed = (exp3 / "log/extractor_failed_utts_train").read_text()
    assert failed == (exp / "log/extractor_failed_utts_train").read_text()
    assert failed.startswith(f"{SILENT} ")


def test_stats_only_then_the_em_as_the_recipes_run_them(trained, tmp_path, capfd):
    """The recipes: the statistics in jobs (--stats-only), then the EM as one --cmd job,
    which finds them and starts no job; the extractor is the one-process one."""
    train, _, exp = trained
    exp2 = _copy_ubm_exp(exp, tmp_path / "exp2")
    args = ["--nj", "2", "--device", "cpu", str(train), str(exp2)]
    assert train_ivector_extractor.main(["--stats-only", *args]) == 0
    assert not (exp2 / "models/extractor.npz").exists()
    assert len(list((exp2 / "stats" / "train").glob("N.*.npy"))) == 2
    capfd.readouterr()
    assert train_ivector_extractor.main(args) == 0
    assert "statistics of train: all 2 jobs already complete" in capfd.readouterr().err
    ref = IvectorExtractor.load(exp / "models/extractor.npz")
    got = IvectorExtractor.load(exp2 / "models/extractor.npz")
    assert np.array_equal(got.T, ref.T) and not (exp2 / "stats").exists()


def test_extraction_in_jobs_writes_the_bytes_of_one_process(trained, monkeypatch):
    _, ev, exp = trained
    out = exp / "eval"
    assert extract_ivectors.main([str(exp), str(ev)]) == 0                 # --device auto
    files = ("ivector.ark", "ivector.scp", "failed_utts")
    ref = {name: (out / name).read_bytes() for name in files}
    assert len(ref["ivector.scp"].splitlines()) == 518
    assert sorted(line.split()[0] for line in ref["failed_utts"].decode().splitlines()) == [
        "ev05-u1", "ev100-u2"]
    shutil.rmtree(out)
    args = ["--nj", "3", "--device", "cpu", str(exp), str(ev)]
    # the merge dies: the jobs stay
    assert _main_dying_in(monkeypatch, extract_ivectors, "merge", args) == 130
    pattern = "extract_ivectors_eval.JOB.log"
    for job, n in enumerate([256, 256, 8], 1):
        assert f"progress: {n}/{n} utterances" in _log(exp, pattern, job)
    (out / "jobs" / ".done.2").unlink()                   # job 2's output is lost
    (out / "jobs" / "ivector.2.ark").unlink()
    assert extract_ivectors.main(args) == 0
    assert "already complete" in _log(exp, pattern, 1)
    assert "already complete" in _log(exp, pattern, 3)
    assert "already complete" not in _log(exp, pattern, 2)
    assert "progress: 256/256 utterances" in _log(exp, pattern, 2)
    for name in files:
        assert (out / name).read_bytes() == ref[name], name
    assert not (out / "jobs").exists()
    # --nj is how, not what: another count redoes nothing
    mtime = (out / "ivector.ark").stat().st_mtime_ns
    assert extract_ivectors.main(["--nj", "2", str(exp), str(ev)]) == 0
    assert (out / "ivector.ark").stat().st_mtime_ns == mtime


def test_a_failed_job_is_one_error_naming_the_stage_the_data_and_the_logs(trained, tmp_path,
                                                                          capfd):
    import kaldiio

    _, ev, exp = trained
    bad = tmp_path / "evalnan"
    table = kaldiio.load_scp(str(ev / "feats.scp"))
    feats = {u: np.array(table[u]) for u in table if u != "ev100-u2"}   # not the damaged one
    victim = sorted(feats)[515]             # 519 listed: jobs of blocks 1-2 and 3 (512, 7)
    feats[victim][5, 7] = np.nan
    bad.mkdir()
    write_ark_scp(bad / "feats.ark", bad / "feats.scp", feats)
    for name in ("vad.scp", "utt2spk", "wav.scp"):
        shutil.copy(ev / name, bad / name)
    capfd.readouterr()
    assert extract_ivectors.main(["--nj", "2", str(exp), str(bad)]) == 1
    err = capfd.readouterr().err
    # the failed job's log tail (run_jobs.sh), then the stage's one line
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(
        f"extract_ivectors: {bad}: jobs failed (logs {exp}/log/extract_ivectors_evalnan.JOB.log); "
        f"rerun the same command to redo only the unfinished jobs"), err[-3000:]
    assert "not positive definite" in _log(exp, "extract_ivectors_evalnan.JOB.log", 2)
    assert (exp / "evalnan/jobs/.done.1").exists() and not (exp / "evalnan/jobs/.done.2").exists()
    assert not (exp / "evalnan/ivector.scp").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("stage", ["extract_ivectors", "train_ivector_extractor"])
def test_cuda_asked_for_without_one_is_one_line(trained, tmp_path, capfd, stage):
    train, ev, exp = trained
    exp2 = _copy_ubm_exp(exp, tmp_path / "exp2")
    shutil.copy(exp / "models/extractor.npz", exp2 / "models/extractor.npz")
    if stage == "extract_ivectors":
        rc = extract_ivectors.main(["--device", "cuda", str(exp2), str(ev)])
    else:
        (exp2 / "models/extractor.npz").unlink()
        rc = train_ivector_extractor.main(["--device", "cuda", str(train), str(exp2)])
    assert rc == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].endswith(
        f"--device cuda: torch {torch.__version__} (built without CUDA) sees no CUDA device; "
        f"use --device cpu (or auto)"), err


def test_auto_is_cuda_when_torch_sees_one(monkeypatch):
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeepSpeakerError, match=r"--device cuda:2: torch sees 2 CUDA device\(s\), "
                                               r"cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    with pytest.raises(DeepSpeakerError, match="--device gpu: not a device"):
        resolve_device("gpu")


def _gmm_and_utts(rng, num_c=16, dim=6, num_u=12):
    gmm = DiagGmm(rng.dirichlet(np.full(num_c, 2.0)), rng.normal(0, 2, (num_c, dim)),
                  rng.uniform(0.5, 2.0, (num_c, dim)))
    return gmm, [rng.normal(0, 2, (int(rng.integers(5, 300)), dim)) for _ in range(num_u)]


@pytest.mark.parametrize("top_k", [4, None])
def test_the_gpu_accumulation_forced_on_the_cpu(top_k):
    """On CUDA the top-k sums are per-piece GEMMs, not index_add_'s atomic adds: the same
    statistics to rounding, here on the CPU (chunks of 128 frames cut utterances)."""
    gmm, utts = _gmm_and_utts(np.random.default_rng(0))
    want = compute_stats_batch(gmm, utts, top_k, chunk_frames=128, second_order=True)
    got = compute_stats_batch(gmm, utts, top_k, chunk_frames=128, second_order=True,
                              device="cpu", scatter=False)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    assert want[0].sum() == pytest.approx(sum(len(u) for u in utts))
    default = compute_stats_batch(gmm, utts, top_k, chunk_frames=128, second_order=True,
                                  device=torch.device("cpu"))
    for w, g in zip(want, default):                 # device="cpu" is the default: the bits
        assert np.array_equal(g, w)


def test_extraction_bits_do_not_depend_on_the_thread_count():
    """MKL's Cholesky of R = 200 rounds by thread count; extraction runs it on one thread."""
    rng = np.random.default_rng(1)
    num_c, dim, rank = 8, 20, 200
    ext = IvectorExtractor(rng.normal(0, 0.3, (num_c, dim, rank)),
                           rng.uniform(0.5, 2, (num_c, dim)), rng.normal(size=(num_c, dim)),
                           np.full(num_c, 1 / num_c))
    n = rng.uniform(1, 50, (64, num_c))
    f = n[:, :, None] * rng.normal(size=(64, num_c, dim))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = ext.extract(n, f)
        torch.set_num_threads(1)
        one = ext.extract(n, f)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two)
    assert torch.get_num_threads() == before
