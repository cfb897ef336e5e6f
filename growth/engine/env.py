"""Where a run happens: device, precision, seeding, RNG state, git commit and library versions."""
import logging
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from growth.errors import ConfigError

log = logging.getLogger("growth")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES and not str(name).startswith("cuda:"):
        raise ConfigError("trainer.device", name, f"allowed: {', '.join(DEVICES)} or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.device", name, "CUDA is not available here; use auto or cpu")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device):
    """AMP dtype or None. On CPU, AMP is off: warn and train in fp32."""
    if name not in PRECISIONS:
        raise ConfigError("trainer.precision", name, f"allowed: {', '.join(PRECISIONS)}")
    if name == "fp32":
        return None
    if device.type != "cuda":
        log.warning("trainer.precision=%s needs CUDA; training in fp32 on %s", name, device)
        return None
    return torch.bfloat16 if name == "bf16" else torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG's state as tensors and plain ints, so that a checkpoint loads with weights_only: numpy's
    key array goes in as a tensor, python's state is a tuple of ints already."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                    int(has_gauss), float(gauss)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]  # keys: a tensor (ours), or an ndarray (a trusted older file)
    np.random.set_state((kind, np.asarray(keys).astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_commit(path=None) -> str | None:
    here = Path(path or Path(__file__).resolve().parents[2])
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import timm

    import growth
    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "growth": growth.__version__,
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "host": platform.node(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
