"""SplitGrow (growth/methods/splitgrow.py, growth/grow/split_stage.py) through the engine's run context:
a split step keeps the function to O(eps^2) (exactly at eps = 0) on every conv family, splits the channels
whose splitting eigenvalues (computed directly, layer by layer) are the most negative, moves only the first
producer's conv rows off a Net2Net copy, and a run grows, records its events and resumes exactly."""
import copy
from types import SimpleNamespace
from itertools import islice

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from growth.engine.job import prepare, run_job
from growth.engine.record import RunRecord
from growth.errors import ConfigError
from growth.grow.split_stage import channel_macs, first_producer, split_stage, stage_neurons
from growth.grow.splitting import choose, splitting_eigen
from growth.grow.widen import widen_stage
from growth.methods import METHODS
from growth.methods.splitgrow import ORDER, SplitGrow
from growth.models.resnet_basic import ResNetBasic
from tests.conftest import tiny_cfg

FAST = {"method": "splitgrow", "grow.interval": 1, "trainer.epochs": 3, "trainer.batch_size": 64,
        "method.batches": 2, "trainer.device": "cpu"}
FAMILIES = {"resnet_basic": {}, "vgg": {"model": "vgg"}, "resnet_bottleneck": {"model": "resnet_bottleneck"},
            "mobilenet": {"model": "mobilenet", "model.downstream_act": "true"}}


def _trainer(tmp_path, **over):
    trainer, _ = prepare(tiny_cfg(**{**FAST, **over}), tmp_path)
    with torch.no_grad():  # outputs of order 1 (the init's fc is N(0, 0.001)): changes are measurable
        trainer.model.fc.weight.copy_(torch.randn(trainer.model.fc.weight.shape,
                                                  generator=torch.Generator().manual_seed(0)))
    return trainer


@torch.no_grad()
def _out(model, x):
    model.eval()
    return model(x)


def _split_changes(tmp_path, epses, **over) -> tuple[torch.Tensor, dict, object]:
    """Eval outputs on a val batch before and after one split step of the method (on a copy of the same
    model for each eps), and the trainer. The step runs on the run context as in a run; the optimizer
    surgery the engine would do after it is dropped (each eps starts again from the same model)."""
    trainer = _trainer(tmp_path, **over)
    ctx, base = trainer.ctx, copy.deepcopy(trainer.model)
    x = next(iter(trainer.data.val))[0][:64]
    before, after = _out(base, x), {}
    for eps in epses:
        trainer.model = copy.deepcopy(base)
        trainer.method.eps = eps  # set here: the config refuses eps < 0 (it mirrors eps > 0)
        trainer.method.steps = 0  # the same batches for every eps
        trainer.method.on_epoch_end(ctx, 1)
        assert ctx.take_events(), "the step split nothing"
        ctx.take_replaced(), ctx.settle()
        after[eps] = _out(trainer.model, x)
    return before, after, trainer


def _smooth_relu(monkeypatch):
    """Every ReLU of the families (F.relu, and nn.ReLU, which calls it) becomes softplus(beta=4): the
    net is smooth, so its change under a split is O(eps^2) pointwise. With true ReLUs it is not: the
    net is piecewise linear, and the change comes from inputs whose split pre-activation lies within
    eps |c v.x| of the kink, O(eps) there and O(eps^2) only on average (measured here: the max change
    scales as eps^1.1..1.4, the mean as eps^1.7..2)."""
    soft = F.softplus
    monkeypatch.setattr(F, "relu", lambda x, inplace=False: soft(x, beta=4.0))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_split_step_changes_a_smooth_net_by_eps_squared(tmp_path, monkeypatch, family):
    _smooth_relu(monkeypatch)
    before, after, trainer = _split_changes(tmp_path, (1e-1, 1e-2, 0.0), **FAMILIES[family])
    changes = {eps: (out - before).abs().max().item() for eps, out in after.items()}
    assert before.abs().max() > 0.5 and changes[1e-2] > 0
    assert 50 <= changes[1e-1] / changes[1e-2] <= 200, changes  # O(eps^2): x100 for eps x10
    assert changes[0.0] < 1e-5  # eps = 0 is a Net2Net copy
    assert trainer.model.widths != [8, 12, 16] and all(w >= o for w, o in zip(trainer.model.widths, [8, 12, 16]))
    if family == "mobilenet":
        assert trainer.method.skipped == {}  # downstream_act=true: every stage has its ReLU


@pytest.mark.parametrize("family", FAMILIES)
def test_a_split_step_is_even_in_eps_and_exact_at_zero(tmp_path, family):
    """The real (ReLU) nets: +eps and -eps give the same function (swapping the two copies maps one
    onto the other, and every consumer reads them alike), so no first-order term is left."""
    before, after, _ = _split_changes(tmp_path, (1e-1, -1e-1, 0.0), **FAMILIES[family])
    assert (after[1e-1] - before).abs().max() > 1e-3  # the split does change the function ...
    assert (after[1e-1] - after[-1e-1]).abs().max() < 1e-5  # ... by an even function of eps
    assert (after[0.0] - before).abs().max() < 1e-5


def test_the_chosen_channels_have_the_most_negative_eigenvalues(tmp_path):
    trainer = _trainer(tmp_path)
    model, ctx = trainer.model, trainer.ctx
    batches = list(islice(ctx.train_batches(ORDER), 2))  # the step's batches: order ORDER + step 0
    loss = lambda out, y: F.cross_entropy(out, y)
    neurons, _ = stage_neurons(model)
    direct = [splitting_eigen(model, n.convbn.conv, batches, loss, tap=n.act, act="relu", bn=n.convbn.bn,
                              tap_side="output") for n in neurons.values()]
    lams = [lam for lam, _ in direct]
    k = int(0.1 * sum(model.widths))  # ratio 0.1 of 36 channels
    expect = {str(s): idx.tolist() for s, idx in zip(neurons, choose(lams, k=k)) if len(idx)}
    trainer.call_hook(trainer.method.on_epoch_end, 1)
    events = trainer.record.events()
    assert [e["kind"] for e in events] == ["grow_width"] * len(expect)
    assert {s: c for e in events for s, c in e["split"].items()} == expect
    assert sum(len(c) for c in expect.values()) == k and all(e["eps"] == 0.01 for e in events)
    for e in events:
        (s, channels), = e["split"].items()
        want = lams[int(s)][channels]
        assert torch.allclose(torch.tensor(e["eigenvalues"]), want.float(), rtol=1e-4, atol=1e-7)
        assert all(v < 0 for v in e["eigenvalues"])
        assert e["samples"] == sum(len(y) for _, y in batches) and e["where"] == f"stage {s}"
        assert e["width_after"] == e["width_before"] + len(channels) and e["max_abs_output_change"] > 0
    assert [e["where"] for e in events] == sorted((e["where"] for e in events), reverse=True)  # last stage first


def test_only_the_first_producer_rows_move_off_the_net2net_copy():
    torch.manual_seed(0)
    model = ResNetBasic([1, 1, 1], [8, 12, 16], 1, 10, 1)
    copy_ = copy.deepcopy(model)
    neuron = first_producer(model, 1)
    channels, vecs, eps = [5, 2], torch.randn(2, 8 * 9), 0.1
    split_stage(model, neuron, channels, vecs, eps)
    widen_stage(copy_, 1, 14, torch.tensor(channels))
    a, b = model.state_dict(), copy_.state_dict()
    moved = "downs.0.unit.branches.0.conv.weight"
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k != moved)
    v = vecs.view(2, 8, 3, 3)
    assert torch.allclose(a[moved][channels], b[moved][channels] + eps * v, atol=1e-7)
    assert torch.allclose(a[moved][12:], b[moved][12:] - eps * v, atol=1e-7)
    assert torch.equal(a[moved][[0, 1, 3, 4, 6, 7, 8, 9, 10, 11]], b[moved][[0, 1, 3, 4, 6, 7, 8, 9, 10, 11]])


def test_channel_macs_by_hand():
    """One more stage-2 channel of a 1-1-1 [8,12,16] net on 1x8x8 (stage 2 at 2x2): its row in the
    downstream conv (12*9 per position), a row and a column in both block units ((17^2-16^2)*9 per
    position each), and one fc input per class."""
    model = ResNetBasic([1, 1, 1], [8, 12, 16], 1, 10, 1)
    assert channel_macs(model, 2, (1, 8, 8)) == 12 * 9 * 4 + 2 * (17 ** 2 - 16 ** 2) * 9 * 4 + 10


def test_energy_aware_splits_within_its_budget(tmp_path):
    trainer = _trainer(tmp_path, **{"method.energy_aware": "true", "method.ratio": 0.2})
    from growth.grow.split_stage import energy_costs
    costs = energy_costs(trainer.model, [0, 1, 2], (1, 8, 8), 0.2)
    budget = 0.2 * sum(c * w for c, w in zip(costs, trainer.model.widths))
    trainer.call_hook(trainer.method.on_epoch_end, 1)
    events = trainer.record.events()
    assert events and all(e["energy_aware"] for e in events)
    spent = sum(costs[int(s)] * len(c) for e in events for s, c in e["split"].items())
    assert 0 < spent <= budget


def test_max_widths_caps_each_stage(tmp_path):
    trainer = _trainer(tmp_path, **{"method.ratio": 0.5, "method.max_widths": "[8,13,17]"})
    trainer.call_hook(trainer.method.on_epoch_end, 1)
    assert all(w <= m for w, m in zip(trainer.model.widths, [8, 13, 17])) and trainer.model.widths != [8, 12, 16]
    trainer.call_hook(trainer.method.on_epoch_end, 2)
    if trainer.model.widths == [8, 13, 17]:
        assert trainer.method.stopped.startswith("every stage reached")


def test_growth_stops_at_max_events_and_max_params(tmp_path):
    trainer = _trainer(tmp_path / "a", **{"grow.max_events": 1})
    trainer.call_hook(trainer.method.on_epoch_end, 1)
    widths = list(trainer.model.widths)
    trainer.call_hook(trainer.method.on_epoch_end, 2)
    assert trainer.model.widths == widths != [8, 12, 16] and "grow.max_events=1" in trainer.method.stopped
    trainer = _trainer(tmp_path / "b", **{"grow.max_params": 1000})
    trainer.call_hook(trainer.method.on_epoch_end, 1)
    assert trainer.model.widths == [8, 12, 16] and "grow.max_params=1000" in trainer.method.stopped


def test_mobilenet_without_downstream_activation_splits_stage_0_only(tmp_path):
    trainer = _trainer(tmp_path, model="mobilenet")
    assert set(trainer.method.skipped) == {1, 2}
    trainer.call_hook(trainer.method.on_epoch_end, 1)
    assert trainer.model.widths[1:] == [12, 16] and trainer.model.widths[0] > 8


def test_unsupported_models_and_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="method.ratio"):
        prepare(tiny_cfg(**{**FAST, "method.ratio": 1.5}), tmp_path / "a")
    with pytest.raises(ConfigError, match="method.max_widths"):
        prepare(tiny_cfg(**{**FAST, "method.max_widths": "[8,12]"}), tmp_path / "b")
    with pytest.raises(ConfigError, match="splitgrow splits the stage channels"):
        SplitGrow(tiny_cfg(**FAST)).setup(SimpleNamespace(model=nn.Linear(2, 2)))  # no stages (a ViT, an MLP)
    model = ResNetBasic([1, 1, 1], [8, 12, 16], 1, 10, 1)
    model.downs[0].unit.add_branch((1, 1))
    with pytest.raises(ValueError, match="2 branches"):
        stage_neurons(model)
    assert isinstance(model.stem[1], nn.ReLU)


@pytest.mark.slow
def test_a_run_grows_records_its_events_and_costs_more_than_fixed(tmp_path):
    grown = run_job(tiny_cfg(**FAST), tmp_path / "split")
    same = {k: v for k, v in FAST.items() if not k.startswith("method.")}
    fixed = run_job(tiny_cfg(**{**same, "method": "fixed"}), tmp_path / "fixed")
    assert grown["status"] == fixed["status"] == "completed"
    assert all(w >= o for w, o in zip(grown["widths"], [8, 12, 16])) and sum(grown["widths"]) > 36
    events = RunRecord(tmp_path / "split").events()
    assert events and all(e["kind"] == "grow_width" for e in events) and len(events) == grown["growth_events"]
    for e in events:
        assert {"split", "eigenvalues", "eps", "samples", "max_abs_output_change"} <= set(e)
    assert grown["split_steps"] == 2  # after epochs 1 and 2, never after the last
    assert grown["train_macs_total"] > fixed["train_macs_total"]
    assert grown["deploy_params"] > fixed["deploy_params"]


class StopAfter(SplitGrow):
    stop_after = None

    def on_epoch_end(self, ctx, epoch):
        out = super().on_epoch_end(ctx, epoch)
        if epoch == self.stop_after:
            ctx._trainer.stop_requested = "test stop"  # a signal, as SLURM sends
        return out


@pytest.mark.slow
def test_resume_after_a_split_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "splitgrow", StopAfter)
    full = run_job(tiny_cfg(**FAST), tmp_path / "full")
    StopAfter.stop_after = 1  # right after the first split: the checkpoint holds the grown widths
    try:
        assert run_job(tiny_cfg(**FAST), tmp_path / "part")["status"] == "interrupted"
    finally:
        StopAfter.stop_after = None
    part_events = RunRecord(tmp_path / "part").events()
    assert part_events and part_events[-1]["epoch"] == 1
    resumed = run_job(tiny_cfg(**FAST), tmp_path / "part")
    assert resumed["status"] == "completed"
    a, b = RunRecord(tmp_path / "full").metrics(), RunRecord(tmp_path / "part").metrics()
    assert [r["val_acc"] for r in a] == [r["val_acc"] for r in b]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    for key in ("test_acc", "widths", "trajectory", "deploy_params", "train_macs_total"):
        assert full[key] == resumed[key], key
    assert RunRecord(tmp_path / "full").events() == RunRecord(tmp_path / "part").events()


def test_a_checkpoint_may_be_wider_than_the_config_never_narrower():
    """Resume rebuilds the grown model from the checkpoint: wider stages (and other depths) are growth;
    a narrower stage cannot be, and is refused as another model."""
    from growth.engine.checkpoint import check_compatible
    model = ResNetBasic([1, 1, 1], [8, 12, 16], 1, 10, 1)
    spec = model.arch_spec()
    ckpt = lambda **kw: {"arch_spec": {**spec, "kwargs": {**spec["kwargs"], **kw}}}
    check_compatible(ckpt(widths=[9, 12, 20], depths=[2, 1, 1]), model, "trainer.resume", "p")
    with pytest.raises(ConfigError, match=r"checkpoint widths \[8, 11, 16\] are not model.widths"):
        check_compatible(ckpt(widths=[8, 11, 16]), model, "trainer.resume", "p")
    with pytest.raises(ConfigError, match="does not match"):
        check_compatible(ckpt(widths=[8, 12, 16], num_classes=3), model, "trainer.resume", "p")


@pytest.mark.slow
def test_two_gloo_ranks_split_the_same_channels(tmp_path):
    """Each rank draws its own shard of batches; the splitting matrices are summed over the ranks
    (ctx.all_sum), so both choose the same channels: the run itself stops unless both ranks end with
    bit-identical weights."""
    from tests.test_ddp import torchrun
    import json
    args = ["method=splitgrow", "model.widths=[8,12,16]", "grow.interval=1", "trainer.epochs=2",
            "method.batches=2", "trainer.device=cpu", "trainer.progress=false"]
    torchrun(tmp_path, args)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert sum(summary["widths"]) > 36 and summary["growth_events"] > 0
