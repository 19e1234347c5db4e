"""What a config builds: the model (init, ImageNet inflation, fine-tune start), the optimiser and
its schedule, the compiled evaluation net, and the model's cost; no Ray, no MLflow.

The training step, the Ray workers of `vfn train` and `vfn eval`, `vfn predict` and the sweep
report all build through here, so a model is made one way everywhere.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

import vfn.model as vm
from vfn.config.schema import ExperimentConfig
from vfn.errors import ConfigError, first_line
from vfn.model.compiling import Compiled, compile_ahead
from vfn.model.flops import count_flops
from vfn.model.weights import WeightsError, plan_video_transfer, read_state_dict

from .checkpoints import RunCheckpointError, resolve_checkpoint


def model_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    """`vfn.model.create_model` keyword arguments of the model an experiment trains."""
    m, d = cfg.model, cfg.data
    return dict(num_classes=d.num_classes, num_frames=d.num_frames, img_size=d.input_size,
                drop_path_rate=m.drop_path_rate, tubelet_size=m.tubelet_size, focal_levels=list(m.focal_levels),
                focal_windows=list(m.focal_windows), design=m.design, embed_dim=m.embed_dim, depths=m.depths,
                temporal_init=m.temporal_init)


def build_model(cfg: ExperimentConfig, *, load_pretrained: bool = True) -> nn.Module:
    """The experiment's model: `model.init` for from-scratch layers, then ImageNet inflation."""
    model = vm.create_model(cfg.model.name, grad_checkpointing=cfg.model.grad_checkpointing, **model_kwargs(cfg))
    if cfg.model.init == "xavier":
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
        model.init_temporal(cfg.model.temporal_init)  # xavier re-drew the linears an identity start sets
    if load_pretrained and cfg.model.pretrained:
        vm.load_image_weights(model, cfg.model.pretrained)
    if load_pretrained and cfg.model.finetune_from:
        vm.load_video_weights(model, resolve_checkpoint(cfg.model.finetune_from))
    return model


def meta_state_dict(cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """The state dict of the config's model on the `meta` device: names and shapes, no memory."""
    with torch.device("meta"):
        return build_model(cfg, load_pretrained=False).state_dict()


def finetune_transfer(cfg: ExperimentConfig):
    """What `model.finetune_from` will copy into the model and what starts fresh (a
    `vfn.model.TransferReport`), checked on the driver before Ray starts: the checkpoint is
    memory-mapped and the model built on `meta`, so only shapes are read. None without it."""
    if not cfg.model.finetune_from:
        return None
    try:
        sd = read_state_dict(resolve_checkpoint(cfg.model.finetune_from), mmap=True)
        return plan_video_transfer(meta_state_dict(cfg), sd)[0]
    except (RunCheckpointError, WeightsError) as e:
        raise ConfigError(f"model.finetune_from: {first_line(e)}") from None


def build_optimizer(cfg: ExperimentConfig, model: nn.Module, lr: float, total_steps: int, warmup_steps: int):
    """timm optimiser (no weight decay on norms and biases) and per-step warm-up + cosine schedule,
    all three learning rates scaled with the global batch; `scheduler.step_update(step)` after
    every optimiser step."""
    o = cfg.optim
    extra = dict(momentum=o.momentum) if o.optimizer == "sgd" else dict(betas=tuple(o.betas))
    optimizer = create_optimizer_v2(model, opt=o.timm_opt_name, lr=lr, weight_decay=o.weight_decay, **extra)
    scheduler = CosineLRScheduler(optimizer, t_initial=total_steps, lr_min=cfg.scaled_min_lr,
                                  warmup_t=warmup_steps, warmup_lr_init=cfg.scaled_warmup_lr, t_in_epochs=False)
    return optimizer, scheduler


def eval_batch_clips(cfg: ExperimentConfig) -> int:
    """Clips per evaluation forward: videos per batch x clips x crops."""
    return cfg.eval.batch_size * cfg.eval.num_clips * cfg.eval.num_crops


def compile_for_eval(net: nn.Module, cfg: ExperimentConfig, device: torch.device, autocast) -> Compiled:
    """`net` compiled for inference at the evaluation batch shape (`evaluate_batches` pads a short
    last batch to it, so evaluation never recompiles)."""
    def warm_eval(model: nn.Module) -> None:
        x = torch.zeros(eval_batch_clips(cfg), cfg.data.num_frames, 3, cfg.data.input_size, cfg.data.input_size,
                        device=device)
        was_training = net.training
        with torch.no_grad(), autocast():
            model.eval()(x)
        net.train(was_training)

    return compile_ahead(net, warm_eval, cfg.model.compile_mode)


def model_cost(cfg: ExperimentConfig) -> tuple[float, float]:
    """(params M, GFLOPs per view) of the model an experiment trains, counted on the meta device."""
    with torch.device("meta"):
        model = vm.create_model(cfg.model.name, **model_kwargs(cfg))
    return count_flops(model, cfg.data.num_frames, cfg.data.input_size)
