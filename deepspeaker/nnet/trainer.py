"""Training of the Deep Speaker embedding networks: softmax pre-training, triplet fine-tuning.

Paper §3.4 and §4.3 (SPEC L1, L2, L3, O1, D1):

* stage ``softmax``: the embedding network plus a classification layer over the
  training speakers, cross-entropy (L1); stage ``triplet``: the cosine triplet loss
  with hard negatives searched over the whole batch on all ranks (L2, L3), usually
  started from the softmax model (``init``).  What differs between the stages lives in
  their :mod:`~deepspeaker.nnet.objectives`; this loop only loops.
* synchronous SGD, momentum 0.99, learning rate decreasing linearly, per step, from
  0.05 to 0.005 over the whole run; pairs re-shuffled each epoch; a dev set for early
  stopping (O1).  One code path for 1 or N ranks under torchrun (D1).

:func:`train` reads in one screen: :func:`build_run` (data, network, optimizer),
:func:`resume` or :func:`init`, then per epoch :func:`train_one_epoch` and
:func:`end_of_epoch` (dev EER, best/last, early stopping, ``train_log.tsv``).

Outputs in ``exp_dir``: ``config.yaml`` (the merged config), ``last.pt`` (every
``save_every_steps`` steps and at each epoch end), ``best.pt`` (lowest dev EER),
``train_log.tsv`` (one row per epoch) and ``log/train.rank<r>.log``.  Only rank 0
writes.  Checkpoints: :mod:`deepspeaker.nnet.checkpoint`.

The disk and interrupts: ``exp_dir`` is checked writable before the data are loaded; a
full disk at a checkpoint is ``cannot write <exp>/last.pt: No space left on device``
with no temp file left (``save_checkpoint``); Ctrl-C or SIGTERM stops the loader's
workers and exits 130 / 143 (``bin/_cli.run_main``), and a rerun resumes from the last
``last.pt``; temp files of killed runs are removed when a run starts.

Rerunning (the rerun rule of :mod:`deepspeaker.marker`): ``last.pt`` records the
signature of what made the experiment (the config without its run settings, the
training and dev data, the ``init`` checkpoint).  The same signature continues from
``last.pt`` at the same batch, or does nothing when training has finished; another
signature is refused, naming what differs and the force command ``rm -r <exp_dir>``.

Run settings (:data:`~deepspeaker.nnet.config.RUN_SETTINGS`; SPEC: "on CUDA, bf16
autocast and channels-last for ResCNN"):

* ``amp``: ``auto`` (bf16 on CUDA, off elsewhere), ``bf16`` or ``off``.  With bf16 the
  training forward runs under ``torch.autocast(device, torch.bfloat16)``; the
  embeddings are cast to float32 before the loss, so the softmax head's cross-entropy
  and the triplet loss with its negative mining are float32, and the parameters, their
  gradients and the SGD momentum stay float32 (the master weights).  The dev EER
  embeddings are always computed in float32 with the default memory format, so the
  dev EER (and the choice of ``best.pt``) does not depend on these settings.
* ``channels_last``: ``auto`` (true for ResCNN on CUDA), ``true`` or ``false``:
  ``model.to(memory_format=torch.channels_last)`` for ResCNN (ignored for the GRU).
* ``max_memory_gb``: the training and dev features are kept in memory when their
  estimated size is within this, else read from disk per batch (same batches).
* ``loader``: ``num_workers`` (``auto``: from the cores this process may use) worker
  processes build the batches ahead of the step, ``prefetch`` each
  (:mod:`deepspeaker.nnet.loader`); the batches are the same whatever their number.

No step waits for the device except on logging steps: the loss and statistics stay
device tensors (:class:`~deepspeaker.nnet.checkpoint.EpochStats` sums them there),
and the log line, the collapse check and checkpoints read them back.

All of these, like ``device`` and the checkpoint and log cadence, change how a run
computes, not what it learns from: they may change between restarts and are not part
of the signature; checkpoints hold float32 weights in the default layout whatever they are.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepspeaker.nnet.checkpoint import (CHECKPOINT_VERSION, EpochStats, TrainState,
                                         check_signature, experiment_signature, load_checkpoint,
                                         load_init, load_weights, remove_stale_temps, rng_state,
                                         save_checkpoint, set_rng_state, training_checkpoint)
from deepspeaker.nnet.config import (LR_END, LR_START, MOMENTUM, RUN_SETTINGS, OptimizerSection,
                                     TrainConfig, resolve_speed_settings, train_config_from_dict)
from deepspeaker.nnet.data import BatchPlan, FeatureSet, pad_batch
from deepspeaker.nnet.distributed import DistInfo, barrier, broadcast_from_main, is_main
from deepspeaker.nnet.loader import batch_loader, iterate_batches, resolve_num_workers
from deepspeaker.nnet.models import build_model
from deepspeaker.nnet.objectives import (AT_MARGIN_TOL, Objective, SoftmaxClassifier, Step,
                                         TripletNet, build_objective)
from deepspeaker.scoring import compute_eer, make_trials
from deepspeaker.utils import ConfigError, require_writable, save_yaml

logger = logging.getLogger(__name__)

COLLAPSE_COSINE = 0.99  # mean pairwise cosine of a batch above this: embeddings collapsed
RESUMABLE_CHANGES = RUN_SETTINGS  # the old name
TRAIN_LOG_COLUMNS = ("epoch", "step", "loss", "prob_hard", "dev_eer")


def train(config: TrainConfig, train_dir, dev_dir, exp_dir, info: DistInfo,
          max_steps: int | None = None) -> dict:
    """Train (or continue training) the experiment ``exp_dir``; returns the final state summary.

    ``max_steps`` stops after that many optimizer steps in total (counted over the
    whole run, resumes included), saving ``last.pt``: for tests and time-boxed runs.
    """
    exp_dir = Path(exp_dir)
    sig = experiment_signature(config, train_dir, dev_dir)
    saved = resumable_checkpoint(exp_dir, sig)
    if saved is not None and TrainState.from_checkpoint(saved).finished(config):
        logger.info("%s is up to date (same config and data): nothing to do", exp_dir)
        return finish(config, exp_dir, info, TrainState.from_checkpoint(saved))
    if is_main(info):
        require_writable(exp_dir)  # before the data are loaded, not at the first checkpoint
    run = build_run(config, train_dir, dev_dir, exp_dir, info, sig)
    state = resume(run, saved) if saved is not None else init(run)
    start(run, state)
    try:
        while not state.finished(config):
            if not train_one_epoch(run, state, max_steps):
                return {"status": "max_steps", **state.to_dict()}
            end_of_epoch(run, state)
    finally:
        run.close()
    return finish(config, exp_dir, info, state)


# --------------------------------------------------------------------------- building


@dataclass
class TrainingRun:
    """What one call of :func:`train` works with, built once by :func:`build_run`."""

    config: TrainConfig
    info: DistInfo
    exp_dir: Path
    train_dir: Any
    signature: dict
    train_set: FeatureSet
    plan: BatchPlan
    dev_set: FeatureSet | None
    trials: list | None
    model: nn.Module            # the embedding network (what extraction loads)
    objective: Objective
    net: nn.Module              # the objective's network around ``model``
    optimizer: torch.optim.Optimizer
    use_bf16: bool
    runner: nn.Module | None = None   # ``net``, or its DDP wrapper with several ranks
    progress: Any = None
    batches: Any = None               # the loader's iterator from the resumed step on

    def close(self) -> None:
        """Stop the loader's workers and the progress bar."""
        if self.batches is not None:
            self.batches.close()   # releases the DataLoader iterator, which ends its workers
            self.batches = None
        if self.progress is not None:
            self.progress.close()

    @property
    def last_path(self) -> Path:
        return self.exp_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.exp_dir / "best.pt"

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.plan.steps_per_epoch

    def forward(self, *inputs):
        """The network on ``inputs`` under this run's autocast (the objectives call it)."""
        with torch.autocast(self.info.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            return self.runner(*inputs)

    def save(self, path: Path, state: TrainState) -> None:
        if is_main(self.info):
            save_checkpoint(path, training_checkpoint(self.model, self.optimizer,
                                                      self.objective.state_dict(), self.config,
                                                      self.signature, state))


def resumable_checkpoint(exp_dir: Path, sig: dict) -> dict | None:
    """``exp_dir/last.pt`` if it exists (refused unless made from ``sig``), else None."""
    path = exp_dir / "last.pt"
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    check_signature(ckpt, sig, path, exp_dir)
    return ckpt


def load_data(config: TrainConfig, train_dir, dev_dir, info: DistInfo):
    """(training set, batch plan, dev set or None, dev trials or None)."""
    train_set = FeatureSet.load(train_dir, min_frames=config.min_frames,
                                max_memory_gb=config.max_memory_gb)
    plan = BatchPlan(train_set, config.stage, config.batch_size, config.chunk_frames, config.seed,
                     chunk_frames_range=config.chunk_frames_range,
                     spec_augment=config.spec_augment,
                     sample_classes=config.softmax.sample_classes)
    if config.batch_size % info.world_size:
        raise ConfigError(f"batch_size={config.batch_size} is not divisible by "
                          f"{info.world_size} ranks")
    if not (config.dev.enabled and dev_dir is not None):
        return train_set, plan, None, None
    dev_set = FeatureSet.load(dev_dir, min_frames=1, max_frames=config.dev.max_frames or None,
                              max_memory_gb=config.max_memory_gb)
    trials = make_trials(dev_set.utt2spk, num_negatives=config.dev.num_negatives, seed=config.seed)
    if not trials:
        raise ConfigError(f"{dev_dir}: no dev trials (every speaker needs >= 2 utterances)")
    return train_set, plan, dev_set, trials


def build_run(config: TrainConfig, train_dir, dev_dir, exp_dir: Path, info: DistInfo,
              sig: dict) -> TrainingRun:
    """Seeds, data, the embedding network inside the objective's network, the optimizer."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    train_set, plan, dev_set, trials = load_data(config, train_dir, dev_dir, info)
    model = build_model(config.model.name, **config.model.options)
    if model.options.num_mel_bins != train_set.num_bins:
        raise ConfigError(f"model expects {model.options.num_mel_bins} bins, {train_dir} has "
                          f"{train_set.num_bins}")
    objective = build_objective(config, train_set, info)
    net = objective.build(model)
    net.to(info.device)
    use_bf16, use_channels_last = resolve_speed_settings(config, info.device)
    if use_channels_last:
        # Parameters stay float32; only the layout of ResCNN's 4-d conv weights changes.
        # state_dict() tensors keep that layout, but load into any layout (values only).
        model.to(memory_format=torch.channels_last)
    logger.info("device %s: bf16 autocast %s (amp=%s), channels_last %s (channels_last=%s)",
                info.device, "on" if use_bf16 else "off", config.amp,
                "on" if use_channels_last else "off", config.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.optimizer.lr_start,
                                momentum=config.optimizer.momentum,
                                weight_decay=config.optimizer.weight_decay)
    return TrainingRun(config=config, info=info, exp_dir=exp_dir, train_dir=train_dir,
                       signature=sig, train_set=train_set, plan=plan, dev_set=dev_set,
                       trials=trials, model=model, objective=objective, net=net,
                       optimizer=optimizer, use_bf16=use_bf16)


def resume(run: TrainingRun, ckpt: dict) -> TrainState:
    """Restore weights, optimizer, generators and the objective's state from ``last.pt``."""
    # the architecture check and weights that do not fit are one message naming last.pt
    load_weights(run.model, ckpt, run.last_path)
    run.objective.check_resume(ckpt["objective"], run.last_path, run.train_dir)
    run.objective.load_state_dict(ckpt["objective"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    state = TrainState.from_checkpoint(ckpt)
    logger.info("resuming %s at epoch %d step %d (global step %d)", run.last_path,
                state.epoch, state.step_in_epoch, state.global_step)
    return state


def init(run: TrainingRun) -> TrainState:
    """A fresh start, from the config's ``init`` checkpoint when it names one."""
    if run.config.init:
        load_init(run.config.init, run.model)
    return TrainState()


def start(run: TrainingRun, state: TrainState) -> None:
    """Rank 0 tidies the exp dir and writes config.yaml; DDP wrapper; progress bar."""
    config, info = run.config, run.info
    if is_main(info):
        remove_stale_temps([run.last_path, run.best_path])
        save_yaml(run.exp_dir / "config.yaml", config.to_dict())
    run.runner = run.net
    if info.distributed:
        ddp_kwargs = {"device_ids": [info.device.index]} if info.device.type == "cuda" else {}
        run.runner = nn.parallel.DistributedDataParallel(run.net, **ddp_kwargs)
    if is_main(info):
        from tqdm import tqdm

        run.progress = tqdm(total=run.total_steps, initial=state.global_step, unit="step",
                            dynamic_ncols=True, disable=None)
    logger.info("stage %s: %d steps per epoch x %d epochs, global batch %d %s over %d rank(s)",
                config.stage, run.plan.steps_per_epoch, config.epochs, config.batch_size,
                run.objective.unit, info.world_size)
    run.batches = start_loader(run, state)


def start_loader(run: TrainingRun, state: TrainState):
    """The batches of every step from ``state`` on, built by the loader's workers."""
    workers = resolve_num_workers(run.config.loader.num_workers)
    pin = run.info.device.type == "cuda"
    logger.info("loader: %d worker(s), %d batch(es) ahead each%s", workers,
                run.config.loader.prefetch, ", pinned memory" if pin else "")
    loader = batch_loader(run.plan, state.epoch, state.step_in_epoch, run.config.epochs,
                          run.info.rank, run.info.world_size, num_workers=workers,
                          prefetch=run.config.loader.prefetch, pin_memory=pin)
    return iterate_batches(loader)


# --------------------------------------------------------------------------- the loop


def train_one_epoch(run: TrainingRun, state: TrainState, max_steps: int | None) -> bool:
    """The remaining steps of epoch ``state.epoch``; False when ``max_steps`` stopped it."""
    config = run.config
    tick, tick_utts = time.time(), 0
    while state.step_in_epoch < run.plan.steps_per_epoch:
        if max_steps is not None and state.global_step >= max_steps:
            run.save(run.last_path, state)
            barrier(run.info)
            logger.info("stopping at max_steps=%d (epoch %d step %d); rerun to continue",
                        max_steps, state.epoch + 1, state.step_in_epoch)
            return False
        lr, step = train_step(run, state)
        state.global_step += 1
        state.step_in_epoch += 1
        state.epoch_stats.add(step.stats, run.objective.at_margin(step.stats))
        tick_utts += step.utterances
        if run.progress is not None:
            run.progress.update(1)
        if state.global_step % config.log_every_steps == 0:
            rate = tick_utts / max(1e-9, time.time() - tick)
            tick, tick_utts = time.time(), 0
            log_step(run, state, step, lr, rate)
        if state.global_step % config.save_every_steps == 0:
            run.save(run.last_path, state)
    return True


def train_step(run: TrainingRun, state: TrainState) -> tuple[float, Step]:
    """One SGD step on global batch ``state.step_in_epoch`` of ``state.epoch``."""
    lr = learning_rate(run.config.optimizer, state.global_step, run.total_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    batch = next(run.batches)
    if (batch["epoch"], batch["step"]) != (state.epoch, state.step_in_epoch):
        raise RuntimeError(f"loader gave epoch {batch['epoch']} step {batch['step']} for epoch "
                           f"{state.epoch} step {state.step_in_epoch}")
    run.optimizer.zero_grad(set_to_none=True)
    step = run.objective.compute(run.forward, batch)
    step.loss.backward()
    run.optimizer.step()
    run.objective.step(lr)
    return lr, step


def log_step(run: TrainingRun, state: TrainState, step: Step, lr: float, rate: float) -> None:
    """The periodic log line and progress-bar figures; the collapse warning."""
    cos = mean_pairwise_cosine(step.embeddings)
    stats = {k: float(v) for k, v in step.stats.items()}   # the step's one host sync
    msg = " ".join(f"{k} {v:.4f}" for k, v in stats.items())
    logger.info("epoch %d step %d/%d (global %d): %s lr %.5f %.1f utt/s", state.epoch + 1,
                state.step_in_epoch, run.plan.steps_per_epoch, state.global_step, msg, lr, rate)
    if run.progress is not None:
        run.progress.set_postfix({**{k: f"{v:.3f}" for k, v in stats.items()},
                                  "lr": f"{lr:.4f}", "utt/s": f"{rate:.0f}"})
    if cos > COLLAPSE_COSINE:
        logger.warning("embeddings collapsing: mean pairwise cosine of the batch "
                       "is %.4f (> %.2f)", cos, COLLAPSE_COSINE)


def end_of_epoch(run: TrainingRun, state: TrainState) -> None:
    """Dev EER, best/last checkpoints, the early-stopping count, a train_log.tsv row."""
    epoch, has_dev = state.epoch, run.dev_set is not None
    loss_mean = state.epoch_stats.mean_loss()
    prob_hard = run.objective.end_of_epoch(state.epoch_stats, epoch)
    eer = math.nan
    if has_dev:
        if is_main(run.info):
            eer = dev_eer(run.model, run.dev_set, run.trials, run.info.device,
                          run.config.dev.batch_size)
        eer = broadcast_from_main(eer, run.info)
    improved = not has_dev or eer < state.best_eer
    if improved:
        state.best_eer = eer if has_dev else math.inf
        state.bad_epochs = 0
    else:
        state.bad_epochs += 1
    state.history.append([epoch + 1, state.global_step, loss_mean, prob_hard,
                          None if math.isnan(eer) else eer])
    logger.info("epoch %d done: loss %.4f%s dev EER %s%s", epoch + 1, loss_mean,
                f" prob_hard {prob_hard:.3f}" if prob_hard is not None else "",
                "n/a" if math.isnan(eer) else f"{100 * eer:.2f}%",
                " (best)" if improved and has_dev else "")
    state.epoch += 1
    state.step_in_epoch = 0
    state.epoch_stats = EpochStats()
    run.save(run.last_path, state)
    if improved:
        run.save(run.best_path, state)
    if is_main(run.info):
        write_train_log(run.exp_dir / "train_log.tsv", state.history)


def finish(config: TrainConfig, exp_dir: Path, info: DistInfo, state: TrainState) -> dict:
    """Make sure best.pt exists, wait for every rank, log the outcome; the summary dict."""
    status = state.finished(config)
    last_path, best_path = exp_dir / "last.pt", exp_dir / "best.pt"
    if is_main(info) and not best_path.exists() and last_path.exists():
        save_checkpoint(best_path, load_checkpoint(last_path))
    barrier(info)
    logger.info("training %s after %d epochs (%d steps); best dev EER %s", status,
                state.epoch, state.global_step,
                "n/a" if math.isinf(state.best_eer) else f"{100 * state.best_eer:.2f}%")
    return {"status": status, **state.to_dict()}


# --------------------------------------------------------------------------- helpers


def learning_rate(opt: OptimizerSection, step: int, total_steps: int) -> float:
    """Linear from lr_start at step 0 to lr_end at the last step (paper §4.3)."""
    frac = step / max(1, total_steps - 1)
    return opt.lr_start + (opt.lr_end - opt.lr_start) * min(1.0, frac)


def mean_pairwise_cosine(emb: torch.Tensor) -> float:
    """Mean cosine between distinct rows of unit vectors ``emb``."""
    n = emb.shape[0]
    if n < 2:
        return 0.0
    e = emb.detach().double()
    s = e.sum(dim=0)
    return float((s @ s - (e * e).sum()) / (n * (n - 1)))


@torch.no_grad()
def embed_utterances(model: nn.Module, feats: FeatureSet, device: torch.device,
                     batch_size: int = 32) -> np.ndarray:
    """Unit embeddings (U, D) of whole utterances, in eval mode, batched by similar length.

    Runs in float32 (the caller's autocast is switched off here); a channels_last
    ResCNN gives the same embeddings up to float32 rounding.
    """
    was_training = model.training
    model.eval()
    order = np.argsort(feats.lengths, kind="stable")
    out = np.zeros((len(feats.utts), model.options.embedding_dim), dtype=np.float32)
    try:
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x, lengths = pad_batch([feats.get(j) for j in idx])
            emb = model(torch.from_numpy(x).to(device), torch.from_numpy(lengths).to(device))
            out[idx] = emb.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def dev_eer(model: nn.Module, dev: FeatureSet, trials, device: torch.device,
            batch_size: int = 32) -> float:
    """EER of cosine scores of whole-utterance embeddings on the dev ``trials``."""
    emb = embed_utterances(model, dev, device, batch_size)
    row = {u: i for i, u in enumerate(dev.utts)}
    enroll = np.array([row[t.enroll] for t in trials])
    test = np.array([row[t.test] for t in trials])
    scores = (emb[enroll] * emb[test]).sum(axis=1)
    labels = np.array([t.target for t in trials], dtype=bool)
    return compute_eer(scores, labels)[0]


def write_train_log(path: Path, history: list) -> None:
    """``train_log.tsv``: the :data:`TRAIN_LOG_COLUMNS` of every finished epoch."""
    from deepspeaker.utils import atomic_write

    def fmt(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (
            f"{v:.6g}" if isinstance(v, float) else str(v))

    with atomic_write(path) as f:
        f.write("\t".join(TRAIN_LOG_COLUMNS) + "\n")
        for row in history:
            f.write("\t".join(fmt(v) for v in row) + "\n")


__all__ = ["AT_MARGIN_TOL", "CHECKPOINT_VERSION", "COLLAPSE_COSINE", "LR_END", "LR_START",
           "MOMENTUM", "RESUMABLE_CHANGES", "TRAIN_LOG_COLUMNS", "SoftmaxClassifier",
           "TrainConfig", "TrainingRun", "TripletNet", "dev_eer", "embed_utterances",
           "end_of_epoch", "learning_rate", "load_checkpoint", "load_init",
           "mean_pairwise_cosine", "resolve_speed_settings", "rng_state", "save_checkpoint",
           "set_rng_state", "train", "train_config_from_dict", "train_one_epoch"]
