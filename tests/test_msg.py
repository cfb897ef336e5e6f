"""method=msg (growth/methods/msg.py) and the masks and width growth it uses (growth/models/transformer_masks.py,
TransformerArch.grow's hidden and ffn sites): at mask 0 every dimension keeps the function whatever the new
weights are, at 1 it does not, the fold-away and the spec rebuild compute the same function, grown tensors
keep their optimizer state in the old slice (zero in the new entries), a run stopped mid-ramp resumes
exactly, and bad settings stop with a ConfigError naming the key."""
import json
from types import SimpleNamespace

import pytest
import torch

from benchmarks.common import compose
from growth.engine.job import prepare, run_job
from growth.errors import ConfigError
from growth.methods import METHODS
from growth.methods.msg import MSG
from growth.models.bert import Bert
from growth.models.growable import Site
from growth.models.transformer_masks import MaskedLayerNorm, RampedAct
from growth.models.vit import ViT
from tests.conftest import (StopAfter, assert_same_run, check_old_slice_kept, exp_avg_across_growth,
                            run_stopped_and_resumed)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

BASE = {"trainer.batch_size": 256, "trainer.device": "cpu", "trainer.progress": "false",
        "model": "vit", "model.head_dim": 8, "model.arch": "d1h2", "method": "msg"}
GROW = {"hidden": (Site("hidden", "all", ""), {"n": 5}), "ffn": (Site("ffn", "all", ""), {"n": 7}),
        "heads": (Site("heads", "all", ""), {"n": 1}), "depth": (Site("depth", 1, ""), {})}


def build(family):
    """A tiny model with every parameter random (LayerNorms too), in eval mode, and its input."""
    torch.manual_seed(0)
    if family == "vit":
        model, x = ViT(2, 2, head_dim=8, patch_size=2, img_size=8, in_chans=1, num_classes=10), torch.randn(4, 1, 8, 8)
    else:
        model = Bert(2, 2, head_dim=8, vocab_size=50, max_len=16, num_classes=3, dropout=0.0)
        x = torch.randint(1, 50, (4, 12))
        x[0, 7:] = 0  # padding
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval(), x


@torch.no_grad()
def randomize_new(result) -> None:
    """Every entry growth chose (new tensors, the new part of replaced ones): random, not zero."""
    for r in result.replaced:
        new = torch.ones_like(r.new, dtype=torch.bool)
        new[tuple(slice(0, s) for s in r.old.shape)] = False
        r.new[new] = torch.randn(int(new.sum()))
    for p in result.new:
        p.copy_(torch.randn_like(p))


def rebuild(model):
    other = type(model)(**model.arch_spec()["kwargs"]).eval()
    other.load_state_dict(model.state_dict())
    return other


def diff(a, b) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("dim", list(GROW))
@pytest.mark.parametrize("family", ["vit", "bert"])
@torch.no_grad()
def test_a_masked_growth_keeps_the_function_until_the_mask_rises(family, dim):
    model, x = build(family)
    before = model(x)
    site, how = GROW[dim]
    result = model.grow(site, {**how, "mask": True})
    randomize_new(result)
    assert result.replaced or result.new
    name = result.details["mask"]
    assert diff(model(x), before) < 1e-5  # mask 0: the old function, whatever the new weights
    model.set_mask(name, 0.4)
    mid = model(x)
    assert diff(rebuild(model)(x), mid) == 0.0  # the spec carries the masks and their value
    model.set_mask(name, 1.0)
    grown = model(x)
    assert diff(grown, before) > 1e-2  # the new structure is really there
    model.fold_mask(name)
    assert not model.ramps and "masks" not in model.spec_kwargs()
    assert not any(isinstance(m, (MaskedLayerNorm, RampedAct)) for m in model.modules())
    assert all(getattr(m, "ramp", None) is None and getattr(m, "stream", None) is None for m in model.modules())
    assert diff(model(x), grown) < 1e-5  # the fold-away: the plain model, same function
    assert diff(rebuild(model)(x), model(x)) == 0.0
    assert diff(model.deploy()(x), grown) < 1e-5


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_hidden_growth_replaces_every_hidden_tensor_and_keeps_old_entries(family):
    model, _ = build(family)
    old = {n: p.detach().clone() for n, p in model.named_parameters()}
    d = model.hidden_size
    result = model.grow(Site("hidden", "all", ""), {"n": 3})
    params = dict(model.named_parameters())
    assert params.keys() == old.keys() and model.hidden_size == d + 3
    assert {r.name for r in result.replaced} == {n for n in old if old[n].shape != params[n].shape}
    assert all(d + 3 in params[r.name].shape for r in result.replaced) and len(result.replaced) > 10
    for r in result.replaced:
        assert params[r.name] is r.new and r.new.shape != r.old.shape
        assert torch.equal(r.new[tuple(slice(0, s) for s in r.old.shape)], old[r.name])
    if family == "bert":
        assert model.config.hidden_size == d + 3 and model.config.intermediate_size == int((d + 3) * 4)
        assert model.bert.embeddings.LayerNorm.normalized_shape == (d + 3,)


def test_the_ramp_rises_per_step_and_folds_at_one():
    model, _ = build("vit")
    method = MSG(compose(**{**BASE, "method.ramp_steps": 4}))
    ctx = SimpleNamespace(model=model, step=10)
    name = model.grow(Site("ffn", "all", ""), {"n": 3, "mask": True}).details["mask"]
    method.active = [[name, 10]]
    seen = []
    for step in range(10, 14):
        ctx.step = step
        ramp = model.ramps[name]
        method.ramp(ctx)
        seen.append(ramp.value)
    assert seen == [0.25, 0.5, 0.75, 1.0]
    assert not method.active and not model.ramps and method.trajectory == [{"folded": name, "step": 13}]


def events(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e for e in rows if e["kind"].startswith("grow_")]


def test_grown_tensors_keep_their_adam_state_in_the_old_slice(tmp_path):
    c = compose(**{**BASE, "trainer.epochs": 2, "method.ramp_steps": 3})
    c["method"]["schedule"] = [{"at": 1, "grow": "hidden", "n": 4}]
    trainer, _ = prepare(c, tmp_path)
    seen = exp_avg_across_growth(trainer)
    held = {id(q) for g in trainer.optimizer.param_groups for q in g["params"]}
    grown = 0
    for n, p in trainer.model.named_parameters():
        assert id(p) in held, n
        grown += check_old_slice_kept(trainer, seen, n, p)
    assert grown > 10
    trainer.run_epoch(2)  # the ramp runs and folds inside this epoch (3 of its 5 steps)
    assert not trainer.model.ramps and trainer.method.trajectory[-1]["folded"] == "m0"


def test_resume_mid_ramp_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    stopping = type("Stopping", (StopAfter, MSG), {})
    monkeypatch.setitem(METHODS, "msg", stopping)

    def three():
        c = compose(**{**BASE, "trainer.epochs": 3, "method.ramp_steps": 8})  # 5 steps/epoch: ends in epoch 3
        c["method"]["schedule"] = [{"at": 1, "grow": "hidden", "n": 4}]
        return c

    def mid_ramp(part):  # stopped after epoch 2, mid-ramp: the checkpoint holds the mask
        ckpt = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
        assert 0 < ckpt["arch_spec"]["kwargs"]["masks"]["values"]["m0"] < 1

    full, resumed = run_stopped_and_resumed(stopping, three, tmp_path, 2, mid_ramp)
    assert_same_run(tmp_path, full, resumed, 3, ("params", "test_acc", "growth_events", "trajectory"))
    assert events(tmp_path / "full") == events(tmp_path / "part")
    (ev,) = events(tmp_path / "full")
    assert ev["kind"] == "grow_width" and ev["function_preserving"] is True and ev["max_abs_output_change"] < 1e-5
    assert ev["size_before"] == 16 and ev["size_after"] == 20 and ev["dimension"] == "hidden"
    ckpt = lambda d: torch.load(d / "checkpoints" / "last.pt", weights_only=True)
    x, y = ckpt(tmp_path / "full"), ckpt(tmp_path / "part")
    assert "masks" not in x["arch_spec"]["kwargs"] and x["arch_spec"] == y["arch_spec"]
    assert x["model"].keys() == y["model"].keys() and all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])


@pytest.mark.parametrize("over,schedule,key", [
    ({}, [], "method.schedule"),
    ({}, [{"at": 1, "grow": "width", "n": 2}], "method.schedule"),
    ({}, [{"at": 1, "grow": "hidden", "n": 0}], "method.schedule"),
    ({}, [{"at": 1, "grow": "hidden"}], "method.schedule"),
    ({}, [{"at": 2, "grow": "ffn", "n": 2}, {"at": 1, "grow": "hidden", "n": 2}], "method.schedule"),
    ({}, [{"at": 3, "grow": "ffn", "n": 2}], "method.schedule"),  # not before the last epoch
    ({"method.ramp_steps": 0}, None, "method.ramp_steps"),
    ({"method.ramp_steps": 1000}, [{"at": 1, "grow": "ffn", "n": 2}, {"at": 2, "grow": "heads", "n": 1}],
     "method.ramp_steps"),  # a ramp longer than the gap between events
    ({"method.grow_unit": "samples"}, None, "method.grow_unit"),
    ({"model": "resnet_basic", "model.arch": "1-1-1", "model.widths": "[8,12,16]"}, None, "model"),
])
def test_bad_settings_name_the_key(over, schedule, key, tmp_path):
    base = {k: v for k, v in BASE.items() if "model" not in over or not k.startswith("model")}
    c = compose(**{**base, "trainer.epochs": 3, **over})
    c["method"]["schedule"] = schedule if schedule is not None else [{"at": 1, "grow": "heads", "n": 1}]
    with pytest.raises(ConfigError) as e:
        prepare(c, tmp_path)
    assert e.value.key == key


def test_a_bert_run_grows_all_four_dimensions_and_keeps_the_function_each_time(tmp_path, capsys):
    from run import print_report
    c = compose(**{**BASE, "model": "bert", "data": "synthetic_text", "trainer.epochs": 5, "method.ramp_steps": 2})
    c["method"]["schedule"] = [{"at": 1, "grow": "hidden", "n": 4}, {"at": 2, "grow": "ffn", "n": 8},
                               {"at": 3, "grow": "heads", "n": 1}, {"at": 4, "grow": "depth", "n": 2}]
    s = run_job(c, tmp_path)
    assert s["status"] == "completed" and s["arch"] == "d3h3" and s["growth_events"] == 4
    ev = events(tmp_path)
    assert [(e["kind"], e["size_before"], e["size_after"]) for e in ev] == [
        ("grow_width", 16, 20), ("grow_width", [64], [72]), ("grow_heads", 2, 3), ("grow_depth", 1, 3)]
    assert all(e["function_preserving"] and e["max_abs_output_change"] < 1e-5 for e in ev)
    spec = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["arch_spec"]["kwargs"]
    assert "masks" not in spec and spec["embed_dim"] == 20 and spec["layer_ffn"] == [72, 80, 80]
    print_report(s, tmp_path)  # run.py's end-of-run report takes msg's trajectory (it raised KeyError once)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  epoch ")]
    assert [ln.split()[2:4] for ln in lines] == [["grow_width", "hidden"], ["grow_width", "ffn"],
                                                 ["grow_heads", "heads"], ["grow_depth", "depth"]]


def test_grow_unit_steps_grows_at_the_first_epoch_end_that_reaches_it(tmp_path):
    c = compose(**{**BASE, "trainer.epochs": 3, "method.ramp_steps": 2, "method.grow_unit": "steps"})
    c["method"]["schedule"] = [{"at": 5, "grow": "ffn", "n": 8}]  # 4 steps per epoch: the end of epoch 2
    s = run_job(c, tmp_path)
    (ev,) = events(tmp_path)
    assert s["status"] == "completed" and ev["epoch"] == 2 and ev["step"] == 8 and ev["size_after"] == [72]
    assert s["trajectory"][-1] == {"folded": "m0", "step": 9}
