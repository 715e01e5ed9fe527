"""Training of the Deep Speaker embedding networks: softmax pre-training, triplet fine-tuning.

Paper §3.4 and §4.3 (SPEC L1, L2, L3, O1, D1):

* stage ``softmax``: the embedding network plus a classification layer over the
  training speakers, cross-entropy (L1); stage ``triplet``: the cosine triplet loss
  with hard negatives searched over the whole batch on all ranks (L2, L3), usually
  started from the softmax model (``init``).
* synchronous SGD, momentum 0.99, learning rate decreasing linearly, per step, from
  0.05 to 0.005 over the whole run; pairs re-shuffled each epoch; a dev set for early
  stopping (O1).  One code path for 1 or N ranks under torchrun (D1).

Outputs in ``exp_dir``: ``config.yaml`` (the merged config), ``last.pt`` (every
``save_every_steps`` steps and at each epoch end), ``best.pt`` (lowest dev EER),
``train_log.tsv`` (one row per epoch) and ``log/train.rank<r>.log``.  Only rank 0
writes.  Running the same command again continues from ``last.pt`` at the same batch.

Run settings (SPEC: "on CUDA, bf16 autocast and channels-last for ResCNN"):

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

All three, like ``device``, change how a run computes, not what it learns from: they
may change between restarts and are not part of the config a resume must match;
checkpoints hold float32 weights in the default layout whatever they are.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from deepspeaker.nnet.data import STAGES, BatchPlan, FeatureSet, pad_batch
from deepspeaker.nnet.distributed import DistInfo, barrier, is_main
from deepspeaker.nnet.models import build_model, check_compatible
from deepspeaker.nnet.triplet import MARGIN, GlobalTripletLoss
from deepspeaker.scoring import compute_eer, make_trials
from deepspeaker.utils import ConfigError, DeepSpeakerError, dataclass_from_dict, save_yaml

logger = logging.getLogger(__name__)

LR_START = 0.05  # paper §4.3
LR_END = 0.005  # paper §4.3
MOMENTUM = 0.99  # paper §4.3
COLLAPSE_COSINE = 0.99  # mean pairwise cosine of a batch above this: embeddings collapsed
# Per-anchor triplet loss within 5% of the margin: s_an ~ s_ap, nothing separates.
AT_MARGIN_TOL = 0.05
CHECKPOINT_VERSION = 1
RESUMABLE_CHANGES = ("device", "save_every_steps", "log_every_steps", "amp", "channels_last",
                     "max_memory_gb")
AMP_MODES = ("auto", "bf16", "off")


@dataclass
class ModelSection:
    name: str = "rescnn"
    options: dict = field(default_factory=dict)


@dataclass
class OptimizerSection:
    lr_start: float = LR_START
    lr_end: float = LR_END
    momentum: float = MOMENTUM
    weight_decay: float = 0.0


@dataclass
class SoftmaxSection:
    # The head sees unit-length embeddings, so W e is bounded by |W| and starts near 0
    # for every class: the softmax is almost uniform and its gradient tiny.  Multiplying
    # the embedding by a fixed scale (as in normalised-softmax / AM-softmax training)
    # gives logits a usable range from the first step.
    scale: float = 16.0


@dataclass
class TripletSection:
    margin: float = MARGIN
    scope: str = "global"
    selection: str = "hardest"


@dataclass
class DevSection:
    enabled: bool = True
    num_negatives: int = 19     # paper §4.1 uses 99; fewer keep the per-epoch check cheap
    max_frames: int = 0         # 0: the whole voiced utterance
    batch_size: int = 32


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    stage: str = "softmax"
    chunk_frames: int = 160
    min_frames: int = 20
    batch_size: int = 64
    epochs: int = 10
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    softmax: SoftmaxSection = field(default_factory=SoftmaxSection)
    triplet: TripletSection = field(default_factory=TripletSection)
    dev: DevSection = field(default_factory=DevSection)
    early_stopping_patience: int = 0  # epochs without a lower dev EER before stopping; 0: never
    seed: int = 0
    init: str | None = None
    save_every_steps: int = 200
    log_every_steps: int = 10
    device: str = "auto"
    amp: str = "auto"                   # auto | bf16 | off (auto: bf16 on CUDA)
    channels_last: str | bool = "auto"  # auto | true | false (auto: ResCNN on CUDA)
    max_memory_gb: float = 8.0          # features larger than this are read from disk per batch

    def __post_init__(self) -> None:
        if self.amp is False:  # YAML 1.1 reads a bare `off` as false
            self.amp = "off"
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r}: expected one of {', '.join(AMP_MODES)}")
        if isinstance(self.channels_last, str) and self.channels_last.lower() in ("true", "false"):
            self.channels_last = self.channels_last.lower() == "true"
        if self.channels_last not in ("auto", True, False) or \
                (self.channels_last != "auto" and not isinstance(self.channels_last, bool)):
            raise ValueError(f"channels_last={self.channels_last!r}: expected auto, true or false")
        if isinstance(self.max_memory_gb, bool) or not isinstance(self.max_memory_gb, (int, float)) \
                or not self.max_memory_gb >= 0:
            raise ValueError(f"max_memory_gb must be a number >= 0, got {self.max_memory_gb!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r}: expected one of {', '.join(STAGES)}")
        for key in ("chunk_frames", "min_frames", "batch_size", "epochs", "save_every_steps",
                    "log_every_steps"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def train_config_from_dict(values: Mapping[str, Any] | None, where: str = "train config") -> TrainConfig:
    """Build a :class:`TrainConfig`; unknown keys at any level are a ConfigError naming them."""
    return dataclass_from_dict(TrainConfig, values, where=where)


# --------------------------------------------------------------------------- helpers


class SoftmaxClassifier(nn.Module):
    """Embedding network + scaled linear classification layer over the training speakers (§3.4)."""

    def __init__(self, embedder: nn.Module, num_speakers: int, scale: float):
        super().__init__()
        self.embedder = embedder
        self.scale = scale
        self.head = nn.Linear(embedder.options.embedding_dim, num_speakers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embedder(x)
        # Under a caller's autocast the embedder may run in bf16; the head is float32.
        with torch.autocast(emb.device.type, enabled=False):
            emb = emb.float()
            return self.head(self.scale * emb), emb


class TripletNet(nn.Module):
    """Anchor and positive chunks through one forward (one DDP reduction per step)."""

    def __init__(self, embedder: nn.Module):
        super().__init__()
        self.embedder = embedder

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor):
        emb = self.embedder(torch.cat([anchor, positive], dim=0))
        return emb[: anchor.shape[0]], emb[anchor.shape[0]:]


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


def rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path: Path, checkpoint: Mapping[str, Any]) -> None:
    """torch.save to a temp file beside ``path``, then rename (a kill never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(dict(checkpoint), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | os.PathLike) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DeepSpeakerError(f"{path}: checkpoint not found") from None


def load_init(path: str | os.PathLike, model: nn.Module) -> None:
    """Start ``model`` from the embedding weights of another experiment's checkpoint."""
    ckpt = load_checkpoint(path)
    if "model" not in ckpt or "model_config" not in ckpt:
        raise ConfigError(f"{path}: not a training checkpoint (no 'model' / 'model_config')")
    check_compatible(ckpt["model_config"], model.config(), path)
    model.load_state_dict(ckpt["model"])
    logger.info("initialised the embedding network from %s (stage %s, epoch %s)", path,
                ckpt.get("train_config", {}).get("stage", "?"), ckpt.get("epoch", "?"))


def resolve_speed_settings(config: TrainConfig, device: torch.device) -> tuple[bool, bool]:
    """(bf16 autocast on, channels_last on) for ``config`` on ``device``."""
    bf16 = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    if config.channels_last == "auto":
        channels_last = config.model.name == "rescnn" and device.type == "cuda"
    else:
        channels_last = bool(config.channels_last) and config.model.name == "rescnn"
    return bf16, channels_last


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
    emb = embed_utterances(model, dev, device, batch_size)
    row = {u: i for i, u in enumerate(dev.utts)}
    enroll = np.array([row[t.enroll] for t in trials])
    test = np.array([row[t.test] for t in trials])
    scores = (emb[enroll] * emb[test]).sum(axis=1)
    labels = np.array([t.target for t in trials], dtype=bool)
    return compute_eer(scores, labels)[0]


def write_train_log(path: Path, history: list) -> None:
    from deepspeaker.utils import atomic_write

    def fmt(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (
            f"{v:.6g}" if isinstance(v, float) else str(v))

    with atomic_write(path) as f:
        f.write("epoch\tstep\tloss\tprob_hard\tdev_eer\n")
        for row in history:
            f.write("\t".join(fmt(v) for v in row) + "\n")


# --------------------------------------------------------------------------- training


def _broadcast(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return value
    obj = [value]
    dist.broadcast_object_list(obj, src=0)
    return obj[0]


def train(config: TrainConfig, train_dir, dev_dir, exp_dir, info: DistInfo,
          max_steps: int | None = None) -> dict:
    """Train (or continue training) the experiment ``exp_dir``; returns the final state summary.

    ``max_steps`` stops after that many optimizer steps in total (counted over the
    whole run, resumes included), saving ``last.pt``: for tests and time-boxed runs.
    """
    exp_dir = Path(exp_dir)
    last_path, best_path = exp_dir / "last.pt", exp_dir / "best.pt"
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)

    train_set = FeatureSet.load(train_dir, min_frames=config.min_frames,
                                max_memory_gb=config.max_memory_gb)
    plan = BatchPlan(train_set, config.stage, config.batch_size, config.chunk_frames, config.seed)
    if config.batch_size % info.world_size:
        raise ConfigError(f"batch_size={config.batch_size} is not divisible by "
                          f"{info.world_size} ranks")
    dev_set, trials = None, None
    if config.dev.enabled and dev_dir is not None:
        dev_set = FeatureSet.load(dev_dir, min_frames=1, max_frames=config.dev.max_frames or None,
                                  max_memory_gb=config.max_memory_gb)
        trials = make_trials(dev_set.utt2spk, num_negatives=config.dev.num_negatives,
                             seed=config.seed)
        if not trials:
            raise ConfigError(f"{dev_dir}: no dev trials (every speaker needs >= 2 utterances)")

    model = build_model(config.model.name, **config.model.options)
    if model.options.num_mel_bins != train_set.num_bins:
        raise ConfigError(f"model expects {model.options.num_mel_bins} bins, {train_dir} has "
                          f"{train_set.num_bins}")
    if config.stage == "softmax":
        net: nn.Module = SoftmaxClassifier(model, len(train_set.speakers), config.softmax.scale)
        criterion = None
    else:
        net = TripletNet(model)
        criterion = GlobalTripletLoss(margin=config.triplet.margin, scope=config.triplet.scope,
                                      selection=config.triplet.selection, seed=config.seed)
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
    total_steps = config.epochs * plan.steps_per_epoch

    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_eer": math.inf,
             "bad_epochs": 0, "history": [], "epoch_sums": [0.0, 0.0, 0, 0]}
    if last_path.exists():
        ckpt = load_checkpoint(last_path)
        check_compatible(ckpt["model_config"], model.config(), last_path)
        # Where it runs may change between restarts; what it computes may not.
        saved = {k: v for k, v in ckpt["train_config"].items() if k not in RESUMABLE_CHANGES}
        current = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
        if saved != current:
            differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise ConfigError(f"{last_path} was written with another config (differs in "
                              f"{', '.join(differ)}); use a new exp dir or remove {last_path}")
        if config.stage == "softmax" and list(ckpt["speakers"]) != train_set.speakers:
            raise ConfigError(f"{last_path} was trained on other speakers than {train_dir} "
                              f"({len(ckpt['speakers'])} vs {len(train_set.speakers)})")
        model.load_state_dict(ckpt["model"])
        if ckpt.get("head") is not None:
            net.head.load_state_dict(ckpt["head"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        if criterion is not None and ckpt.get("triplet_rng") is not None:
            criterion.generator.set_state(ckpt["triplet_rng"])
        for key in state:
            state[key] = ckpt[key]
        state["history"] = [list(r) for r in state["history"]]
        logger.info("resuming %s at epoch %d step %d (global step %d)", last_path,
                    state["epoch"], state["step_in_epoch"], state["global_step"])
    elif config.init:
        load_init(config.init, model)

    if is_main(info):
        # A kill (SIGKILL, OOM killer, node loss) inside save_checkpoint skips its cleanup
        # and leaves ".last.pt.tmp<pid>": a dead process's half-written checkpoint.
        for stale in sorted([*exp_dir.glob(f".{last_path.name}.tmp*"),
                             *exp_dir.glob(f".{best_path.name}.tmp*")]):
            logger.warning("removing %s, left by a run killed while writing a checkpoint", stale)
            stale.unlink(missing_ok=True)
        save_yaml(exp_dir / "config.yaml", config.to_dict())
    if info.distributed:
        ddp_kwargs = {"device_ids": [info.device.index]} if info.device.type == "cuda" else {}
        runner: nn.Module = nn.parallel.DistributedDataParallel(net, **ddp_kwargs)
    else:
        runner = net

    def checkpoint(path: Path) -> None:
        if not is_main(info):
            return
        save_checkpoint(path, {
            "version": CHECKPOINT_VERSION,
            # contiguous: the default layout, whatever channels_last this run used
            "model": _contiguous(model.state_dict()),
            "head": net.head.state_dict() if config.stage == "softmax" else None,
            "speakers": train_set.speakers if config.stage == "softmax" else None,
            "optimizer": _contiguous(optimizer.state_dict()),
            "rng": rng_state(),
            "triplet_rng": criterion.generator.get_state() if criterion is not None else None,
            "model_config": model.config(),
            "train_config": config.to_dict(),
            **state,
        })

    use_tqdm = is_main(info)
    progress = None
    if use_tqdm:
        from tqdm import tqdm

        progress = tqdm(total=total_steps, initial=state["global_step"], unit="step",
                        dynamic_ncols=True, disable=None)
    logger.info("stage %s: %d steps per epoch x %d epochs, global batch %d %s over %d rank(s)",
                config.stage, plan.steps_per_epoch, config.epochs, config.batch_size,
                "pairs" if config.stage == "triplet" else "utterances", info.world_size)
    finished = "completed"
    try:
        while state["epoch"] < config.epochs:
            if config.early_stopping_patience and state["bad_epochs"] >= config.early_stopping_patience:
                finished = "stopped early"
                break
            epoch = state["epoch"]
            tick, tick_utts = time.time(), 0
            while state["step_in_epoch"] < plan.steps_per_epoch:
                if max_steps is not None and state["global_step"] >= max_steps:
                    checkpoint(last_path)
                    barrier(info)
                    logger.info("stopping at max_steps=%d (epoch %d step %d); rerun to continue",
                                max_steps, epoch + 1, state["step_in_epoch"])
                    return {"status": "max_steps", **state}
                lr = learning_rate(config.optimizer, state["global_step"], total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = plan.batch(epoch, state["step_in_epoch"], info.rank, info.world_size)
                optimizer.zero_grad(set_to_none=True)
                autocast = torch.autocast(info.device.type, dtype=torch.bfloat16,
                                          enabled=use_bf16)
                if config.stage == "softmax":
                    x = torch.from_numpy(batch["feats"]).to(info.device)
                    y = torch.from_numpy(batch["labels"]).to(info.device)
                    with autocast:  # the head inside runs in float32 (SoftmaxClassifier)
                        logits, emb = runner(x)
                    loss = F.cross_entropy(logits.float(), y)
                    loss.backward()
                    stats = {"loss": _mean(loss.detach(), info),
                             "acc": _mean((logits.argmax(1) == y).double().mean(), info)}
                    utts = x.shape[0] * info.world_size
                else:
                    a = torch.from_numpy(batch["anchor"]).to(info.device)
                    p = torch.from_numpy(batch["positive"]).to(info.device)
                    spk = torch.from_numpy(batch["speakers"]).to(info.device)
                    with autocast:
                        ea, ep = runner(a, p)
                    # Negative mining and the triplet loss in float32.
                    ea, ep = ea.float(), ep.float()
                    loss, stats = criterion(ea, ep, spk, info)
                    loss.backward()
                    emb = ea
                    # Per anchor, so the number does not grow with the batch size.
                    stats = {"loss": stats["loss"] / stats["num_anchors"],
                             "prob_hard": stats["prob_hard"]}
                    utts = 2 * a.shape[0] * info.world_size
                optimizer.step()
                state["global_step"] += 1
                state["step_in_epoch"] += 1
                sums = state["epoch_sums"]
                sums[0] += stats["loss"]
                sums[1] += stats.get("prob_hard", 0.0)
                sums[2] += 1
                if config.stage == "triplet" and \
                        abs(stats["loss"] - config.triplet.margin) < AT_MARGIN_TOL * config.triplet.margin:
                    sums[3] += 1
                tick_utts += utts
                if progress is not None:
                    progress.update(1)
                if state["global_step"] % config.log_every_steps == 0:
                    rate = tick_utts / max(1e-9, time.time() - tick)
                    tick, tick_utts = time.time(), 0
                    cos = mean_pairwise_cosine(emb)
                    msg = " ".join(f"{k} {v:.4f}" for k, v in stats.items())
                    logger.info("epoch %d step %d/%d (global %d): %s lr %.5f %.1f utt/s", epoch + 1,
                                state["step_in_epoch"], plan.steps_per_epoch,
                                state["global_step"], msg, lr, rate)
                    if progress is not None:
                        progress.set_postfix({**{k: f"{v:.3f}" for k, v in stats.items()},
                                              "lr": f"{lr:.4f}", "utt/s": f"{rate:.0f}"})
                    if cos > COLLAPSE_COSINE:
                        logger.warning("embeddings collapsing: mean pairwise cosine of the batch "
                                       "is %.4f (> %.2f)", cos, COLLAPSE_COSINE)
                if state["global_step"] % config.save_every_steps == 0:
                    checkpoint(last_path)

            # ---- end of epoch: dev EER, best/last, early stopping
            n = max(1, state["epoch_sums"][2])
            loss_mean = state["epoch_sums"][0] / n
            prob_hard = state["epoch_sums"][1] / n if config.stage == "triplet" else None
            if config.stage == "triplet" and state["epoch_sums"][3] == state["epoch_sums"][2]:
                logger.warning("epoch %d: the triplet loss sat at the margin (%.3g) for the whole "
                               "epoch: s_an == s_ap, the embeddings do not separate speakers",
                               epoch + 1, config.triplet.margin)
            eer = math.nan
            if dev_set is not None:
                if is_main(info):
                    eer = dev_eer(model, dev_set, trials, info.device, config.dev.batch_size)
                eer = _broadcast(eer, info)
            improved = dev_set is None or eer < state["best_eer"]
            if improved:
                state["best_eer"] = eer if dev_set is not None else math.inf
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            state["history"].append([epoch + 1, state["global_step"], loss_mean, prob_hard,
                                     None if math.isnan(eer) else eer])
            logger.info("epoch %d done: loss %.4f%s dev EER %s%s", epoch + 1, loss_mean,
                        f" prob_hard {prob_hard:.3f}" if prob_hard is not None else "",
                        "n/a" if math.isnan(eer) else f"{100 * eer:.2f}%",
                        " (best)" if improved and dev_set is not None else "")
            state["epoch"] += 1
            state["step_in_epoch"] = 0
            state["epoch_sums"] = [0.0, 0.0, 0, 0]
            checkpoint(last_path)
            if improved:
                checkpoint(best_path)
            if is_main(info):
                write_train_log(exp_dir / "train_log.tsv", state["history"])
    finally:
        if progress is not None:
            progress.close()
    if is_main(info) and not best_path.exists() and last_path.exists():
        save_checkpoint(best_path, load_checkpoint(last_path))
    barrier(info)
    logger.info("training %s after %d epochs (%d steps); best dev EER %s", finished,
                state["epoch"], state["global_step"],
                "n/a" if math.isinf(state["best_eer"]) else f"{100 * state['best_eer']:.2f}%")
    return {"status": finished, **state}


def _contiguous(tree):
    """``tree`` (dicts / lists of tensors and plain values) with every tensor in the default layout."""
    if isinstance(tree, torch.Tensor):
        return tree.contiguous()
    if isinstance(tree, dict):
        return {k: _contiguous(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_contiguous(v) for v in tree)
    return tree


def _mean(value: torch.Tensor, info: DistInfo) -> float:
    if not info.distributed:
        return float(value)
    t = value.detach().double().reshape(1).clone()
    dist.all_reduce(t)
    return float(t) / info.world_size


__all__ = ["TrainConfig", "train_config_from_dict", "train", "SoftmaxClassifier", "TripletNet",
           "learning_rate", "load_checkpoint", "load_init", "save_checkpoint", "embed_utterances",
           "dev_eer", "mean_pairwise_cosine", "resolve_speed_settings"]
