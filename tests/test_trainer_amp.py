"""Trainer run settings: bf16 autocast, channels_last, features read from disk per batch.

No GPU here: ``amp: bf16`` and ``channels_last: true`` are forced on the CPU
(torch.autocast supports bfloat16 on the CPU), which exercises the same code path as
the CUDA default (``auto``) but not CUDA itself.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from deepspeaker.marker import StageRefused
from deepspeaker.nnet.data import BatchPlan, FeatureSet
from deepspeaker.nnet.distributed import init_distributed
from deepspeaker.nnet.models import build_model
from deepspeaker.nnet.trainer import (load_checkpoint, resolve_speed_settings, train,
                                      train_config_from_dict)
from deepspeaker.utils import ConfigError
from builders import base_config

# channels_last vs default layout: float32 rounding of the convolutions only.  The
# embeddings differ by ~1e-6 and the gradients by ~1e-5 relative; two SGD steps leave the
# weights ~5e-5 apart.
CL_LOSS_TOL = 1e-4
CL_PARAM_TOL = 1e-3


@pytest.fixture(scope="module")
def info():
    return init_distributed("cpu")


def test_speed_settings_parse_and_resolve():
    cfg = train_config_from_dict(base_config())
    assert (cfg.amp, cfg.channels_last, cfg.max_memory_gb) == ("auto", "auto", 8.0)
    assert resolve_speed_settings(cfg, torch.device("cpu")) == (False, False)
    assert resolve_speed_settings(cfg, torch.device("cuda", 0)) == (True, True)
    gru = train_config_from_dict(base_config(model={"name": "gru", "options": {"width": 0.125}}))
    assert resolve_speed_settings(gru, torch.device("cuda", 0)) == (True, False)
    forced = train_config_from_dict(base_config(amp="bf16", channels_last=True))
    assert resolve_speed_settings(forced, torch.device("cpu")) == (True, True)
    off = train_config_from_dict(base_config(amp=False, channels_last="false"))  # YAML `off`
    assert (off.amp, off.channels_last) == ("off", False)
    assert resolve_speed_settings(off, torch.device("cuda", 0)) == (False, False)
    for bad in ({"amp": "fp16"}, {"channels_last": "maybe"}, {"max_memory_gb": -1},
                {"max_memory_gb": "lots"}):
        with pytest.raises(ConfigError):
            train_config_from_dict(base_config(**bad))
    with pytest.raises(ConfigError, match="unknown key.*autocast"):
        train_config_from_dict(base_config(autocast=True))


@pytest.mark.parametrize("stage", ["softmax", "triplet"])
def test_bf16_on_cpu_trains_and_checkpoint_is_float32(train_dev, info, tmp_path, stage):
    train_dir, dev_dir = train_dev
    exp = tmp_path / "exp"
    epochs = 4 if stage == "softmax" else 2
    cfg = train_config_from_dict(base_config(stage, epochs=epochs, amp="bf16", save_every_steps=100))
    state = train(cfg, train_dir, dev_dir, exp, info)
    losses = [row[2] for row in state["history"]]
    assert len(losses) == epochs and all(math.isfinite(v) for v in losses), losses
    if stage == "softmax":  # the triplet loss of 3-step epochs is too noisy to order
        assert losses[-1] < losses[0], losses
    assert all(0.0 <= row[4] <= 1.0 for row in state["history"])  # float32 dev EER
    ckpt = load_checkpoint(exp / "last.pt")
    floats = {k: v for k, v in ckpt["model"].items() if v.is_floating_point()}
    assert floats and all(v.dtype == torch.float32 for v in floats.values())
    for s in ckpt["optimizer"]["state"].values():
        assert s["momentum_buffer"].dtype == torch.float32
    # Loads into a plain float32 model, and a float32 run may continue it (amp is a run setting).
    model = build_model("rescnn", width=0.125)
    model.load_state_dict(ckpt["model"])
    more = train_config_from_dict(base_config(stage, epochs=epochs + 1, amp="off",
                                              save_every_steps=100))
    with pytest.raises(StageRefused, match=r"made from another config\.epochs \("):
        train(more, train_dir, dev_dir, exp, info)
    same = train_config_from_dict(base_config(stage, epochs=epochs, amp="off", channels_last=True,
                                              max_memory_gb=0.0, save_every_steps=100))
    assert train(same, train_dir, dev_dir, exp, info)["global_step"] == 3 * epochs


def test_channels_last_on_cpu_matches_default_layout(train_dev, info, tmp_path):
    train_dir, _ = train_dev
    states, ckpts = {}, {}
    for cl in (False, True):
        cfg = train_config_from_dict(base_config(epochs=1, channels_last=cl, save_every_steps=100))
        exp = tmp_path / f"cl_{cl}"
        states[cl] = train(cfg, train_dir, None, exp, info, max_steps=2)
        ckpts[cl] = load_checkpoint(exp / "last.pt")
    assert states[True]["global_step"] == states[False]["global_step"] == 2
    loss_sum = {cl: s["epoch_stats"]["loss_sum"] for cl, s in states.items()}
    assert math.isfinite(loss_sum[True])
    assert loss_sum[True] == pytest.approx(loss_sum[False], rel=CL_LOSS_TOL, abs=CL_LOSS_TOL)
    for key, value in ckpts[False]["model"].items():
        other = ckpts[True]["model"][key]
        assert other.is_contiguous(), key  # saved in the default layout
        diff = (value.float() - other.float()).abs().max().item()
        assert diff <= CL_PARAM_TOL, (key, diff)


def _batches(feats: FeatureSet, stage: str, steps: int) -> list[dict]:
    plan = BatchPlan(feats, stage, batch_size=8, chunk_frames=32, seed=5)
    return [plan.batch(epoch, step) for epoch in (0, 1) for step in range(steps)]


@pytest.mark.parametrize("stage", ["softmax", "triplet"])
def test_features_from_disk_give_the_same_batches(train_dev, stage, caplog):
    train_dir, _ = train_dev
    with caplog.at_level(logging.INFO, logger="deepspeaker.nnet.data"):
        mem = FeatureSet.load(train_dir, min_frames=10, max_memory_gb=8.0)
        disk = FeatureSet.load(train_dir, min_frames=10, max_memory_gb=0.0)
    assert mem.in_memory and not disk.in_memory and disk.feats is None
    text = caplog.text
    assert "in memory" in text and "read from disk per batch" in text and "max_memory_gb=0" in text
    assert disk.utts == mem.utts and disk.speakers == mem.speakers
    np.testing.assert_array_equal(disk.lengths, mem.lengths)
    np.testing.assert_array_equal(disk.labels, mem.labels)
    assert disk.num_bins == mem.num_bins == 64
    for a, b in zip(_batches(mem, stage, 3), _batches(disk, stage, 3)):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_dev_features_from_disk_honour_max_frames(train_dev):
    _, dev_dir = train_dev
    mem = FeatureSet.load(dev_dir, max_frames=30)
    disk = FeatureSet.load(dev_dir, max_frames=30, max_memory_gb=0.0)
    assert not disk.in_memory and int(disk.lengths.max()) == 30
    for i in range(len(mem.utts)):
        np.testing.assert_array_equal(mem.get(i), disk.get(i))


def test_training_from_disk_matches_in_memory(train_dev, info, tmp_path):
    train_dir, dev_dir = train_dev
    ckpts = {}
    for gb in (8.0, 0.0):
        cfg = train_config_from_dict(base_config(epochs=1, max_memory_gb=gb, save_every_steps=100))
        exp = tmp_path / f"gb_{gb}"
        train(cfg, train_dir, dev_dir, exp, info)
        ckpts[gb] = load_checkpoint(exp / "last.pt")
    assert ckpts[0.0]["history"] == ckpts[8.0]["history"]
    for key, value in ckpts[8.0]["model"].items():
        assert torch.equal(value, ckpts[0.0]["model"][key]), key
