"""The rerun rule of training, through the command a recipe runs (bin/train_embedding).

``last.pt`` records the signature of what made the experiment (the config without its
run settings, the training and dev data, the --init checkpoint).  Rerunning with the
same signature continues, or does nothing once finished; with another it is refused,
naming what differs and ``rm -r <exp_dir>``, and the trained model is kept.
"""

from __future__ import annotations

import shutil

import torch

from deepspeaker.bin import train_embedding
from deepspeaker.nnet.checkpoint import load_checkpoint, save_checkpoint
from builders import base_config, read_log, write_config

OUTPUTS = ("last.pt", "best.pt", "train_log.tsv", "config.yaml")


def cli(conf, train_dir, dev_dir, exp, *options) -> int:
    return train_embedding.main(["--config", str(conf), *options, str(train_dir), str(dev_dir),
                                 str(exp)])


def stamps(exp) -> dict:
    """mtime of each output that exists (a stopped run has no best.pt yet)."""
    return {name: (exp / name).stat().st_mtime_ns for name in OUTPUTS if (exp / name).exists()}


def test_identical_rerun_of_a_finished_experiment_does_nothing(train_dev, tmp_path, capfd):
    train_dir, dev_dir = train_dev
    conf = write_config(tmp_path / "s.yaml", base_config(epochs=1))
    exp = tmp_path / "exp"
    assert cli(conf, train_dir, dev_dir, exp) == 0
    before = stamps(exp)
    capfd.readouterr()
    assert cli(conf, train_dir, dev_dir, exp) == 0
    err = capfd.readouterr().err
    assert f"{exp} is up to date (same config and data): nothing to do" in err
    assert "training completed after 1 epochs (3 steps)" in err
    assert "steps per epoch" not in err and "utterances of" not in err  # nothing was loaded
    assert stamps(exp) == before
    # The same data under another path is the same experiment.
    copy = tmp_path / "train_copy"
    shutil.copytree(train_dir, copy)
    assert cli(conf, copy, dev_dir, exp) == 0
    assert "nothing to do" in capfd.readouterr().err


def test_what_made_the_experiment_cannot_change_under_it(train_dev, tmp_path, capfd):
    train_dir, dev_dir = train_dev
    src = tmp_path / "softmax"
    assert cli(write_config(tmp_path / "s.yaml", base_config(epochs=1)), train_dir, dev_dir,
               src) == 0
    init = tmp_path / "init.pt"
    shutil.copy(src / "best.pt", init)
    exp = tmp_path / "triplet"
    tconf = write_config(tmp_path / "t.yaml", base_config("triplet", epochs=1))
    assert cli(tconf, train_dir, dev_dir, exp, "--init", str(init), "--max-steps", "2") == 0
    before = stamps(exp) | {"bytes": (exp / "last.pt").read_bytes()}

    def refused(conf, train, dev, what):
        capfd.readouterr()
        assert cli(conf, train, dev, exp, "--init", str(init)) == 1
        err = capfd.readouterr().err
        assert f"{exp} was made from another {what}" in err, err[-2000:]
        assert f"(recorded in {exp / 'last.pt'}); it is kept. To redo it: rm -r {exp} and rerun" \
            in err, err[-2000:]
        assert "Traceback" not in err
        assert stamps(exp) | {"bytes": (exp / "last.pt").read_bytes()} == before

    refused(write_config(tmp_path / "seed.yaml", base_config("triplet", epochs=1, seed=4)),
            train_dir, dev_dir, "config.seed (")
    other_spk = tmp_path / "train_other_spk"
    shutil.copytree(train_dir, other_spk)
    lines = (other_spk / "utt2spk").read_text().splitlines()
    lines[-1] = lines[-1].replace("tr11", "tr10")
    (other_spk / "utt2spk").write_text("\n".join(lines) + "\n")
    refused(tconf, other_spk, dev_dir, "inputs.train/utt2spk (")
    refused(tconf, train_dir, "-", "inputs.dev/feats.scp.")  # the dev set picks best.pt
    ckpt = load_checkpoint(init)
    ckpt["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    save_checkpoint(init, ckpt)  # the same path, other weights
    refused(tconf, train_dir, dev_dir, "inputs.init (")
    shutil.copy(src / "best.pt", init)

    # Where and how it runs may change: the run continues where it stopped.
    run_conf = write_config(tmp_path / "run.yaml", base_config(
        "triplet", epochs=1, max_memory_gb=0.0, log_every_steps=3))
    capfd.readouterr()
    assert cli(run_conf, train_dir, dev_dir, exp, "--init", str(init), "--device", "cpu") == 0
    err = capfd.readouterr().err
    assert f"resuming {exp / 'last.pt'} at epoch 0 step 2 (global step 2)" in err
    assert "read from disk per batch" in err and "training completed after 1 epochs (3 steps)" in err
    ckpt = load_checkpoint(exp / "last.pt")
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 3)
    assert [int(r["step"]) for r in read_log(exp)] == [3]
    start = load_checkpoint(init)["model"]
    assert any(not torch.equal(v, start[k]) for k, v in ckpt["model"].items())
