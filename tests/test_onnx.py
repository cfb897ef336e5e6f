"""trainer.export=onnx and trainer.quantize=int8: the deploy model of every family as ONNX with a dynamic
batch, equal under onnxruntime to torch's; ADN's skip configs too; the int8 model's test accuracy.

torch's ONNX exporter (dynamo=True) takes a few seconds a model here, most of it building its op registry
again on every call, so the per-model tests are marked slow."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from growth.engine.job import run_job, validate
from growth.errors import ConfigError
from growth.export import export_or_warn
from growth.export_onnx import TOLERANCE, export_onnx, run_session, session
from growth.models import create_model
from growth.models.skippable import config_name
from tests.conftest import tiny_cfg
from tests.test_export import FAMILIES as GROWN, _grown

pytestmark = pytest.mark.usefixtures("one_thread", "cached_onnx_registry")

IMG = (1, 8, 8)
# The families test_export grows (head or depth growth before fusing), and the rest of the registry small.
OTHERS = {
    "reducenet": ({"depths": [2, 1, 1], "widths": [8, 12, 16], "in_chans": 1, "num_classes": 10}, IMG),
    "timm_resnet": ({"name": "resnet50", "in_chans": 3, "num_classes": 10,
                     "extra": {"channels": [8, 8, 16, 16], "stem_width": 8}}, (3, 32, 32)),
    "timm_vit": ({"name": "vit_tiny_patch16_224", "in_chans": 3, "num_classes": 10,
                  "extra": {"img_size": 32, "patch_size": 8}}, (3, 32, 32)),
    "sws_aux": ({"stage_repeats": [1, 2, 1], "embed_dim": 32, "heads": 2}, IMG),
    "sws_descendant": ({"depth": 2, "heads": 2, "embed_dim": 32}, IMG),
    "gromo_mlp": ({"in_shape": IMG, "num_classes": 10, "hidden": [4, 4]}, IMG),
}


def _model(family):
    """(model in eval mode with non-trivial weights and statistics, a batch of 4 inputs)."""
    if family in GROWN:
        return _grown(family)
    kwargs, shape = OTHERS[family]
    torch.manual_seed(0)
    model = create_model(family.split("_")[0] if family.startswith("timm") else family, **kwargs)
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model(torch.randn(8, *shape))  # running statistics away from (0, 1)
    return model.eval(), torch.randn(4, *shape)


def _dynamic_batch(path) -> bool:
    dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    return bool(dim.dim_param) and not dim.HasField("dim_value")


def test_every_registered_family_is_covered():
    from growth.models import MODELS, _load_all
    _load_all()
    covered = set(GROWN) | {f.split("_")[0] if f.startswith("timm") else f for f in OTHERS}
    assert covered == set(MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("family", [*GROWN, *OTHERS])
def test_onnx_of_the_deploy_model_equals_torch_at_any_batch(family, tmp_path):
    model, x = _model(family)
    deployed = model.deploy().eval()
    keys = export_onnx(deployed, x, tmp_path / "model.onnx")
    assert keys["export_format"] == "onnx" and keys["export_max_abs_diff"] < TOLERANCE
    assert keys["export_within_tolerance"] and _dynamic_batch(tmp_path / "model.onnx")
    sess = session(tmp_path / "model.onnx")
    assert sess.get_inputs()[0].type == ("tensor(int64)" if family == "bert" else "tensor(float)")
    with torch.no_grad():
        for batch in (x[:1], torch.cat([x, x, x[:1]])):  # 1 and 9 rows, neither traced
            assert (run_session(sess, batch) - model(batch)).abs().max().item() < TOLERANCE  # the unfused one


@pytest.mark.slow
@pytest.mark.parametrize("family,kwargs", [
    ("resnet_basic", {"depths": [2, 3, 1], "widths": [8, 12, 16], "in_chans": 1}),
    ("vit", {"depth": 6, "heads": 2, "head_dim": 8, "in_chans": 1, "img_size": 8, "patch_size": 4}),
])
def test_onnx_of_adn_skip_configs(family, kwargs, tmp_path):
    """Each skip config's fused export (what ADN ships) is its own graph, equal to the skipping model."""
    torch.manual_seed(0)
    model = create_model(family, skippable=True, **kwargs)
    x = torch.randn(4, *IMG)
    model.train()
    with torch.no_grad():
        for cfg in ((False, False), (True, True)):  # both norm sets away from their defaults
            model.set_skip(cfg)
            model(x)
    model.eval()
    for cfg in ((False, False), (True, True)):
        deployed = model.export_plain(cfg).deploy().eval()
        path = tmp_path / f"adn_{config_name(cfg)}.onnx"
        assert export_onnx(deployed, x, path)["export_max_abs_diff"] < TOLERANCE
        model.set_skip(cfg)
        with torch.no_grad():
            assert (run_session(session(path), x[:3]) - model(x[:3])).abs().max().item() < TOLERANCE


@pytest.mark.slow  # the exporter's first import (onnxscript) alone takes seconds
def test_an_onnx_export_that_fails_is_a_warning_and_a_summary_key(tmp_path):
    class Untraceable(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return x
            return -x
    keys = export_or_warn("onnx", Untraceable(), torch.randn(2, 3), tmp_path / "model.onnx")
    assert keys["export_format"] == "onnx" and keys["export_error"] and not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("over,key,message", [
    ({"trainer.export": "tflite"}, "trainer.export", "allowed: null, pt2, onnx"),
    ({"trainer.quantize": "int4"}, "trainer.quantize", "allowed: null, int8"),
    ({"trainer.quantize": "int8"}, "trainer.quantize", "needs trainer.export=onnx"),
    ({"trainer.quantize": "int8", "trainer.export": "pt2"}, "trainer.quantize", "needs trainer.export=onnx"),
    ({"trainer.quantize": "int8", "trainer.export": "onnx", "trainer.quantize_calib_batches": 0},
     "trainer.quantize_calib_batches", "positive integer"),
])
def test_bad_export_or_quantize_values_stop_before_training(over, key, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate(tiny_cfg(**over))
    assert err.value.key == key


@pytest.mark.slow  # a fresh interpreter importing the engine
def test_a_plain_run_never_imports_onnx():
    """`make run` stays as fast as before: the ONNX packages load only when an export asks for them."""
    code = ("import sys, growth.engine.job, growth.export, growth.quantize; "
            "print([m for m in ('onnx', 'onnxruntime', 'onnxscript') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]


@pytest.mark.slow
def test_int8_on_digits_reports_the_drop_from_the_test_split(tmp_path):
    from growth.data import build_data

    cfg = tiny_cfg(**{"trainer.export": "onnx", "trainer.quantize": "int8", "trainer.quantize_calib_batches": 2})
    summary = run_job(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["export_max_abs_diff"] < TOLERANCE
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test_acc_int8"] == summary["test_acc_int8"]
    assert summary["quantize_calib_batches"] == 2 and summary["quantize_calib_samples"] == 2 * 64
    # The test split, read here, and both graphs run here by onnxruntime: the summary's numbers are theirs.
    data = build_data(cfg["data"], {"batch_size": 64, "eval_batch_size": 512, "seed": cfg["seed"],
                                    "device": torch.device("cpu"), "num_workers": 0, "pin_memory": False})
    x = torch.cat([b[0] for b in data.test])
    y = torch.cat([b[1] for b in data.test]).numpy()
    int8 = session(summary["quantize_path"])
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(summary["quantize_path"]).graph.node)
    acc = {name: float(np.mean(run_session(s, x).argmax(1).numpy() == y))
           for name, s in (("fp32", session(summary["export_path"])), ("int8", int8))}
    assert summary["quantize_test_samples"] == len(y)
    assert summary["test_acc_onnx_fp32"] == pytest.approx(acc["fp32"]) == pytest.approx(summary["test_acc"])
    assert summary["test_acc_int8"] == pytest.approx(acc["int8"]) and 0.3 < acc["int8"] <= 1
    assert summary["int8_acc_drop_points"] == pytest.approx(100 * (acc["fp32"] - acc["int8"]))


@pytest.mark.slow
def test_adn_run_exports_each_skip_config_as_onnx(tmp_path):
    cfg = tiny_cfg(**{"method": "adn", "data": "synthetic", "model.arch": "2-1-1", "trainer.epochs": 1,
                      "method.latency_batch": 4, "method.export": "all", "trainer.export": "onnx"})
    summary = run_job(cfg, tmp_path)
    rows = summary["adn_exports"]
    assert [r["skip"] for r in rows] == ["F", "T"]  # one skippable stage: both its configs
    for r in rows:
        assert r["export_format"] == "onnx" and r["export_max_abs_diff"] < TOLERANCE
        assert r["export_path"].endswith(f"adn_{r['skip']}.onnx") and _dynamic_batch(r["export_path"])
