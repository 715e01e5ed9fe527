"""make_report on a tiny fake exp/ tree: every table, the relative changes, the claims, the PNGs.

The tree (tests/report_tree.py) describes each experiment in ``system.yaml``, as the
recipes do through ``describe_system``; the report reads those, not the dir names.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_tree import build_tree

from deepspeaker.bin import describe_system, make_report, summarize_scores
from deepspeaker.bin import trial_lists as trial_lists_bin
from deepspeaker.scoring.experiment import SystemInfo, read_system_info, trial_lists
from deepspeaker.scoring.report import collect, evaluate, rel_reduction, write_report
from deepspeaker.scoring.trials import write_scores

GOLDEN = Path(__file__).parent / "data" / "report_fake_RESULTS.md"


@pytest.fixture()
def tree(tmp_path):
    return build_tree(tmp_path)


def _claims(text):
    return {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in text.split("## The paper's claims")[1].split("\n## ")[0].splitlines()
            if line.startswith("| ") and "claim" not in line}


def test_report_has_every_table_and_claim(tree):
    exp, data, lists = tree
    assert make_report.main(["--title", "fake", str(exp), str(data)]) == 0
    text = (exp / "RESULTS.md").read_text()
    for heading in ("# fake", "## T5", "## T6", "## T8", "## The paper's claims", "## Corpus",
                    "## Trial lists", "## Configs", "gru_softmax/config.yaml"):
        assert heading in text, heading
    assert "## Other trial lists" not in text  # only when the eval dir has such lists
    n_tar = sum(t.target for t in lists["trials"])
    assert f"{n_tar} target + {len(lists['trials']) - n_tar} non-target" in text
    assert "not run" not in text
    assert "## T6: fusion of rescnn_softmax_triplet + gru_softmax_triplet" in text  # system.yaml
    claims = _claims(text)
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


def test_size_study_and_transfer_tables(tmp_path):
    exp, data, _ = build_tree(tmp_path, studies=True)
    write_report(collect(exp, data), "fake")
    text = (exp / "RESULTS.md").read_text()
    t7 = text.split("## T7")[1].split("##")[0]
    assert [line.split("|")[2].strip() for line in t7.splitlines() if line.startswith("| ResCNN")] \
        == ["25%", "50%", "100%"]
    t10 = text.split("## T9/T10")[1].split("##")[0]
    assert "GRU, trained on ../mini/exp/gru_softmax_triplet only" in t10  # system.yaml's source
    assert "GRU, fine-tuned here from that model" in t10
    assert "| ResCNN: more training speakers, lower EER (T7) | **held** |" in text
    assert "| GRU: a model of another corpus fine-tuned here beats" in text
    # the study systems get histograms and a DET plot of their own
    assert (exp / "report/hist_gru_transfer.png").exists()
    assert (exp / "report/det_studies.png").exists() and "report/det_studies.png" in text


def test_same_report_as_the_tag_parsing_one(tmp_path):
    """RESULTS.md of the tree with every kind of row is, but for the date line, the file the
    report wrote when it parsed tags (tests/data, made by the code before system.yaml)."""
    exp, data, _ = build_tree(tmp_path, studies=True, skipped=3)
    assert make_report.main(["--title", "fake", str(exp), str(data)]) == 0
    text = (exp / "RESULTS.md").read_text().replace(str(tmp_path), "ROOT")
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("Made by ")]
    assert "".join(lines) == GOLDEN.read_text()


def test_tags_do_not_matter(tmp_path):
    """Renamed experiment dirs give the same tables: the report reads system.yaml only."""
    exp, data, _ = build_tree(tmp_path, studies=True)
    write_report(collect(exp, data), "fake")
    before = (exp / "RESULTS.md").read_text().split("## T5")[1].split("## DET")[0]
    renamed = {d.name: f"x{i}" for i, d in enumerate(sorted(exp.iterdir()))
               if d.is_dir() and d.name != "report"}
    for old, new in renamed.items():
        (exp / old).rename(exp / new)
    fusion = exp / renamed["fusion"]
    info = read_system_info(fusion)
    assert describe_system.main([str(fusion), "--kind", "fusion", "--members",
                                 " ".join(renamed[m] for m in info.members)]) == 0
    write_report(collect(exp, data), "fake")
    after = (exp / "RESULTS.md").read_text().split("## T5")[1].split("## DET")[0]
    for old, new in renamed.items():  # the T6 heading names the fused tags
        after = after.replace(f" {new} ", f" {old} ").replace(f" {new}\n", f" {old}\n")
    assert after == before


def test_other_trial_lists_reach_the_report(tmp_path):
    exp, data, lists = build_tree(tmp_path, vox1_o=True)
    # Hand-made PLDA scores: targets 0.9, 0.3; non-targets 0.1, 0.2, 0.5, 0.0.  Threshold
    # 0.3: miss 0, false alarm 1/4; 0.5: miss 1/2, fa 1/4: the curves cross at fa 1/4, EER
    # 25%.  minDCF(0.01) is at 0.9: (0.01 * 1/2 + 0.99 * 0) / 0.01 = 0.5.
    vox = lists["trials_vox1_o"]
    write_scores(exp / "ivector/scores/plda_trials_vox1_o", vox, [0.9, 0.1, 0.2, 0.3, 0.5, 0.0])
    assert make_report.main(["--title", "fake", str(exp), str(data)]) == 0
    text = (exp / "RESULTS.md").read_text()
    section = text.split("## Other trial lists")[1].split("\n## ")[0]
    assert text.index("## T8") < text.index("## Other trial lists") < text.index("## The paper")
    assert "### `trials_vox1_o`: 2 target + 4 non-target" in section
    assert "| i-vector + PLDA (baseline) | 25.00 | 0.5000 | n/a | 2 / 4 | 0 |" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "system" not in line]
    assert len(rows) == 11  # every system of the tree scored the list
    assert "| trials_vox1_o | 2 | 4 |" in text.split("## Trial lists")[1]
    # the paper's tables do not change
    t5 = text.split("## T5")[1].split("## T6")[0]
    write_report(collect(*build_tree(tmp_path / "plain")[:2]), "fake")
    assert t5 == (tmp_path / "plain/exp/RESULTS.md").read_text().split("## T5")[1].split("## T6")[0]


def test_dir_without_system_yaml_is_left_out(tree, caplog):
    exp, data, _ = tree
    shutil.copytree(exp / "rescnn_softmax", exp / "old_rescnn_softmax")
    (exp / "old_rescnn_softmax/system.yaml").unlink()
    (exp / "rescnn_triplet/system.yaml").unlink()
    with caplog.at_level("INFO"):
        rep = collect(exp, data)
    assert [r.message for r in caplog.records if "no system.yaml" in r.message] == \
        [f"{exp}: left out of the report (no system.yaml): old_rescnn_softmax rescnn_triplet"]
    assert rep.get("old_rescnn_softmax") is None and rep.get("rescnn_triplet") is None
    write_report(rep, "fake")
    assert "| ResCNN, triplet | not run |" in (exp / "RESULTS.md").read_text()


def test_two_dirs_of_one_system_are_refused(tree, capfd):
    exp, data, _ = tree
    shutil.copytree(exp / "gru_softmax", exp / "gru_softmax_again")
    capfd.readouterr()
    assert make_report.main([str(exp), str(data)]) == 1
    err = capfd.readouterr().err
    assert f"{exp}/gru_softmax and {exp}/gru_softmax_again both describe 'GRU, softmax'" in err
    assert "Traceback" not in err


def test_summarize_scores_uses_every_list_and_counts_skipped(tmp_path):
    exp, data, lists = build_tree(tmp_path, vox1_o=True, skipped=3)
    assert summarize_scores.main([str(exp / "gru_triplet"), str(data / "eval")]) == 0
    rows = [line.split("|")[1:-1] for line in (exp / "gru_triplet/RESULTS.md").read_text()
            .splitlines() if line.startswith("| cosine")]
    assert [r[1].strip() for r in rows] == trial_lists(data / "eval")
    main = rows[0]
    n_tar = sum(t.target for t in lists["trials"][3:])
    assert main[5].strip() == f"{n_tar} / {len(lists['trials']) - 3 - n_tar}"
    assert main[6].strip() == "3"


def test_trial_lists_order_and_cli(tmp_path):
    ev = tmp_path / "eval"
    ev.mkdir()
    for name in ("trials_vox1_o", "trials_enroll10", "trials", "trials_cnceleb", "trials_enroll2",
                 "trials_vox1_e", "trials.skipped", "trials_x.tmp", ".trials.done", "enroll2utt",
                 "trialsfoo"):
        (ev / name).write_text("a b target\n")
    (ev / "trials_dir").mkdir()
    expect = ["trials", "trials_enroll2", "trials_enroll10", "trials_cnceleb", "trials_vox1_e",
              "trials_vox1_o"]
    assert trial_lists(ev) == expect
    r = subprocess.run([sys.executable, "-m", "deepspeaker.bin.trial_lists", str(ev)],
                       capture_output=True, text=True, check=True)
    assert r.stdout == "".join(f"{n}\n" for n in expect)
    assert trial_lists_bin.main([str(tmp_path / "none")]) == 0  # no eval dir: no lists


def test_describe_system_cli(tmp_path, capfd):
    d = tmp_path / "exp/gru_softmax_triplet_spk25"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("model: {name: gru}\n")
    assert describe_system.main([str(d), "--kind", "deepspeaker", "--strategy", "softmax_triplet",
                                 "--train-set", "data/train_spk25", "--fraction", "0.25",
                                 "--init", "exp/gru_softmax_spk25/best.pt"]) == 0
    assert read_system_info(d) == SystemInfo("deepspeaker", "gru", "softmax_triplet",
                                             "data/train_spk25", 0.25,
                                             init="exp/gru_softmax_spk25/best.pt")
    capfd.readouterr()
    assert describe_system.main([str(tmp_path / "exp/fusion"), "--kind", "fusion",
                                 "--members", "a"]) == 1
    err = capfd.readouterr().err
    assert "exp/fusion/system.yaml: a fusion needs >= 2 members, got ['a']" in err
    assert describe_system.main([str(d), "--kind", "deepspeaker", "--strategy", "softmax",
                                 "--fraction", "1.5"]) == 1
    assert "fraction=1.5: expected a number in (0, 1]" in capfd.readouterr().err


def test_unknown_model_is_named(tree, capfd):
    exp, data, _ = tree
    (exp / "gru_softmax/system.yaml").write_text("kind: deepspeaker\nmodel: lstm\nstrategy: softmax\n")
    capfd.readouterr()
    assert make_report.main([str(exp), str(data)]) == 1
    assert f"{exp}/gru_softmax/system.yaml: model 'lstm' is not in the model registry (rescnn, gru)" \
        in capfd.readouterr().err


def test_a_list_without_targets_is_named(tree, capfd):
    exp, data, lists = tree
    # Every score file still scores these trials; the first system's is the one named.
    (data / "eval/trials").write_text("".join(f"{t.enroll} {t.test} nontarget\n"
                                              for t in lists["trials"] if not t.target))
    capfd.readouterr()
    assert make_report.main([str(exp), str(data)]) == 1
    err = capfd.readouterr().err
    assert (f"{exp}/mfcc_stats/scores/cosine_trials over {data}/eval/trials: need both target "
            "and non-target trials (got 0 target, 864 non-target)") in err
    assert "Traceback" not in err


def _t5_labels(text):
    t5 = text.split("## T5")[1].split("\n## ")[0]
    return [line.split("|")[1].strip() for line in t5.splitlines()
            if line.startswith("| ") and not line.startswith("| system")]


def test_plda_rows_beside_cosine_and_the_noaug_twin_after_its_system(tmp_path):
    exp, data, _ = build_tree(tmp_path, plda=True, noaug=True)
    rep = collect(exp, data)
    write_report(rep, "fake")
    text = (exp / "RESULTS.md").read_text()
    st = "softmax (pre-train) + triplet"
    assert _t5_labels(text) == [
        "i-vector + PLDA (baseline)",
        "ResCNN, softmax", "ResCNN, softmax, PLDA", "ResCNN, triplet", "ResCNN, triplet, PLDA",
        f"ResCNN, {st}", f"ResCNN, {st}, PLDA",   # no twin: shown as before
        "GRU, softmax", "GRU, softmax, PLDA", "GRU, triplet", "GRU, triplet, PLDA",
        f"GRU, {st}", f"GRU, {st}, PLDA",
        f"GRU, {st}, no augmentation", f"GRU, {st}, no augmentation, PLDA"]
    # Each PLDA row is its own score file's numbers.
    plda = evaluate(exp / "gru_softmax_triplet/scores/plda_trials", data / "eval/trials")[0]
    row = next(line for line in text.splitlines() if line.startswith(f"| GRU, {st}, PLDA |"))
    assert row.split("|")[2].strip() == f"{100 * plda.eer:.2f}"
    noaug = rep.ds("gru", "softmax_triplet", backend="plda", augmented=False).metrics
    assert noaug.eer > plda.eer
    # The claim compares the best Deep Speaker row of either back end with the i-vector.
    beat = next(v for c, v in _claims(text).items() if c.startswith("Deep Speaker beats"))
    assert beat == "**held**"
    assert "6 of 6 systems (each by its better back end) beat it" in text
    assert f"best DS (GRU, {st}, PLDA) {100 * plda.eer:.2f}%" in text
    # Fusion stays cosine; T8 gets the PLDA row of the fused strategy's models.
    t6 = text.split("## T6")[1].split("\n## ")[0]
    assert "PLDA" not in t6 and f"| ResCNN, {st} |" in t6
    t8 = text.split("## T8")[1].split("\n## ")[0]
    assert f"| GRU, {st}, PLDA |" in t8 and "no augmentation" not in t8
    assert (exp / "report/hist_gru_softmax_triplet_plda.png").exists()
    assert "\", no augmentation\": the same system trained without data augmentation" in text


def test_no_plda_scores_no_plda_rows_and_the_twin_by_cosine(tmp_path):
    exp, data, _ = build_tree(tmp_path, noaug=True)
    write_report(collect(exp, data), "fake")
    text = (exp / "RESULTS.md").read_text()
    labels = _t5_labels(text)
    assert not any("PLDA" in label for label in labels[1:])
    st = "softmax (pre-train) + triplet"
    assert labels[-2:] == [f"GRU, {st}", f"GRU, {st}, no augmentation"]
    assert "each by its better back end" not in text


def test_a_plda_row_not_scored_is_shown_as_not_run(tmp_path):
    exp, data, _ = build_tree(tmp_path, plda=True)
    for p in (exp / "rescnn_triplet/scores").glob("plda_*"):
        p.unlink()
    write_report(collect(exp, data), "fake")
    text = (exp / "RESULTS.md").read_text()
    assert "| ResCNN, triplet, PLDA | not run |" in text
    assert "| ResCNN, triplet | " in text and "| ResCNN, triplet | not run" not in text


def test_summarize_scores_has_the_plda_rows_of_a_system(tmp_path):
    exp, data, _ = build_tree(tmp_path, plda=True)
    assert summarize_scores.main([str(exp / "gru_softmax"), str(data / "eval")]) == 0
    rows = [line.split("|")[1:3] for line in (exp / "gru_softmax/RESULTS.md").read_text()
            .splitlines() if line.startswith(("| cosine", "| plda"))]
    lists = trial_lists(data / "eval")
    assert sorted((a.strip(), b.strip()) for a, b in rows) == \
        sorted((p, n) for p in ("cosine", "plda") for n in lists)


def test_two_noaug_twins_of_one_system_are_refused(tmp_path, capfd):
    exp, data, _ = build_tree(tmp_path, noaug=True)
    shutil.copytree(exp / "gru_softmax_triplet_noaug", exp / "gru_softmax_triplet_noaug2")
    capfd.readouterr()
    assert make_report.main([str(exp), str(data)]) == 1
    assert "both describe 'GRU, softmax (pre-train) + triplet, no augmentation'" in \
        capfd.readouterr().err


def test_describe_system_no_augmentation_and_show(tmp_path, capfd):
    d = tmp_path / "exp/gru_softmax_noaug"
    assert describe_system.main([str(d), "--kind", "deepspeaker", "--model", "gru",
                                 "--strategy", "softmax", "--train-set", "data/train",
                                 "--no-augmentation"]) == 0
    assert read_system_info(d).augmented is False
    assert "augmented: false" in (d / "system.yaml").read_text()
    capfd.readouterr()
    assert describe_system.main([str(d), "--show", "train_set"]) == 0
    assert capfd.readouterr().out == "data/train\n"
    assert describe_system.main([str(d), "--show", "source"]) == 0
    assert capfd.readouterr().out == ""  # unset: nothing, so the shell sees an empty string
    assert describe_system.main([str(tmp_path / "none"), "--show", "train_set"]) == 1
    assert f"{tmp_path}/none/system.yaml: missing" in capfd.readouterr().err
