"""2-column trial lists (``enroll test``, Kaldi's unlabelled form) and 4-column score files
(``enroll test score label``), through the commands a user runs.

Scoring needs no labels, so the scorers take 2-column lists and write the same scores
as for the labelled list; metrics need labels, so compute_metrics refuses a 2-column
list saying why, unless a 4-column score file brings them.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepspeaker.bin import (compute_metrics, fuse_scores, score_embeddings, score_plda,
                             train_plda)
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.scoring.metrics import ScoringError
from deepspeaker.scoring.trials import (make_trials, read_labelled_scores, read_scores,
                                        read_trials, write_trials)


@pytest.fixture()
def scored(tmp_path):
    """data/eval with a labelled and an unlabelled list, embeddings, cosine scores of both."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data/eval"
    data.mkdir(parents=True)
    vecs = {f"ev{s}-u{u}": rng.standard_normal(8) + 3 * np.eye(8)[s] for s in range(6)
            for u in range(4)}
    utts = sorted(vecs)
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    (data / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
    write_ark_scp(tmp_path / "emb.ark", tmp_path / "emb.scp",
                  {k: v.astype(np.float32) for k, v in vecs.items()})
    trials = make_trials({u: u.split("-")[0] for u in utts}, num_negatives=5)
    write_trials(data / "trials", trials)
    (data / "trials2").write_text("".join(f"{t.enroll} {t.test}\n" for t in trials))
    for name in ("trials", "trials2"):
        assert score_embeddings.main([str(data), str(data / name), str(tmp_path / f"s_{name}"),
                                      str(tmp_path / "emb.scp")]) == 0
    return tmp_path, data, trials


def _metrics(capfd, *paths) -> tuple[int, str, str]:
    rc = compute_metrics.main([str(p) for p in paths])
    out, err = capfd.readouterr()
    return rc, out, err


def test_scorers_take_two_column_trials(scored, tmp_path):
    root, data, trials = scored
    assert (root / "s_trials2").read_text() == (root / "s_trials").read_text()
    unlabelled = read_trials(data / "trials2", need_labels=False)
    assert [t.target for t in unlabelled] == [None] * len(trials)
    write_trials(root / "again", unlabelled)  # written back as it was, never "nontarget"
    assert (root / "again").read_text() == (data / "trials2").read_text()
    with pytest.raises(ValueError, match="some trials have a label and some do not"):
        write_trials(root / "mixed", unlabelled[:2] + trials[2:])
    # score_plda on the embeddings' back end as well.
    conf = tmp_path / "b.yaml"
    conf.write_text("lda_dim: 4\nplda: {num_em_iters: 2}\n")
    exp = root / "exp"
    assert train_plda.main(["--vectors", str(root / "emb.scp"), "--config", str(conf),
                            str(exp), str(data)]) == 0
    for name in ("trials", "trials2"):
        assert score_plda.main(["--vectors", str(root / "emb.scp"), str(exp), str(data),
                                str(data / name), str(root / f"p_{name}")]) == 0
    assert read_scores(root / "p_trials2") == read_scores(root / "p_trials")


def test_score_fusion_takes_two_column_trials(scored):
    """Fusion z-normalises over all scores of a list: no labels needed, the same output."""
    root, data, _ = scored
    for name in ("trials", "trials2"):
        assert fuse_scores.main([str(data / name), str(root / f"f_{name}"),
                                 str(root / f"s_{name}"), str(root / f"s_{name}")]) == 0
    assert (root / "f_trials2").read_text() == (root / "f_trials").read_text()
    assert len(read_scores(root / "f_trials2")) == len(read_scores(root / "s_trials"))


def test_compute_metrics_needs_labels_and_says_so(scored, capfd):
    root, data, _ = scored
    rc, _, err = _metrics(capfd, data / "trials2", root / "s_trials")
    assert rc == 1
    assert (f"{data / 'trials2'}:1: 'enroll test' trials have no target/nontarget labels, and "
            "computing metrics needs them") in err
    assert "Traceback" not in err
    # Alone, a 3-column score file cannot be evaluated either.
    rc, _, err = _metrics(capfd, root / "s_trials")
    assert rc == 1 and "a score file without a trials file must have 4 columns" in err


def test_four_column_score_files_give_the_same_metrics(scored, capfd):
    root, data, trials = scored
    rc, reference, _ = _metrics(capfd, data / "trials", root / "s_trials")
    assert rc == 0 and "EER:" in reference
    lines = (root / "s_trials").read_text().splitlines()
    words = [ln + (" target" if t.target else " nontarget") for ln, t in zip(lines, trials)]
    digits = [ln + (" 1" if t.target else " 0") for ln, t in zip(lines, trials)]
    (root / "words").write_text("\n".join(words) + "\n")
    (root / "digits").write_text("\n".join(digits[::-1]) + "\n")  # any order
    for four in ("words", "digits"):
        assert _metrics(capfd, root / four)[:2] == (0, reference)
        # With a trials list too: labelled or not, the metrics are the same.
        assert _metrics(capfd, data / "trials", root / four)[:2] == (0, reference)
        assert _metrics(capfd, data / "trials2", root / four)[:2] == (0, reference)
    # The slow reader (a non-ASCII id takes it) reads the same as the fast one.
    (root / "utf8").write_text("\n".join(words + ["é x 0.5 0"]) + "\n")
    slow_trials, slow_scores = read_labelled_scores(root / "utf8")
    fast_trials, fast_scores = read_labelled_scores(root / "words")
    assert slow_trials[:-1] == fast_trials and np.array_equal(slow_scores[:-1], fast_scores)


@pytest.mark.parametrize("line, why", [
    ("a b 0.5", ("expected 'enroll test score target|nontarget', got 'a b 0.5': 'enroll test "
                 "score' lines have no labels; give the trials list too")),
    ("a b 0.5 yes", "trial 'a b': label must be target, nontarget, 1 or 0, got 'yes'"),
    ("a b nan 1", "trial 'a b': score 'nan' is not a number"),
    ("ev0-u0 ev0-u1 0.1 1", "trial 'ev0-u0 ev0-u1' is scored twice (first on line 1)"),
])
def test_a_bad_four_column_line_names_file_and_line(tmp_path, capfd, line, why):
    path = tmp_path / "scores"
    path.write_text(f"ev0-u0 ev0-u1 0.3 1\nev0-u0 ev1-u1 0.2 0\n{line}\n")
    rc, _, err = _metrics(capfd, path)
    assert rc == 1 and f"{path}:3: {why}" in err and "Traceback" not in err


def test_labels_of_a_list_and_a_four_column_file_must_agree(scored, capfd):
    root, data, trials = scored
    lines = (root / "s_trials").read_text().splitlines()
    flipped = [ln + (" 0" if i == 2 or not t.target else " 1")
               for i, (ln, t) in enumerate(zip(lines, trials))]
    assert trials[2].target is False
    flipped[0] = lines[0] + " 0"  # the first trial is a target in the list
    (root / "flipped").write_text("\n".join(flipped) + "\n")
    rc, _, err = _metrics(capfd, data / "trials", root / "flipped")
    t = trials[0]
    assert rc == 1 and (f"{root / 'flipped'}:1: trial '{t.enroll} {t.test}' is target in "
                        f"{data / 'trials'}:1 but nontarget here") in err


def test_mixed_trial_forms_and_the_scorers_messages(tmp_path):
    path = tmp_path / "trials"
    path.write_text("a b\nc d target\n")
    with pytest.raises(ScoringError) as e:
        read_trials(path, need_labels=False)
    assert str(e.value) == f"{path}:2: expected 'enroll test' as on line 1, got 'c d target'"
    path.write_text("a b target\nc d\n")
    with pytest.raises(ScoringError) as e:
        read_trials(path, need_labels=False)
    assert str(e.value) == (f"{path}:2: expected 'enroll test target|nontarget' as on line 1, "
                            "got 'c d'")
    path.write_text("é b\nc d\n")  # the line-by-line reader
    assert read_trials(path, need_labels=False)[0] == ("é", "b", None)
    with pytest.raises(ScoringError) as e:
        read_trials(path)
    assert str(e.value).startswith(f"{path}:1: 'enroll test' trials have no target/nontarget")
