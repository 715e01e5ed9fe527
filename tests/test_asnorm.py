"""AS-norm (deepspeaker.scoring.asnorm) through the scorers a user runs.

The synthetic embeddings carry a per-speaker offset: every vector of speaker s leans
``b_s`` (uniform in [0, 6]) along one shared direction, so two "leaning" speakers
score high against each other whoever they are.  A cohort of training speakers with
the same kind of offsets measures how much each side leans; AS-norm takes it out and
the EER must fall by a wide margin (18.3% -> 12.9% on this data).
"""

from __future__ import annotations

import numpy as np
import pytest

from deepspeaker.bin import compute_metrics, score_embeddings, score_plda, train_plda
from deepspeaker.data.ark import read_vectors, write_ark_scp
from deepspeaker.ivector.lda import LdaTransform, length_normalize
from deepspeaker.ivector.plda import TwoCovPLDA
from deepspeaker.scoring.asnorm import (AsNormError, Cohort, asnorm_scores, build_cohort,
                                        cosine_cohort_scores, plda_score_matrix, top_n_stats)
from deepspeaker.scoring.embedding import enroll_model, unit
from deepspeaker.scoring.trials import (make_enroll_trials, make_trials, read_scores,
                                        write_enroll2utt, write_trials)

DIM = 16


def _speakers(rng, prefix: str, n_spk: int, n_utt: int) -> dict[str, np.ndarray]:
    lean = np.zeros(DIM)
    lean[0] = 1.0
    out = {}
    for s in range(n_spk):
        spk = rng.standard_normal(DIM)
        spk[0] = 0.0
        offset = 2.0 * rng.uniform(0, 3)
        for u in range(n_utt):
            out[f"{prefix}{s:02d}-u{u}"] = spk + offset * lean + 0.9 * rng.standard_normal(DIM)
    return out


def _data_dir(path, utts) -> None:
    path.mkdir(parents=True)
    (path / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    (path / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in sorted(utts)))


def _write_scp(path, vecs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ark_scp(path.with_suffix(".ark"), path,
                  {k: np.asarray(v, dtype=np.float32) for k, v in sorted(vecs.items())})


@pytest.fixture()
def tree(tmp_path):
    """data/{train,eval}, exp/sys/{train,eval}/embedding.scp, eval trials and enrollment lists."""
    rng = np.random.default_rng(0)
    exp, data = tmp_path / "exp/sys", tmp_path / "data"
    for name, prefix, n_spk, n_utt in (("train", "tr", 60, 4), ("eval", "ev", 30, 6)):
        vecs = _speakers(rng, prefix, n_spk, n_utt)
        _data_dir(data / name, vecs)
        _write_scp(exp / name / "embedding.scp", vecs)
    utt2spk = {u.split()[0]: u.split()[1] for u in (data / "eval/utt2spk").read_text().splitlines()}
    write_trials(data / "eval/trials", make_trials(utt2spk, num_negatives=29))
    enroll2utt, by_k = make_enroll_trials(utt2spk, (3,), num_negatives=9)
    write_enroll2utt(data / "eval/enroll2utt", enroll2utt)
    write_trials(data / "eval/trials_enroll3", by_k[3])
    return tmp_path, exp, data


def _cosine(exp, data, scores, *extra, trials="trials") -> int:
    return score_embeddings.main([*map(str, extra), str(data / "eval"), str(data / "eval" / trials),
                                  str(scores), str(exp / "eval/embedding.scp")])


def _eer(trials, scores, capsys) -> float:
    assert compute_metrics.main([str(trials), str(scores)]) == 0
    return float(capsys.readouterr().out.split("EER: ")[1].split("%")[0])


def test_asnorm_lowers_the_eer_of_speakers_with_an_offset(tree, capsys):
    root, exp, data = tree
    cohort = ["--asnorm-cohort", exp / "train/embedding.scp", "--asnorm-data", data / "train"]
    assert _cosine(exp, data, root / "raw") == 0
    assert _cosine(exp, data, root / "asnorm", *cohort, "--asnorm-top-n", 30) == 0
    raw, normed = _eer(data / "eval/trials", root / "raw", capsys), \
        _eer(data / "eval/trials", root / "asnorm", capsys)
    assert raw > 15.0 and normed < raw - 4.0, (raw, normed)
    # The same trials, in the same order, as the raw scores.
    assert list(read_scores(root / "asnorm")) == list(read_scores(root / "raw"))


def test_the_bin_writes_what_the_one_trial_api_gives(tree):
    """score_embeddings' vectorised AS-norm == asnorm_scores for one trial by hand."""
    root, exp, data = tree
    assert _cosine(exp, data, root / "s", "--asnorm-cohort", exp / "train/embedding.scp",
                   "--asnorm-data", data / "train", "--asnorm-top-n", 20,
                   "--enroll2utt", data / "eval/enroll2utt", trials="trials_enroll3") == 0
    written = read_scores(root / "s")
    (enroll, test), value = next(iter(written.items()))
    emb, train = read_vectors(exp / "eval/embedding.scp"), read_vectors(exp / "train/embedding.scp")
    models = {ln.split()[0]: ln.split()[1:]
              for ln in (data / "eval/enroll2utt").read_text().splitlines()}
    u2s = {u: u.split("-")[0] for u in train}
    cohort = build_cohort(train, u2s)
    assert len(cohort) == 60
    e, t = enroll_model(emb, models[enroll]), unit(emb[test])
    by_hand = asnorm_scores(float(e @ t), cosine_cohort_scores(e, cohort)[0],
                            cosine_cohort_scores(t, cohort)[0], top_n=20)
    assert value == pytest.approx(float(by_hand), abs=1e-6)  # the file keeps 6 decimals


def test_top_n_statistics_are_exact_against_a_naive_loop():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((7, 50)).round(1)  # rounding makes ties
    for n in (2, 5, 50, 80):
        mean, std = top_n_stats(scores, n)
        for row, m, s in zip(scores, mean, std):
            top = sorted(row.tolist(), reverse=True)[:min(n, len(row))]
            mu = sum(top) / len(top)
            assert m == pytest.approx(mu, abs=1e-12)
            assert s == pytest.approx((sum((x - mu) ** 2 for x in top) / len(top)) ** 0.5, abs=1e-12)
    with pytest.raises(AsNormError, match="top 3 cohort scores of test ev1 are all equal"):
        top_n_stats(np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 5.0, 5.0, 5.0]]), 3, ["test ev0", "test ev1"])
    with pytest.raises(AsNormError, match="top-N must be >= 2"):
        top_n_stats(scores, 1)


def test_plda_score_matrix_is_the_models_own_llr():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 6))
    plda = TwoCovPLDA.from_covariances(rng.standard_normal(6), a @ a.T + np.eye(6), np.eye(6) * 0.5)
    enroll = plda.transform_ivectors(rng.standard_normal((5, 6)), 1)
    test = plda.transform_ivectors(rng.standard_normal((4, 6)), 1)
    counts = np.array([1, 3, 1, 5, 3])
    matrix = plda_score_matrix(plda, enroll, test, counts)
    for i, j in np.ndindex(5, 4):
        ref = plda.log_likelihood_ratio(enroll[i:i + 1], test[j:j + 1], counts[i])[0]
        assert matrix[i, j] == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_score_plda_asnorm_on_an_embedding_back_end(tree, tmp_path):
    """PLDA AS-norm (an utterance cohort in the back end's space) and cosine in LDA space."""
    root, exp, data = tree
    conf = tmp_path / "backend.yaml"
    conf.write_text("lda_dim: 8\nplda: {num_em_iters: 3}\n")
    assert train_plda.main(["--vectors", str(exp / "train/embedding.scp"), "--config", str(conf),
                            str(exp), str(data / "train")]) == 0
    common = ["--vectors", str(exp / "eval/embedding.scp"), str(exp), str(data / "eval"),
              str(data / "eval/trials")]
    cohort = ["--asnorm-cohort", str(exp / "train/embedding.scp"), "--asnorm-data",
              str(data / "train"), "--asnorm-top-n", "50"]
    assert score_plda.main(common[:-1] + [common[-1], str(root / "plda")]) == 0
    assert score_plda.main(cohort + common + [str(root / "plda_asnorm")]) == 0
    assert score_plda.main(["--method", "cosine"] + cohort + common + [str(root / "cos_asnorm")]) == 0
    raw, normed = read_scores(root / "plda"), read_scores(root / "plda_asnorm")
    assert list(raw) == list(normed)
    # One trial by hand: every training utterance is a cohort member, scored as one vector.
    (enroll, test), value = next(iter(normed.items()))
    lda = LdaTransform.load(exp / "backend/lda.npz")
    plda = TwoCovPLDA.load(exp / "backend/plda.npz")
    train = read_vectors(exp / "train/embedding.scp")
    cohort_t = plda.transform_ivectors(length_normalize(lda.apply(np.stack(
        [train[k] for k in sorted(train)]))), 1)
    ev = read_vectors(exp / "eval/embedding.scp")
    e_t, t_t = (plda.transform_ivectors(length_normalize(lda.apply(ev[u][None])), 1)
                for u in (enroll, test))
    by_hand = asnorm_scores(raw[(enroll, test)], plda_score_matrix(plda, e_t, cohort_t)[0],
                            plda_score_matrix(plda, cohort_t, t_t)[:, 0], top_n=50)
    assert value == pytest.approx(float(by_hand), abs=2e-6)
    # Cosine in the back end's space: speaker means of the projected vectors.
    projected = dict(zip(sorted(train), length_normalize(lda.apply(np.stack(
        [train[k] for k in sorted(train)])))))
    speakers = build_cohort(projected, {u: u.split("-")[0] for u in train})
    e, t = (length_normalize(lda.apply(ev[u][None]))[0] for u in (enroll, test))
    cos = float(unit(e) @ unit(t))
    by_hand = asnorm_scores(cos, cosine_cohort_scores(e, speakers)[0],
                            cosine_cohort_scores(t, speakers)[0], top_n=50)
    assert read_scores(root / "cos_asnorm")[(enroll, test)] == pytest.approx(float(by_hand),
                                                                             abs=2e-6)


def test_asnorm_input_errors_are_one_message_each(tree, capfd):
    root, exp, data = tree
    train = exp / "train/embedding.scp"
    # Options that do not go together: argparse's usage error, exit 2.
    with pytest.raises(SystemExit) as e:
        _cosine(exp, data, root / "s", "--asnorm-cohort", train)
    assert e.value.code == 2 and "--asnorm-cohort needs --asnorm-data" in capfd.readouterr().err
    with pytest.raises(SystemExit):
        _cosine(exp, data, root / "s", "--asnorm-cohort", train, "--asnorm-data", data / "train",
                "--asnorm-top-n", 1)
    assert "--asnorm-top-n must be >= 2, got 1" in capfd.readouterr().err
    # A cohort of another system (other dimension), and one of another data dir.
    rng = np.random.default_rng(3)
    _write_scp(root / "other/embedding.scp", {u: rng.standard_normal(8) for u in read_vectors(train)})
    assert _cosine(exp, data, root / "s", "--asnorm-cohort", root / "other/embedding.scp",
                   "--asnorm-data", data / "train") == 1
    assert "cohort vectors are 8-dim but the scored vectors are 16-dim" in capfd.readouterr().err
    assert _cosine(exp, data, root / "s", "--asnorm-cohort", train, "--asnorm-data",
                   data / "eval") == 1
    err = capfd.readouterr().err
    assert "none of its 240 vectors is an utterance of the cohort's utt2spk (e.g. tr00-u0)" in err
    assert "Traceback" not in err and not (root / "s").exists()


def test_a_cohort_saved_beside_a_model_loads_the_same(tree, tmp_path):
    _, exp, _ = tree
    train = read_vectors(exp / "train/embedding.scp")
    cohort = build_cohort(train, {u: u.split("-")[0] for u in train}, level="utterance")
    cohort.save(tmp_path / "cohort.npz")
    again = Cohort.load(tmp_path / "cohort.npz")
    assert again.members == cohort.members and np.array_equal(again.vectors, cohort.vectors)
    assert len(again) == 240 and again.members[0] == "tr00-u0"
    (tmp_path / "other.npz").write_bytes(b"not a cohort")
    with pytest.raises(AsNormError, match=f"{tmp_path / 'other.npz'}: not an AS-norm cohort file"):
        Cohort.load(tmp_path / "other.npz")
