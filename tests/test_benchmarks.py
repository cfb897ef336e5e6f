"""benchmarks/: the runner writes one JSON file and one results.md row per benchmark, with positive finite
ratios. No threshold is checked here: timings on a shared CI machine are too noisy to assert on."""
import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import NAMES
from benchmarks.common import interleave, median, ratio
from tests.conftest import ROOT

KEYS = ("name", "ratio", "measured", "quick", "device", "torch", "threads", "command", "seconds", "details")


def test_median_and_ratio_helpers():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        median([])
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None and ratio(float("nan"), 1.0) is None and ratio(-1.0, 1.0) is None


def test_interleave_alternates_order_and_counts_reps():
    calls = []
    times = interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warmup, then A B, B A, A B
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_quick_run_writes_json_and_rows(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (out / "results.md").read_text().splitlines()
    assert rows[0].startswith("| benchmark | ratio |") and len(rows) == 2 + len(NAMES)
    for name in NAMES:
        rec = json.loads((out / f"{name}.json").read_text())
        assert all(k in rec for k in KEYS), name
        assert rec["name"] == name and rec["quick"] is True and "--quick" in rec["command"]
        if name == "adagrow_vs_fixed" and rec["ratio"] is None:  # never reached: said so, with the gap
            assert math.isfinite(rec["details"]["runs"][0]["best_gap"])
        else:
            assert positive(rec["ratio"]), (name, rec["ratio"])
    fused = json.loads((out / "fused_speedup.json").read_text())
    for batch in ("", "_batch1"):
        assert set(fused["ratios" + batch]) == {"resnet_basic", "resnet_bottleneck", "vgg", "mobilenet", "vit", "bert"}
        assert all(positive(r) for r in fused["ratios" + batch].values())
        assert all(r["max_abs_diff"] < 1e-4 for r in fused["details"]["per_family" + batch].values())
    assert fused["ratio"] == min([*fused["ratios"].values(), *fused["ratios_batch1"].values()])
    assert {r["batch"] for r in fused["details"]["per_family_batch1"].values()} == {1}
    onnx = json.loads((out / "onnx_latency.json").read_text())  # --quick: one conv net, one transformer
    for batch in ("", "_batch1"):
        assert set(onnx["ratios" + batch]) == {"resnet_basic", "vit"}
        assert all(positive(r) for r in onnx["ratios" + batch].values())
    for fam in onnx["details"]["per_family"].values():
        assert fam["export_max_abs_diff"] < 1e-4 and fam["latency"]["batch"] == 1
        assert all(fam[b]["max_abs_diff"] < 1e-4 and positive(fam[b]["fusing_ratio"]) for b in ("batch", "latency"))
    assert onnx["ratio"] == min([*onnx["ratios"].values(), *onnx["ratios_batch1"].values()])
    event = json.loads((out / "growth_event_cost.json").read_text())
    assert event["extrapolated"] is True and "EXTRAPOLATED" in event["measured"]
    assert {e["kind"] for e in event["details"]["events"]} == {"grow_width", "grow_depth"}
    # every registered growth method, side by side; the headline stays AdaGrow's
    from benchmarks.growth_event_cost import methods
    assert {"adagrow", "randgrow", "net2net"} <= set(event["ratios"]) == set(methods())
    assert event["ratio"] == event["ratios"]["adagrow"] and all(positive(r) for r in event["ratios"].values())
    assert all(len(m["events"]) == 2 for m in event["details"]["per_method"].values())


def test_adagrow_vs_fixed_cost_to_reach_and_never_reached():
    from benchmarks.adagrow_vs_fixed import compare
    ada = [{"epoch": 1, "val_acc": 0.5, "train_macs_cum": 10, "epoch_time_s": 1.0},
           {"epoch": 2, "val_acc": 0.9, "train_macs_cum": 30, "epoch_time_s": 1.0}]
    fixed = [{"epoch": 1, "val_acc": 0.6, "train_macs_cum": 40, "epoch_time_s": 2.0},
             {"epoch": 2, "val_acc": 0.8, "train_macs_cum": 80, "epoch_time_s": 2.0}]
    got = compare(ada, fixed)
    assert (got["reached_at_epoch"], got["macs_ratio"], got["time_ratio"]) == (2, 30 / 80, 2.0 / 4.0)
    fixed[-1]["val_acc"] = 0.95
    got = compare(ada, fixed)
    assert got["macs_ratio"] is None and got["time_ratio"] is None and got["best_gap"] == pytest.approx(0.05)


def run_json(module: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", module, *args, "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow  # ~10 s: a subprocess importing torch and torchvision
def test_data_on_device_benchmark_tiny():
    """Device-held CIFAR-10 vs the PIL DataLoader on generated CIFAR-10 files: rates and their ratio."""
    rec = run_json("benchmarks.data_on_device", "--images", "64", "--batch", "16", "--workers", "0", "--reps", "1",
                   "--device", "cpu")
    assert positive(rec["ratio"]) and all(positive(v) for v in rec["images_per_s"].values())
    assert set(rec["images_per_s"]) == {"device", "pil"} and rec["images_per_epoch"] == 64
    assert rec["ratio"] == pytest.approx(rec["images_per_s"]["device"] / rec["images_per_s"]["pil"], rel=1e-3)


@pytest.mark.slow  # ~10 s: a subprocess that builds a job (Hydra, torch, torchvision)
def test_loader_throughput_benchmark_tiny():
    """Loader alone vs train step alone on a generated ImageFolder tree: positive rates, ratio, verdict."""
    rec = run_json("benchmarks.loader_throughput", "data.image_size=32", "model.arch=1-1-1", "model.widths=[8,12,16]",
                   "trainer.batch_size=4", "trainer.device=cpu", "--make-imagefolder", "12", "--make-size", "48",
                   "--batches", "2", "--reps", "1")
    assert (rec["data"], rec["image_size"], rec["batch_size"], rec["input_shape"]) == ("imagefolder", 32, 4, [3, 32, 32])
    assert positive(rec["loader_images_per_s"]) and positive(rec["step_images_per_s"]) and positive(rec["ratio"])
    assert rec["ratio"] == pytest.approx(rec["loader_images_per_s"] / rec["step_images_per_s"], rel=1e-2)
    assert ("does not bound" in rec["verdict"]) == (rec["ratio"] >= 1)
