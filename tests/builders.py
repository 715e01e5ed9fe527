"""Builders of tiny experiments that several test modules share (not tests themselves).

Test modules import these instead of importing each other: feature dirs of synthetic
speakers for the trainer, the tiny training config, a YAML writer, the trainer's
``train_log.tsv`` reader and a fake trained experiment for extraction.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import yaml

from deepspeaker.data.ark import write_ark_scp
from deepspeaker.nnet.checkpoint import save_checkpoint
from deepspeaker.nnet.config import train_config_from_dict
from deepspeaker.nnet.models import build_model
from deepspeaker.utils import save_yaml

REPO = Path(__file__).resolve().parents[1]


def write_data_dir(path: Path, prefix: str, num_spk: int, num_utt: int, seed: int) -> Path:
    """Speakers that differ in covariance: each owns a random 64 x 6 mixing matrix."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    feats, vads, utt2spk = {}, {}, {}
    for s in range(num_spk):
        mix = rng.normal(size=(64, 6))
        for u in range(num_utt):
            utt = f"{prefix}{s:02d}-u{u}"
            n = int(rng.integers(40, 80))
            feats[utt] = (rng.normal(size=(n, 6)) @ mix.T + 0.3 * rng.normal(size=(n, 64))).astype(np.float32)
            vad = np.ones(n, dtype=np.float32)
            vad[:3] = 0  # a little silence for the VAD to drop
            vads[utt] = vad
            utt2spk[utt] = f"{prefix}{s:02d}"
    write_ark_scp(path / "feats.ark", path / "feats.scp", feats)
    write_ark_scp(path / "vad.ark", path / "vad.scp", vads)
    with open(path / "utt2spk", "w") as f:
        f.writelines(f"{u} {utt2spk[u]}\n" for u in sorted(utt2spk))
    with open(path / "wav.scp", "w") as f:
        f.writelines(f"{u} /dev/null\n" for u in sorted(utt2spk))
    return path


def base_config(stage: str = "softmax", **over) -> dict:
    cfg = {"model": {"name": "rescnn", "options": {"width": 0.125}},
           "stage": stage, "chunk_frames": 32, "min_frames": 10,
           "batch_size": 16 if stage == "softmax" else 8, "epochs": 2,
           # momentum 0.9 rather than the paper's 0.99: 0.99 needs hundreds of steps to settle
           "optimizer": {"lr_start": 0.05, "lr_end": 0.005, "momentum": 0.9},
           "dev": {"num_negatives": 5}, "seed": 3, "save_every_steps": 2, "log_every_steps": 1}
    cfg.update(over)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def read_log(exp: Path) -> list[dict]:
    with open(exp / "train_log.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def make_exp(path, name="gru", width=0.0625, ckpt_width=None, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, width=ckpt_width or width)
    cfg = train_config_from_dict({"model": {"name": name, "options": {"width": width}}})
    path.mkdir(parents=True)
    save_yaml(path / "config.yaml", cfg.to_dict())
    save_checkpoint(path / "best.pt", {"model": model.state_dict(), "model_config": model.config()})
    return path
