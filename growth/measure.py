"""Sizes and costs: live params, MACs via torch.utils.flop_counter, deployed size, latency.

MACs = FlopCounterMode FLOPs / 2 (it counts conv, matmul and attention). Attention is forced onto the
math SDPA backend while counting, because fused kernels are invisible to the counter on CPU.
"""
import copy
import time

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Trainable parameters (our models hold no dead weights, so this is the live count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _probe(model: nn.Module, input_shape, batch: int, random: bool = False) -> torch.Tensor:
    """A probe input: `input_shape` is a shape (float inputs) or an example batch (any inputs, e.g.
    token ids), of which the first `batch` rows are used. Random values come from a private generator:
    measuring must never move the global RNG, or a resumed run (which measures at other moments) would
    initialise growth differently."""
    if isinstance(input_shape, torch.Tensor):
        return input_shape[:batch]
    p = next(model.parameters(), None)
    device, dtype = (p.device, p.dtype) if p is not None else ("cpu", torch.float32)
    if not random:
        return torch.zeros((batch, *input_shape), device=device, dtype=dtype)
    x = torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(0))
    return x.to(device, dtype)


@torch.no_grad()
def forward_macs(model: nn.Module, input_shape) -> int:
    """MACs of one eval-mode forward pass on one sample."""
    was_training = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            model(_probe(model, input_shape, 1))
    finally:
        model.train(was_training)
    return int(fc.get_total_flops() // 2)


def train_step_macs(model: nn.Module, input_shape, batch: int = 2) -> int:
    """MACs of one training step (forward + backward) per sample, counted on a throwaway copy so
    the real model's BN statistics and gradients are untouched."""
    m = copy.deepcopy(model).train()
    x = _probe(m, input_shape, batch, random=True)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m(x).float().sum().backward()
    return int(fc.get_total_flops() // 2 // batch)


@torch.no_grad()
def latency_ms(model: nn.Module, input_shape, batch: int = 1, warmup: int = 3, iters: int = 10) -> float:
    model.eval()
    x = _probe(model, input_shape, batch, random=True)
    for _ in range(warmup):
        model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters * 1e3
