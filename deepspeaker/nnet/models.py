"""Deep Speaker embedding networks: ResCNN (paper §3.1.1 / T1) and GRU (§3.1.2 / T2).

Both map a padded batch of 64-d fbank frames ``x`` (B, T, num_mel_bins) with valid
frame counts ``lengths`` (B,) to unit-length 512-d speaker embeddings (B, 512):
frame-level network, temporal average over the valid frames, affine layer, length
normalisation (§3.2).  The softmax pre-training head and the triplet loss are not
part of the model: the trainer puts them on top of the embedding.

Choices the paper leaves open, and why:

* **Sequence-wise batch norm over (channel, frequency).**  The ``# params`` column
  of T1 is each conv's weights plus 4K: conv128-s is 5*5*64*128 = 204,800 + 4,096 ≈
  209K, a res64 conv 3*3*64*64 = 36,864 + 4,096 ≈ 41K.  4,096 is a gain and a shift
  for each of the 2,048 features of a frame (the ``dim`` column, channels x
  frequency), i.e. DS2's sequence-wise BN, which normalises every feature of a frame
  over batch x time.  So :class:`SequenceBatchNorm` keeps one mean/variance/gain/shift
  per (channel, frequency bin), not per channel; that gives T1's per-row counts.
* **Padded frames never count.**  Padded input frames are zeroed, every conv block's
  output is multiplied by its time mask (so the next conv sees zeros there, exactly
  the zero padding an utterance embedded alone sees), batch-norm statistics in
  training are taken over valid frames only, and the average divides by the number
  of valid frames.  In eval mode an utterance's embedding does not depend on what it
  is batched with.
* **Convs have no bias**: the batch norm after each one has a shift.
* **Padding** 2 for the 5x5 stride-2 convs and 1 for the 3x3 ones (paper Fig. 2), so a
  stride-2 conv maps L valid frames (or bins) to ``(L + 2*2 - 5) // 2 + 1 =
  ceil(L / 2)``: 64 bins -> 32, 16, 8, 4 (T1), and T frames -> ceil(T / 16) after
  ResCNN's four stride-2 convs, ceil(T / 2) after the GRU net's one.
* **GRU batch norm** sits on the input of each GRU layer (DS2 normalises only the
  input-to-hidden path W x_t, never the recurrence; ``nn.GRU`` owns W, so we normalise
  x_t, which costs 2*input_dim parameters per layer).  The GRU cells keep their usual
  sigmoid gates and tanh candidate (cuDNN's GRU); clipped ReLU is used everywhere
  else.  The layers are forward-only, so a valid frame never sees the padding after
  it and no packing is needed.
* **Width** ``w`` scales every channel count (64w ... 512w, also the GRU net's conv)
  and the GRU units (1024w), for the small configs the mini recipe trains on CPU.
* **Initialisation**: convs Kaiming-normal (fan-in, ReLU gain), the affine layer
  Xavier-uniform with zero bias, batch-norm gain 1 and shift 0, GRUs PyTorch's
  default uniform(±1/sqrt(units)).
* **Memory format** is not an option (a checkpoint must not depend on it): after
  ``model.to(memory_format=torch.channels_last)`` ResCNN feeds its one-channel input
  as channels_last too and every layer keeps that layout; outputs are the same.
* **Exportable** (:mod:`deepspeaker.nnet.export`): while traced or exported
  (:func:`exporting`) the forward leaves out its checks of tensor values, always
  takes the padded path, and makes its frame indices and GRU state on its input's
  device, so that the graph keeps batch and length dynamic and holds no device
  constant.  Eager mode runs the same operations as before, bit for bit.
* **Batch-norm statistics are per rank** (``nn.SyncBatchNorm.convert_sync_batchnorm``
  does not know this module), as in the paper's synchronous SGD.  Training batches
  without padding (fixed-length chunks) take the fused ``F.batch_norm`` path.

Sizes at width 1 with 64 bins: rescnn 24,266,816 parameters (T1: 24M, and every T1
row within one unit of its last printed digit), gru 22,577,216 (T2: 23M).

Models are looked up in one explicit table, :data:`MODELS`, by
:func:`build_model`; ``model.config()`` records name and options in a checkpoint and
:func:`check_compatible` refuses a checkpoint of another architecture.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from deepspeaker.utils import ConfigError, dataclass_from_dict

RESCNN_CHANNELS = (64, 128, 256, 512)  # paper T1
RESBLOCKS_PER_STAGE = 3  # paper §3.1.1 / T1
GRU_CONV_CHANNELS = 64  # paper T2: conv64-s
GRU_UNITS = 1024  # paper T2
GRU_LAYERS = 3  # paper T2
DOWN_KERNEL, DOWN_STRIDE, DOWN_PADDING = 5, 2, 2  # paper T1: 5x5, stride 2x2
RES_KERNEL, RES_PADDING = 3, 1  # paper Fig. 2: 3x3, stride 1, zero padding 1


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Options shared by both networks; the paper-size model is the default."""

    num_mel_bins: int = 64  # paper §4.3: 64-d fbank
    embedding_dim: int = 512  # paper §3.2
    width: float = 1.0
    clip: float = 20.0  # paper eq. 2: min(max(x, 0), 20)

    def __post_init__(self) -> None:
        for key in ("num_mel_bins", "embedding_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
            object.__setattr__(self, key, int(value))
        for key in ("width", "clip"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"{key} must be a positive number, got {value!r}")
            # Floats, so that width 1 and width 1.0 are the same architecture.
            object.__setattr__(self, key, float(value))


def _options(name: str, values: Mapping[str, Any]) -> ModelOptions:
    return dataclass_from_dict(ModelOptions, values, where=f"model {name!r} options")


def scaled(units: int, width: float) -> int:
    """Channels or units at ``width`` (at least one)."""
    return max(1, int(round(units * width)))


def conv_output_length(length, kernel: int = DOWN_KERNEL, stride: int = DOWN_STRIDE,
                       padding: int = DOWN_PADDING):
    """Frames (or bins) out of a conv, for an int or a tensor of lengths.

    With the defaults (5, 2, 2) this is ``ceil(length / 2)``.
    """
    return (length + 2 * padding - kernel) // stride + 1


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def clipped_relu(x: torch.Tensor, clip: float) -> torch.Tensor:
    """min(max(x, 0), clip), paper eq. 2."""
    return F.hardtanh(x, 0.0, clip)


def exporting() -> bool:
    """True while the model is traced, scripted or exported (TorchScript, ONNX, torch.export).

    The forward then leaves out what only eager mode can do: checks of tensor values.
    """
    # Not torch.compiler.is_compiling(): torch.compile runs the checks (a graph break)
    # and must give what eager mode gives.
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_exporting())


def _time_mask(lengths: torch.Tensor, num_frames: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) mask, 1 on valid frames and 0 on padding."""
    if exporting():
        # Frame indices on whatever device ``lengths`` is on when the exported graph
        # runs; arange would record the device of the tracing run as a constant.
        frames = lengths.new_ones(num_frames).cumsum(0) - 1
    else:
        frames = torch.arange(num_frames, device=lengths.device)
    return (frames[None, :] < lengths[:, None]).to(dtype)


class SequenceBatchNorm(nn.Module):
    """Batch norm of each feature of a frame over batch x valid time (DS2's sequence-wise BN).

    Takes conv maps (B, C, T, F), with one set of statistics per (channel, frequency
    bin), or sequences (B, T, D), with one per feature.  ``mask`` (broadcastable to
    ``x``, 1 on valid frames) keeps padded frames out of the training statistics; the
    output on padded frames is meaningless and is masked by the caller.  Running
    statistics are kept as ``nn.BatchNorm`` does (momentum, unbiased variance).
    """

    def __init__(self, feature_shape: tuple[int, ...], eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if len(feature_shape) not in (1, 2):
            raise ValueError(f"feature_shape must be (D,) or (C, F), got {feature_shape}")
        self.feature_shape = tuple(int(n) for n in feature_shape)
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(self.feature_shape))
        self.bias = nn.Parameter(torch.zeros(self.feature_shape))
        self.register_buffer("running_mean", torch.zeros(self.feature_shape))
        self.register_buffer("running_var", torch.ones(self.feature_shape))

    def extra_repr(self) -> str:
        return f"{self.feature_shape}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.feature_shape) == 2:  # (B, C, T, F): reduce over batch and time
            dims, view = (0, 2), (1, self.feature_shape[0], 1, self.feature_shape[1])
        else:  # (B, T, D)
            dims, view = (0, 1), (1, 1, self.feature_shape[0])
        if self.training and mask is None and len(self.feature_shape) == 2:
            return self._native(x)
        if self.training:
            # Statistics in float32 even under autocast: a sum over B*T frames in
            # half precision loses the variance.
            xs = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            if mask is None:  # (B, T, D): reducing the leading dims is already fast
                var, mean = torch.var_mean(xs, dim=dims, correction=0)
                count = torch.tensor(xs.shape[0] * xs.shape[1], device=x.device)
            else:
                m = mask.to(xs.dtype)
                count = m.sum()
                mean = (xs * m).sum(dims) / count
                var = ((xs - mean.view(view)).square() * m).sum(dims) / count
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        # x first, so that the output keeps x's memory format (addcmul would follow shift's).
        return x * scale.view(view).to(x.dtype) + shift.view(view).to(x.dtype)

    def _native(self, x: torch.Tensor) -> torch.Tensor:
        """Conv maps in training without padding: the library's fused batch norm.

        Reducing (B, C, T, F) over dims 0 and 2 by hand costs twice as much on CPU
        (forward + backward) as one copy to (B, C*F, T) and ``F.batch_norm``.  The
        output goes back to ``x``'s shape and memory format.
        """
        batch, channels, frames, bins = x.shape
        layout = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                  and not x.is_contiguous() else torch.contiguous_format)
        flat = x.transpose(2, 3).reshape(batch, channels * bins, frames)
        y = F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1),
                         self.weight.view(-1), self.bias.view(-1), True, self.momentum, self.eps)
        return y.view(batch, channels, bins, frames).transpose(2, 3).contiguous(memory_format=layout)


class ConvBlock(nn.Module):
    """Conv (no bias) -> sequence-wise BN -> clipped ReLU -> zero the padded frames."""

    def __init__(self, in_channels: int, out_channels: int, out_bins: int, clip: float,
                 kernel: int = DOWN_KERNEL, stride: int = DOWN_STRIDE, padding: int = DOWN_PADDING):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.clip = clip
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = SequenceBatchNorm((out_channels, out_bins))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None):
        """(B, C, T, F), lengths -> (B, C', T', F'), lengths after the conv, (B, 1, T', 1) mask."""
        x = self.conv(x)
        mask = None
        if lengths is not None:
            lengths = conv_output_length(lengths, self.kernel, self.stride, self.padding)
            mask = _time_mask(lengths, x.shape[2], x.dtype)[:, None, :, None]
        x = clipped_relu(self.bn(x, mask), self.clip)
        if mask is not None:
            x = x * mask
        return x, lengths, mask


class ResBlock(nn.Module):
    """Paper Fig. 2: two 3x3 convs with BN, identity shortcut, clipped ReLU after the sum."""

    def __init__(self, channels: int, bins: int, clip: float):
        super().__init__()
        self.clip = clip
        self.conv1 = nn.Conv2d(channels, channels, RES_KERNEL, 1, RES_PADDING, bias=False)
        self.bn1 = SequenceBatchNorm((channels, bins))
        self.conv2 = nn.Conv2d(channels, channels, RES_KERNEL, 1, RES_PADDING, bias=False)
        self.bn2 = SequenceBatchNorm((channels, bins))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = clipped_relu(self.bn1(self.conv1(x), mask), self.clip)
        if mask is not None:
            h = h * mask
        h = clipped_relu(self.bn2(self.conv2(h), mask) + x, self.clip)
        return h if mask is None else h * mask


class EmbeddingNet(nn.Module):
    """What both networks share: input checks, masked average, affine, length norm, config."""

    name = ""
    label = ""  # how results tables name the network (paper T5: "ResCNN", "GRU")

    def __init__(self, options: ModelOptions):
        super().__init__()
        self.options = options

    def config(self) -> dict:
        """{"name": ..., "options": {...}}: what a checkpoint records; rebuild with :func:`model_from_config`."""
        return {"name": self.name, "options": dataclasses.asdict(self.options)}

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # SequenceBatchNorm starts at gain 1 / shift 0; nn.GRU keeps its default init.

    def _check_input(self, x: torch.Tensor, lengths) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate shapes; zero padded frames; lengths None when every frame is valid.

        While the model is traced or exported (:func:`exporting`) the checks of
        values are left out and the padded path is always taken: a ``bool`` of a
        tensor would be frozen into the graph as the value of the example batch (or
        stop ``torch.export``).  The padded path with every frame valid computes the
        same embedding as the unpadded one up to float rounding (~1e-7).
        """
        if exporting() and lengths is not None:
            lengths = lengths.long()
            return x * _time_mask(lengths, x.shape[1], x.dtype)[:, :, None], lengths
        bins = self.options.num_mel_bins
        if x.dim() != 3 or x.shape[2] != bins:
            raise ConfigError(f"{self.name} expects features of shape (batch, frames, {bins}) "
                              f"(num_mel_bins={bins}), got {tuple(x.shape)}")
        if lengths is None:
            return x, None
        lengths = torch.as_tensor(lengths, device=x.device).long()
        if lengths.shape != (x.shape[0],):
            raise ValueError(f"lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}")
        num_frames = x.shape[1]
        if bool((lengths < 1).any()) or bool((lengths > num_frames).any()):
            raise ValueError(f"lengths must lie in [1, {num_frames}], got {lengths.tolist()}")
        if bool((lengths == num_frames).all()):
            return x, None  # no padding: the fast, unmasked path
        return x * _time_mask(lengths, num_frames, x.dtype)[:, :, None], lengths

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames out of the frame-level network for ``lengths`` valid input frames."""
        raise NotImplementedError

    def _frames(self, x, lengths) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frame-level outputs (B, T', D) and their valid lengths (None: all valid)."""
        raise NotImplementedError

    def frame_level(self, x: torch.Tensor, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame-level activations (B, T', D) and valid frame counts (B,); padding is zero."""
        frames, out_lengths = self._frames(x, lengths)
        if out_lengths is None:
            out_lengths = torch.full((frames.shape[0],), frames.shape[1], dtype=torch.long,
                                     device=frames.device)
        else:
            frames = frames * _time_mask(out_lengths, frames.shape[1], frames.dtype)[:, :, None]
        return frames, out_lengths

    def _embed(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.affine(pooled), p=2.0, dim=1)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        """(B, T, num_mel_bins) features, (B,) valid frames -> (B, embedding_dim) unit vectors."""
        frames, out_lengths = self._frames(x, lengths)
        if out_lengths is None:
            pooled = frames.mean(dim=1)
        else:
            mask = _time_mask(out_lengths, frames.shape[1], frames.dtype)
            pooled = torch.einsum("btd,bt->bd", frames, mask) / out_lengths[:, None].to(frames.dtype)
        return self._embed(pooled)


class ResCNN(EmbeddingNet):
    """Paper T1: four stages of [conv 5x5 stride 2, 3 ResBlocks], 64/128/256/512 channels.

    The stride-2 convs halve time and frequency (64 bins -> 32, 16, 8, 4), so every
    frame has channels x bins = 2048 features at full width (T1's ``dim``).
    """

    name = "rescnn"
    label = "ResCNN"

    def __init__(self, num_mel_bins: int = 64, embedding_dim: int = 512, width: float = 1.0,
                 clip: float = 20.0):
        options = _options(self.name, dict(num_mel_bins=num_mel_bins, embedding_dim=embedding_dim,
                                           width=width, clip=clip))
        super().__init__(options)
        in_channels, bins = 1, options.num_mel_bins
        downsample, stages = [], []
        for channels in RESCNN_CHANNELS:
            out_channels = scaled(channels, options.width)
            bins = conv_output_length(bins)
            downsample.append(ConvBlock(in_channels, out_channels, bins, options.clip))
            stages.append(nn.ModuleList(ResBlock(out_channels, bins, options.clip)
                                        for _ in range(RESBLOCKS_PER_STAGE)))
            in_channels = out_channels
        self.downsample = nn.ModuleList(downsample)
        self.stages = nn.ModuleList(stages)
        self.frame_dim = in_channels * bins
        self.affine = nn.Linear(self.frame_dim, options.embedding_dim)
        self._init_weights()

    def table_rows(self) -> list[tuple[str, nn.Module]]:
        """(T1 row name, module) in T1's order; at width w, conv64-s has 64w channels."""
        rows: list[tuple[str, nn.Module]] = []
        for channels, down, blocks in zip(RESCNN_CHANNELS, self.downsample, self.stages):
            rows += [(f"conv{channels}-s", down), (f"res{channels}", blocks)]
        return rows + [("affine", self.affine)]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in RESCNN_CHANNELS:
            lengths = conv_output_length(lengths)
        return lengths

    def feature_maps(self, x: torch.Tensor, lengths=None):
        """Last stage's maps (B, C, T', F') and their valid lengths (None: all valid)."""
        x, lengths = self._check_input(x, lengths)
        x = x.unsqueeze(1)  # (B, 1, T, F): time is the height, frequency the width
        if self.downsample[0].conv.weight.is_contiguous(memory_format=torch.channels_last):
            # The model was moved to channels_last (the trainer does so on CUDA); a
            # one-channel input is ambiguous, so say it explicitly.
            x = x.contiguous(memory_format=torch.channels_last)
        for down, blocks in zip(self.downsample, self.stages):
            x, lengths, mask = down(x, lengths)
            for block in blocks:
                x = block(x, mask)
        return x, lengths

    def _frames(self, x, lengths):
        maps, lengths = self.feature_maps(x, lengths)
        batch, channels, frames, bins = maps.shape
        # Flatten channels x frequency into one vector per frame (T1's dim 2048).
        return maps.permute(0, 2, 1, 3).reshape(batch, frames, channels * bins), lengths

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        # Average the 4-d maps directly; no (B, T', C*F) copy of the last stage.
        maps, out_lengths = self.feature_maps(x, lengths)
        if out_lengths is None:
            pooled = maps.mean(dim=2)
        else:
            mask = _time_mask(out_lengths, maps.shape[2], maps.dtype)
            pooled = (torch.einsum("bctf,bt->bcf", maps, mask)
                      / out_lengths[:, None, None].to(maps.dtype))
        return self._embed(pooled.reshape(pooled.shape[0], -1))


class GRUNet(EmbeddingNet):
    """Paper T2: conv64-s (5x5 stride 2, BN, clipped ReLU), 3 forward-only GRUs of 1024 units."""

    name = "gru"
    label = "GRU"

    def __init__(self, num_mel_bins: int = 64, embedding_dim: int = 512, width: float = 1.0,
                 clip: float = 20.0):
        options = _options(self.name, dict(num_mel_bins=num_mel_bins, embedding_dim=embedding_dim,
                                           width=width, clip=clip))
        super().__init__(options)
        channels = scaled(GRU_CONV_CHANNELS, options.width)
        bins = conv_output_length(options.num_mel_bins)
        self.conv = ConvBlock(1, channels, bins, options.clip)
        units = scaled(GRU_UNITS, options.width)
        input_dims = [channels * bins] + [units] * (GRU_LAYERS - 1)
        self.input_norms = nn.ModuleList(SequenceBatchNorm((dim,)) for dim in input_dims)
        self.grus = nn.ModuleList(nn.GRU(dim, units, batch_first=True) for dim in input_dims)
        self.frame_dim = units
        self.affine = nn.Linear(units, options.embedding_dim)
        self._init_weights()

    def table_rows(self) -> list[tuple[str, nn.Module]]:
        """(T2 row name, module) in T2's order; each GRU row includes its input batch norm."""
        rows: list[tuple[str, nn.Module]] = [("conv64-s", self.conv)]
        for norm, gru in zip(self.input_norms, self.grus):
            rows.append(("GRU", nn.ModuleList([norm, gru])))
        return rows + [("affine", self.affine)]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_length(lengths)

    def _frames(self, x, lengths):
        x, lengths = self._check_input(x, lengths)
        maps, lengths, mask = self.conv(x.unsqueeze(1), lengths)
        batch, channels, frames, bins = maps.shape
        h = maps.permute(0, 2, 1, 3).reshape(batch, frames, channels * bins)
        seq_mask = None if mask is None else mask.view(batch, frames, 1)
        # nn.GRU's own zero state would be recorded on the tracing run's device.
        h0 = h.new_zeros(1, batch, self.frame_dim) if exporting() else None
        for norm, gru in zip(self.input_norms, self.grus):
            # Forward-only recurrence: valid frames never depend on the padding after them.
            h, _ = gru(norm(h, seq_mask), h0)
        return h, lengths


# The one table of architectures; build_model looks names up here and nowhere else, and
# the report takes each network's ``label`` and its row order from it.
MODELS: dict[str, type[EmbeddingNet]] = {"rescnn": ResCNN, "gru": GRUNet}


def build_model(name: str, **options: Any) -> EmbeddingNet:
    """The model ``name`` of :data:`MODELS` with ``options`` (see :class:`ModelOptions`)."""
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models are {', '.join(sorted(MODELS))}")
    opts = _options(name, options)
    return MODELS[name](**dataclasses.asdict(opts))


def model_from_config(config: Mapping[str, Any]) -> EmbeddingNet:
    """Rebuild a model from what ``model.config()`` returned (e.g. read from a checkpoint)."""
    name, options = _split_config(config, "model config")
    return build_model(name, **options)


def _split_config(config: Mapping[str, Any], where: str) -> tuple[str, dict]:
    if not isinstance(config, Mapping) or "name" not in config:
        raise ConfigError(f"{where}: expected a mapping with 'name' and 'options', got {config!r}")
    extra = sorted(set(config) - {"name", "options"})
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, extra))}; "
                          "known keys are name, options")
    options = config.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: 'options' must be a mapping, got {options!r}")
    return config["name"], dict(options)


def _describe(name: str, options: Mapping[str, Any]) -> str:
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in options.items())})"


def check_compatible(saved: Mapping[str, Any], current: Mapping[str, Any],
                     path: str | os.PathLike) -> None:
    """Refuse to load checkpoint ``path`` (holding ``saved``) into a ``current`` model.

    Both are ``model.config()`` dicts.  Options absent from ``saved`` take their
    defaults, so a checkpoint written before an option existed still loads.
    """
    configs = []
    for config, where in ((saved, f"checkpoint {path}"), (current, "current model config")):
        name, options = _split_config(config, where)
        if name not in MODELS:
            raise ConfigError(f"{where}: unknown model {name!r}; "
                              f"known models are {', '.join(sorted(MODELS))}")
        configs.append((name, dataclasses.asdict(_options(name, options))))
    (saved_name, saved_opts), (name, opts) = configs
    if (saved_name, saved_opts) == (name, opts):
        return
    differ = (["architecture"] if saved_name != name else []) + \
        [k for k in opts if opts[k] != saved_opts[k]]
    raise ConfigError(f"checkpoint {path} holds {_describe(saved_name, saved_opts)} but the config "
                      f"asks for {_describe(name, opts)} (they differ in {', '.join(differ)})")
