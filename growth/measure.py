"""Sizes and costs: live params, MACs via torch.utils.flop_counter, deployed size, latency, and the
side-by-side timing that our in-run speed-ups and benchmarks/ share.

MACs = FlopCounterMode FLOPs / 2 (it counts conv, matmul and attention). Attention is forced onto the
math SDPA backend while counting, because fused kernels are invisible to the counter on CPU.
"""
import copy
import statistics
import time

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **_) -> int:
    """FLOPs of a conv's backward: grad input (a transposed conv of grad_out with the weight) and grad
    weight. Ours because torch's formula (torch 2.14) counts the grad-weight conv of a grouped conv over all
    input channels, `groups` times its real cost: 6.9x the training MACs of MobileNetV2, whose depthwise
    convs have groups = channels. The grad weight takes one multiply-add per multiply-add of the forward,
    so it is counted as the forward conv; for groups = 1 this equals torch's count."""
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


def counter() -> FlopCounterMode:
    """The FLOP counter every count here uses (grouped-conv backward counted as above)."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})


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
        with sdpa_kernel(SDPBackend.MATH), counter() as fc:
            model(_probe(model, input_shape, 1))
    finally:
        model.train(was_training)
    return int(fc.get_total_flops() // 2)


def train_step_macs(model: nn.Module, input_shape, batch: int = 2) -> int:
    """MACs of one training step (forward + backward) per sample, counted on a throwaway copy so
    the real model's BN statistics and gradients are untouched."""
    m = copy.deepcopy(model).train()
    x = _probe(m, input_shape, batch, random=True)
    with sdpa_kernel(SDPBackend.MATH), counter() as fc:
        m(x).float().sum().backward()
    return int(fc.get_total_flops() // 2 // batch)


def _sync() -> None:
    """Wait for queued CUDA work: kernels run asynchronously, and a timer must see them finish."""
    if torch.cuda.is_initialized():  # cheap; False whenever CUDA was never used
        torch.cuda.synchronize()


def timed(fn) -> float:
    """Seconds one call of `fn` takes (CUDA work included)."""
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def interleave(fns: dict, reps: int, warmup: int = 1) -> dict:
    """Seconds per call of each named function: `warmup` untimed rounds, then `reps` timed rounds in
    which the order is reversed every other round (A B, B A, ...), so that drift in machine load falls on
    all of them alike. Returns {name: [seconds, ...]}."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            times[name].append(timed(fns[name]))
    return times


@torch.no_grad()
def compare_latency(models: dict, input_shape, batch: int = 1, reps: int = 30, warmup: int = 3) -> dict:
    """Median eval latency in ms of each named model on one shared input, timed interleaved."""
    x = _probe(next(iter(models.values())), input_shape, batch, random=True)
    was = {name: m.training for name, m in models.items()}
    for model in models.values():
        model.eval()
    times = interleave({name: (lambda m=m: m(x)) for name, m in models.items()}, reps, warmup)
    for name, model in models.items():  # hand them back as they came
        model.train(was[name])
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


@torch.no_grad()
def latency_ms(model: nn.Module, input_shape, batch: int = 1, warmup: int = 3, iters: int = 10) -> float:
    """Mean eval latency in ms of one model (for tables; compare two models with compare_latency)."""
    model.eval()
    x = _probe(model, input_shape, batch, random=True)
    for _ in range(warmup):
        model(x)
    return timed(lambda: [model(x) for _ in range(iters)]) / iters * 1e3
