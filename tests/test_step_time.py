"""benchmarks/step_time.py: the estimate is pure arithmetic on one measured step time; the CLI's JSON."""
import json
import math
import subprocess
import sys

import pytest
import torch

from benchmarks.step_time import N_TRAIN, estimate, measure, n_train
from growth.data import build_data
from tests.conftest import ROOT, tiny_cfg


def test_estimate_scales_linearly_with_epochs_and_batch():
    cfg = tiny_cfg(**{"trainer.dry_run_batch": 8})
    m = measure(cfg, steps=2)  # measured once: the arithmetic below sees no timing noise
    assert m["step_s"] > 0 and m["batch"] == 8 and m["train_macs_per_sample"] > 0
    n = n_train(cfg["data"])
    args = {"batch": 64, "n": n, "train_macs": m["train_macs_per_sample"]}
    two, four = estimate(m["step_s"], m["batch"], epochs=2, **args), estimate(m["step_s"], m["batch"], epochs=4, **args)
    assert abs(four["device_hours"] / two["device_hours"] - 2) < 1e-6
    assert abs(four["gpu_hours"] / two["gpu_hours"] - 2) < 1e-6
    assert two["job_step_s"] == pytest.approx(m["step_s"] * 64 / 8)  # linear in the batch
    assert two["steps"] == 2 * math.ceil(n / 64)
    assert two["gpu_hours"] == pytest.approx(2 * n * m["train_macs_per_sample"] * 2 / 100e12 / 3600)


def test_n_train_is_what_the_builders_train_on():
    args = {"batch_size": 8, "eval_batch_size": 8, "seed": 0, "device": torch.device("cpu"), "num_workers": 0,
            "pin_memory": False}
    for cfg in ({"name": "digits"}, {"name": "synthetic", "num_samples": 200}):
        assert n_train(cfg) == build_data(cfg, args).info["n_train"]
    assert n_train({"name": "cifar10", "val_fraction": 0}) == 50_000
    assert n_train({"name": "cifar100", "val_fraction": 0.1}) == 45_000
    assert n_train({"name": "imagefolder"}, "imagenet-1k") == N_TRAIN["imagenet-1k"] == 1_281_167


def test_cli_prints_json():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.step_time", "model.arch=1-1-1", "model.widths=[8,12,16]",
                           "trainer.epochs=3", "--steps", "1", "--batch", "4", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert (out["batch"], out["job_batch"], out["epochs"], out["n_train"]) == (4, 64, 3, 1257)
    assert out["ms_per_step"] > 0 and out["device_hours"] > 0 and out["gpu_tflops_assumed"] == 100
