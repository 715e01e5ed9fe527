"""Metrics on hand-computed cases and against scikit-learn's ROC on random scores."""

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from deepspeaker.bin import compute_metrics as cm_bin
from deepspeaker.scoring import (ScoringError, Trial, compute_acc, compute_eer, compute_min_dcf,
                                 write_scores, write_trials)


def test_eer_separable_is_zero():
    eer, thr = compute_eer([3, 4, 1, 2], [1, 1, 0, 0])
    assert eer == 0.0 and thr == 3.0


def test_eer_interpolated_by_hand():
    # targets 1, 2, 3; non-targets 0, 1.5.  At t=1.5: miss 1/3, fa 1/2; at t=2: miss 1/3,
    # fa 0.  The pieces cross a third of the way from 1.5 to 2: EER 1/3 at t=1.5+1/6.
    eer, thr = compute_eer([1, 2, 3, 0, 1.5], [1, 1, 1, 0, 0])
    assert eer == pytest.approx(1 / 3)
    assert thr == pytest.approx(1.5 + 0.5 / 3)


def test_eer_all_ties_is_half():
    eer, _ = compute_eer([0.5] * 6, [1, 0, 1, 0, 1, 0])
    assert eer == pytest.approx(0.5)


def test_min_dcf_by_hand():
    scores, labels = [1, 2, 3, 0, 1.5], [1, 1, 1, 0, 0]
    # p_target 0.5, unit costs: normalised DCF = p_miss + p_fa, smallest at t=2 (1/3 + 0).
    dcf, thr = compute_min_dcf(scores, labels, p_target=0.5)
    assert dcf == pytest.approx(1 / 3) and thr == 2
    # p_target 0.01: norm = 0.01; DCF(t) = (0.01 p_miss + 0.99 p_fa) / 0.01.
    dcf, _ = compute_min_dcf(scores, labels, p_target=0.01)
    # At t=2 (p_miss 1/3, p_fa 0) that is 1/3; rejecting all would cost 1.
    assert dcf == pytest.approx(1 / 3)
    dcf, _ = compute_min_dcf([0, 1, 2, 3], [1, 0, 0, 0], p_target=0.01)
    assert dcf == pytest.approx(1.0)  # any threshold passing the target costs more than none


def _reference_from_sklearn(scores, labels, p_target=0.01):
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    diff = fnr - fpr  # sklearn's thresholds descend, so diff descends from +1 to -1
    k = np.flatnonzero(diff <= 0)[0]
    if diff[k] == 0:
        eer = fpr[k]
    else:
        a = diff[k - 1] / (diff[k - 1] - diff[k])
        eer = fpr[k - 1] + a * (fpr[k] - fpr[k - 1])
    dcf = (p_target * fnr + (1 - p_target) * fpr).min() / min(p_target, 1 - p_target)
    return eer, dcf


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    n_tar, n_non = 300 + 50 * seed, 3000
    scores = np.r_[rng.normal(1.5, 1, n_tar), rng.normal(0, 1, n_non)]
    if seed % 2:
        scores = np.round(scores, 1)  # many ties
    labels = np.r_[np.ones(n_tar), np.zeros(n_non)]
    eer, _ = compute_eer(scores, labels)
    dcf, _ = compute_min_dcf(scores, labels)
    ref_eer, ref_dcf = _reference_from_sklearn(scores, labels)
    assert eer == pytest.approx(ref_eer, abs=1e-12)
    assert dcf == pytest.approx(ref_dcf, abs=1e-12)
    assert 0.15 < eer < 0.3  # d' = 1.5 gives an EER near 22.7%


def test_acc_by_hand_and_ties():
    anchors = ["a", "a", "a", "b", "b", "b", "c", "c"]
    scores = [0.9, 0.5, 0.95, 0.8, 0.1, 0.2, 0.7, 0.7]
    labels = [1, 0, 0, 1, 0, 0, 1, 0]
    acc, n = compute_acc(anchors, scores, labels)
    assert n == 3 and acc == pytest.approx(1 / 3)  # a loses, b wins, c ties -> wrong


def test_acc_needs_one_target_per_anchor():
    with pytest.raises(ScoringError, match="anchor a has 2 target"):
        compute_acc(["a", "a", "a"], [1, 2, 3], [1, 1, 0])
    # still a ValueError, as it was before it was a ScoringError
    with pytest.raises(ValueError, match=r"need both target and non-target trials \(got 0 target"):
        compute_eer([1, 2], [0, 0])


def test_compute_metrics_cli_and_missing_trial(tmp_path, capsys):
    trials = [Trial("e1", "t1", True), Trial("e2", "t1", False), Trial("e3", "t1", False),
              Trial("e2", "t2", True), Trial("e1", "t2", False), Trial("e3", "t2", False)]
    write_trials(tmp_path / "trials", trials)
    write_scores(tmp_path / "scores", trials, [0.9, 0.1, 0.2, 0.3, 0.5, 0.0])
    assert cm_bin.main([str(tmp_path / "trials"), str(tmp_path / "scores"),
                        "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "ACC: 50.00% (2 anchors)" in out
    # EER: targets 0.9, 0.3; non-targets 0.1, 0.2, 0.5, 0.0 -> by hand 25%.
    assert "EER: 25.00%" in out
    assert (tmp_path / "m.json").exists()
    write_scores(tmp_path / "scores", trials[:4], [0.9, 0.1, 0.2, 0.3])
    with pytest.raises(ScoringError, match=r"no score for trial 'e1 t2' \(.*trials:5\)"):
        cm_bin.evaluate(tmp_path / "trials", tmp_path / "scores")
    assert cm_bin.main([str(tmp_path / "trials"), str(tmp_path / "scores")]) == 1
