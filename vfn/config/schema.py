"""The experiment schema: `ExperimentConfig` and its sections, each key with its default and check.

    cfg = cfg.with_overrides({"model.design": "sequential"})   # what a Ray Tune trial does
    cfg = config_from_dict(saved, "run config.yaml")            # a saved config, checked again

Every mistake is reported before Ray starts, as one `ConfigError` line that names the dotted key
(`vfn.config.keys`). `cfg.to_dict()` is the resolved config saved with each run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import names
from .keys import check, flatten, parse_overrides, set_dotted
from .names import COMPILE_MODES, MODELS


class _StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelSection(_StrictModel):
    name: Literal[MODELS] = Field("videofocalnet_tiny", description="the zoo size (Tiny/Small/Base: depths, width)")
    design: str = Field("parallel", description=f"the token mixer: {', '.join(names.DESIGNS)} (parallel is the "
                        "published one; vfn.config.names.DESIGNS)")
    embed_dim: int | None = Field(None, gt=0, description="overrides the zoo size (small models)")
    depths: list[int] | None = Field(None, min_length=1, description="overrides the zoo depths")
    drop_path_rate: float = Field(0.1, ge=0.0, lt=1.0,
                                  description="stochastic depth, rising linearly to this over the blocks")
    tubelet_size: int = Field(1, gt=0,
                              description="frames per patch-embedding tubelet (data.num_frames must divide by it)")
    focal_levels: list[int] = Field([2, 2, 2, 2], description="focal levels (context layers) per stage")
    focal_windows: list[int] = Field([3, 3, 3, 3], description="kernel size of the first focal level per stage")
    pretrained: str | None = Field(None, description="ImageNet FocalNet weights to inflate (file path)")
    finetune_from: str | None = Field(
        None,
        description="a video checkpoint to start from: released weights, or a vfn checkpoint or run directory "
        "(the classifier is re-initialised when the class count differs)",
    )
    grad_checkpointing: bool = Field(False, description="recompute block activations in the backward pass: less "
                                     "memory for larger batches, one more forward per block")
    compile: bool = Field(
        False,
        description="torch.compile the model for training and evaluation (compiled once before the first epoch; "
        "its time is reported apart from throughput; a failed compilation warns once and runs eagerly)",
    )
    compile_mode: Literal[COMPILE_MODES] = Field("default", description="torch.compile mode when model.compile")
    temporal_init: Literal["identity", "released"] = Field(
        "identity",
        description="how temporal parts start: 'identity' (the model starts as its spatial counterpart: the "
        "parallel block's temporal modulator is exactly 1), 'released' (the published init); loaded "
        "checkpoints overwrite either",
    )
    init: Literal["released", "xavier"] = Field(
        "released",
        description="linear-layer init for from-scratch training: 'released' (truncated normal, std 0.02) "
        "leaves the focal modulators near zero, so an uninitialised model is almost blind to frame order; "
        "'xavier' starts the temporal branch with signal (ignored for weights loaded from model.pretrained)",
    )

    @field_validator("design")
    @classmethod
    def _known_design(cls, design: str) -> str:
        if design not in names.DESIGNS:  # read at validation time: a registered design is known at once
            raise ValueError(f"unknown design {design!r}; choose one of {', '.join(names.DESIGNS)}")
        return design

    @model_validator(mode="after")
    def _one_start(self):
        if self.pretrained and self.finetune_from:
            raise ValueError("model.pretrained (ImageNet weights to inflate) and model.finetune_from (a video "
                             "checkpoint) are two ways to start: set one of them")
        return self

    @model_validator(mode="after")
    def _stages(self):
        stages = len(self.depths) if self.depths is not None else 4
        for key in ("focal_levels", "focal_windows"):
            if len(getattr(self, key)) != stages:
                raise ValueError(f"{key} needs one entry per stage ({stages}), got {len(getattr(self, key))}")
        return self


class DataSection(_StrictModel):
    train: str | None = Field(None, description="Parquet shard directory (or file) of the training split")
    val: str | None = Field(None, description="Parquet shard directory (or file) of the validation split")
    labels: str | None = Field(None, description="class-name CSV, for predictions and plots")
    num_classes: int = Field(400, gt=1, description="classes of the classifier head (labels are 0..num_classes-1)")
    num_frames: int = Field(8, gt=0, description="frames per clip")
    frame_interval: int = Field(4, gt=0, description="frame step of sampling=dense (unused by segment)")
    sampling: Literal["segment", "dense"] = Field(
        "segment",
        description="segment: one random frame from each of num_frames equal segments (the released code; "
        "frame_interval unused); dense: num_frames frames frame_interval apart from a random start",
    )
    input_size: int = Field(224, ge=32, description="side of the square crop fed to the model (a multiple of 32)")
    max_corrupt_share: float = Field(0.01, ge=0.0, le=1.0, description="fail the run above this share")
    shuffle: Literal["auto", "full", "files", "none"] = Field(
        "auto", description="training order per epoch: full (every video, a Ray Data shuffle), files (shard order "
        "only), none; auto: full up to 64 MiB of shards, else files")
    decode_cpus: float = Field(1.0, gt=0.0, description="CPUs reserved per decode task (Ray Data)")
    decode_batch_size: int = Field(4, gt=0, description="videos per decode task call (Ray Data batch size)")
    decode_timeout_s: float = Field(60.0, ge=0.0, description="a video whose decode takes longer is cut off and "
                                    "counted as corrupt (decord can hang: its issue #373); 0 = unguarded")

    @model_validator(mode="after")
    def _size(self):
        if self.input_size % 32:
            raise ValueError(f"input_size={self.input_size} must be a multiple of 32 (patch 4, three 2x merges)")
        return self


class AugmentSection(_StrictModel):
    flip_prob: float = Field(0.5, ge=0.0, le=1.0, description="horizontal flip, per clip")
    color_jitter: float = Field(0.4, ge=0.0, description="brightness, contrast and saturation jitter strength")
    hue: float = Field(0.1, ge=0.0, le=0.5, description="hue jitter strength")
    color_jitter_prob: float = Field(0.8, ge=0.0, le=1.0, description="share of clips colour-jittered")
    grayscale_prob: float = Field(0.2, ge=0.0, le=1.0, description="share of clips turned grayscale")
    scale: tuple[float, float] = Field((0.08, 1.0), description="random resized crop: area fraction")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="random resized crop: aspect ratio")
    mixup_alpha: float = Field(0.8, ge=0.0, description="mixup Beta(alpha, alpha); 0: off (timm Mixup)")
    cutmix_alpha: float = Field(1.0, ge=0.0, description="cutmix Beta(alpha, alpha); 0: off")
    mixup_prob: float = Field(1.0, ge=0.0, le=1.0, description="share of batches mixed; 0: mixup and cutmix off")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="label smoothing of the targets")
    on_device: Literal["auto"] | bool = Field(
        "auto",
        description="crop, flip, colour jitter and grayscale batched on the training device (decode tasks only "
        "decode and slice a window); auto: when the training workers have GPUs; true also works on CPU",
    )

    @model_validator(mode="after")
    def _scale(self):
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {list(self.scale)}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {list(self.ratio)}")
        return self

    def resolve_on_device(self, use_gpu: bool) -> bool:
        """`on_device` for a run whose training workers do (`use_gpu`) or do not have GPUs."""
        return use_gpu if self.on_device == "auto" else self.on_device


class OptimSection(_StrictModel):
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd (the released recipes) or adamw (timm)")
    nesterov: bool = Field(True, description="sgd only: Nesterov momentum (as released); false: classical momentum")
    lr: float = Field(0.1, gt=0.0, description="base learning rate, at a global batch of lr_scale_batch")
    lr_scale_batch: int | None = Field(
        512, gt=0, description="lr, warmup_lr and min_lr are each scaled by global_batch / this; null: no scaling"
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only: momentum")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adamw only: (beta1, beta2)")
    weight_decay: float = Field(1e-4, ge=0.0, description="decoupled for adamw; not applied to norms and biases")
    epochs: int = Field(120, gt=0, description="training epochs (the cosine schedule's length)")
    warmup_epochs: float = Field(20, ge=0.0, description="linear warm-up from warmup_lr to lr (fractions allowed)")
    warmup_lr: float = Field(
        1e-6, ge=0.0, description="learning rate at step 0 of the warm-up, at a global batch of lr_scale_batch"
    )
    min_lr: float = Field(
        1e-6, ge=0.0, description="learning rate at the end of the cosine, at a global batch of lr_scale_batch"
    )
    batch_size: int = Field(8, gt=0, description="clips per worker per micro-batch")
    accum_steps: int = Field(1, gt=0, description="micro-batches per optimiser step")
    clip_grad: float | None = Field(None, gt=0.0, description="max global gradient norm; null: off")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that supports it, else fp16 with a scaler on GPU, fp32 on CPU"
    )
    ema: bool = Field(False, description="keep an exponential moving average of the weights (timm ModelEmaV3); "
                      "validated beside the weights as val_ema_*, saved in checkpoints, `vfn eval --ema`")
    ema_decay: float = Field(0.9998, gt=0.0, lt=1.0, description="EMA decay per optimiser step")

    @model_validator(mode="after")
    def _schedule(self):
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must be below optim.epochs={self.epochs}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} is above optim.lr={self.lr}")
        return self

    @property
    def timm_opt_name(self) -> str:
        """The `opt` name for `timm.optim.create_optimizer_v2`: in timm 'sgd' and its alias 'nesterov' are
        SGD with Nesterov momentum, 'momentum' is SGD with classical momentum."""
        if self.optimizer == "sgd":
            return "nesterov" if self.nesterov else "momentum"
        return self.optimizer


class EvalSection(_StrictModel):
    every_epochs: int = Field(1, gt=0, description="validate every N epochs (and after the last)")
    num_clips: int = Field(4, gt=0, description="temporal clips per test video (views: clips x crops, logits averaged)")
    num_crops: Literal[1, 3] = Field(3, description="spatial crops per clip: 1 (centre) or 3 (left, centre, right)")
    batch_size: int = Field(4, gt=0, description="videos per worker per batch (x clips x crops views)")


class ScalingSection(_StrictModel):
    num_workers: int = Field(1, gt=0, description="Ray Train workers (DDP processes), one GPU each when on GPU")
    use_gpu: Literal["auto"] | bool = Field("auto", description="auto: GPU when the cluster has one")
    cpus_per_worker: float = Field(1.0, gt=0.0, description="CPUs reserved per Train worker (decode tasks are apart)")
    max_failures: int = Field(2, ge=-1, description="worker failures to recover from (-1: unlimited)")


class TrackingSection(_StrictModel):
    enabled: bool = Field(True, description="log to MLflow; false: nothing is tracked (checkpoints still written)")
    tracking_uri: str | None = Field(
        None, description="null: $MLFLOW_TRACKING_URI, else sqlite:///<output.root>/mlflow.db"
    )
    experiment: str = Field("video-focalnets", description="MLflow experiment name")
    run_name: str | None = Field(None, description="MLflow run name (default: output.name)")
    parent_run_id: str | None = Field(None, description="log as a nested run of this MLflow run")
    tags: dict[str, str] = Field({}, description="extra MLflow run tags (any keys: tracking.tags.owner=me)")
    log_every_steps: int = Field(10, gt=0, description="optimiser steps between train/* metric points")
    log_model: bool = Field(
        True,
        description="also log the best checkpoint's weights as an MLflow PyTorch model named 'model' (signature, "
        "input example): loadable with mlflow.pytorch.load_model('runs:/<run id>/model')",
    )
    register_as: str | None = Field(
        None, min_length=1, description="register that model under this name in the MLflow registry (models:/NAME/N)"
    )

    @model_validator(mode="after")
    def _registered_means_logged(self):
        if self.register_as and not self.log_model:
            raise ValueError("tracking.register_as registers the logged model: it needs tracking.log_model=true")
        return self


class OutputSection(_StrictModel):
    root: str = Field(".", description="work directory: Ray storage and the local MLflow store live here")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", description="run name (default: YAML stem)")
    checkpoint_every: int = Field(1, gt=0, description="epochs between periodic checkpoints")
    keep: int = Field(2, gt=0, description="checkpoints kept: the best by metric, plus always the latest")
    metric: Literal["val_top1", "val_top5", "val_mean_class_acc"] = Field(
        "val_top1", description="what picks the best checkpoint (higher is better)")


class DebugSection(_StrictModel):
    """Fault injection for tests and drills: the run must survive it."""

    kill_worker_after_epoch: int | None = Field(
        None, ge=1, description="hard-exit one worker once, after this epoch's checkpoint is registered"
    )
    kill_rank: int = Field(1, ge=0, description="the rank that kill_worker_after_epoch kills")


class ExperimentConfig(_StrictModel):
    seed: int = Field(0, description="seeds the model init, the data order and augmentation")
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    augment: AugmentSection = AugmentSection()
    optim: OptimSection = OptimSection()
    eval: EvalSection = EvalSection()
    scaling: ScalingSection = ScalingSection()
    tracking: TrackingSection = TrackingSection()
    output: OutputSection = OutputSection()
    debug: DebugSection = DebugSection()

    @model_validator(mode="after")
    def _cross(self):
        if self.data.num_frames % self.model.tubelet_size:
            raise ValueError(
                f"data.num_frames={self.data.num_frames} is not divisible by "
                f"model.tubelet_size={self.model.tubelet_size}"
            )
        if self.debug.kill_worker_after_epoch is not None and self.debug.kill_rank >= self.scaling.num_workers:
            raise ValueError(f"debug.kill_rank={self.debug.kill_rank} >= scaling.num_workers")
        return self

    # -- derived values, one place ------------------------------------------------------------
    @property
    def global_batch(self) -> int:
        return self.optim.batch_size * self.optim.accum_steps * self.scaling.num_workers

    @property
    def lr_scale(self) -> float:
        """global_batch / optim.lr_scale_batch (1.0 without scaling): the factor on every learning rate."""
        return self.global_batch / self.optim.lr_scale_batch if self.optim.lr_scale_batch else 1.0

    @property
    def scaled_lr(self) -> float:
        return self.optim.lr * self.lr_scale

    @property
    def scaled_warmup_lr(self) -> float:
        return self.optim.warmup_lr * self.lr_scale

    @property
    def scaled_min_lr(self) -> float:
        return self.optim.min_lr * self.lr_scale

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values (MLflow params, sweeps)."""
        return flatten(self.to_dict())

    def fingerprint(
        self, sections: tuple[str, ...] = ("seed", "model", "data", "augment", "optim", "eval", "scaling")
    ) -> str:
        d = {k: v for k, v in self.to_dict().items() if k in sections}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> ExperimentConfig:
        """A new validated config with dotted overrides applied (dict of values or `key=value` strings)."""
        raw = self.to_dict()
        items = parse_overrides(overrides) if isinstance(overrides, list) else overrides.items()
        for key, value in items:
            set_dotted(ExperimentConfig, raw, key, value)
        return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """A raw dict (a YAML's, a saved run's) as a validated config, or one ConfigError line."""
    return check(ExperimentConfig, raw, source)
