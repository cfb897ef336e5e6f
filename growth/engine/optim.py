"""Optimizers with two param groups (decay / no decay), and optimizer surgery after growth.

Growth changes the parameter set in two ways, and the optimizer follows each:

- Added tensors (new blocks, branches, heads): old parameters keep their identity, their group and
  their state; `add_params` puts each new one in the group of its kind with empty state (the optimizer
  fills it on its first step).
- Replaced tensors (Net2Net, GradMax, SplitGrow widen a layer: a larger tensor takes a smaller one's
  place): `replace_params` puts the new tensor at the old one's position in the old one's group, so
  lr / weight decay, group names and the saved per-group name lists (`group_param_names`,
  `restore_group_order`) stay valid. Its state is moved by the rule:

    * every state tensor with the parameter's shape (SGD momentum_buffer; Adam/AdamW exp_avg,
      exp_avg_sq, max_exp_avg_sq) becomes a zero tensor of the new shape whose "old slice" (the
      positions `Replaced.index` gives each old entry) holds the old values, bit for bit;
    * scalar state (Adam's `step`) is kept as it is: same value, dtype and device;
    * a parameter with no state yet gets none.

  Why: an old entry is the same weight as before and keeps its history (momentum, second moments);
  a new entry has no history, so its moments start at zero. That is GradMax's slot-copy rule (the
  optimizer slots of the old variables are copied into the grown ones, the rest are zero). Keeping
  `step` means the new entries share the old bias correction; at zero moments and zero gradient their
  Adam update is exactly 0, so only weight decay moves them.

  One hook may grow a tensor more than once (widening two adjacent stages: a downstream unit's rows,
  then its columns). Its replacements form a chain A -> B -> C, of which only A is in the optimizer:
  `replace_params` first joins them into A -> C with the index maps composed (`chain_replacements`).
"""
import dataclasses

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


def scale_lr(cfg: dict, global_batch: int) -> dict:
    """optim.lr_scale_batch = B: lr and min_lr scaled by global batch / B (DeiT's linear scaling rule,
    lr = lr * batch_size * world_size / 512), so a config names the lr at B whatever the batch and ranks.
    null: the lr as given (the config is returned unchanged)."""
    ref = cfg.get("lr_scale_batch")
    if ref is None:
        return cfg
    if isinstance(ref, bool) or not isinstance(ref, int) or ref <= 0:
        raise ConfigError("optim.lr_scale_batch", ref, "allowed: null (lr as given) or a positive batch size, e.g. 512")
    f = global_batch / ref
    return {**cfg, "lr": float(cfg.get("lr", 0.1)) * f, "min_lr": float(cfg.get("min_lr", 0.0)) * f}


def add_params(optimizer: torch.optim.Optimizer, named_params, cfg: dict) -> int:
    """Register new parameters in their group (same lr/wd as their kind). Returns how many joined."""
    known = {id(p) for g in optimizer.param_groups for p in g["params"]}
    fresh = [(n, p) for n, p in named_params if id(p) not in known]
    by_name = {g["name"]: g for g in optimizer.param_groups}
    for new in _groups(fresh, cfg):
        by_name[new["name"]]["params"].extend(new["params"])
    return len(fresh)


def replace_params(optimizer: torch.optim.Optimizer, replaced) -> int:
    """Put each `Replaced` r's new tensor where r.old is (same group, same position) and move its state
    through r.index (old slice copied, the rest zero, scalars kept). Returns how many were replaced.
    Everything is checked before anything changes, so a bad list leaves the optimizer as it was."""
    where = {id(p): (g, i) for g in optimizer.param_groups for i, p in enumerate(g["params"])}
    replaced = chain_replacements(replaced)
    _check_replacements(replaced, where)
    for r in replaced:
        group, i = where[id(r.old)]
        group["params"][i] = r.new
        state = optimizer.state.pop(r.old, None)
        if state is not None:
            optimizer.state[r.new] = {k: _grow_state(v, r) for k, v in state.items()}
    return len(replaced)


def copy_state(optimizer: torch.optim.Optimizer, copied) -> int:
    """Each (new, source) pair: the new tensor (a copy of the source, already registered by add_params)
    takes a clone of the source's state, moments and step count, as StackBERT's --double-optimizer
    duplicates the Adam state of the layers it copies. A source with no state yet leaves the copy with
    none. Returns how many copies got state; checked before anything changes."""
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for new, src in copied:
        if id(new) not in held or id(src) not in held:
            raise ValueError("copy_state: a copy or its source is not in the optimizer (call add_params first)")
        if new.shape != src.shape:
            raise ValueError(f"copy_state: copy {tuple(new.shape)} of a {tuple(src.shape)} tensor")
    n = 0
    for new, src in copied:
        state = optimizer.state.get(src)
        if state:
            optimizer.state[new] = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
            n += 1
    return n


def chain_replacements(replaced) -> list:
    """A -> B followed by B -> C (the same tensor grown twice) becomes one A -> C, at A's place in the
    list; each dim's index map is C's position of every A entry (B's map, then C's)."""
    out, at = [], {}  # at: id(a chain's newest tensor) -> its position in out
    for r in replaced:
        k = at.pop(id(r.old), None)
        if k is None:
            out.append(r)
            k = len(out) - 1
        else:
            first = out[k]
            out[k] = dataclasses.replace(first, new=r.new, index=_compose(first.index, r.index))
        at[id(r.new)] = k
    return out


def _compose(first: dict, then: dict) -> dict:
    dims = sorted(set(first) | set(then))
    return {d: then[d][first[d]] if d in first and d in then else first[d] if d in first else then[d]
            for d in dims}


def _check_replacements(replaced, where: dict) -> None:
    olds, news = set(), set()
    for r in replaced:
        if id(r.old) not in where:
            raise ValueError(f"replace_params: {r.name}: the old tensor is not in the optimizer")
        if id(r.new) in where or id(r.new) in news:
            raise ValueError(f"replace_params: {r.name}: the new tensor is already in the optimizer "
                             "(call replace_params before add_params) or listed twice")
        if id(r.old) in olds:
            raise ValueError(f"replace_params: {r.name}: the old tensor is replaced twice")
        olds.add(id(r.old))
        news.add(id(r.new))
        _check_shapes(r)


def _check_shapes(r) -> None:
    if r.new.ndim != r.old.ndim:
        raise ValueError(f"replace_params: {r.name}: {tuple(r.old.shape)} -> {tuple(r.new.shape)} changes the rank")
    for d in range(r.old.ndim):
        if d not in r.index and r.new.shape[d] != r.old.shape[d]:
            raise ValueError(f"replace_params: {r.name}: dim {d} changed size "
                             f"({r.old.shape[d]} -> {r.new.shape[d]}) but has no index map")
    for d, idx in r.index.items():
        _check_index(r, d, idx)


def _check_index(r, d, idx) -> None:
    if not torch.is_tensor(idx):
        raise ValueError(f"replace_params: {r.name}: index map for dim {d} is a {type(idx).__name__}, "
                         "needs a LongTensor")
    if not 0 <= d < r.old.ndim:
        raise ValueError(f"replace_params: {r.name}: index map for dim {d} of a {r.old.ndim}-d tensor")
    if idx.ndim != 1 or idx.numel() != r.old.shape[d]:
        raise ValueError(f"replace_params: {r.name}: index map for dim {d} has shape {tuple(idx.shape)}, "
                         f"needs length {r.old.shape[d]} (old size)")
    if idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"replace_params: {r.name}: index map for dim {d} has dtype {idx.dtype}, needs int64")
    if idx.numel() and (idx.min() < 0 or idx.max() >= r.new.shape[d]):
        raise ValueError(f"replace_params: {r.name}: index map for dim {d} goes outside 0..{r.new.shape[d] - 1}")
    if idx.unique().numel() != idx.numel():
        raise ValueError(f"replace_params: {r.name}: index map for dim {d} sends two old entries to one place")


def _grow_state(value, r):
    """One state entry: a tensor of the old parameter's shape grows (old slice copied, the rest zero);
    anything else (the step count, None) is kept as is."""
    if not torch.is_tensor(value) or r.old.ndim == 0 or value.shape != r.old.shape:
        return value
    # Same layout as the optimizer itself would give the new tensor (zeros_like, preserve_format).
    out = torch.zeros_like(r.new, dtype=value.dtype, device=value.device, memory_format=torch.preserve_format)
    out[_old_slice(r, out.device)] = value
    return out


def _old_slice(r, device) -> tuple:
    """Advanced index of the old entries in the new tensor: dims with a map use it, the others all of
    their range; shaped to broadcast into an outer product (one index tensor per dim)."""
    n = r.old.ndim
    index = []
    for d in range(n):
        idx = r.index[d] if d in r.index else torch.arange(r.old.shape[d])
        index.append(idx.to(device=device, dtype=torch.long).view([-1 if k == d else 1 for k in range(n)]))
    return tuple(index)


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
