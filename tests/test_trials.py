"""Trial lists: counts, no self-trials, positives really same-speaker, enrollment models."""

import collections

import pytest

from deepspeaker.scoring import (make_enroll_trials, make_trials, read_enroll2utt, read_trials,
                                 write_enroll2utt, write_trials, ScoringError)


def _utt2spk(num_spk=120, per_spk=19):
    return {f"s{s:03d}-u{u:02d}": f"s{s:03d}" for s in range(num_spk) for u in range(per_spk)}


def test_utterance_trials_follow_the_paper():
    utt2spk = _utt2spk()
    trials = make_trials(utt2spk, seed=3)
    by_anchor = collections.defaultdict(list)
    for t in trials:
        by_anchor[t.test].append(t)
    assert set(by_anchor) == set(utt2spk)  # every utterance is an anchor
    for anchor, group in by_anchor.items():
        assert len(group) == 100
        pos = [t for t in group if t.target]
        assert len(pos) == 1
        assert all(t.enroll != anchor for t in group)  # no self-trials
        assert utt2spk[pos[0].enroll] == utt2spk[anchor]
        assert all(utt2spk[t.enroll] != utt2spk[anchor] for t in group if not t.target)
        assert len({t.enroll for t in group}) == 100  # negatives drawn without replacement
    assert len(trials) == 120 * 19 * 100
    assert make_trials(utt2spk, seed=3) == trials
    assert make_trials(utt2spk, seed=4) != trials


def test_trials_per_anchor_do_not_move_when_an_utterance_is_dropped():
    utt2spk = _utt2spk(20, 6)
    full = make_trials(utt2spk, num_negatives=10)
    del utt2spk["s019-u05"]
    part = make_trials(utt2spk, num_negatives=10)
    # Anchors are seeded by their own id; those whose pools did not change keep their trials.
    a = [t for t in full if t.test == "s000-u00"]
    b = [t for t in part if t.test == "s000-u00"]
    assert a[0] == b[0]  # the positive does not depend on other speakers


def test_small_sets_warn_and_skip(caplog):
    utt2spk = {"a-1": "a", "a-2": "a", "b-1": "b", "c-1": "c"}
    trials = make_trials(utt2spk, num_negatives=99)
    assert {t.test for t in trials} == {"a-1", "a-2"}  # b, c have no second utterance
    assert all(sum(1 for t in trials if t.test == a) == 3 for a in ("a-1", "a-2"))
    assert "fewer than 99 negatives" in caplog.text and "one utterance" in caplog.text


def test_enroll_trials():
    utt2spk = _utt2spk(101, 19)
    enroll2utt, by_k = make_enroll_trials(utt2spk, (1, 2, 3, 5), seed=1)
    assert sorted(by_k) == [1, 2, 3, 5]
    for spk in {f"s{s:03d}" for s in range(101)}:
        models = [enroll2utt[f"{spk}-enroll{k}"] for k in (1, 2, 3, 5)]
        assert [len(m) for m in models] == [1, 2, 3, 5]
        assert all(models[i] == models[-1][:len(models[i])] for i in range(4))  # nested
        assert all(utt2spk[u] == spk for u in models[-1])
    anchors_per_k = {}
    for k, trials in by_k.items():
        assert len(trials) == 101 * 14 * 100  # 19 - 5 anchors per speaker, 1 + 99 each
        anchors_per_k[k] = sorted({t.test for t in trials})
        for t in trials:
            spk = t.enroll.rsplit("-enroll", 1)[0]
            assert t.target == (spk == utt2spk[t.test])
            assert t.test not in enroll2utt[t.enroll]  # never enrolled with itself
            assert t.test not in enroll2utt[f"{utt2spk[t.test]}-enroll5"]
    assert all(a == anchors_per_k[1] for a in anchors_per_k.values())  # paired across k


def test_file_round_trip_and_errors(tmp_path):
    utt2spk = _utt2spk(10, 7)
    trials = make_trials(utt2spk, num_negatives=9)
    write_trials(tmp_path / "trials", trials)
    assert read_trials(tmp_path / "trials") == trials
    enroll2utt, _ = make_enroll_trials(utt2spk, (1, 2), num_negatives=3)
    write_enroll2utt(tmp_path / "enroll2utt", enroll2utt)
    assert read_enroll2utt(tmp_path / "enroll2utt") == enroll2utt
    (tmp_path / "bad").write_text("a b target\nc d maybe\n")
    with pytest.raises(ScoringError, match=r"bad:2: label must be target or nontarget"):
        read_trials(tmp_path / "bad")
    (tmp_path / "dup").write_text("a b target\na c nontarget\na b nontarget\n")
    with pytest.raises(ScoringError, match=r"dup:3: trial 'a b' repeats line 1"):
        read_trials(tmp_path / "dup")
