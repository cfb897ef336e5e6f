"""(b) Inference speed of the fused model (`model.deploy()`) over the unfused one, every family, at two
batch sizes: a throughput batch (32) and batch 1 (latency, where the number of ops weighs more).

Each model is first grown the way AdaGrow leaves it: conv nets at their max arch whose RepUnits got
extra branches in four width events (30% of the units each, random kernels), transformers with two
head-growth events (head groups [h, 1, 1] per layer). Eval mode, no grad, a fixed batch; the runner
fixes the CPU threads. Ratio = median unfused time / median fused time, interleaved. The headline is
the smallest ratio over families and both batch sizes (the worst case, not the best).

What to expect: a conv net's fused form does fewer FLOPs (branches and BNs fold away). A transformer's
does the same FLOPs (growth/models/transformer_deploy.py says what it drops instead), so when matmuls
dominate its ratio is close to 1.
"""
import random

import torch

from benchmarks.common import batch_and_latency, interleave, median, ratio, timing_sizes
from growth.blocks import RepUnit
from growth.grow.policy import sample_kernel
from growth.models import create_model

CONV = {"resnet_basic": [2, 2, 2], "resnet_bottleneck": [2, 2, 2], "vgg": [1, 2, 2], "mobilenet": [2, 3, 3]}
FAMILIES = (*CONV, "vit", "bert")
WIDTH_EVENTS, WIDTH_RATIO, HEAD_EVENTS = 4, 0.3, 2


def widen(model, rng: random.Random) -> int:
    """AdaGrow-style width growth (random units instead of saliency: the cost is the same)."""
    units = [m for m in model.modules() if isinstance(m, RepUnit)]
    for _ in range(WIDTH_EVENTS):
        for unit in rng.sample(units, max(1, int(WIDTH_RATIO * len(units)))):
            unit.add_branch(sample_kernel(unit, rng))
    return sum(len(u.branches) for u in units)


def build(family: str, quick: bool, batch: int):
    """(grown model, input batch, a note on its structure)."""
    if family in CONV:
        widths = [8, 12, 16] if quick else None
        model = create_model(family, depths=CONV[family], widths=widths, in_chans=3, num_classes=10)
        units = sum(isinstance(m, RepUnit) for m in model.modules())
        branches = widen(model, random.Random(0))
        return model, torch.randn(batch, 3, 32, 32), f"{model.arch_string()}, {branches} branches in {units} RepUnits"
    head_dim, heads = (8, 2) if quick else (64, 6)
    depth = 2 if quick else 6
    if family == "vit":
        model = create_model("vit", depth=depth, heads=heads, head_dim=head_dim, patch_size=4, img_size=32,
                             in_chans=3, num_classes=10)
        x = torch.randn(batch, 3, 32, 32)
    else:
        model = create_model("bert", depth=depth, heads=heads, head_dim=head_dim, vocab_size=1000, max_len=64,
                             num_classes=4, dropout=0.1)
        x = torch.randint(1, 1000, (batch, 64), generator=torch.Generator().manual_seed(0))
        x[:, 48:] = 0  # some padding, as real batches have
    for _ in range(HEAD_EVENTS):
        model.grow_heads(1)
    return model, x, f"{model.arch_string()}, head groups [{heads}, 1, 1] per layer"


@torch.no_grad()
def measure(family: str, quick: bool, batch: int, reps: int) -> dict:
    model, x, note = build(family, quick, batch)
    model.eval()
    fused = model.deploy()
    diff = (fused(x) - model(x)).abs().max().item()  # the two must compute the same function
    times = interleave({"unfused": lambda: model(x), "fused": lambda: fused(x)}, reps, warmup=2)
    t = {k: median(v) for k, v in times.items()}
    return {"ratio": ratio(t["unfused"], t["fused"]), "unfused_ms": round(1e3 * t["unfused"], 3),
            "fused_ms": round(1e3 * t["fused"], 3), "batch": len(x), "model": note, "max_abs_diff": diff}


def run(quick: bool) -> dict:
    sizes = timing_sizes(quick)
    per = {name: {f: measure(f, quick, batch, reps) for f in FAMILIES} for name, (batch, reps) in sizes.items()}
    ratios = {name: {f: r["ratio"] for f, r in fams.items()} for name, fams in per.items()}
    return batch_and_latency("unfused / fused inference time (eval, no grad, 32x32 images or 64 tokens)", sizes,
                             ratios, {"per_family": per["batch"], "per_family_batch1": per["latency"]})
