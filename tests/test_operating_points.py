"""Operating points (deepspeaker/scoring/operating_points.py, bin/save_operating_points.py).

Synthetic scores with a known law: targets N(2, 1), non-targets N(0, 1), 2,000 anchors of
1 positive + 99 negatives (the paper's list).  Then the true LLR is ``2 s - 2`` and the
threshold of false-accept rate f is ``Phi^-1(1 - f)``, so every fitted number has an
answer to be checked against, on the half of the anchors it was not fitted on.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from report_tree import build_tree
from scipy.stats import norm

from deepspeaker.bin import make_report, save_operating_points
from deepspeaker.scoring.metrics import compute_eer, compute_min_dcf
from deepspeaker.scoring.operating_points import (
    THRESHOLDS,
    cllr,
    fit_operating_points,
    load_operating_points,
    split_halves,
    threshold_at_far,
)
from deepspeaker.scoring.trials import Trial, read_scores, write_scores, write_trials

ANCHORS, NEGATIVES, SEPARATION = 2000, 99, 2.0


def paper_list(anchors: int = ANCHORS, negatives: int = NEGATIVES):
    """Labels and anchor ids of ``anchors`` groups of 1 target + ``negatives`` non-targets."""
    labels = np.tile(np.r_[True, np.zeros(negatives, dtype=bool)], anchors)
    groups = np.repeat([f"spk{i % 97:02d}-u{i:05d}" for i in range(anchors)], 1 + negatives)
    return labels, groups


@pytest.fixture(scope="module")
def gaussian():
    labels, groups = paper_list()
    scores = np.random.default_rng(0).standard_normal(labels.size) + SEPARATION * labels
    return scores, labels, groups


def test_the_split_keeps_an_anchor_in_one_half_whatever_the_order(gaussian):
    groups = gaussian[2]
    in_a = split_halves(groups)
    half_of = dict(zip(groups, in_a))
    assert all(half_of[g] == a for g, a in zip(groups, in_a))      # one half per anchor
    assert sum(half_of.values()) == ANCHORS // 2                     # equal halves
    perm = np.random.default_rng(1).permutation(groups.size)
    assert np.array_equal(split_halves(groups[perm]), in_a[perm])   # order does not matter
    # the same anchors in both halves as in a run without the last 10 (the ranking is
    # by each id's own digest, so an anchor only moves where the boundary moves)
    fewer = split_halves(groups[:-10 * (1 + NEGATIVES)])
    assert np.mean(fewer == in_a[:fewer.size]) > 0.99


def test_thresholds_give_the_false_accept_rate_they_name_on_held_out_trials(gaussian):
    scores, labels, groups = gaussian
    points = fit_operating_points(scores, labels, groups, "plda", "eval/trials")
    held = points.heldout
    # 99,000 held-out non-targets: the binomial spread of a measured rate of 1% is 0.03%,
    # of 0.1% 0.01%, and the fitted threshold adds as much again.
    assert abs(held["far_1pct"]["far"] - 0.01) < 0.0015, held
    assert abs(held["far_0.1pct"]["far"] - 0.001) < 0.0005, held
    # the law's thresholds: Phi^-1(0.99) = 2.326, Phi^-1(0.999) = 3.090, EER at 1.0
    assert points.threshold("far_1pct") == pytest.approx(norm.ppf(0.99), abs=0.06)
    assert points.threshold("far_0.1pct") == pytest.approx(norm.ppf(0.999), abs=0.12)
    assert points.threshold("eer") == pytest.approx(SEPARATION / 2, abs=0.08)
    # at the EER point misses and false accepts are both Phi(-1) = 15.9% (1,000 targets)
    assert held["eer"]["far"] == pytest.approx(norm.cdf(-1), abs=0.01)
    assert held["eer"]["miss"] == pytest.approx(norm.cdf(-1), abs=0.04)
    assert points.threshold() == points.threshold("far_1pct")      # verify's default
    assert set(points.thresholds) == set(points.heldout) == set(THRESHOLDS)


def test_thresholds_and_calibration_are_fitted_on_half_a_only(gaussian):
    scores, labels, groups = gaussian
    points = fit_operating_points(scores, labels, groups, "cosine", "eval/trials")
    a = split_halves(groups)
    assert points.threshold("eer") == compute_eer(scores[a], labels[a])[1]
    assert points.threshold("min_dcf") == compute_min_dcf(scores[a], labels[a], 0.01)[1]
    assert points.threshold("far_1pct") == threshold_at_far(scores[a], labels[a], 0.01)
    assert points.threshold("eer") != compute_eer(scores, labels)[1]
    b = ~a
    assert points.cllr["raw"] == pytest.approx(cllr(scores[b], labels[b]))
    assert points.fitted_on == points.calibration.fitted_on == (
        "eval/trials, half A of its anchors (test ids, split by SHA-1 of the id): 1000 "
        "anchors, 1000 target + 99000 non-target trials")
    assert points.heldout_on.startswith("eval/trials, half B of its anchors")


def test_calibration_recovers_the_llr_and_lowers_cllr(gaussian):
    x, labels, groups = gaussian
    scores = 0.2 * x + 3.0        # a score in other units: llr = 2x - 2 = 10 s - 32
    points = fit_operating_points(scores, labels, groups, "cosine", "eval/trials")
    cal = points.calibration
    assert cal.scale == pytest.approx(10.0, rel=0.08)
    assert cal.offset == pytest.approx(-32.0, rel=0.08)
    b = ~split_halves(groups)
    best = cllr(2 * x[b] - 2, labels[b])         # the true LLRs' Cllr
    assert points.cllr["raw"] > 1.5               # the raw scores are no LLRs at all
    assert points.cllr["calibrated"] == pytest.approx(best, abs=0.01)
    assert points.cllr["calibrated"] < points.cllr["raw"]
    assert cal.llr(3.2) == pytest.approx(cal.scale * 3.2 + cal.offset)


def test_calibration_of_calibrated_llrs_is_close_to_identity():
    # Gaussian LLRs are calibrated when the variance is twice the mean: N(+-m, 2m).
    labels, groups = paper_list()
    m = 2.0
    noise = math.sqrt(2 * m) * np.random.default_rng(2).standard_normal(labels.size)
    llrs = np.where(labels, m, -m) + noise
    points = fit_operating_points(llrs, labels, groups, "plda", "eval/trials")
    assert points.calibration.scale == pytest.approx(1.0, abs=0.06)
    assert points.calibration.offset == pytest.approx(0.0, abs=0.1)
    assert points.cllr["calibrated"] == pytest.approx(points.cllr["raw"], abs=0.005)


def test_a_threshold_no_score_can_meet_accepts_nothing_seen():
    scores = np.array([0.1, 0.2, 0.3, 0.9])
    labels = np.array([True, False, True, False])    # the highest score is a non-target
    t = threshold_at_far(scores, labels, 0.001)
    assert 0.9 < t < 0.9 + 1e-12
    assert threshold_at_far(scores, labels, 0.5) == 0.3   # accepts 0.3 and 0.9: FAR 1/2


def _tiny_exp(tmp_path, anchors: int = 40, negatives: int = 9, seed: int = 0):
    """``data/eval/trials`` and ``exp/sys/scores/plda_trials`` with Gaussian scores."""
    labels, groups = paper_list(anchors, negatives)
    enrolls = [f"e{i:05d}" for i in range(labels.size)]
    trials = [Trial(e, g, bool(t)) for e, g, t in zip(enrolls, groups, labels)]
    scores = np.random.default_rng(seed).standard_normal(labels.size) + SEPARATION * labels
    scores = np.round(scores, 6)  # as the score file holds them
    (tmp_path / "data/eval").mkdir(parents=True)
    write_trials(tmp_path / "data/eval/trials", trials)
    exp = tmp_path / "exp/sys"
    (exp / "scores").mkdir(parents=True)
    write_scores(exp / "scores/plda_trials", trials, scores)
    return exp, tmp_path / "data/eval/trials", trials, scores


def test_the_command_writes_the_file_and_a_rerun_skips(tmp_path, capfd):
    exp, trials_path, trials, scores = _tiny_exp(tmp_path)
    argv = ["--method", "plda", "--trials", str(trials_path), str(exp)]
    assert save_operating_points.main(argv) == 0
    out = exp / "operating_points/plda.yaml"
    points = load_operating_points(exp, "plda")
    expected = fit_operating_points(scores, [t.target for t in trials],
                                    [t.test for t in trials], "plda", str(trials_path))
    assert points == expected                    # the file holds what the library fits
    capfd.readouterr()
    mtime = os.stat(out).st_mtime_ns
    assert save_operating_points.main(argv) == 0
    assert f"{out}: up to date" in capfd.readouterr().err
    assert os.stat(out).st_mtime_ns == mtime
    # new scores: redone
    write_scores(exp / "scores/plda_trials", trials, scores + 1.0)
    assert save_operating_points.main(argv) == 0
    assert "redoing them" in capfd.readouterr().err
    assert load_operating_points(exp, "plda").threshold("eer") == pytest.approx(
        expected.threshold("eer") + 1.0)


def test_skipped_trials_are_left_out(tmp_path):
    exp, trials_path, trials, scores = _tiny_exp(tmp_path)
    path = exp / "scores/plda_trials"
    # the first anchor's trials were not scored (no vector), as a scorer lists them
    write_scores(path, trials[10:], scores[10:])
    (path.parent / "plda_trials.skipped").write_text(
        "".join(f"{t.enroll} {t.test} no embedding for {t.test}\n" for t in trials[:10]))
    assert save_operating_points.main(["--method", "plda", "--trials", str(trials_path),
                                       str(exp)]) == 0
    kept = trials[10:]
    expected = fit_operating_points(scores[10:], [t.target for t in kept],
                                    [t.test for t in kept], "plda", str(trials_path))
    assert load_operating_points(exp, "plda") == expected


def test_a_half_without_targets_is_named(tmp_path, capfd):
    exp, trials_path, trials, _ = _tiny_exp(tmp_path)
    in_a = split_halves([t.test for t in trials])
    # targets only for the anchors of half A: half B has none
    relabelled = [Trial(t.enroll, t.test, t.target and bool(a)) for t, a in zip(trials, in_a)]
    write_trials(trials_path, relabelled)
    n_b = int((~in_a).sum())
    assert save_operating_points.main(["--method", "plda", "--trials", str(trials_path),
                                       str(exp)]) == 1
    err = capfd.readouterr().err
    assert (f"{trials_path}: half B of the anchors has 0 target and {n_b} non-target trials: "
            "operating points need both in each half") in err, err
    assert "Traceback" not in err
    assert not (exp / "operating_points/plda.yaml").exists()


def test_constant_scores_are_named_and_leave_no_points(tmp_path, capfd):
    exp, trials_path, trials, _ = _tiny_exp(tmp_path)
    argv = ["--method", "plda", "--trials", str(trials_path), str(exp)]
    assert save_operating_points.main(argv) == 0
    assert load_operating_points(exp, "plda") is not None
    write_scores(exp / "scores/plda_trials", trials, np.full(len(trials), 0.5))
    assert save_operating_points.main(argv) == 1
    err = capfd.readouterr().err
    assert (f"{trials_path}: every score of half A of the anchors is 0.5: constant scores "
            "have no operating points") in err, err
    # the points of the earlier scores are gone: verify must not decide with them
    assert load_operating_points(exp, "plda") is None
    assert not (exp / "operating_points/.plda.done").exists()


def test_the_report_shows_the_operating_points_and_asnorm(tmp_path, capfd):
    exp, data, lists = build_tree(tmp_path, plda=True)
    trials = data / "eval/trials"
    # the i-vector's PLDA scores after AS-norm: better separated
    rng = np.random.default_rng(5)
    write_scores(exp / "ivector/scores/plda_asnorm_trials", lists["trials"],
                 [rng.standard_normal() + 2.5 * t.target for t in lists["trials"]])
    for tag, method in (("ivector", "plda"), ("gru_softmax_triplet", "cosine"),
                        ("gru_softmax_triplet", "plda"), ("fusion", "score")):
        assert save_operating_points.main(["--method", method, "--trials", str(trials),
                                           str(exp / tag)]) == 0
    assert save_operating_points.main(["--method", "plda_asnorm", "--asnorm", "top_n=300",
                                       "--asnorm", "level=utterance", "--trials", str(trials),
                                       str(exp / "ivector")]) == 0
    normed = load_operating_points(exp / "ivector", "plda_asnorm")
    assert normed.asnorm == {"top_n": 300, "level": "utterance"}
    assert load_operating_points(exp / "ivector", "plda").asnorm is None
    assert make_report.main([str(exp), str(data)]) == 0
    text = (exp / "RESULTS.md").read_text()
    asnorm = text.split("## AS-norm")[1].split("\n## ")[0]
    raw_eer = compute_eer(*_scores_labels(exp / "ivector/scores/plda_trials", lists["trials"]))[0]
    new_eer = compute_eer(*_scores_labels(exp / "ivector/scores/plda_asnorm_trials",
                                          lists["trials"]))[0]
    assert new_eer < raw_eer
    assert (f"| i-vector + PLDA (baseline) | {100 * raw_eer:.2f} | {100 * new_eer:.2f} |"
            in asnorm), asnorm
    assert asnorm.count("\n| ") == 2     # the header and the one system with AS-norm scores
    rows = _rows(text, "## Operating points")
    assert rows["i-vector + PLDA (baseline), AS-norm"].startswith(
        f"| i-vector + PLDA (baseline), AS-norm | {normed.thresholds['eer']:.4g} (")
    section = text.split("## Operating points")[1].split("\n## ")[0]
    p = load_operating_points(exp / "ivector", "plda")
    far = p.heldout["far_1pct"]
    assert (f"| {p.thresholds['far_1pct']:.4g} ({100 * far['far']:.2f} / "
            f"{100 * far['miss']:.2f}) |") in rows["i-vector + PLDA (baseline)"]
    assert f"| {p.cllr['raw']:.3f} -> {p.cllr['calibrated']:.3f} |" in rows[
        "i-vector + PLDA (baseline)"]
    assert "GRU, softmax (pre-train) + triplet, PLDA" in rows
    # Both fusions have operating points (verify of a fusion scores the embedding fusion).
    assert "score fusion" in rows and "embedding fusion" in rows
    assert rows["i-vector, cosine"].count("not saved") == len(THRESHOLDS)
    assert f"Fitted on: `{trials}, half A of its anchors" in section


def test_perfectly_separated_scores_get_a_finite_calibration(caplog):
    labels, groups = paper_list(40, 9)
    rng = np.random.default_rng(3)
    scores = np.where(labels, 1.0, 0.0) + rng.random(labels.size)   # targets all above
    points = fit_operating_points(scores, labels, groups, "cosine", "eval/trials")
    assert 10 < points.calibration.scale < 1e4
    assert points.cllr["calibrated"] < 0.05 < points.cllr["raw"]
    assert "separate targets from non-targets perfectly" in caplog.text
    assert "too few to estimate a false-accept rate of 0.001" in caplog.text


def _scores_labels(path, trials):
    scores = read_scores(path)
    return [scores[(t.enroll, t.test)] for t in trials], [t.target for t in trials]


def _rows(text: str, heading: str) -> dict[str, str]:
    """The table rows of section ``heading`` of RESULTS.md by their first cell."""
    section = text.split(heading)[1].split("\n## ")[0]
    return {line.split(" | ")[0][2:]: line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| system")}


def test_asnorm_settings_need_an_asnorm_method(tmp_path, capsys):
    exp, trials_path, _, _ = _tiny_exp(tmp_path)
    with pytest.raises(SystemExit) as e:
        save_operating_points.main(["--method", "plda", "--asnorm", "top_n=300", "--trials",
                                    str(trials_path), str(exp)])
    assert e.value.code == 2
    assert "--asnorm describes AS-normed scores: --method plda_asnorm, not plda" in (
        capsys.readouterr().err)


def test_a_weak_systems_min_dcf_threshold_is_finite_and_rejects_all():
    # hardly separated: at p_target 0.01 the best decision is to reject every trial
    labels, groups = paper_list(200, 9)
    scores = np.random.default_rng(4).standard_normal(labels.size) + 0.3 * labels
    a = split_halves(groups)
    assert compute_min_dcf(scores[a], labels[a], 0.01)[1] == np.inf
    points = fit_operating_points(scores, labels, groups, "plda", "eval/trials")
    assert scores[a].max() < points.threshold("min_dcf") < scores[a].max() + 1e-12
    assert all(math.isfinite(t) for t in points.thresholds.values())
