import json

import pytest
import torch

from growth.measure import count_params
from growth.models import build_model


def test_timm_small_input_stem_keeps_resolution():
    m = build_model({"family": "timm", "name": "resnet18", "small_input_stem": "auto"},
                    {"in_chans": 1, "num_classes": 10, "image_size": 8})
    assert m.net.conv1.stride == (1, 1) and isinstance(m.net.maxpool, torch.nn.Identity)
    assert m.net.conv1.in_channels == 1 and m.net.fc.out_features == 10
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert m.arch_spec()["family"] == "timm" and m.arch_string() == "resnet18"


def test_timm_vit_gets_image_size():
    m = build_model({"family": "timm", "name": "vit_tiny_patch16_224", "kwargs": {"patch_size": 2}},
                    {"in_chans": 1, "num_classes": 10, "image_size": 8})
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_timm_unknown_name():
    from growth.errors import ConfigError
    with pytest.raises(ConfigError, match="model.name='resnet19'"):
        build_model({"family": "timm", "name": "resnet19"}, {"in_chans": 1, "num_classes": 10, "image_size": 8})


@pytest.mark.slow
def test_cli_timm_resnet18_trains_on_digits(cli, tmp_path):
    proc = cli(["model=timm", "model.name=resnet18", "trainer.epochs=1", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"] == "resnet18" and summary["data"] == "digits"
    assert summary["params"] > 11_000_000 and summary["final_val_acc"] > 0.2  # learnt something in 1 epoch
