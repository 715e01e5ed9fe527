"""One "no vector" rule in the three scorers (embeddings, PLDA, MFCC stats).

One utterance of a tiny eval dir has no voiced frames, so no MFCC stats, no i-vector
and no embedding: every scorer leaves its trials out, lists them in
``<scores>.skipped`` with the reason, scores the rest, and both RESULTS.md count them.
An id the data dir does not have is an error at ``trials:line`` instead.
"""

from pathlib import Path

import numpy as np
import pytest

from deepspeaker.bin import (make_report, score_embeddings, score_mfcc_stats, score_plda,
                             summarize_scores)
from deepspeaker.bin.score_mfcc_stats import utterance_stats
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.ivector.lda import LdaTransform
from deepspeaker.ivector.plda import TwoCovPLDA
from deepspeaker.scoring.embedding import enroll_model
from deepspeaker.scoring.experiment import SystemInfo, write_system_info
from deepspeaker.scoring.trials import (make_enroll_trials, make_trials, read_scores,
                                        write_enroll2utt, write_trials)

UTTS = [f"s{s}-{u}" for s in (1, 2, 3) for u in "abc"]
SILENT = "s2-c"
LISTS = ("trials", "trials_enroll2")


def _eval_dir(root: Path, rng) -> tuple[Path, dict]:
    ev = root / "data" / "eval"
    ev.mkdir(parents=True)
    utt2spk = {u: u.split("-")[0] for u in UTTS}
    (ev / "wav.scp").write_text("".join(f"{u} /nonexistent/{u}.wav\n" for u in UTTS))
    (ev / "utt2spk").write_text("".join(f"{u} {utt2spk[u]}\n" for u in UTTS))
    (ev / "spk2utt").write_text("".join(f"s{s} {' '.join(u for u in UTTS if u.startswith(f's{s}'))}\n"
                                        for s in (1, 2, 3)))
    feats = {u: rng.standard_normal((30, 64)).astype(np.float32) for u in UTTS}
    vad = {u: np.ones(30, dtype=np.float32) for u in UTTS}
    vad[SILENT][:] = 0
    write_ark_scp(ev / "feats.ark", ev / "feats.scp", feats)
    write_ark_scp(ev / "vad.ark", ev / "vad.scp", vad)
    lists = {"trials": make_trials(utt2spk, num_negatives=3)}
    enroll2utt, by_k = make_enroll_trials(utt2spk, (1, 2), num_negatives=2)
    lists["trials_enroll2"] = by_k[2]
    write_enroll2utt(ev / "enroll2utt", enroll2utt)
    for name in LISTS:
        write_trials(ev / name, lists[name])
    return ev, {"lists": lists, "enroll2utt": enroll2utt}


def _ivector_exp(exp: Path, rng, vectors: dict) -> None:
    (exp / "models").mkdir(parents=True)
    (exp / "config.yaml").write_text((Path(__file__).parent / "conf_ivector_tiny.yaml").read_text())
    LdaTransform(np.zeros(10), rng.standard_normal((5, 10))).save(exp / "models/lda.npz")
    TwoCovPLDA.from_covariances(np.zeros(5), 2 * np.eye(5), np.eye(5)).save(exp / "models/plda.npz")
    write_ark_scp(exp / "eval/ivector.ark", exp / "eval/ivector.scp", vectors)


@pytest.fixture()
def scored(tmp_path):
    """The eval dir and the three systems' score files of both lists."""
    rng = np.random.default_rng(0)
    ev, info = _eval_dir(tmp_path, rng)
    exp = tmp_path / "exp"
    have = [u for u in UTTS if u != SILENT]  # extraction failed for the silent one
    emb = {u: rng.standard_normal(8).astype(np.float32) for u in have}
    write_ark_scp(exp / "rescnn_softmax/eval/embedding.ark",
                  exp / "rescnn_softmax/eval/embedding.scp", emb)
    _ivector_exp(exp / "ivector", rng, {u: rng.standard_normal(10) for u in have})
    for name in LISTS:
        opt = ["--enroll2utt", str(ev / "enroll2utt")] if name != "trials" else []
        assert score_mfcc_stats.main(opt + [str(ev), str(ev / name),
                                            str(exp / f"mfcc_stats/scores/cosine_{name}")]) == 0
        assert score_plda.main(opt + [str(exp / "ivector"), str(ev), str(ev / name),
                                      str(exp / f"ivector/scores/plda_{name}")]) == 0
        assert score_embeddings.main(opt + [str(ev), str(ev / name),
                                            str(exp / f"rescnn_softmax/scores/cosine_{name}"),
                                            str(exp / "rescnn_softmax/eval/embedding.scp")]) == 0
    write_system_info(exp / "mfcc_stats", SystemInfo("reference"))
    write_system_info(exp / "ivector", SystemInfo("ivector"))
    write_system_info(exp / "rescnn_softmax", SystemInfo("deepspeaker", "rescnn", "softmax"))
    return ev, exp, info, emb


def _left_out(trials, enroll2utt):
    return [t for t in trials if SILENT == t.test or SILENT in enroll2utt.get(t.enroll, [t.enroll])]


@pytest.mark.parametrize("score_file, what", [("mfcc_stats/scores/cosine", "MFCC stats"),
                                               ("ivector/scores/plda", "i-vector"),
                                               ("rescnn_softmax/scores/cosine", "embedding")])
def test_each_scorer_lists_and_leaves_out_the_same_trials(scored, score_file, what):
    ev, exp, info, _ = scored
    for name in LISTS:
        trials = info["lists"][name]
        out = _left_out(trials, info["enroll2utt"])
        assert 0 < len(out) < len(trials)
        path = exp / f"{score_file}_{name}"
        assert Path(f"{path}.skipped").read_text() == "".join(
            f"{t.enroll} {t.test} no {what} for {SILENT}\n" for t in out)
        assert list(read_scores(path)) == [(t.enroll, t.test) for t in trials if t not in out]


def test_kept_scores_are_the_plain_cosines(scored):
    ev, exp, info, emb = scored
    e = {u: v.astype(np.float64) for u, v in emb.items()}
    stats = utterance_stats(ev)
    for t in info["lists"]["trials_enroll2"][:5]:
        if t in _left_out(info["lists"]["trials_enroll2"], info["enroll2utt"]):
            continue
        members = info["enroll2utt"][t.enroll]
        expect = float(enroll_model(e, members) @ (e[t.test] / np.linalg.norm(e[t.test])))
        got = read_scores(exp / "rescnn_softmax/scores/cosine_trials_enroll2")[(t.enroll, t.test)]
        assert got == pytest.approx(expect, abs=1e-6)
        m = np.mean([stats[u] for u in members], axis=0)
        expect = float(m / np.linalg.norm(m) @ (stats[t.test] / np.linalg.norm(stats[t.test])))
        got = read_scores(exp / "mfcc_stats/scores/cosine_trials_enroll2")[(t.enroll, t.test)]
        assert got == pytest.approx(expect, abs=1e-6)


def test_results_count_the_left_out_trials(scored):
    ev, exp, info, _ = scored
    n_out = {name: len(_left_out(info["lists"][name], info["enroll2utt"])) for name in LISTS}
    for tag, prefix in (("mfcc_stats", "cosine"), ("ivector", "plda"), ("rescnn_softmax", "cosine")):
        assert summarize_scores.main([str(exp / tag), str(ev)]) == 0
        rows = [[c.strip() for c in line.split("|")[1:-1]]
                for line in (exp / tag / "RESULTS.md").read_text().splitlines()
                if line.startswith(f"| {prefix} |")]
        assert [(r[1], r[6]) for r in rows] == [(n, str(n_out[n])) for n in LISTS]
        for r in rows:
            assert sum(map(int, r[5].split("/"))) == len(info["lists"][r[1]]) - n_out[r[1]]
    assert make_report.main([str(exp), str(ev.parent)]) == 0
    text = (exp / "RESULTS.md").read_text()
    expect = "; ".join(f"`{exp}/{f}_{name}` {n_out[name]}" for name in LISTS
                       for f in ("mfcc_stats/scores/cosine", "ivector/scores/plda",
                                 "rescnn_softmax/scores/cosine"))
    assert f"Trials left out (utterances without a vector, listed in `*.skipped`): {expect}." in text


@pytest.mark.parametrize("scorer", ["mfcc", "plda", "embedding"])
def test_an_unknown_utterance_is_an_error_at_its_line(scored, scorer, capfd):
    ev, exp, _, _ = scored
    bad = ev / "trials_bad"
    bad.write_text("s1-a s1-b target\ns1-a nobody-x nontarget\n")
    out = exp / "bad_scores"
    args = {"mfcc": (score_mfcc_stats, [str(ev), str(bad), str(out)]),
            "plda": (score_plda, [str(exp / "ivector"), str(ev), str(bad), str(out)]),
            "embedding": (score_embeddings, [str(ev), str(bad), str(out),
                                             str(exp / "rescnn_softmax/eval/embedding.scp")])}
    module, argv = args[scorer]
    capfd.readouterr()
    assert module.main(argv) == 1
    err = capfd.readouterr().err
    assert f"{bad}:2: test id nobody-x is not an utterance of {ev}" in err
    assert "Traceback" not in err
    assert not out.exists() and not Path(f"{out}.skipped").exists()
