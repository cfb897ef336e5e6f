"""(c) What shipping a grown net as ONNX buys: onnxruntime's latency on the fused model (`trainer.export=onnx`)
against torch eager on the unfused model as trained, at batch 1 (latency) and batch 32 (throughput).

The models are fused_speedup's: grown the way AdaGrow leaves them (conv nets with extra RepUnit branches,
transformers after two head-growth events). Each fused model is exported once (dynamic batch) and the same
onnxruntime session, as many intra-op threads as torch has (the runner fixes them), serves both batch sizes.
Eval mode, no grad, a fixed batch; ratio = median torch-unfused time / median onnxruntime-fused time, the
two interleaved; the fused model in torch eager is timed too, so the ratio splits into what fusing buys
and what onnxruntime adds. The headline is the smallest ratio over families and batch sizes. --quick: one
conv net and one transformer at tiny widths, batch 8 for 32 (an export takes seconds).
"""
import tempfile
from pathlib import Path

import torch

from benchmarks.common import batch_and_latency, interleave, median, ratio, timing_sizes
from benchmarks.fused_speedup import FAMILIES, build
from growth.export_onnx import export_onnx, run_session, session

QUICK = ("resnet_basic", "vit")


@torch.no_grad()
def measure(family: str, quick: bool, sizes: dict) -> dict:
    """Per batch size: torch unfused, torch fused and onnxruntime fused times, and their ratios."""
    model, x, note = build(family, quick, max(b for b, _ in sizes.values()))
    model.eval()
    fused = model.deploy().eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        diff = export_onnx(fused, x, path)["export_max_abs_diff"]
        sess = session(path)
    out = {"model": note, "export_max_abs_diff": diff}
    for name, (batch, reps) in sizes.items():
        xb = x[:batch]
        times = interleave({"torch_unfused": lambda: model(xb), "torch_fused": lambda: fused(xb),
                            "ort_fused": lambda: run_session(sess, xb)}, reps, warmup=2)
        t = {k: median(v) for k, v in times.items()}
        out[name] = {"ratio": ratio(t["torch_unfused"], t["ort_fused"]), "batch": batch,
                     "fusing_ratio": ratio(t["torch_unfused"], t["torch_fused"]),
                     "ort_over_torch_fused": ratio(t["torch_fused"], t["ort_fused"]),
                     **{f"{k}_ms": round(1e3 * v, 3) for k, v in t.items()},
                     "max_abs_diff": (run_session(sess, xb) - model(xb)).abs().max().item()}
    return out


def run(quick: bool) -> dict:
    sizes = timing_sizes(quick)
    per = {f: measure(f, quick, sizes) for f in (QUICK if quick else FAMILIES)}
    ratios = {name: {f: r[name]["ratio"] for f, r in per.items()} for name in sizes}
    return batch_and_latency("torch eager unfused / onnxruntime fused inference time (eval, 32x32 images or "
                             "64 tokens)", sizes, ratios, {"per_family": per})
