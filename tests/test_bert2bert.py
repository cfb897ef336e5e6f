"""method=bert2bert (growth/methods/bert2bert.py) and its FPI / AKI operations (growth/models/transformer_fpi.py):
FPI keeps the function for FFN growth (any mapping), heads, a hidden size doubled and all three at once on
ViT and BERT with every weight random (LayerNorms too); a hidden size that is not a multiple grows but
changes the function a little; AKI changes it and its new units are the next layer's; the grown model
has the target's shapes, deploys and rebuilds from its spec; a run grows once, records it and resumes
exactly; bad settings stop with a ConfigError naming the key."""
import json

import pytest
import torch

from benchmarks.common import compose
from growth.engine.job import prepare, run_job
from growth.errors import ConfigError
from growth.methods import METHODS
from growth.methods.bert2bert import Bert2Bert
from growth.models.transformer_fpi import split_ffn, split_heads, split_hidden
from tests.conftest import (StopAfter, assert_same_run, check_old_slice_kept, exp_avg_across_growth,
                            run_stopped_and_resumed)
from tests.test_msg import build, diff, rebuild

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

BASE = {"trainer.batch_size": 256, "trainer.device": "cpu", "trainer.progress": "false", "model": "vit",
        "model.head_dim": 8, "model.arch": "d2h2", "method": "bert2bert", "method.hidden": 32,
        "method.heads": 3, "method.ffn": "null"}


def grow(model, what: str, init="fpi"):
    if what in ("ffn", "all"):  # a random mapping: FFN splitting is exact for any
        split_ffn(model, 24, init, source=torch.randint(model.ffn_width(model.blocks[0]), (24,)))
    if what in ("heads", "all"):
        split_heads(model, 3, init, source=torch.tensor([1, 1, 0]))
    if what in ("hidden", "all"):
        assert split_hidden(model, model.hidden_size)[1]  # doubled: exact


@pytest.mark.parametrize("what", ["ffn", "heads", "hidden", "all"])
@pytest.mark.parametrize("family", ["vit", "bert"])
@torch.no_grad()
def test_fpi_keeps_the_function_and_gives_the_target_shapes(family, what):
    model, x = build(family)  # every weight random: LayerNorm weights and biases too
    before = model(x)
    d, ffn, heads = model.hidden_size, model.ffn_width(model.blocks[0]), model.heads
    grow(model, what)
    grown = model(x)
    assert diff(grown, before) < 1e-5
    want_hidden = 2 * d if what in ("hidden", "all") else d
    want_heads = heads + 3 if what in ("heads", "all") else heads
    want_ffn = ffn + 24 if what in ("ffn", "all") else ffn
    assert (model.hidden_size, model.heads, [model.ffn_width(b) for b in model.blocks]) == \
        (want_hidden, want_heads, [want_ffn] * model.depth)
    target = type(model)(**{**model.arch_spec()["kwargs"], "layer_heads": None, "layer_ffn": None,
                            "heads": want_heads, "embed_dim": want_hidden,
                            "mlp_ratio": want_ffn / want_hidden})  # the same sizes, built directly
    shapes = lambda m: {k: v.shape for k, v in m.deploy().state_dict().items()}  # head groups merged
    assert shapes(model) == shapes(target) and any(want_hidden in v for v in shapes(model).values())
    assert diff(model.deploy()(x), grown) < 1e-5
    assert diff(rebuild(model)(x), grown) == 0.0  # the spec rebuilds it: state_dict loads, same outputs


@pytest.mark.parametrize("family", ["vit", "bert"])
@torch.no_grad()
def test_fpi_copies_source_units_and_splits_their_outgoing_weights(family):
    model, _ = build(family)
    fc1, fc2 = model.ffn_linears(model.blocks[0])
    w1, w2, width = fc1.weight.clone(), fc2.weight.clone(), fc1.out_features
    split_ffn(model, 2, source=[3, 3])  # unit 3 now has three carriers
    fc1, fc2 = model.ffn_linears(model.blocks[0])
    assert torch.equal(fc1.weight[width], w1[3]) and torch.equal(fc1.weight[width + 1], w1[3])
    for j in (3, width, width + 1):
        assert torch.allclose(fc2.weight[:, j], w2[:, 3] / 3)
    assert torch.equal(fc2.weight[:, 0], w2[:, 0])


@pytest.mark.parametrize("family", ["vit", "bert"])
@torch.no_grad()
def test_a_hidden_size_that_is_not_a_multiple_grows_but_is_not_exact(family):
    model, x = build(family)
    before = model(x)
    replaced, exact = split_hidden(model, 5)  # 16 -> 21: dims 0..4 have two carriers, the rest one
    assert not exact and model.hidden_size == 21 and replaced
    assert diff(model(x), before) > 1e-3  # LayerNorm statistics shift: measured, not hidden
    assert diff(rebuild(model)(x), model(x)) == 0.0


@pytest.mark.parametrize("family", ["vit", "bert"])
@torch.no_grad()
def test_aki_takes_the_new_units_from_the_next_layer_and_changes_the_function(family):
    model, x = build(family)
    before = model(x)
    top = model.depth - 1
    fc1s = [model.ffn_linears(b)[0].weight.clone() for b in model.blocks]
    qkv = [[w.clone() for w, _ in b.attn.groups[0].qkv_heads()] for b in model.blocks]
    width = fc1s[0].shape[0]
    split_ffn(model, 4, "aki")
    split_heads(model, 1, "aki")
    assert diff(model(x), before) > 1e-2
    for i, block in enumerate(model.blocks):
        donor = min(i + 1, top)
        assert torch.equal(model.ffn_linears(block)[0].weight[width:], fc1s[donor][:4])
        for (w, _), old in zip(block.attn.groups[-1].qkv_heads(), qkv[donor]):
            assert torch.equal(w[0], old[0])  # round robin: the new head copies head 0 of the next layer
    assert diff(model.deploy()(x), model(x)) < 1e-5


def events(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e for e in rows if e["kind"].startswith("grow_")]


def test_a_run_grows_once_records_it_and_resumes_exactly(tmp_path, monkeypatch):
    stopping = type("Stopping", (StopAfter, Bert2Bert), {})
    monkeypatch.setitem(METHODS, "bert2bert", stopping)
    two = lambda: compose(**{**BASE, "trainer.epochs": 2, "method.grow_at": 1})
    # stopped right after the growth epoch: the checkpoint holds the grown model
    full, resumed = run_stopped_and_resumed(stopping, two, tmp_path, 1)
    assert full["status"] == "completed" and full["arch"] == "d2h3"
    assert_same_run(tmp_path, full, resumed, 2, ("params", "test_acc", "growth_events", "trajectory"))
    ev = events(tmp_path / "full")
    assert ev == events(tmp_path / "part")
    assert [(e["kind"], e["dimension"], e["size_before"], e["size_after"]) for e in ev] == [
        ("grow_width", "hidden", 16, 32), ("grow_width", "ffn", [64, 64], [128, 128]),
        ("grow_heads", "heads", 2, 3)]
    assert all(e["epoch"] == 1 and e["init"] == "fpi" and e["function_preserving"] is True
               and e["max_abs_output_change"] < 1e-5 for e in ev)
    ckpt = lambda d: torch.load(d / "checkpoints" / "last.pt", weights_only=True)
    x, y = ckpt(tmp_path / "full"), ckpt(tmp_path / "part")
    assert x["arch_spec"] == y["arch_spec"] and x["arch_spec"]["kwargs"]["embed_dim"] == 32
    assert x["model"].keys() == y["model"].keys() and all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])


def test_a_bert_run_with_aki_and_stacking_records_what_it_did(tmp_path, capsys):
    from run import print_report
    c = compose(**{**BASE, "model": "bert", "data": "synthetic_text", "model.arch": "d2h2", "trainer.epochs": 2,
                   "method.hidden": 24, "method.heads": "null", "method.init": "aki", "method.depth_factor": 2})
    s = run_job(c, tmp_path)
    ev = events(tmp_path)
    assert s["status"] == "completed" and s["arch"] == "d4h2"
    assert [(e["dimension"], e["init"], e["function_preserving"]) for e in ev] == [
        ("hidden", "fpi", False), ("ffn", "aki", False), ("depth", "stack", False)]
    assert ev[0]["size_after"] == 24 and ev[0]["max_abs_output_change"] > 0  # 16 -> 24: not a multiple
    assert ev[2]["size_before"] == 2 and ev[2]["size_after"] == 4
    print_report(s, tmp_path)  # run.py's end-of-run report takes the trajectory (it raised KeyError once)
    assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  epoch ")]) == 3


@pytest.mark.parametrize("over,key", [
    ({"method.hidden": 8}, "method.hidden"),  # smaller than the model's 16
    ({"method.heads": 1}, "method.heads"),
    ({"method.ffn": 32}, "method.ffn"),
    ({"method.hidden": 16, "method.heads": "null"}, "method.hidden"),  # nothing to grow
    ({"method.hidden": 0}, "method.hidden"),
    ({"method.init": "random"}, "method.init"),
    ({"method.grow_at": 3}, "method.grow_at"),  # not before the last epoch
    ({"method.grow_unit": "samples"}, "method.grow_unit"),
    ({"method.depth_factor": 0}, "method.depth_factor"),
    ({"model.skippable": "true"}, "model.skippable"),
    ({"model": "resnet_basic", "model.arch": "1-1-1", "model.widths": "[8,12,16]"}, "model"),
])
def test_bad_settings_name_the_key(over, key, tmp_path):
    base = {k: v for k, v in BASE.items() if "model" not in over or not k.startswith("model")}
    with pytest.raises(ConfigError) as e:
        prepare(compose(**{**base, "trainer.epochs": 3, **over}), tmp_path)
    assert e.value.key == key


def test_grown_tensors_keep_their_state_in_the_old_slice_and_new_heads_start_with_none(tmp_path):
    trainer, _ = prepare(compose(**{**BASE, "trainer.epochs": 2}), tmp_path)
    seen = exp_avg_across_growth(trainer)
    grown, held = 0, {id(q) for g in trainer.optimizer.param_groups for q in g["params"]}
    for n, p in trainer.model.named_parameters():
        assert id(p) in held, n
        if n not in seen:  # a new head group: in the optimizer, no state yet
            assert ".groups.1." in n and not trainer.optimizer.state.get(p)
            continue
        grown += check_old_slice_kept(trainer, seen, n, p)
    assert grown > 10
