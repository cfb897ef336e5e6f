"""A model as a file: its arch spec and state_dict, never a pickled module, so that the file loads with
torch's weights_only and loading it runs no code (growth/engine/io.py `read_torch`).

The deployed (fused) form is a function of the trained model (`deploy()`), and for some families not
a function of its own state_dict alone (a grown BERT layer's gate folds into a float attribute), so a
deploy file stores the trained model and `from_file` rebuilds the fused form from it, exactly.
"""
import torch

from growth.models import model_from_spec

DEPLOY_FORMAT = "growth-deploy-1"


def to_file(model, deployed: bool) -> dict:
    """What a file holds for `model`: spec, CPU state, the active skip config (ADN), and whether the
    reader gets the deployed form. checkpoints/deploy.pt is `to_file(model, deployed=True)`."""
    out = {"arch_spec": model.arch_spec(),
           "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
           "active_skip": [bool(f) for f in getattr(model, "skip", ())], "deployed": bool(deployed)}
    if deployed:
        out["format"] = DEPLOY_FORMAT
    return out


def is_file(obj) -> bool:
    return isinstance(obj, dict) and "arch_spec" in obj and isinstance(obj.get("model"), dict)


def from_file(obj):
    """The model of a `to_file` dict (the fused form when it says deployed); last.pt works too (spec +
    state). Rebuilding draws random init, so it runs on a forked RNG: loading moves no training RNG.
    A module (from an older file, read only with trainer.trust_pickles) is returned as it is."""
    if isinstance(obj, torch.nn.Module):
        return obj
    with torch.random.fork_rng(devices=[]):
        model = model_from_spec(obj["arch_spec"])
        model.load_state_dict(obj["model"])
        if any(obj.get("active_skip", ())):
            model.set_skip(obj["active_skip"])
        return model.deploy() if obj.get("deployed") else model
