"""Scoring: trial lists (paper §4.1), Kaldi trial/score files, EER, minDCF and ACC."""

from .metrics import (Metrics, ScoringError, compute_acc, compute_eer, compute_metrics,
                      compute_min_dcf, error_rates)
from .trials import (Trial, make_enroll_trials, make_trials, read_enroll2utt, read_scores,
                     read_trials, scores_for_trials, write_enroll2utt, write_scores,
                     write_trials)

__all__ = ["Metrics", "ScoringError", "compute_acc", "compute_eer", "compute_metrics",
           "compute_min_dcf", "error_rates", "Trial", "make_enroll_trials", "make_trials",
           "read_enroll2utt", "read_scores", "read_trials", "scores_for_trials",
           "write_enroll2utt", "write_scores", "write_trials"]
