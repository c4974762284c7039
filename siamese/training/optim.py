"""Optimisers and learning-rate schedules, registered by name."""

from __future__ import annotations

import torch
from torch import nn

from siamese._registry import Registry
from siamese.training.config import TrainConfig

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


def _fused(parameters: list[nn.Parameter]) -> bool | None:
    # On a GPU, one fused kernel updates every parameter: small models are bound by kernel launches.
    return True if parameters and all(parameter.is_cuda for parameter in parameters) else None


@OPTIMIZERS.register("adam", "Adam with L2 weight decay")
def _adam(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=_fused(parameters))


@OPTIMIZERS.register("adamw", "Adam with decoupled weight decay")
def _adamw(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=_fused(parameters))


@OPTIMIZERS.register("sgd", "SGD with Nesterov momentum 0.9")
def _sgd(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)


def build_optimizer(config: TrainConfig, modules: list[nn.Module]) -> torch.optim.Optimizer:
    """One optimizer over the model and any loss that learns (e.g. class proxies)."""
    parameters = [parameter for module in modules for parameter in module.parameters()]
    return OPTIMIZERS.get(config.optimizer)(parameters, config)


@SCHEDULES.register("constant", "the same learning rate throughout")
def _constant(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@SCHEDULES.register("onecycle", "warm up over the first fifth of the steps, then anneal")
def _onecycle(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.2)


@SCHEDULES.register("cosine", "cosine annealing to zero")
def _cosine(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def build_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    return SCHEDULES.get(config.schedule)(optimizer, config, total_steps)
