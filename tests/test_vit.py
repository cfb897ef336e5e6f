"""The growable ViT: zero-init depth and head growth preserve the function, deploy fuses head groups,
the spec round-trips, and AdaGrow grows it end to end."""
import json
import random

import pytest
import torch
from torch import nn

import growth.models.vit  # noqa: F401  (registers the family)
from growth.engine.job import run_job
from growth.errors import ConfigError
from growth.grow.init import initialize
from growth.models import model_from_spec
from growth.models.vit import ViT, parse_vit_arch
from tests.conftest import tiny_cfg


def _vit(depth=2, heads=2, seed=0):
    torch.manual_seed(seed)
    m = ViT(depth=depth, heads=heads, embed_dim=32, head_dim=8, patch_size=2, img_size=8, in_chans=1,
            num_classes=5)
    with torch.no_grad():  # make every layer matter (the default init is near zero)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def test_parse_arch():
    assert parse_vit_arch("d2h6") == (2, 6)
    with pytest.raises(ConfigError, match="model.arch='2-2-2'"):
        parse_vit_arch("2-2-2")


@pytest.mark.parametrize("seed", range(4))
def test_zero_growth_preserves_function_and_fuses(seed):
    rng = random.Random(seed)
    m = _vit(depth=rng.randint(0, 3), heads=rng.randint(1, 3), seed=seed)
    x = torch.randn(3, 1, 8, 8)
    before = m(x)
    for _ in range(4):
        if rng.random() < 0.5:
            position = rng.randint(0, m.depth)
            initialize(m.grow_depth(0, position), "zero", 0.2)
        else:
            for group in m.grow_heads(1):
                initialize(group, "zero", 0.2)
        assert (m(x) - before).abs().max().item() < 1e-5
    with torch.no_grad():  # give the new parts real values, then fused must still equal unfused
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert (m.deploy()(x) - m(x)).abs().max().item() < 1e-5
    deployed = m.deploy()
    assert all(b.qkv.out_features == 3 * m.heads * m.head_dim for b in deployed.blocks)  # one qkv per block
    assert not any(n.elementwise_affine for n in deployed.modules() if isinstance(n, nn.LayerNorm))  # folded


def test_gaussian_growth_changes_function():
    m = _vit()
    x = torch.randn(2, 1, 8, 8)
    before = m(x)
    initialize(m.grow_depth(0), "gaussian", 0.2)
    assert (m(x) - before).abs().max().item() > 1e-3


def test_spec_round_trip_of_a_grown_vit():
    m = _vit(depth=1, heads=2)
    m.grow_heads(1)
    m.grow_depth(0, 0)
    m.grow_heads(2)
    assert m.arch_string() == "d2h5"  # the inserted block was built with the 3 heads of the time
    assert [[g.heads for g in b.attn.groups] for b in m.blocks] == [[3, 2], [2, 1, 2]]
    spec = m.arch_spec()
    rebuilt = model_from_spec(json.loads(json.dumps(spec)))
    rebuilt.load_state_dict(m.state_dict())
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(rebuilt.eval()(x), m(x))


def test_adagrow_grows_vit_on_digits(tmp_path):
    cfg = tiny_cfg(**{"method": "adagrow", "grow.interval": 1, "trainer.epochs": 5,
                      "grow_mode": "width-depth", "optim": "adamw"})
    cfg["model"] = {"name": "vit", "family": "vit", "arch": "d1h1", "max_arch": "d2h3", "patch_size": 2,
                    "head_dim": 8, "embed_dim": 16}
    s = run_job(cfg, tmp_path)
    assert s["status"] == "completed"
    events = [json.loads(r) for r in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["grow_heads", "grow_depth", "grow_heads"]  # then d2h3 = max
    assert all(e["max_abs_output_change"] < 1e-5 for e in events)
    assert s["arch"] == "d2h3" and s["deploy_max_abs_diff"] < 1e-4
    assert events[1]["params_after"] > events[1]["params_before"]


def test_vit_max_arch_must_be_transformer_style(tmp_path):
    from growth.engine.job import prepare
    cfg = tiny_cfg(**{"method": "adagrow"})
    cfg["model"] = {"name": "vit", "family": "vit", "arch": "d1h2", "max_arch": "2-2-2", "head_dim": 8}
    with pytest.raises(ConfigError, match="model.max_arch='2-2-2'"):
        prepare(cfg, tmp_path)
    cfg["model"]["max_arch"] = "d3h1"
    with pytest.raises(ConfigError, match="must be >="):
        prepare(cfg, tmp_path / "b")


def test_grown_vit_checkpoint_resumes_into_the_same_shape(tmp_path):
    cfg = tiny_cfg(**{"method": "adagrow", "grow.interval": 1, "trainer.epochs": 3, "optim": "adamw"})
    cfg["model"] = {"name": "vit", "family": "vit", "arch": "d1h1", "max_arch": "d3h3", "patch_size": 2,
                    "head_dim": 8, "embed_dim": 16}
    first = run_job(cfg, tmp_path)
    assert first["arch"] != "d1h1"
    cfg["trainer"]["epochs"] = 5  # same run directory: resumes from its grown last.pt
    cfg["trainer"]["on_config_change"] = "continue"  # more epochs for a finished run, on purpose
    second = run_job(cfg, tmp_path)
    assert second["status"] == "completed" and second["epochs_done"] == 5
    assert second["growth_events"] > first["growth_events"]  # the method state resumed too
    rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5] and rows[3]["arch"] == first["arch"]


def test_vit_refuses_text_data():
    with pytest.raises(ConfigError, match="model='vit': needs image data"):
        ViT.from_config({"arch": "d1h1"}, {"name": "synthetic_text", "vocab_size": 12, "in_chans": 1,
                                          "num_classes": 4, "image_size": 16})
