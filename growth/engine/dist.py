"""Data-parallel training across processes: torchrun, or the tasks of one SLURM job under submitit.

Growth changes the parameter set mid-training, which the usual DDP setup (wrap once) cannot follow.
Here every rank runs the same method code on the same synchronised state: weights are identical
(DDP broadcasts from rank 0 when it wraps), BN buffers are broadcast every forward, and each rank
evaluates the whole validation set, so growth decisions (saliency, plateau) agree. After a structural
event the ranks compare their arch, then the model is wrapped again: the new DDP broadcasts rank 0's
initialisation of the new parameters, and the optimizer keeps the old ones' state (same tensors).
"""
import hashlib
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


log = logging.getLogger("growth")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _export_submitit_env() -> None:
    """A SLURM job with several tasks launched by submitit: export RANK, WORLD_SIZE, MASTER_ADDR/PORT."""
    if "RANK" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    from submitit.helpers import TorchDistributedEnvironment
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def env_rank() -> int:
    """This process's rank from the environment, before the process group exists."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if os.environ.get("SUBMITIT_EXECUTOR") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return int(os.environ.get("SLURM_PROCID", "0"))
    return 0


def env_world() -> int:
    """The number of processes from the environment, before the process group exists."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    if os.environ.get("SUBMITIT_EXECUTOR"):
        return int(os.environ.get("SLURM_NTASKS", "1"))
    return 1


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched as several processes; a single process gets DistInfo()."""
    _export_submitit_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        log.info("distributed: rank %d of %d (%s)", info.rank, world, backend)
    return info


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """One GPU per process: cuda:LOCAL_RANK."""
    if info.enabled and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def wrap(model, info: DistInfo, device: torch.device):
    """The module the training step calls: DDP around `model` when distributed (broadcasts rank 0's
    parameters and buffers now), else the model itself."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sync_buffers(model, info: DistInfo) -> None:
    """BN running statistics from rank 0. DDP broadcasts buffers at the start of each forward, so after
    an epoch's last step every rank holds its own update; evaluation and growth need one value."""
    if info.enabled:
        for b in model.buffers():
            dist.broadcast(b, 0)


def all_sum(info: DistInfo, *values: torch.Tensor) -> list[torch.Tensor]:
    if info.enabled:
        for v in values:
            dist.all_reduce(v)
    return list(values)


def sum_count(info: DistInfo, n: int, device) -> int:
    """A count (samples) summed over ranks; one process: n itself, without a device sync."""
    if not info.enabled:
        return n
    return int(all_sum(info, torch.tensor(float(n), device=device))[0].item())


def check_same(info: DistInfo, what: str, value) -> None:
    """Every rank must hold the same `value` (an arch string, a weight digest) or the run stops."""
    if not info.enabled:
        return
    values = [None] * info.world
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"distributed ranks disagree on {what}: {values}")


def weight_digest(model) -> str:
    """A hash of every parameter and buffer, bit for bit (to prove ranks hold identical weights)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistInfo", "setup", "local_device", "wrap", "all_sum", "sync_buffers", "check_same", "weight_digest",
           "cleanup", "env_rank", "env_world", "sum_count"]
