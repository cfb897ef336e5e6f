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


def apply_threads(cfg: dict) -> None:
    """trainer.threads and trainer.deterministic, set before anything is built.

    Single-seed CPU results change with the intra-op thread count (reductions split differently), so
    a number is only reproducible together with its thread count: `threads` fixes it (null: torch's
    choice). The inter-op pool can only be sized before its first use; after that it stays as it is."""
    t = cfg["trainer"]
    threads = t.get("threads")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0:
            raise ConfigError("trainer.threads", threads, "allowed: null (torch's default) or a positive integer")
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already used or already set in this process
            pass
    deterministic = t.get("deterministic", False)
    if deterministic not in (True, False):
        raise ConfigError("trainer.deterministic", deterministic, "allowed: true, false")
    if deterministic:
        # cuBLAS reads this when its first handle is created, i.e. before any CUDA work of this process.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Set both ways: jobs run one after another in one process (tests) must not inherit the setting.
    torch.use_deterministic_algorithms(deterministic)


def device_name(device=None) -> str:
    """The GPU's name for a CUDA device, else the CPU model (from /proc/cpuinfo where there is one)."""
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reproducibility(device=None) -> dict:
    """What a result depends on besides the config and the versions: threads, determinism, hardware."""
    return {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "device_name": device_name(device), "cpu_count": os.cpu_count()}
