"""One objective per training stage (deepspeaker.nnet.objectives) and the module split around them."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepspeaker.nnet.checkpoint import EpochStats
from deepspeaker.nnet.config import train_config_from_dict
from deepspeaker.nnet.data import STAGES, BatchPlan, FeatureSet
from deepspeaker.nnet.distributed import init_distributed
from deepspeaker.nnet.models import build_model
from deepspeaker.nnet.objectives import (OBJECTIVES, SoftmaxObjective, TripletObjective,
                                         build_objective)
from deepspeaker.utils import ConfigError
from builders import base_config, write_data_dir

NNET = Path(__file__).resolve().parents[1] / "deepspeaker" / "nnet"


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    return FeatureSet.load(write_data_dir(tmp_path_factory.mktemp("obj") / "train", "tr", 6, 4, 0),
                           min_frames=10)


@pytest.fixture(scope="module")
def info():
    return init_distributed("cpu")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_every_stage_has_one_objective():
    assert sorted(OBJECTIVES) == sorted(STAGES)
    assert {o.stage: o.unit for o in OBJECTIVES.values()} == {"softmax": "utterances",
                                                               "triplet": "pairs"}


def test_extraction_and_checkpoints_do_not_import_the_training_loop():
    for name in ("extract.py", "config.py", "checkpoint.py"):
        imported = imported_modules(NNET / name)
        assert not {m for m in imported if m.endswith("trainer") or m.endswith("objectives")}, name
    # The loop tells the stages apart only through the objective.
    source = (NNET / "trainer.py").read_text()
    assert "stage ==" not in source and "stage !=" not in source


def one_batch(train_set, stage, batch_size=8):
    return BatchPlan(train_set, stage, batch_size, chunk_frames=32, seed=0).batch(0, 0)


def test_softmax_step_state_and_resume_check(train_set, info, tmp_path):
    config = train_config_from_dict(base_config())
    objective = build_objective(config, train_set, info)
    assert isinstance(objective, SoftmaxObjective)
    torch.manual_seed(0)
    net = objective.build(build_model("rescnn", width=0.125))
    batch = one_batch(train_set, "softmax")
    step = objective.compute(net, batch)
    logits, _ = net(torch.from_numpy(batch["feats"]))
    expected = F.cross_entropy(logits.detach(), torch.from_numpy(batch["labels"]))
    assert list(step.stats) == ["loss", "acc"] and step.utterances == 8
    assert step.stats["loss"] == pytest.approx(expected.item(), rel=1e-6)
    assert step.embeddings.shape == (8, 512)
    assert not objective.at_margin({"loss": config.triplet.margin})
    assert objective.end_of_epoch(EpochStats(steps=3), 0) is None
    state = objective.state_dict()
    assert state["stage"] == "softmax" and state["speakers"] == train_set.speakers
    assert state["head"]["weight"].shape == (len(train_set.speakers), 512)
    other = dict(state, speakers=state["speakers"][:-1])
    with pytest.raises(ConfigError, match=r"last.pt was trained on other speakers than data/train "
                                          r"\(5 vs 6\)"):
        objective.check_resume(other, Path("last.pt"), "data/train")


def test_triplet_step_margin_warning_and_generator_state(train_set, info, caplog):
    config = train_config_from_dict(base_config("triplet", triplet={"selection": "random_hard"}))
    objective = build_objective(config, train_set, info)
    assert isinstance(objective, TripletObjective)
    torch.manual_seed(0)
    net = objective.build(build_model("rescnn", width=0.125))
    batch = one_batch(train_set, "triplet", batch_size=4)
    saved = objective.state_dict()
    first = objective.compute(net, batch)
    assert list(first.stats) == ["loss", "prob_hard"] and first.utterances == 8
    assert 0.0 <= first.stats["prob_hard"] <= 1.0
    objective.load_state_dict(saved)   # the miner's draws start again
    again = objective.compute(net, batch)
    assert again.stats == first.stats
    margin = config.triplet.margin
    assert objective.at_margin({"loss": margin * 1.04}) and not objective.at_margin({"loss": 0.2})
    stats = EpochStats(loss_sum=0.3, prob_hard_sum=1.5, steps=3, steps_at_margin=3)
    with caplog.at_level(logging.WARNING, logger="deepspeaker.nnet.objectives"):
        assert objective.end_of_epoch(stats, 4) == 0.5
    assert "epoch 5: the triplet loss sat at the margin (0.1) for the whole epoch" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepspeaker.nnet.objectives"):
        objective.end_of_epoch(EpochStats(steps=3, steps_at_margin=2), 4)
    assert "sat at the margin" not in caplog.text
    assert np.isfinite(first.loss.detach().item())
