"""EER by speaker group (deepspeaker/scoring/groups.py, issue 15): the conditions' trial
counts by hand on 4 speakers, their EERs, bad ages, and the report's table."""

from __future__ import annotations

import numpy as np
import pytest
from report_tree import SPEAKERS, build_tree

from deepspeaker.bin import make_report
from deepspeaker.scoring.groups import conditions, counts, group_eers, read_speakers
from deepspeaker.scoring.metrics import compute_eer
from deepspeaker.scoring.report import collect
from deepspeaker.scoring.trials import Trial
from deepspeaker.utils import DeepSpeakerError

# Two children (8 and 12: 12 is still under 13) and two adults, one of each gender.
AGES = {"c1": "8", "c2": "12", "a1": "13", "a2": "25"}
GENDERS = {"c1": "f", "c2": "m", "a1": "f", "a2": "m"}


def write_eval(d, ages=AGES, genders=GENDERS):
    d.mkdir(exist_ok=True)
    utts = [f"{s}-{i}" for s in AGES for i in (1, 2)]
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    if ages is not None:
        (d / "spk2age").write_text("".join(f"{s} {a}\n" for s, a in ages.items()))
    if genders is not None:
        (d / "spk2gender").write_text("".join(f"{s} {g}\n" for s, g in genders.items()))
    return utts


def all_pairs(utts):
    trials = [Trial(a, b, a.split("-")[0] == b.split("-")[0])
              for i, a in enumerate(utts) for b in utts[i + 1:]]
    return trials, np.array([t.target for t in trials])


def test_conditions_count_the_trials_by_hand(tmp_path):
    trials, labels = all_pairs(write_eval(tmp_path))       # 28 pairs: 4 targets, 24 non-targets
    masks = conditions(trials, labels, read_speakers(tmp_path))
    # 4 child utterances: 6 pairs, 2 targets; cross-age: 4 x 4 utterances; same gender: c1/a1
    # and c2/a2, 2 x 2 utterances each; other gender: 4 x 4.
    assert counts(labels, masks) == {"under 13": (2, 4), "13 and over": (2, 4),
                                     "across ages": (4, 16), "same gender": (4, 8),
                                     "other gender": (4, 16)}


def test_each_condition_has_its_own_eer(tmp_path):
    trials, labels = all_pairs(write_eval(tmp_path))
    spk = read_speakers(tmp_path)
    # Targets score 1; non-targets between two children 2 (above every target), others 0.
    kid = {"c1", "c2"}
    scores = np.array([1.0 if t.target else
                       2.0 if {t.enroll[:2], t.test[:2]} <= kid else 0.0 for t in trials])
    eers = group_eers(scores, labels, conditions(trials, labels, spk))
    assert eers["13 and over"] == 0.0 and eers["across ages"] == 0.0
    assert eers["under 13"] == pytest.approx(compute_eer([1, 1, 2, 2, 2, 2], [1, 1, 0, 0, 0, 0])[0])
    assert eers["under 13"] > 0.5
    # same gender holds none of the children's non-targets (c1 f, c2 m): separable.
    assert eers["same gender"] == 0.0
    assert 0.0 < eers["other gender"] < eers["under 13"]


def test_only_what_the_eval_dir_has(tmp_path):
    trials, labels = all_pairs(write_eval(tmp_path / "g", ages=None))
    assert list(conditions(trials, labels, read_speakers(tmp_path / "g"))) == \
        ["same gender", "other gender"]
    trials, labels = all_pairs(write_eval(tmp_path / "n", ages=None, genders=None))
    assert conditions(trials, labels, read_speakers(tmp_path / "n")) == {}


def test_a_condition_with_one_class_is_not_computed(tmp_path):
    trials, labels = all_pairs(write_eval(tmp_path))
    masks = {"targets only": labels.copy()}
    assert group_eers(np.ones(len(labels)), labels, masks) == {"targets only": None}


def test_an_age_that_is_not_a_number_names_its_line(tmp_path):
    write_eval(tmp_path, ages={"c1": "8", "c2": "twelve", "a1": "13", "a2": "25"})
    with pytest.raises(DeepSpeakerError, match=r"spk2age:2: speaker c2: age 'twelve' is not a number"):
        read_speakers(tmp_path)


def test_the_report_has_the_group_table(tmp_path):
    exp, data, _ = build_tree(tmp_path)
    ev = data / "eval"
    spks = [f"s{s:02d}" for s in range(SPEAKERS)]
    (ev / "spk2age").write_text("".join(f"{s} {7 + i}\n" for i, s in enumerate(spks)))
    (ev / "spk2gender").write_text("".join(f"{s} {'mf'[i % 2]}\n" for i, s in enumerate(spks)))
    assert make_report.main(["--title", "fake", str(exp), str(data)]) == 0
    text = (exp / "RESULTS.md").read_text()
    section = text.split("## EER by speaker group")[1].split("\n## ")[0]
    assert ("| system | under 13 [%] | 13 and over [%] | across ages [%] | same gender [%] | "
            "other gender [%] |") in section
    rep = collect(exp, data)
    r = rep.baseline()
    eers = group_eers(r.scores, r.labels, conditions(r.trials, r.labels, read_speakers(ev)))
    row = next(x for x in section.splitlines() if x.startswith("| i-vector + PLDA (baseline) |"))
    assert [c.strip() for c in row.split("|")[2:-1]] == [f"{100 * e:.2f}" for e in eers.values()]
    assert "| score fusion |" in section


def test_no_ages_or_genders_no_group_table(tmp_path):
    exp, data, _ = build_tree(tmp_path)
    assert make_report.main(["--title", "fake", str(exp), str(data)]) == 0
    assert "## EER by speaker group" not in (exp / "RESULTS.md").read_text()
