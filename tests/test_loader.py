"""The training data path (deepspeaker.nnet.loader, nnet.data): workers, the disk index, augmentation.

What must hold: batches (and so trained weights) do not depend on the number of loader
workers, also after a resume mid-epoch; a chunk read from disk by offset is bit for bit
``crop(prepare_features(feats, vad), start, T)``; SpecAugment and the chunk-length range
are deterministic, within their bounds, rank-independent, and off means today's batches;
an in-memory set is one buffer that forked workers share.
"""

from __future__ import annotations

import os
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import torch
from builders import REPO, base_config, write_config

from deepspeaker.bin import train_embedding
from deepspeaker.features import prepare_features
from deepspeaker.nnet.config import train_config_from_dict
from deepspeaker.nnet.data import BatchPlan, FeatureSet, SpecAugment, crop
from deepspeaker.nnet.loader import batch_loader, default_num_workers, iterate_batches
from deepspeaker.nnet.trainer import load_checkpoint


def _loader_batches(plan, workers, epoch=0, step=0, epochs=2, rank=0, world_size=1):
    loader = batch_loader(plan, epoch, step, epochs, rank, world_size, num_workers=workers,
                          prefetch=2)
    # a batch's shared buffer goes back to its worker when the next one is asked for: copy
    return [{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in b.items()
             if k != "slot"} for b in iterate_batches(loader)]


def _same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


@pytest.mark.parametrize("stage", ["softmax", "triplet"])
def test_batches_are_the_same_for_0_1_2_workers_and_from_disk(train_dev, stage):
    train_dir, _ = train_dev
    spec = SpecAugment(time_masks=2, time_mask_max_frames=5, freq_masks=1, freq_mask_max_bins=8)
    mem = FeatureSet.load(train_dir, min_frames=10)
    disk = FeatureSet.load(train_dir, min_frames=10, max_memory_gb=0.0)
    assert mem.in_memory and not disk.in_memory
    plans = [BatchPlan(fs, stage, 8, 32, seed=5, chunk_frames_range=[20, 50], spec_augment=spec)
             for fs in (mem, disk)]
    ref = _loader_batches(plans[0], 0)
    assert [(b["epoch"], b["step"]) for b in ref] == \
        [(e, s) for e in range(2) for s in range(plans[0].steps_per_epoch)]
    for plan in plans:
        for workers in (1, 2):
            _same_batches(ref, _loader_batches(plan, workers))
    # the loader's batch is the plan's, as tensors; a resume at (1, 1) gets the same tail
    direct = plans[0].batch(0, 1)
    key = "feats" if stage == "softmax" else "anchor"
    assert np.array_equal(ref[1][key].numpy(), direct[key])
    _same_batches(ref[plans[0].steps_per_epoch + 1:], _loader_batches(plans[1], 2, epoch=1, step=1))
    # ranks: the two halves of the global batch, whatever the workers
    halves = [_loader_batches(plans[1], 1, rank=r, world_size=2) for r in range(2)]
    for whole, a, b in zip(ref, *halves):
        assert torch.equal(torch.cat([a[key], b[key]]), whole[key])


def _train(conf, train_dir, exp, max_steps):
    argv = ["--config", str(conf), "--max-steps", str(max_steps), str(train_dir), "-", str(exp)]
    assert train_embedding.main(argv) == 0
    return load_checkpoint(exp / "last.pt")


def test_trained_weights_do_not_depend_on_workers_nor_on_a_resume(train_dev, tmp_path,
                                                                  one_torch_thread):
    train_dir, _ = train_dev
    aug = {"spec_augment": {"time_masks": 1, "time_mask_max_frames": 6, "freq_masks": 1,
                            "freq_mask_max_bins": 6}, "chunk_frames_range": [24, 40]}
    runs = {}
    for workers in (0, 1, 2):
        conf = write_config(tmp_path / f"w{workers}.yaml", base_config(
            save_every_steps=100, log_every_steps=2, loader={"num_workers": workers}, **aug))
        runs[workers] = _train(conf, train_dir, tmp_path / f"exp{workers}", 5)
    # stopped mid-epoch (step 2 of 3) with 2 workers, resumed with 1
    conf2 = write_config(tmp_path / "r2.yaml", base_config(
        save_every_steps=100, log_every_steps=2, loader={"num_workers": 2}, **aug))
    conf1 = write_config(tmp_path / "r1.yaml", base_config(
        save_every_steps=100, log_every_steps=2, loader={"num_workers": 1, "prefetch": 3}, **aug))
    _train(conf2, train_dir, tmp_path / "resumed", 2)
    runs["resumed"] = _train(conf1, train_dir, tmp_path / "resumed", 5)
    ref = runs[0]
    assert ref["global_step"] == 5 and (ref["epoch"], ref["step_in_epoch"]) == (1, 2)
    for name, ckpt in runs.items():
        for key, value in ref["model"].items():
            assert torch.equal(value, ckpt["model"][key]), (name, key)
        assert ckpt["history"] == ref["history"], name
        assert ckpt["epoch_stats"] == ref["epoch_stats"], name
    # augmentation changes what is learnt: another signature than the plain config's
    plain = write_config(tmp_path / "plain.yaml", base_config(save_every_steps=100))
    argv = ["--config", str(plain), "--max-steps", "5", str(train_dir), "-", str(tmp_path / "exp0")]
    assert train_embedding.main(argv) == 1


def _write_odd_dir(path):
    """Utterances with VAD gaps, one shorter than the chunk, one float64, one compressed (CM)."""
    rng = np.random.default_rng(7)
    path.mkdir()
    feats, vads = {}, {}
    for u, n in enumerate((90, 130, 25, 70, 60)):
        x = (rng.normal(size=(n, 64)) * 3 + 12).astype(np.float32)
        vad = (rng.random(n) > 0.3).astype(np.float32)
        vad[:4] = 0
        feats[f"s{u % 2}-u{u}"] = x.astype(np.float64) if u == 3 else x
        vads[f"s{u % 2}-u{u}"] = vad
    with kaldiio.WriteHelper(f"ark,scp:{path}/plain.ark,{path}/plain.scp") as w:
        for k in sorted(feats):
            if not k.endswith("u4"):
                w(k, feats[k])
    with kaldiio.WriteHelper(f"ark,scp:{path}/cm.ark,{path}/cm.scp", compression_method=2) as w:
        w("s0-u4", feats["s0-u4"])
    lines = (path / "plain.scp").read_text().splitlines(True) + (path / "cm.scp").read_text().splitlines(True)
    with open(path / "feats.scp", "w") as f:
        f.writelines(sorted(lines))
    with kaldiio.WriteHelper(f"ark,scp:{path}/vad.ark,{path}/vad.scp") as w:
        for k in sorted(vads):
            w(k, vads[k])
    with open(path / "utt2spk", "w") as f:
        f.writelines(f"{k} {k.split('-')[0]}\n" for k in sorted(feats))
    with open(path / "wav.scp", "w") as f:
        f.writelines(f"{k} /dev/null\n" for k in sorted(feats))
    return path


def test_disk_chunks_are_crop_of_prepare_features_bit_for_bit(tmp_path):
    data = _write_odd_dir(tmp_path / "odd")
    disk = FeatureSet.load(data, max_memory_gb=0.0)
    assert not disk.in_memory and len(disk.utts) == 5
    assert disk.utts == ["s0-u0", "s0-u2", "s0-u4", "s1-u1", "s1-u3"]
    assert list(disk.disk.file_id < 0) == [False, False, True, False, False]  # CM: kaldiio
    assert list(disk.disk.is_double) == [False, False, False, False, True]    # DM: by offset
    scp_f, scp_v = kaldiio.load_scp(str(data / "feats.scp")), kaldiio.load_scp(str(data / "vad.scp"))
    rng = np.random.default_rng(0)
    for i, utt in enumerate(disk.utts):
        whole = prepare_features(scp_f[utt], scp_v[utt])
        assert np.array_equal(disk.get(i), whole)
        for frames in (16, 40):
            starts = rng.integers(0, max(1, len(whole) - frames + 1), size=3)
            got = disk.chunks(np.full(3, i), starts, frames)
            for s, chunk in zip(starts, got):
                assert chunk.dtype == np.float32
                assert np.array_equal(chunk, crop(whole, s, frames)), (utt, s, frames)
    # max_frames (dev sets): the first frames of the same normalised utterance
    short = FeatureSet.load(data, max_frames=30, max_memory_gb=0.0)
    for i, utt in enumerate(short.utts):
        assert np.array_equal(short.get(i), prepare_features(scp_f[utt], scp_v[utt])[:30])


def test_spec_augment_masks_are_bounded_deterministic_and_off_is_today(train_dev):
    train_dir, _ = train_dev
    feats = FeatureSet.load(train_dir, min_frames=10)
    plain = BatchPlan(feats, "softmax", 16, 32, seed=3)
    off = BatchPlan(feats, "softmax", 16, 32, seed=3, spec_augment=SpecAugment(),
                    chunk_frames_range=None)
    idx, x = plain.indices(0, 1), plain.batch(0, 1)["feats"]
    starts = (np.random.default_rng([3, 0, 1, 1]).random(16)
              * np.maximum(feats.lengths[idx] - 32 + 1, 1)).astype(np.int64)
    assert np.array_equal(x, np.stack([crop(feats.get(i), s, 32) for i, s in zip(idx, starts)]))
    assert np.array_equal(off.batch(0, 1)["feats"], x)
    spec = SpecAugment(time_masks=2, time_mask_max_frames=7, freq_masks=3, freq_mask_max_bins=5)
    aug = BatchPlan(feats, "softmax", 16, 32, seed=3, spec_augment=spec)
    y = aug.batch(0, 1)["feats"]
    assert np.array_equal(y, aug.batch(0, 1)["feats"])          # deterministic
    assert not np.array_equal(y, x)
    zero = (y == 0) & (x != 0)
    assert np.array_equal(y[~zero], x[~zero])                  # only zeros were written
    masked_frames = zero.all(axis=2).sum(axis=1)                # whole frames zeroed per chunk
    masked_bins = zero.all(axis=1).sum(axis=1)                  # whole bins zeroed per chunk
    assert masked_frames.max() <= 2 * 7 and masked_bins.max() <= 3 * 5
    assert masked_frames.sum() > 0 and masked_bins.sum() > 0
    # every zeroed value lies in a masked frame or bin
    assert np.array_equal(zero, zero.all(axis=2, keepdims=True) | zero.all(axis=1, keepdims=True))
    # ranks mask their rows as the single process does
    halves = [aug.batch(0, 1, rank=r, world_size=2)["feats"] for r in range(2)]
    assert np.array_equal(np.concatenate(halves), y)
    with pytest.raises(ValueError, match="spec_augment.time_masks must be an integer >= 0"):
        SpecAugment(time_masks=-1)


def test_chunk_range_one_length_per_global_batch(train_dev):
    train_dir, _ = train_dev
    feats = FeatureSet.load(train_dir, min_frames=10)
    plan = BatchPlan(feats, "triplet", 8, 32, seed=1, chunk_frames_range=[20, 60])
    lengths = {plan.batch(e, s)["anchor"].shape[1] for e in range(4) for s in range(plan.steps_per_epoch)}
    assert len(lengths) > 1 and all(20 <= n <= 60 for n in lengths)
    whole = plan.batch(2, 0)
    parts = [plan.batch(2, 0, rank=r, world_size=2) for r in range(2)]
    assert parts[0]["anchor"].shape[1] == parts[1]["anchor"].shape[1] == whole["anchor"].shape[1]
    assert np.array_equal(np.concatenate([p["positive"] for p in parts]), whole["positive"])
    with pytest.raises(ValueError, match=r"chunk_frames_range=\[9, 3\]: expected 1 <= min <= max"):
        BatchPlan(feats, "triplet", 8, 32, chunk_frames_range=[9, 3])
    cfg = train_config_from_dict({"chunk_frames_range": [100, 200]})
    assert cfg.chunk_frames_range == [100, 200] and "chunk_frames_range" in cfg.without_run_settings()
    assert "chunk_frames_range" not in train_config_from_dict({}).without_run_settings()
    assert "loader" not in cfg.without_run_settings()


def test_in_memory_set_is_one_buffer_that_workers_share(train_dev):
    train_dir, _ = train_dev
    feats = FeatureSet.load(train_dir, min_frames=10)
    buf = feats.buffer
    assert buf.dtype == np.float32 and buf.flags.c_contiguous and buf.base is None
    assert buf.shape[0] == feats.lengths.sum() == feats.offsets[-1]
    for i in range(len(feats.utts)):
        assert feats.get(i).base is buf and feats.feats[i].base is buf
    # a list of matrices (bench_train builds one) is packed the same way
    packed = FeatureSet(utts=feats.utts, feats=[feats.get(i).copy() for i in range(len(feats.utts))],
                        speakers=feats.speakers, labels=feats.labels, utt2spk=feats.utt2spk)
    assert packed.buffer.base is None and np.array_equal(packed.buffer, buf)
    assert default_num_workers(1) == 0 and default_num_workers(2) == 1 and default_num_workers(64) == 8


def test_bench_loader_prints_positive_figures(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_loader.py"), "--num-utts", "200",
                          "--batches", "3", "--step-batches", "2", "--work-dir", str(tmp_path / "w")],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "RESULT":
            figures[parts[1]] = float(parts[2])
    for name in ("loader_w0", "loader_w1", "loader_w2", "loader_all", "step", "ratio_step",
                 "ratio_gpu", "rss_main_mb", "rss_worker_mb"):
        assert figures.get(name, 0) > 0, (name, out.stdout)
    assert "read" in out.stdout and "normalise" in out.stdout and "collate" in out.stdout


def test_softmax_steps_read_nothing_back_from_the_device_between_logging_steps(
        train_dev, tmp_path, monkeypatch, one_torch_thread):
    """Tensor -> Python conversions (each a host-device sync on CUDA) only on logging steps."""
    from deepspeaker.nnet import trainer as trainer_mod
    from deepspeaker.nnet.checkpoint import EpochStats
    from deepspeaker.nnet.distributed import init_distributed

    reads, where = {"n": 0, "on": False}, {}
    def counter(original):
        def counted(self, *a, **k):
            reads["n"] += reads["on"]
            return original(self, *a, **k)
        return counted
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counter(getattr(torch.Tensor, name)))

    def counting(fn, label):
        def wrapped(*a, **k):
            reads["on"], before = True, reads["n"]
            try:
                return fn(*a, **k)
            finally:
                reads["on"] = False
                where.setdefault(label, []).append(reads["n"] - before)
        return wrapped
    monkeypatch.setattr(trainer_mod, "train_step", counting(trainer_mod.train_step, "step"))
    monkeypatch.setattr(trainer_mod, "log_step", counting(trainer_mod.log_step, "log"))
    monkeypatch.setattr(EpochStats, "add", counting(EpochStats.add, "stats"))
    cfg = train_config_from_dict(base_config(log_every_steps=4, save_every_steps=100, epochs=2,
                                             loader={"num_workers": 0}))
    trainer_mod.train(cfg, train_dev[0], None, tmp_path / "exp", init_distributed("cpu"), max_steps=5)
    assert where["step"] == [0] * 5 and where["stats"] == [0] * 5
    assert len(where["log"]) == 1 and where["log"][0] > 0    # step 4 logs: it reads
    # the device sums are the float sums, bit for bit
    losses = [torch.tensor(v, dtype=torch.float32) for v in (0.3, 1.7, 2.9e-3, 5.0)]
    on_device, plain = EpochStats(loss_sum=0.1), EpochStats(loss_sum=0.1)
    for v in losses:
        on_device.add({"loss": v.double(), "acc": v}, torch.tensor(False))
        plain.add({"loss": float(v)}, False)
    assert on_device.sync() == plain and on_device.mean_loss() == plain.mean_loss()


@pytest.mark.parametrize("stage", ["softmax", "triplet"])
def test_a_worker_sends_no_tensor_only_numbers_and_numpy(train_dev, stage, monkeypatch):
    """No file descriptor per batch (torch's tensor sharing): its socket thread in the
    worker printed a traceback when Ctrl-C stopped the main process mid-transfer."""
    from multiprocessing.reduction import ForkingPickler
    from types import SimpleNamespace

    import deepspeaker.nnet.loader as loader_mod

    plan = BatchPlan(FeatureSet.load(train_dev[0], min_frames=10), stage, 8, 32, seed=5)
    ref = _loader_batches(plan, 0, epochs=1)
    rows = plan.batch_size * (2 if stage == "triplet" else 1)
    slots = loader_mod.SharedSlots(1, 2, rows * 32 * plan.feats.num_bins, wait_s=0.01)
    dataset = loader_mod.StepBatches(plan, 0, 0, 1, slots=slots)
    monkeypatch.setattr(loader_mod, "get_worker_info", lambda: SimpleNamespace(id=0))
    sent = [ForkingPickler.loads(ForkingPickler.dumps(dataset[k])) for k in range(3)]
    assert all(b"torch" not in bytes(ForkingPickler.dumps(s)) for s in sent)
    assert [s.slot for s in sent] == [0, 1, -1]   # two slots, then by value
    got = [s.tensors() for s in sent]
    assert [g.pop("slot", None) for g in got] == [(0, 0), (0, 1), None]
    _same_batches(got, ref[:3])
    slots.release({"slot": (0, 0)})
    assert dataset[3].slot == 0
