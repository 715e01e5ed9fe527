"""Embedding training (deepspeaker.nnet.trainer, bin/train_embedding): tiny CPU runs.

The features are synthetic: each speaker owns a random 64 x 6 mixing matrix and every
frame is that matrix times Gaussian noise, so speakers differ in covariance, which
survives the per-utterance mean/variance normalisation that a speaker-dependent mean
would not.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
import yaml
from builders import REPO, base_config, read_log, write_config
from torchrun_launch import run_torchrun

from deepspeaker.bin import train_embedding
from deepspeaker.marker import StageRefused
from deepspeaker.nnet.data import BatchPlan, FeatureSet
from deepspeaker.nnet.distributed import init_distributed
from deepspeaker.nnet.trainer import learning_rate, load_checkpoint, train, train_config_from_dict
from deepspeaker.utils import ConfigError

RESUME_TOL = 1e-6   # max abs parameter difference, straight run vs. stopped and resumed
TORCHRUN_TIMEOUT_S = 120


def test_softmax_stage_learns_and_writes_outputs(train_dev, tmp_path):
    train_dir, dev_dir = train_dev
    conf = write_config(tmp_path / "c.yaml", base_config(epochs=4))
    exp = tmp_path / "exp"
    assert train_embedding.main(["--config", str(conf), str(train_dir), str(dev_dir), str(exp)]) == 0
    for name in ("best.pt", "last.pt", "config.yaml", "train_log.tsv", "log/train.rank0.log"):
        assert (exp / name).is_file(), name
    rows = read_log(exp)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert all(0.0 <= float(r["dev_eer"]) <= 1.0 for r in rows)
    ckpt = load_checkpoint(exp / "last.pt")
    assert ckpt["epoch"] == 4 and ckpt["global_step"] == 4 * 3
    assert ckpt["model_config"] == {"name": "rescnn", "options": {
        "num_mel_bins": 64, "embedding_dim": 512, "width": 0.125, "clip": 20.0}}
    assert yaml.safe_load(open(exp / "config.yaml"))["chunk_frames"] == 32
    best = load_checkpoint(exp / "best.pt")
    assert best["best_eer"] == min(float(r["dev_eer"]) for r in rows) or \
        abs(best["best_eer"] - min(float(r["dev_eer"]) for r in rows)) < 1e-5
    # Rerunning a finished experiment does no more steps.
    assert train_embedding.main(["--config", str(conf), str(train_dir), str(dev_dir), str(exp)]) == 0
    assert load_checkpoint(exp / "last.pt")["global_step"] == 12


def test_resume_matches_straight_run(train_dev, tmp_path):
    train_dir, dev_dir = train_dev
    # save_every_steps 100: the interrupted run relies on the checkpoint written at the stop.
    conf = write_config(tmp_path / "c.yaml", base_config(save_every_steps=100))
    total = 5  # steps_per_epoch is 3: the stop (step 2) is mid-epoch, the end crosses an epoch

    def run(exp, max_steps):
        argv = ["--config", str(conf), "--max-steps", str(max_steps), str(train_dir), str(dev_dir),
                str(exp)]
        assert train_embedding.main(argv) == 0

    run(tmp_path / "straight", total)
    run(tmp_path / "resumed", 2)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["global_step"] == 2
    run(tmp_path / "resumed", total)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["global_step"] == b["global_step"] == total
    assert (a["epoch"], a["step_in_epoch"]) == (b["epoch"], b["step_in_epoch"]) == (1, 2)
    for part_a, part_b in ((a["model"], b["model"]), (a["objective"]["head"], b["objective"]["head"])):
        for key, value in part_a.items():
            assert torch.allclose(value.float(), part_b[key].float(), atol=RESUME_TOL, rtol=0), key
    momenta_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momenta_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.allclose(x, y, atol=RESUME_TOL, rtol=0) for x, y in zip(momenta_a, momenta_b))
    assert a["history"] == b["history"]


def test_init_of_another_architecture_is_refused(train_dev, tmp_path):
    train_dir, dev_dir = train_dev
    src = tmp_path / "softmax"
    conf = write_config(tmp_path / "s.yaml", base_config(epochs=1))
    assert train_embedding.main(["--config", str(conf), "--max-steps", "1", str(train_dir),
                                 "-", str(src)]) == 0
    info = init_distributed("cpu")
    for model in ({"name": "gru", "options": {"width": 0.125}},
                  {"name": "rescnn", "options": {"width": 0.25}}):
        cfg = train_config_from_dict(base_config("triplet", model=model, init=str(src / "last.pt")))
        with pytest.raises(ConfigError) as err:
            train(cfg, train_dir, dev_dir, tmp_path / f"t_{model['name']}", info)
        msg = str(err.value)
        assert "rescnn(" in msg and f"{model['name']}(" in msg and "width=0.125" in msg
        assert str(src / "last.pt") in msg
    # Through the CLI: a user error, exit 1.
    tconf = write_config(tmp_path / "g.yaml", base_config(
        "triplet", model={"name": "gru", "options": {"width": 0.125}}))
    assert train_embedding.main(["--config", str(tconf), "--init", str(src / "last.pt"),
                                 str(train_dir), str(dev_dir), str(tmp_path / "t_cli")]) == 1


def test_triplet_stage_from_softmax_checkpoint(train_dev, tmp_path):
    train_dir, dev_dir = train_dev
    soft = tmp_path / "softmax"
    sconf = write_config(tmp_path / "s.yaml", base_config(epochs=1))
    assert train_embedding.main(["--config", str(sconf), str(train_dir), str(dev_dir), str(soft)]) == 0
    tconf = write_config(tmp_path / "t.yaml", base_config("triplet", epochs=2))
    trip = tmp_path / "triplet"
    assert train_embedding.main(["--config", str(tconf), "--init", str(soft / "best.pt"),
                                 str(train_dir), str(dev_dir), str(trip)]) == 0
    rows = read_log(trip)
    assert len(rows) == 2
    assert all(0.0 <= float(r["prob_hard"]) <= 1.0 for r in rows)
    assert "prob_hard" in (trip / "log" / "train.rank0.log").read_text()
    ckpt = load_checkpoint(trip / "last.pt")
    assert ckpt["objective"]["stage"] == "triplet" and "head" not in ckpt["objective"]
    assert ckpt["objective"]["generator"].dtype == torch.uint8
    assert ckpt["train_config"]["init"] == str(soft / "best.pt")
    # The triplet run started from the softmax weights, not from scratch.
    start = load_checkpoint(soft / "best.pt")["model"]
    assert any(not torch.equal(start[k], v) for k, v in ckpt["model"].items())


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ConfigError, match="unknown key.*learning_rate"):
        train_config_from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="optimizer.*unknown key.*lr"):
        train_config_from_dict({"optimizer": {"lr": 0.1}})
    with pytest.raises(ConfigError, match="stage"):
        train_config_from_dict({"stage": "arcface"})
    cfg = train_config_from_dict(base_config())
    assert cfg.optimizer.lr_start == 0.05 and cfg.model.options == {"width": 0.125}


def test_learning_rate_is_linear_from_start_to_end():
    opt = train_config_from_dict({}).optimizer
    assert (opt.lr_start, opt.lr_end, opt.momentum) == (0.05, 0.005, 0.99)  # paper §4.3
    assert learning_rate(opt, 0, 11) == pytest.approx(0.05)
    assert learning_rate(opt, 5, 11) == pytest.approx(0.0275)
    assert learning_rate(opt, 10, 11) == pytest.approx(0.005)


def test_batch_plan_is_reproducible_and_split_over_ranks(train_dev):
    train_dir, _ = train_dev
    feats = FeatureSet.load(train_dir, min_frames=10)
    plan = BatchPlan(feats, "triplet", batch_size=8, chunk_frames=32, seed=1)
    assert plan.steps_per_epoch == 3  # 12 speakers x 2 pairs = 24 pairs
    whole = plan.batch(0, 1)
    parts = [plan.batch(0, 1, rank=r, world_size=2) for r in range(2)]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))
    again = BatchPlan(feats, "triplet", batch_size=8, chunk_frames=32, seed=1).batch(0, 1)
    np.testing.assert_array_equal(whole["anchor"], again["anchor"])
    assert not np.array_equal(plan.indices(0, 0), plan.indices(1, 0))  # reshuffled per epoch
    idx = plan.indices(0, 0)
    spk = feats.labels
    assert np.all(spk[idx[:, 0]] == spk[idx[:, 1]]) and np.all(idx[:, 0] != idx[:, 1])
    assert whole["anchor"].shape == (8, 32, 64)


def test_torchrun_two_ranks_triplet(train_dev, tmp_path):
    train_dir, dev_dir = train_dev
    conf = write_config(tmp_path / "t.yaml", base_config("triplet", epochs=1, device="cpu"))
    exp = tmp_path / "exp"
    r = run_torchrun(["-m", "deepspeaker.bin.train_embedding", "--config", str(conf),
                      "--max-steps", "2", str(train_dir), str(dev_dir), str(exp)],
                     timeout=TORCHRUN_TIMEOUT_S)
    assert r.returncode == 0, r.stdout[-3000:]
    ckpt = load_checkpoint(exp / "last.pt")
    assert ckpt["global_step"] == 2
    for rank in (0, 1):
        log = (exp / "log" / f"train.rank{rank}.log").read_text()
        assert f"rank {rank} of 2" in log
    assert "prob_hard" in (exp / "log" / "train.rank0.log").read_text()


@pytest.mark.parametrize("path", sorted((REPO / "egs" / "mini" / "conf").glob("*_softmax.yaml"))
                         + sorted((REPO / "egs" / "mini" / "conf").glob("*_triplet.yaml"))
                         + sorted((REPO / "egs" / "mini" / "conf").glob("*_triplet_only.yaml")),
                         ids=lambda p: p.name)
def test_recipe_training_configs_parse(path):
    from deepspeaker.nnet.models import build_model
    from deepspeaker.utils import load_yaml

    cfg = train_config_from_dict(load_yaml(path), where=str(path))
    assert cfg.stage == ("softmax" if path.name.endswith("_softmax.yaml") else "triplet")
    build_model(cfg.model.name, **cfg.model.options)  # the options are valid
    # The paper-size confs (conf/paper) are checked by test_recipes_stage0.test_paper_confs.


def test_resume_with_another_config_is_refused(train_dev, tmp_path):
    train_dir, _ = train_dev
    exp = tmp_path / "exp"
    info = init_distributed("cpu")
    train(train_config_from_dict(base_config(epochs=1)), train_dir, None, exp, info, max_steps=1)
    with pytest.raises(StageRefused, match=f"made from another config.batch_size .*rm -r {exp} "):
        train(train_config_from_dict(base_config(epochs=1, batch_size=8)), train_dir, None, exp, info)
    # Logging and checkpoint cadence may change on a restart.
    state = train(train_config_from_dict(base_config(epochs=1, log_every_steps=3)), train_dir, None,
                  exp, info)
    assert state["status"] == "completed" and state["global_step"] == 3
