"""Checkpoints (deepspeaker.nnet.checkpoint): state round trip, and files that are not checkpoints.

A file that is missing, half written, not written by torch.save, or holding objects
other than tensors and plain values is refused by every command that reads one with
one message naming it, never torch's traceback or its advice to load with
``weights_only=False`` (which would run code from the file).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deepspeaker.bin import extract_embeddings, train_embedding
from deepspeaker.nnet.checkpoint import (CHECKPOINT_VERSION, EpochStats, TrainState,
                                         load_checkpoint, save_checkpoint)
from deepspeaker.nnet.config import train_config_from_dict
from builders import base_config, make_exp, write_config, write_data_dir

NOT_A_CHECKPOINT = "not a deepspeaker checkpoint ({}); it will not be loaded"
UNREADABLE = "not a readable checkpoint (truncated or damaged: {}"
NOT_ZIP = "bytes that do not start like the zip archive torch.save writes"
OBJECTS = "it holds objects other than tensors, numbers, strings, lists and dicts"


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the message that must follow its path)."""
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model": {"w": torch.ones(3)}})
    data = good.read_bytes()
    out = {}
    for name, content, why in (
            ("truncated", data[: len(data) // 2],
             UNREADABLE.format(f"a zip archive of {len(data) // 2} bytes without its end")),
            ("empty", b"", UNREADABLE.format("the file is empty")),
            ("text", b"not a checkpoint\n", UNREADABLE.format(f"17 {NOT_ZIP}")),
            ("keyerror", b"hello world\n", UNREADABLE.format(f"12 {NOT_ZIP}"))):
        path = tmp_path / f"{name}.pt"
        path.write_bytes(content)
        out[name] = (path, why)
    numpy_obj = tmp_path / "numpy.pt"
    torch.save({"model": {"w": np.zeros(3)}}, numpy_obj)
    out["numpy"] = (numpy_obj, NOT_A_CHECKPOINT.format(OBJECTS))
    listed = tmp_path / "list.pt"
    torch.save([torch.ones(1)], listed)
    out["list"] = (listed, NOT_A_CHECKPOINT.format("it holds a list, not a dict"))
    return out


def assert_one_message(err: str, path: Path, why: str) -> None:
    assert f"{path}: {why}" in err, err[-2000:]
    for torch_words in ("Traceback", "weights_only", "PytorchStreamReader", "WeightsUnpickler"):
        assert torch_words not in err, (torch_words, err[-2000:])


def test_bad_files_are_refused_by_every_command(tmp_path, capfd):
    data = write_data_dir(tmp_path / "data", "tr", 12, 4, 0)
    conf = write_config(tmp_path / "t.yaml", base_config("triplet", epochs=1))
    exp = make_exp(tmp_path / "exp", name="rescnn", width=0.125)
    for name, (path, why) in bad_files(tmp_path).items():
        capfd.readouterr()
        # --init of a training run
        assert train_embedding.main(["--config", str(conf), "--init", str(path), str(data), "-",
                                     str(tmp_path / f"init_{name}")]) == 1
        assert_one_message(capfd.readouterr().err, path, why)
        # the checkpoint an extraction embeds with
        assert extract_embeddings.main([str(exp), str(data), "--checkpoint", str(path),
                                        "--device", "cpu"]) == 1
        assert_one_message(capfd.readouterr().err, path, why)
        # last.pt of an experiment to resume
        resumed = tmp_path / f"resume_{name}"
        resumed.mkdir()
        (resumed / "last.pt").write_bytes(path.read_bytes())
        assert train_embedding.main(["--config", str(conf), str(data), "-", str(resumed)]) == 1
        assert_one_message(capfd.readouterr().err, resumed / "last.pt", why)
    missing = tmp_path / "missing.pt"
    assert train_embedding.main(["--config", str(conf), "--init", str(missing), str(data), "-",
                                 str(tmp_path / "init_missing")]) == 1
    assert f"{missing}: checkpoint not found" in capfd.readouterr().err


def test_checkpoint_of_an_older_version_is_kept_not_retrained(tmp_path, capfd):
    data = write_data_dir(tmp_path / "data", "tr", 12, 4, 0)
    conf = write_config(tmp_path / "s.yaml", base_config(epochs=1))
    exp = tmp_path / "exp"
    assert train_embedding.main(["--config", str(conf), "--max-steps", "1", str(data), "-",
                                 str(exp)]) == 0
    old = load_checkpoint(exp / "last.pt")
    assert old["version"] == CHECKPOINT_VERSION == 2
    del old["signature"]
    old["version"] = 1
    save_checkpoint(exp / "last.pt", old)
    capfd.readouterr()
    assert train_embedding.main(["--config", str(conf), str(data), "-", str(exp)]) == 1
    assert (f"{exp} was trained by an older deepspeaker (checkpoint version 1 in {exp / 'last.pt'}"
            f" records no signature); it is kept. To redo it: rm -r {exp} and rerun") \
        in capfd.readouterr().err
    assert load_checkpoint(exp / "last.pt")["global_step"] == 1


def test_train_state_round_trips_through_a_weights_only_file(tmp_path):
    state = TrainState(epoch=2, step_in_epoch=1, global_step=7, best_eer=0.25, bad_epochs=1,
                       history=[[1, 3, 0.5, None, 0.3], [2, 6, 0.4, None, 0.25]])
    state.epoch_stats.add({"loss": 0.125, "prob_hard": 0.5}, at_margin=True)
    state.epoch_stats.add({"loss": 0.375}, at_margin=False)
    save_checkpoint(tmp_path / "s.pt", state.to_dict())
    back = TrainState.from_checkpoint(load_checkpoint(tmp_path / "s.pt"))
    assert back == state
    assert back.epoch_stats == EpochStats(loss_sum=0.5, prob_hard_sum=0.5, steps=2,
                                          steps_at_margin=1)
    assert (back.epoch_stats.mean_loss(), back.epoch_stats.mean_prob_hard()) == (0.25, 0.25)
    assert EpochStats().mean_loss() == 0.0  # no step yet: no division by zero
    assert math.isinf(TrainState().best_eer)


@pytest.mark.parametrize("over, status", [({}, None), ({"epochs": 2}, "completed"),
                                          ({"early_stopping_patience": 1}, "stopped early"),
                                          ({"early_stopping_patience": 2}, None)])
def test_finished_says_why_training_is_over(over, status):
    config = train_config_from_dict(base_config(**{"epochs": 3, **over}))
    assert TrainState(epoch=2, bad_epochs=1).finished(config) == status


def test_ctrl_c_between_two_writes_of_a_checkpoint_is_the_interrupt(tmp_path, monkeypatch):
    """Ctrl-C that lands in torch's writer outside our file's code comes out of torch as
    its own RuntimeError ('unexpected pos'); it must stay the KeyboardInterrupt it is (a
    one-line "interrupted" and a rerun that resumes), with no file and no temp left."""
    import torch

    from deepspeaker.nnet.checkpoint import save_checkpoint

    def interrupted_save(obj, f):
        f.write(b"PK")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []
