"""Optimizers with two param groups (decay / no decay), and adding parameters after growth.

Growth adds modules in place, so old parameters keep their identity, their group and their optimizer
state; new ones join the group of their kind with empty state (the optimizer fills it on first step).
"""
import torch
from torch import nn

from growth.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")


def is_no_decay(name: str, p: nn.Parameter) -> bool:
    """Biases and norm scales/shifts (all 1-d tensors) get no weight decay when asked."""
    return p.ndim <= 1


def _groups(named_params, cfg) -> list[dict]:
    wd = float(cfg.get("weight_decay", 0.0))
    split = bool(cfg.get("no_decay_norm_bias", True))
    decay, no_decay = [], []
    for name, p in named_params:
        if p.requires_grad:
            (no_decay if split and is_no_decay(name, p) else decay).append(p)
    return [{"name": "decay", "params": decay, "weight_decay": wd, "base_weight_decay": wd},
            {"name": "no_decay", "params": no_decay, "weight_decay": 0.0, "base_weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    name, lr = cfg.get("name", "sgd"), float(cfg.get("lr", 0.1))
    if lr <= 0:
        raise ConfigError("optim.lr", lr, "must be positive")
    groups = _groups(model.named_parameters(), cfg)
    for g in groups:
        g["base_lr"] = lr
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(cfg.get("momentum", 0.9)),
                               nesterov=bool(cfg.get("nesterov", False)))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))),
                                 eps=float(cfg.get("eps", 1e-8)))
    raise ConfigError("optim.name", name, f"allowed: {', '.join(OPTIMIZERS)}")


def add_params(optimizer: torch.optim.Optimizer, named_params, cfg: dict) -> int:
    """Register new parameters in their group (same lr/wd as their kind). Returns how many joined."""
    known = {id(p) for g in optimizer.param_groups for p in g["params"]}
    fresh = [(n, p) for n, p in named_params if id(p) not in known]
    by_name = {g["name"]: g for g in optimizer.param_groups}
    for new in _groups(fresh, cfg):
        by_name[new["name"]]["params"].extend(new["params"])
    return len(fresh)


def group_param_names(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[list[str]]:
    """Parameter names per group, in optimizer order (growth appends, so this differs from model order)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]


def restore_group_order(optimizer: torch.optim.Optimizer, model: nn.Module, names: list[list[str]]) -> None:
    """Put parameters back in the saved order so optimizer state (keyed by position) lands on the right
    tensor when a grown model is rebuilt from its spec."""
    params = dict(model.named_parameters())
    for g, group_names in zip(optimizer.param_groups, names):
        g["params"] = [params[n] for n in group_names]
