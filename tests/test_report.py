"""make_report on a tiny fake exp/ tree: every table, the relative changes, the claims, the PNGs."""

import numpy as np
import pytest

from deepspeaker.bin import make_report
from deepspeaker.scoring.report import collect, rel_reduction, write_report
from deepspeaker.scoring.trials import make_enroll_trials, make_trials, write_scores, write_trials

SPEAKERS, UTTS = 12, 8
# Separation (target score mean, non-targets at 0, noise 1) per system: bigger is better.
SEPARATION = {
    "ivector/scores/plda": 1.0, "mfcc_stats/scores/cosine": 0.3,
    "rescnn_softmax/scores/cosine": 1.5, "rescnn_triplet/scores/cosine": 2.0,
    "rescnn_softmax_triplet/scores/cosine": 2.5,
    "gru_softmax/scores/cosine": 2.2, "gru_triplet/scores/cosine": 1.8,   # GRU breaks the order
    "gru_softmax_triplet/scores/cosine": 2.4,
    "fusion/scores/embedding": 2.6, "fusion/scores/score": 3.0,
}


@pytest.fixture()
def tree(tmp_path):
    data = tmp_path / "data"
    ev = data / "eval"
    ev.mkdir(parents=True)
    utt2spk = {f"s{s:02d}-u{u}": f"s{s:02d}" for s in range(SPEAKERS) for u in range(UTTS)}
    (ev / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    (ev / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in sorted(utt2spk)))
    lists = {"trials": make_trials(utt2spk, num_negatives=9)}
    _, by_k = make_enroll_trials(utt2spk, num_negatives=9)
    lists.update({f"trials_enroll{k}": t for k, t in by_k.items()})
    for name, trials in lists.items():
        write_trials(ev / name, trials)
    exp = tmp_path / "exp"
    rng = np.random.default_rng(0)
    for prefix, sep in SEPARATION.items():
        for name, trials in lists.items():
            k = int(name[-1]) if name != "trials" else 1
            # more enrollment utterances: better separation, as T8 expects
            s = [rng.standard_normal() + (sep * (1 + 0.3 * (k - 1)) if t.target else 0.0)
                 for t in trials]
            path = exp / f"{prefix}_{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_scores(path, trials, s)
    (exp / "fusion/systems").write_text("rescnn_softmax_triplet gru_softmax_triplet\n")
    (exp / "gru_softmax").mkdir(exist_ok=True)
    (exp / "gru_softmax/config.yaml").write_text("model: {name: gru}\n")
    return exp, data, lists


def test_report_has_every_table_and_claim(tree):
    exp, data, lists = tree
    assert make_report.main(["--title", "fake", str(exp), str(data)]) == 0
    text = (exp / "RESULTS.md").read_text()
    for heading in ("# fake", "## T5", "## T6", "## T8", "## The paper's claims", "## Corpus",
                    "## Trial lists", "## Configs", "gru_softmax/config.yaml"):
        assert heading in text, heading
    n_tar = sum(t.target for t in lists["trials"])
    assert f"{n_tar} target + {len(lists['trials']) - n_tar} non-target" in text
    assert "not run" not in text
    claims = {line.split("|")[1].strip(): line.split("|")[2].strip()
              for line in text.split("## The paper's claims")[1].splitlines()
              if line.startswith("| ") and "claim" not in line}
    beat = next(v for c, v in claims.items() if c.startswith("Deep Speaker beats"))
    assert beat == "**held**"
    assert claims["ResCNN: softmax + triplet beats triplet only, which beats softmax only "
                  "(EER and ACC; T5)"] == "**held**"
    assert claims["GRU: softmax + triplet beats triplet only, which beats softmax only "
                  "(EER and ACC; T5)"] == "**not held**"
    assert claims["Score fusion beats the best single system (EER and ACC; T6)"] == "**held**"
    assert sum(c.endswith("(T8)") for c in claims) == 4
    assert (exp / "report/det.png").read_bytes()[:4] == b"\x89PNG"
    for key in ("ivector", "rescnn_softmax", "score_fusion"):
        assert (exp / f"report/hist_{key}.png").exists()
        assert f"report/hist_{key}.png" in text


def test_relative_reductions_are_the_papers(tree):
    exp, data, _ = tree
    # Paper T6: ResCNN 2.23% -> score fusion 2.07% is a 7.17% reduction.
    assert rel_reduction(0.0223, 0.0207) == pytest.approx(0.0717, abs=5e-5)
    rep = collect(exp, data)
    base, sys_ = rep.get("ivector").metrics, rep.get("rescnn_softmax").metrics
    write_report(rep, "fake")
    row = next(line for line in (exp / "RESULTS.md").read_text().splitlines()
               if line.startswith("| ResCNN, softmax |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == f"{100 * sys_.eer:.2f}"
    assert cells[4] == f"{100 * (base.eer - sys_.eer) / base.eer:+.1f}%"
    assert cells[5] == f"{100 * (sys_.acc - base.acc) / (1 - base.acc):+.1f}%"


def test_missing_systems_are_shown_not_guessed(tree):
    exp, data, _ = tree
    for p in (exp / "gru_triplet/scores").iterdir():
        p.unlink()
    for p in (exp / "fusion/scores").glob("score_*"):
        p.unlink()
    rep = collect(exp, data)
    write_report(rep, "fake")
    text = (exp / "RESULTS.md").read_text()
    assert "| GRU, triplet | not run |" in text
    assert "| score fusion | not run |" in text
    assert "| GRU: softmax + triplet beats triplet only, which beats softmax only (EER and ACC; T5) " \
           "| not checked |" in text


def test_size_study_and_transfer_tables(tree):
    exp, data, lists = tree
    rng = np.random.default_rng(1)
    extra = {"rescnn_softmax_triplet_spk25": 1.0, "rescnn_softmax_triplet_spk50": 1.8,
             "gru_source_only": 0.5, "gru_transfer": 3.0}
    for tag, sep in extra.items():
        (exp / tag / "scores").mkdir(parents=True)
        trials = lists["trials"]
        write_scores(exp / tag / "scores/cosine_trials", trials,
                     [rng.standard_normal() + (sep if t.target else 0) for t in trials])
    (exp / "gru_source_only/source").write_text("../mini/exp/gru_softmax_triplet\n")
    write_report(collect(exp, data), "fake")
    text = (exp / "RESULTS.md").read_text()
    t7 = text.split("## T7")[1].split("##")[0]
    assert [line.split("|")[2].strip() for line in t7.splitlines() if line.startswith("| ResCNN")] \
        == ["25%", "50%", "100%"]
    t10 = text.split("## T9/T10")[1].split("##")[0]
    assert "GRU, trained on ../mini/exp/gru_softmax_triplet only" in t10
    assert "GRU, fine-tuned here from that model" in t10
    assert "| ResCNN: more training speakers, lower EER (T7) | **held** |" in text
    assert "| GRU: a model of another corpus fine-tuned here beats" in text
    # the study systems get histograms and a DET plot of their own
    assert (exp / "report/hist_gru_transfer.png").exists()
    assert (exp / "report/det_studies.png").exists() and "report/det_studies.png" in text
