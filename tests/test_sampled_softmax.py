"""The partial softmax (``softmax.sample_classes``): its class draw, its sparse update, and
that the trainer's guarantees (exact resume, any number of workers or ranks) hold with it.

The training set is conftest's 12 speakers x 4 utterances, batches of 16 utterances.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from builders import REPO, base_config, write_config
from torchrun_launch import run_torchrun

from deepspeaker.bin import train_embedding
from deepspeaker.nnet.config import train_config_from_dict
from deepspeaker.nnet.data import BatchPlan, FeatureSet, draw_classes
from deepspeaker.nnet.trainer import load_checkpoint

TOL = 1e-6          # float32, max abs parameter difference after 5 steps
TORCHRUN_TIMEOUT_S = 120


def test_draw_keeps_the_batch_classes_and_fills_up_to_k_without_repeats():
    rng = np.random.default_rng(0)
    for num_classes, k in ((12, 10), (1000, 64), (10_000_000, 300)):
        labels = rng.integers(0, num_classes, 8)
        got = draw_classes(labels, num_classes, k, np.random.default_rng(5))
        assert len(got) == k and got.dtype == np.int64
        assert np.all(np.diff(got) > 0) and got[0] >= 0 and got[-1] < num_classes
        assert set(labels) <= set(got)
        assert np.array_equal(got, draw_classes(labels, num_classes, k, np.random.default_rng(5)))
    # more batch classes than k: all of them; k >= the classes: every class
    assert np.array_equal(draw_classes(np.arange(20), 50, 5, rng), np.arange(20))
    assert np.array_equal(draw_classes(np.array([3, 3]), 12, 99, rng), np.arange(12))
    # the others are uniform over the classes not in the batch (3 of 9, 3,000 draws)
    counts = np.zeros(12)
    for seed in range(3000):
        counts[draw_classes(np.array([0, 5, 11]), 12, 6, np.random.default_rng(seed))] += 1
    assert counts[[0, 5, 11]].tolist() == [3000] * 3
    others = np.delete(counts, [0, 5, 11])
    assert np.all(np.abs(others - 1000) < 90), others


def test_plan_carries_the_same_classes_on_every_rank(train_dev):
    feats = FeatureSet.load(train_dev[0], min_frames=10)
    plan = BatchPlan(feats, "softmax", 16, 32, seed=3, sample_classes=10)
    whole = plan.batch(0, 1)
    halves = [plan.batch(0, 1, rank=r, world_size=2) for r in range(2)]
    assert len(whole["classes"]) == 10
    for half in halves:
        assert np.array_equal(half["classes"], whole["classes"])
        assert np.array_equal(half["classes"][half["targets"]], half["labels"])
    assert "classes" not in BatchPlan(feats, "softmax", 16, 32, seed=3).batch(0, 1)


def _conf(tmp_path, name, **over):
    """A training config (checkpoints only where a run stops) in ``tmp_path/<name>.yaml``."""
    return write_config(tmp_path / f"{name}.yaml", base_config(save_every_steps=100, **over))


def _run(train_dir, conf, exp, max_steps):
    argv = ["--config", str(conf), "--max-steps", str(max_steps), str(train_dir), "-", str(exp)]
    assert train_embedding.main(argv) == 0
    return load_checkpoint(exp / "last.pt")


def _close(a: dict, b: dict, tol: float) -> None:
    for key, value in a.items():
        diff = (value.float() - b[key].float()).abs().max().item()
        assert diff <= tol, f"{key} differs by {diff:.3g}"


def test_every_class_drawn_is_the_full_softmax(train_dev, tmp_path, one_torch_thread):
    # weight decay on: the sampled rule applies it as torch's SGD does
    opt = {"lr_start": 0.05, "lr_end": 0.005, "momentum": 0.9, "weight_decay": 0.01}
    full = _run(train_dev[0], _conf(tmp_path, "full", optimizer=opt), tmp_path / "full", 5)
    every = _run(train_dev[0], _conf(tmp_path, "every", optimizer=opt, softmax={"sample_classes": 12}),
                 tmp_path / "every", 5)
    _close(full["model"], every["model"], TOL)
    _close(full["objective"]["head"], every["objective"]["head"], TOL)
    # the optimizer's momentum of the full head is the sampled head's own, which the
    # optimizer does not hold
    head_state = [s["momentum_buffer"] for s in full["optimizer"]["state"].values()][-2:]
    assert [t.shape for t in head_state] == [(12, 512), (12,)]
    _close(dict(zip(("weight", "bias"), head_state)), every["objective"]["head_momentum"], TOL)
    assert len(every["optimizer"]["state"]) == len(full["optimizer"]["state"]) - 2


def test_a_step_moves_only_its_rows_and_resume_and_workers_change_nothing(train_dev, tmp_path,
                                                                          one_torch_thread):
    train_dir = train_dev[0]
    conf = _conf(tmp_path, "sparse", softmax={"sample_classes": 10}, loader={"num_workers": 2})
    exp = tmp_path / "sparse"
    start = _run(train_dir, conf, exp, 0)["objective"]["head"]["weight"]
    first = _run(train_dir, conf, exp, 1)["objective"]["head"]["weight"]
    plan = BatchPlan(FeatureSet.load(train_dir, min_frames=10), "softmax", 16, 32, seed=3,
                     sample_classes=10)
    drawn = np.zeros(12, dtype=bool)
    drawn[plan.batch(0, 0)["classes"]] = True
    moved = (first - start).abs().amax(dim=1) > 0
    assert moved.tolist() == drawn.tolist() and 0 < drawn.sum() < 12
    resumed = _run(train_dir, conf, exp, 5)          # 1 -> 5, across the epoch's end
    straight = _run(train_dir, _conf(tmp_path, "straight", softmax={"sample_classes": 10},
                                     loader={"num_workers": 0}), tmp_path / "straight", 5)
    assert resumed["global_step"] == straight["global_step"] == 5
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for part in ("head", "head_momentum"):
        for key, value in straight["objective"][part].items():
            assert torch.equal(value, resumed["objective"][part][key]), (part, key)
    assert straight["objective"]["head_momentum"]["weight"].abs().amax() > 0
    assert straight["history"] == resumed["history"]
    # the partial softmax is another experiment than the full one
    full = write_config(tmp_path / "full.yaml", base_config(save_every_steps=100))
    assert train_embedding.main(["--config", str(full), str(train_dir), "-", str(exp)]) == 1


def test_torchrun_two_ranks_partial_softmax(train_dev, tmp_path):
    # The step arithmetic of two ranks is test_distributed's (c); here the trainer runs it
    # under DDP, with the head's parameters out of DDP's reach.
    train_dir = train_dev[0]
    conf = _conf(tmp_path, "c", softmax={"sample_classes": 10}, device="cpu")
    r = run_torchrun(["-m", "deepspeaker.bin.train_embedding", "--config", str(conf),
                      "--max-steps", "3", str(train_dir), "-", str(tmp_path / "two")],
                     timeout=TORCHRUN_TIMEOUT_S)
    assert r.returncode == 0, r.stdout[-3000:]
    two = load_checkpoint(tmp_path / "two" / "last.pt")
    assert two["global_step"] == 3
    assert two["objective"]["head_momentum"]["weight"].abs().amax() > 1e-3


def test_the_signature_of_a_full_softmax_experiment_is_unchanged():
    sig = train_config_from_dict(base_config()).without_run_settings()
    assert sig["softmax"] == {"scale": 16.0}
    sampled = train_config_from_dict(base_config(softmax={"sample_classes": 8}))
    assert sampled.without_run_settings()["softmax"] == {"scale": 16.0, "sample_classes": 8}


def test_bench_softmax_head_prints_both_heads_per_size(capsys, one_torch_thread):
    spec = importlib.util.spec_from_file_location("bench_softmax_head",
                                                  REPO / "bench" / "bench_softmax_head.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--speakers", "200,50", "--sample-classes", "30", "--steps", "1",
                       "--warmup", "0", "--repeats", "1", "--width", "0.0625",
                       "--chunk-frames", "20"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.split() and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["50", "200"]
    assert rows[0][2] == rows[0][5] == "1.000" and rows[0][3] == rows[0][6] == "nan"
    assert all(float(v) > 0 for r in rows for v in r[1:3] + r[4:6])
    assert bench.exponent(2.0, 1.0, 4000, 1000) == pytest.approx(1.5)
    with pytest.raises(SystemExit, match="--speakers"):
        bench.main(["--speakers", "1000,x"])
