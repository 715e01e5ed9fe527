"""Deep Speaker networks and their training pieces (paper §3; SPEC M1-M3, L2-L3, D1).

Models (``models``): ResCNN (T1) and the GRU network (T2), both ending in temporal
average, affine to 512 and length normalisation (§3.2).  They are registered by name
in the one table ``MODELS`` and built with ``build_model(name, **options)``;
``model.config()`` is what a checkpoint records and ``check_compatible`` refuses a
checkpoint of another architecture or width.
Triplet loss (``triplet``): cosine triplet loss with hard negatives mined over the
whole batch across ranks (§3.3).
Distributed (``distributed``): torchrun environment, gloo/nccl, gathers and means
across ranks.
Training (§3.4, §4.3): the loop (``trainer``) over the training data (``data``), one
objective per stage (``objectives``: softmax, triplet), resumable checkpoints with
the signature of what made them (``checkpoint``), and the training config that
extraction reads too (``config``).  Extraction (``extract``) imports the config and
checkpoint modules, never the training loop.

Each module's public names are imported below, one block per module; a new module
adds its own ``from deepspeaker.nnet.<module> import ...`` block and its names to
``__all__``.
"""

from deepspeaker.nnet.checkpoint import (
    EpochStats,
    TrainState,
    load_checkpoint,
    load_init,
    save_checkpoint,
)
from deepspeaker.nnet.config import (
    RUN_SETTINGS,
    TrainConfig,
    resolve_speed_settings,
    train_config_from_dict,
)
from deepspeaker.nnet.distributed import (
    DistInfo,
    DistributedError,
    all_gather_cat,
    all_gather_with_grad,
    all_reduce_mean,
    barrier,
    broadcast_from_main,
    cleanup,
    init_distributed,
    is_main,
)
from deepspeaker.nnet.models import (
    MODELS,
    EmbeddingNet,
    GRUNet,
    ModelOptions,
    ResCNN,
    SequenceBatchNorm,
    build_model,
    check_compatible,
    conv_output_length,
    model_from_config,
    num_parameters,
)
from deepspeaker.nnet.objectives import (
    OBJECTIVES,
    Objective,
    SoftmaxObjective,
    TripletObjective,
    build_objective,
)
from deepspeaker.nnet.trainer import (
    dev_eer,
    embed_utterances,
    train,
)
from deepspeaker.nnet.triplet import (
    MARGIN,
    GlobalTripletLoss,
    HardNegativeMiner,
    MiningError,
    triplet_loss,
)

__all__ = [
    # checkpoint
    "EpochStats",
    "TrainState",
    "load_checkpoint",
    "load_init",
    "save_checkpoint",
    # config
    "RUN_SETTINGS",
    "TrainConfig",
    "resolve_speed_settings",
    "train_config_from_dict",
    # distributed
    "DistInfo",
    "DistributedError",
    "all_gather_cat",
    "all_gather_with_grad",
    "all_reduce_mean",
    "barrier",
    "broadcast_from_main",
    "cleanup",
    "init_distributed",
    "is_main",
    # models
    "MODELS",
    "EmbeddingNet",
    "GRUNet",
    "ModelOptions",
    "ResCNN",
    "SequenceBatchNorm",
    "build_model",
    "check_compatible",
    "conv_output_length",
    "model_from_config",
    "num_parameters",
    # objectives
    "OBJECTIVES",
    "Objective",
    "SoftmaxObjective",
    "TripletObjective",
    "build_objective",
    # trainer
    "dev_eer",
    "embed_utterances",
    "train",
    # triplet
    "MARGIN",
    "GlobalTripletLoss",
    "HardNegativeMiner",
    "MiningError",
    "triplet_loss",
]
