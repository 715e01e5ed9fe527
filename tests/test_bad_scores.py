"""Issue 16, family 7: scores that are not numbers, read or about to be written.

Every command that reads a score file (compute_metrics, fuse_scores, summarize_scores,
make_report) refuses ``nan``, ``inf``, ``abc`` and their kin naming ``file:line``, with
no traceback and no output written.  A scorer never writes one: a vector that cannot be
scored (NaN, all zeros) counts as no vector, its trials are listed in ``.skipped``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from report_tree import build_tree

from deepspeaker.bin import (compute_metrics, fuse_scores, make_report, score_embeddings,
                             score_plda, summarize_scores, train_plda)
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.scoring.metrics import ScoringError
from deepspeaker.scoring.trials import Trial, make_trials, write_scores, write_trials

# (text in the score file, why it is refused)
BAD = [("nan", "is not a number"), ("NaN", "is not a number"), ("inf", "is not a number"),
       ("-inf", "is not a number"), ("Infinity", "is not a number"), ("abc", "is not a number"),
       ("1_000", "is not a number"), ("1e999", "is too large for a float")]
TRIALS = [("a-1", "a-2", True), ("b-1", "a-2", False), ("b-1", "b-2", True), ("a-1", "b-2", False)]
GOOD = [0.9, 0.1, 0.8, 0.2]


def _write(path: Path, values) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{e} {t} {v}\n" for (e, t, _), v in zip(TRIALS, values)))
    return path


def _with_bad(path: Path, bad: str) -> Path:
    """``path``'s scores with the one of line 3 (trial 'b-1 b-2') replaced by ``bad``."""
    return _write(path, [*GOOD[:2], bad, *GOOD[3:]])


def _trials(path: Path) -> Path:
    write_trials(path, [Trial(*t) for t in TRIALS])
    return path


def _expect(err: str, path: Path, bad: str, why: str) -> None:
    assert (f"{path}:3: trial 'b-1 b-2': score {bad!r} {why}; scores must be finite numbers"
            in err), err
    assert "Traceback" not in err


@pytest.mark.parametrize("bad,why", BAD)
def test_compute_metrics(tmp_path, capfd, bad, why):
    trials, scores = _trials(tmp_path / "trials"), _with_bad(tmp_path / "scores", bad)
    out = tmp_path / "metrics.json"
    assert compute_metrics.main(["--json", str(out), str(trials), str(scores)]) == 1
    _expect(capfd.readouterr().err, scores, bad, why)
    assert not out.exists()


@pytest.mark.parametrize("bad,why", BAD)
def test_fuse_scores(tmp_path, capfd, bad, why):
    trials = _trials(tmp_path / "trials")
    good, broken = _write(tmp_path / "a", GOOD), _with_bad(tmp_path / "b", bad)
    out = tmp_path / "fused/scores"
    assert fuse_scores.main([str(trials), str(out), str(good), str(broken)]) == 1
    _expect(capfd.readouterr().err, broken, bad, why)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.parametrize("bad,why", BAD)
def test_summarize_scores(tmp_path, capfd, bad, why):
    trials_dir = tmp_path / "eval"
    trials_dir.mkdir()
    _trials(trials_dir / "trials")
    exp = tmp_path / "exp"
    _write(exp / "scores/plda_trials", GOOD)
    broken = _with_bad(exp / "scores/cosine_trials", bad)
    assert summarize_scores.main([str(exp), str(trials_dir)]) == 1
    _expect(capfd.readouterr().err, broken, bad, why)
    assert not (exp / "RESULTS.md").exists()


@pytest.mark.parametrize("bad,why", BAD)
def test_make_report(tmp_path, capfd, bad, why):
    exp, data, _ = build_tree(tmp_path)
    path = exp / "gru_triplet/scores/cosine_trials_enroll2"
    lines = path.read_text().splitlines(keepends=True)
    e, t, _ = lines[2].split()
    lines[2] = f"{e} {t} {bad}\n"
    path.write_text("".join(lines))
    assert make_report.main([str(exp), str(data)]) == 1
    err = capfd.readouterr().err
    assert f"{path}:3: trial '{e} {t}': score {bad!r} {why}" in err, err
    assert "Traceback" not in err
    assert not (exp / "RESULTS.md").exists() and not (exp / "report").exists()


def test_a_trial_scored_twice_is_refused(tmp_path, capfd):
    trials, scores = _trials(tmp_path / "trials"), _write(tmp_path / "scores", GOOD)
    scores.write_text(scores.read_text() + "b-1 a-2 0.7\n")
    assert compute_metrics.main([str(trials), str(scores)]) == 1
    assert f"{scores}:5: trial 'b-1 a-2' is scored twice (first on line 2)" in capfd.readouterr().err


def test_write_scores_never_writes_nan(tmp_path):
    trials = [Trial(*t) for t in TRIALS]
    path = tmp_path / "scores"
    with pytest.raises(ScoringError) as e:
        write_scores(path, trials, [0.5, np.nan, 0.1, np.inf])
    assert str(e.value) == (f"{path}: refusing to write score nan for trial 'b-1 a-2' (2 of 4 "
                            "scores are NaN or infinite: is the model or a vector broken?); "
                            "nothing written")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ vectors that cannot be scored

DIM = 8


def _vector_tree(tmp_path: Path, name: str, n_spk: int, n_utt: int, seed: int,
                 broken: bool) -> tuple[Path, Path]:
    """data/<name> and its embedding.scp; with ``broken``, s01-u0 is NaN and s02-u1 all zeros."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_spk, DIM)) * 2
    vecs = {f"s{s:02d}-u{u}": centres[s] + rng.standard_normal(DIM) for s in range(n_spk)
            for u in range(n_utt)}
    if broken:
        vecs["s01-u0"][3] = np.nan
        vecs["s02-u1"][:] = 0.0
    d = tmp_path / "data" / name
    d.mkdir(parents=True)
    utts = sorted(vecs)
    (d / "utt2spk").write_text("".join(f"{u} {u[:3]}\n" for u in utts))
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
    scp = tmp_path / "exp" / name / "embedding.scp"
    scp.parent.mkdir(parents=True)
    write_ark_scp(scp.with_suffix(".ark"), scp,
                  {u: v.astype(np.float32) for u, v in vecs.items()})
    if broken:
        write_trials(d / "trials", make_trials({u: u[:3] for u in utts}, num_negatives=5))
    return d, scp


def _check_skipped(scores: Path, trials: Path, scp: Path, err: str) -> None:
    """Every trial of s01-u0 or s02-u1 is skipped, with the reason; the rest are finite."""
    broken = {"s01-u0": f"s01-u0 (NaN or infinite values in {scp})",
              "s02-u1": f"s02-u1 (a vector of zeros in {scp})"}
    lines = [line.split() for line in trials.read_text().splitlines()]
    expect_skipped = [(e, t) for e, t, _ in lines if e in broken or t in broken]
    skipped = [line.split(" ", 2) for line in Path(f"{scores}.skipped").read_text().splitlines()]
    assert [(e, t) for e, t, _ in skipped] == expect_skipped and expect_skipped
    for e, t, why in skipped:
        assert why == "no embedding for " + ",".join(broken[u] for u in (e, t) if u in broken)
    written = [line.split() for line in scores.read_text().splitlines()]
    assert len(written) == len(lines) - len(expect_skipped)
    assert all(np.isfinite(float(s)) for _, _, s in written)
    assert f"{scp}: 2 vector(s) cannot be scored, counted as no vector" in err
    assert "Traceback" not in err


def test_score_embeddings_skips_nan_and_zero_vectors(tmp_path, capfd):
    d, scp = _vector_tree(tmp_path, "eval", 4, 3, 0, broken=True)
    scores = tmp_path / "exp/scores/cosine_trials"
    assert score_embeddings.main([str(d), str(d / "trials"), str(scores), str(scp)]) == 0
    _check_skipped(scores, d / "trials", scp, capfd.readouterr().err)


def test_score_plda_skips_nan_and_zero_vectors(tmp_path, capfd):
    train, train_scp = _vector_tree(tmp_path, "train", 8, 4, 1, broken=False)
    d, scp = _vector_tree(tmp_path, "eval", 4, 3, 0, broken=True)
    exp = tmp_path / "exp"
    conf = tmp_path / "backend.yaml"
    conf.write_text("lda_dim: 4\nplda: {num_em_iters: 2}\n")
    assert train_plda.main(["--vectors", str(train_scp), "--config", str(conf), str(exp),
                            str(train)]) == 0
    scores = exp / "scores/plda_trials"
    assert score_plda.main(["--vectors", str(scp), str(exp), str(d), str(d / "trials"),
                            str(scores)]) == 0
    _check_skipped(scores, d / "trials", scp, capfd.readouterr().err)
