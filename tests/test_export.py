"""trainer.export=pt2: the deploy model of every family traced by torch.export with a dynamic batch,
reloaded by a process that never imports this package, and equal to the deploy model."""
import json
import subprocess
import sys

import pytest
import torch

from growth.engine.job import run_job, validate
from growth.errors import ConfigError
from growth.export import check_format, export_program
from growth.models import create_model
from tests.conftest import tiny_cfg

IMAGE = {"in_chans": 1, "num_classes": 10}
FAMILIES = {
    "resnet_basic": {"depths": [1, 1, 1], "widths": [8, 12, 16], **IMAGE},
    "resnet_bottleneck": {"depths": [1, 1, 1], "widths": [8, 12, 16], **IMAGE},
    "vgg": {"depths": [1, 1, 1], "widths": [8, 12, 16], **IMAGE},
    "mobilenet": {"depths": [1, 1, 1], "widths": [8, 12, 16], **IMAGE},
    "vit": {"depth": 2, "heads": 2, "head_dim": 8, "patch_size": 2, "img_size": 8, **IMAGE},
    "bert": {"depth": 2, "heads": 2, "head_dim": 8, "vocab_size": 50, "max_len": 10, "num_classes": 3},
}
# Runs in a fresh interpreter: only torch, and it fails if anything imported this package.
LOAD = """
import sys, torch
program = torch.export.load(sys.argv[1]).module()
x = torch.load(sys.argv[2])
torch.save(program(x), sys.argv[3])
assert not any(m == "growth" or m.startswith("growth.") for m in sys.modules), "growth was imported"
"""


def _grown(family):
    torch.manual_seed(0)
    model = create_model(family, **FAMILIES[family])
    if hasattr(model, "grow_heads"):
        model.grow_heads(1)  # head groups to merge
    else:
        model.grow_depth(1)
    with torch.no_grad():  # every parameter non-trivial, as after training
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    if family == "bert":
        x = torch.randint(1, 50, (4, 10))
        x[1, 6:] = 0  # padding
    else:
        x = torch.randn(4, 1, 8, 8)
    return model.eval(), x


@pytest.mark.parametrize("family", FAMILIES)
def test_exported_program_loads_without_this_package_and_equals_the_deploy_model(family, tmp_path):
    model, x = _grown(family)
    deployed = model.deploy()
    keys = export_program(deployed, x, tmp_path / "model.pt2")
    assert keys["export_max_abs_diff"] < 1e-5 and (tmp_path / "model.pt2").exists()
    bigger = torch.cat([x, x, x[:1]])  # 9 rows: a batch size never traced
    torch.save(bigger, tmp_path / "x.pt")
    proc = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "model.pt2"), str(tmp_path / "x.pt"),
                           str(tmp_path / "y.pt")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with torch.no_grad():
        assert (torch.load(tmp_path / "y.pt") - model(bigger)).abs().max().item() < 1e-5


def test_a_run_with_export_writes_model_pt2_and_reports_it(tmp_path):
    cfg = tiny_cfg(**{"trainer.export": "pt2", "trainer.epochs": 2, "grow.interval": 1})
    summary = run_job(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["export_format"] == "pt2"
    assert summary["export_max_abs_diff"] < 1e-5 and (tmp_path / "run" / "checkpoints" / "model.pt2").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["export_path"].endswith("model.pt2")


def test_an_export_that_fails_is_reported_and_the_run_still_completes(tmp_path, monkeypatch):
    import growth.export as export

    def untraceable(*_args, **_kwargs):
        raise RuntimeError("data-dependent control flow")
    monkeypatch.setattr(export, "export_program", untraceable)
    summary = run_job(tiny_cfg(**{"trainer.export": "pt2", "trainer.epochs": 1}), tmp_path / "run")
    assert summary["status"] == "completed" and "data-dependent control flow" in summary["export_error"]
    assert (tmp_path / "run" / "checkpoints" / "deploy.pt").exists()
    assert not (tmp_path / "run" / "checkpoints" / "model.pt2").exists()


@pytest.mark.parametrize("value", ["tflite", "torchscript"])
def test_an_unknown_export_format_stops_before_training(value):
    with pytest.raises(ConfigError, match=f"trainer.export='{value}': allowed: null, pt2, onnx"):
        validate(tiny_cfg(**{"trainer.export": value}))
    assert check_format(None) is None and check_format("pt2") == "pt2" and check_format("onnx") == "onnx"
