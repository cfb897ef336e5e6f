"""(b) Inference throughput of the fused model (`model.deploy()`) over the unfused one, every family.

Each model is first grown the way AdaGrow leaves it: conv nets at their max arch whose RepUnits got
extra branches in four width events (30% of the units each, random kernels), transformers with two
head-growth events (head groups [h, 1, 1] per layer). Eval mode, no grad, a fixed batch; the runner
fixes the CPU threads. Ratio per family = median unfused time / median fused time, interleaved.
"""
import random

import torch

from benchmarks.common import interleave, median, ratio
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


def build(family: str, quick: bool):
    """(grown model, input batch, a note on its structure)."""
    batch = 8 if quick else 32
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
def measure(family: str, quick: bool, reps: int) -> dict:
    model, x, note = build(family, quick)
    model.eval()
    fused = model.deploy()
    diff = (fused(x) - model(x)).abs().max().item()  # the two must compute the same function
    times = interleave({"unfused": lambda: model(x), "fused": lambda: fused(x)}, reps, warmup=2)
    t = {k: median(v) for k, v in times.items()}
    return {"ratio": ratio(t["unfused"], t["fused"]), "unfused_ms": round(1e3 * t["unfused"], 3),
            "fused_ms": round(1e3 * t["fused"], 3), "batch": len(x), "model": note, "max_abs_diff": diff}


def run(quick: bool) -> dict:
    reps = 3 if quick else 15
    per = {f: measure(f, quick, reps) for f in FAMILIES}
    ratios = {f: r["ratio"] for f, r in per.items()}
    shown = ", ".join(f"{f} {r:.2f}" if r else f"{f} null" for f, r in ratios.items())
    valid = [r for r in ratios.values() if r]
    return {
        "ratio": min(valid) if len(valid) == len(ratios) else None,
        "measured": (f"unfused / fused inference time (eval, no grad, batch {per['vit']['batch']}, 32x32 images "
                     f"or 64 tokens, median of {reps} interleaved), smallest over families; per family: {shown}"),
        "ratios": ratios,
        "details": {"per_family": per, "reps": reps},
    }
