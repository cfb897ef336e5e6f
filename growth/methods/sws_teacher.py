"""Where an SWS aux model's teacher comes from: a timm model (weights file, or trained in an earlier phase
of the run) or one of our own checkpoints (checkpoints/last.pt or checkpoints/deploy.pt)."""

import torch

from growth.engine.io import read_torch
from growth.errors import ConfigError
from growth.models import model_from_spec
from growth.models.timm_model import TimmModel


def is_path(value: str) -> bool:
    return "/" in value or value.endswith((".pt", ".pth"))


def _load(path, key: str):
    return read_torch(path, key, "file does not exist", "corrupt or unreadable")


def load_our_model(path, key: str = "method.teacher"):
    """A model from our last.pt (arch spec + state) or deploy.pt (the deployed module itself)."""
    obj = _load(path, key)
    if isinstance(obj, dict) and isinstance(obj.get("model"), torch.nn.Module):
        return obj["model"]
    if isinstance(obj, dict) and "arch_spec" in obj and isinstance(obj.get("model"), dict):
        model = model_from_spec(obj["arch_spec"])
        model.load_state_dict(obj["model"])
        return model
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
