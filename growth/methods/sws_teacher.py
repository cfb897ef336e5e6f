"""Where an SWS aux model's teacher comes from: a timm model (weights file, or trained in an earlier phase
of the run) or one of our own checkpoints (checkpoints/last.pt or checkpoints/deploy.pt)."""

import torch

from growth.engine.io import read_torch
from growth.errors import ConfigError
from growth.models.saved import is_file
from growth.models.timm_model import TimmModel


def is_path(value: str) -> bool:
    return "/" in value or value.endswith((".pt", ".pth"))


def _load(path, key: str):
    return read_torch(path, key, "file does not exist", "corrupt or unreadable")


def load_our_file(path, key: str = "method.teacher"):
    """Spec + state of a teacher from our last.pt or deploy.pt (growth/models/saved.py): what the SWS
    checkpoint stores for it, so that resume rebuilds the same teacher without pickling a module."""
    obj = _load(path, key)
    if isinstance(obj, dict) and isinstance(obj.get("model"), torch.nn.Module):
        return obj["model"]  # an older deploy.pt held the module: read only with trainer.trust_pickles
    if is_file(obj):
        return {k: obj[k] for k in ("arch_spec", "model", "active_skip", "deployed") if k in obj}
    raise ConfigError(key, str(path), "not a checkpoint of this suite (checkpoints/last.pt or deploy.pt)")


def timm_teacher(name: str, data_info: dict, weights=None):
    """A timm model for these data (small-input stem as model=timm does); `weights`: its state_dict file
    (or a dict holding it under "model", as DeiT-style checkpoints do)."""
    teacher = TimmModel.from_config({"name": name, "small_input_stem": "auto"}, data_info)
    if weights:
        state = _load(weights, "method.teacher_weights")
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            teacher.net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise ConfigError("method.teacher_weights", str(weights),
                              f"does not fit timm {name} ({str(e)[:160]})") from None
    return teacher
