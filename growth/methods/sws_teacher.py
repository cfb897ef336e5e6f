"""Where an SWS aux model's teacher comes from: a timm model (weights file, or trained in an earlier phase
of the run) or one of our own checkpoints (checkpoints/last.pt or checkpoints/deploy.pt)."""

import sys
from pathlib import Path

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


def _read_weights(path, key: str):
    """A state_dict file: torch (.pt, .pth: the original's --teacher-path) or safetensors (what the
    Hugging Face hub holds for timm models, e.g. timm/levit_384.fb_dist_in1k model.safetensors)."""
    if not str(path).endswith(".safetensors"):
        return _load(path, key)
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    if not Path(path).is_file():
        raise ConfigError(key, str(path), "file does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(key, str(path), f"corrupt or unreadable ({type(e).__name__})") from None


def _timm_filter(state, net):
    """timm's own conversion for the model's older checkpoints (e.g. LeViT files that still hold the
    attention_bias_idxs buffers), when its module has one; the state as it is otherwise."""
    convert = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if convert is None:
        return state
    try:
        return convert(state, net)
    except Exception:  # a conversion that does not apply: the strict load below says what is wrong
        return state


def timm_teacher(name: str, data_info: dict, weights=None):
    """A timm model for these data (small-input stem as model=timm does); `weights`: its state_dict file
    (or a dict holding it under "model", as DeiT-style checkpoints do)."""
    teacher = TimmModel.from_config({"name": name, "small_input_stem": "auto"}, data_info)
    if weights:
        state = _read_weights(weights, "method.teacher_weights")
        state = state.get("model", state) if isinstance(state, dict) else state
        state = _timm_filter(state, teacher.net) if isinstance(state, dict) else state
        try:
            teacher.net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise ConfigError("method.teacher_weights", str(weights),
                              f"does not fit timm {name} ({str(e)[:160]})") from None
    return teacher
