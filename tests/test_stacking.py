"""method=gstack and method=stackbert (growth/methods/stacking.py): the stacked layers are exact copies
of their sources, depth multiplies on the schedule, the copies' optimizer state follows the setting,
resume equals an uninterrupted run, and bad settings stop with a ConfigError naming the key."""
import json

import pytest
import torch

from benchmarks.common import compose
from growth.engine.job import prepare, run_job
from growth.engine.record import RunRecord
from growth.errors import ConfigError
from growth.methods import METHODS
from growth.methods.stacking import GStack, StackBert
from tests.conftest import StopAfter, assert_same_run, run_stopped_and_resumed

BASE = {"trainer.batch_size": 64, "trainer.device": "cpu", "trainer.progress": "false"}
MODEL = {"vit": {"model": "vit", "model.head_dim": 8},
         "bert": {"model": "bert", "model.head_dim": 8, "data": "synthetic_text"},
         "resnet_basic": {"model.widths": "[8,12,16]", "model.arch": "1-1-1"}}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def cfg(family, method, **over) -> dict:
    return compose(**{**BASE, **MODEL[family], "method": method, **over})


def grown(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e for e in rows if e["kind"] == "grow_depth"]


def watch(trainer) -> list[dict]:
    """Before every on_epoch_end: each layer's parameters and Adam exp_avg, and the other parameters."""
    seen, hook, model = [], trainer.method.on_epoch_end, trainer.model

    def spy(ctx, epoch):
        layers = [{n: p.detach().clone() for n, p in b.named_parameters()} for b in model.blocks]
        avg = [{n: trainer.optimizer.state[p]["exp_avg"].clone() for n, p in b.named_parameters()}
               for b in model.blocks]
        inside = {id(p) for p in model.blocks.parameters()}
        rest = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in inside}
        seen.append({"layers": layers, "exp_avg": avg, "rest": rest})
        return hook(ctx, epoch)

    trainer.method.on_epoch_end = spy
    return seen


def assert_stacked(model, before, factor):
    """Layer i*L + j equals the small model's layer j, bit for bit; embeddings and head unchanged."""
    small = len(before["layers"])
    assert model.depth == factor * small
    for k, block in enumerate(model.blocks):
        src = before["layers"][k % small]
        got = dict(block.named_parameters())
        assert got.keys() == src.keys()
        assert all(torch.equal(got[n], src[n]) for n in src), f"layer {k}"
    inside = {id(p) for p in model.blocks.parameters()}
    rest = {n: p for n, p in model.named_parameters() if id(p) not in inside}
    assert rest.keys() == before["rest"].keys()
    assert all(torch.equal(rest[n], before["rest"][n]) for n in rest)
    # the copies are new tensors, not the source's again
    assert len({id(p) for p in model.parameters()}) == len(list(model.parameters()))


def exp_avgs(trainer, block) -> dict:
    state = trainer.optimizer.state
    return {n: state[p]["exp_avg"] if p in state else None for n, p in block.named_parameters()}


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_gstack_carry_repeats_the_layers_and_their_adam_state(family, tmp_path):
    trainer, _ = prepare(cfg(family, "gstack", **{"model.arch": "d2h2", "method.factor": 3,
                                                  "method.optimizer": "carry", "trainer.epochs": 2}), tmp_path)
    seen, schedule = watch(trainer), trainer.schedule
    trainer.run_epoch(1)
    assert_stacked(trainer.model, seen[0], 3)
    assert trainer.model.arch_string() == "d6h2" and trainer.method.events == 1
    for k, block in enumerate(trainer.model.blocks):
        avg = exp_avgs(trainer, block)
        assert all(torch.equal(avg[n], v) for n, v in seen[0]["exp_avg"][k % 2].items()), f"layer {k}"
    assert trainer.schedule is schedule  # carry: the schedule goes on
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == len(list(trainer.model.parameters()))
    trainer.run_epoch(2)  # the stacked model trains
    assert trainer.method.events == 1


def test_gstack_fresh_starts_a_new_optimizer_and_schedule(tmp_path):
    trainer, _ = prepare(cfg("bert", "gstack", **{"model.arch": "d1h2", "trainer.epochs": 3}), tmp_path)
    seen, old = watch(trainer), trainer.optimizer
    trainer.run_epoch(1)
    assert_stacked(trainer.model, seen[0], 4)  # factor 4: the paper's g
    assert trainer.optimizer is not old and not trainer.optimizer.state  # no moments for anyone
    assert trainer.schedule.step_num == 0 and trainer.schedule.total == 2 * trainer.steps_per_epoch
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == \
        {id(p) for p in trainer.model.parameters()}


def test_stackbert_doubles_on_the_interval_until_max_arch(tmp_path):
    over = {"model.arch": "d1h2", "grow.interval": 1, "trainer.epochs": 4}
    trainer, _ = prepare(cfg("vit", "stackbert", **over), tmp_path)
    seen = watch(trainer)
    depths = []
    for epoch in (1, 2, 3):
        trainer.run_epoch(epoch)
        depths.append(trainer.model.depth)
        if epoch < 3:
            assert_stacked(trainer.model, seen[-1], 2)
            for k, block in enumerate(trainer.model.blocks):  # double_optimizer: copies take the source's moments
                avg, src = exp_avgs(trainer, block), seen[-1]["exp_avg"][k % len(seen[-1]["layers"])]
                assert all(torch.equal(avg[n], v) for n, v in src.items())
    assert depths == [2, 4, 4]  # 8 would pass model.max_arch=d6h8
    assert trainer.method.events == 2 and "max_arch" in trainer.method.stopped


def test_stackbert_without_double_optimizer_copies_start_without_state(tmp_path):
    over = {"model.arch": "d2h2", "method.double_optimizer": "false", "method.schedule": "[1]",
            "trainer.epochs": 2}
    trainer, _ = prepare(cfg("bert", "stackbert", **over), tmp_path)
    seen = watch(trainer)
    trainer.run_epoch(1)
    assert_stacked(trainer.model, seen[0], 2)
    blocks = list(trainer.model.blocks)
    for k, block in enumerate(blocks[:2]):  # the sources keep theirs
        assert all(torch.equal(a, seen[0]["exp_avg"][k][n]) for n, a in exp_avgs(trainer, block).items())
    assert all(p not in trainer.optimizer.state for b in blocks[2:] for p in b.parameters())


def test_gstack_in_steps_grows_at_the_first_epoch_end_that_reaches_it(tmp_path):
    c = cfg("vit", "gstack", **{"model.arch": "d1h2", "method.factor": 2, "method.grow_unit": "steps",
                                "trainer.epochs": 3})
    steps = -(-int(0.7 * 1797) // 64)  # more than one epoch's steps (digits' train split, ~70 %)
    c["method"]["grow_at"] = steps
    s = run_job(c, tmp_path)
    ev = grown(tmp_path)
    assert s["status"] == "completed" and len(ev) == 1 and ev[0]["epoch"] == 2
    assert ev[0]["step"] >= steps and ev[0]["arch_before"] == "d1h2" and ev[0]["arch_after"] == "d2h2"
    assert ev[0]["max_abs_output_change"] > 0 and ev[0]["sources"] == [0] and ev[0]["factor"] == 2
    assert [r["arch"] for r in RunRecord(tmp_path).metrics()] == ["d1h2", "d1h2", "d2h2"]


@pytest.mark.parametrize("base,over", [
    (GStack, {"model.arch": "d1h2", "method.factor": 2}),  # fresh: the swapped optimizer and schedule
    (StackBert, {"model.arch": "d1h2", "method.schedule": "[1,2]"}),  # carry, a second event after resume
])
def test_resume_after_stacking_equals_an_uninterrupted_run(base, over, tmp_path, monkeypatch):
    stopping = type("Stopping", (StopAfter, base), {})
    monkeypatch.setitem(METHODS, base.name, stopping)
    three = lambda: cfg("vit", base.name, **{**over, "trainer.epochs": 3})
    full, resumed = run_stopped_and_resumed(stopping, three, tmp_path, 1)  # after the first stacking event
    assert_same_run(tmp_path, full, resumed, 3, ("params", "arch", "test_acc", "train_macs_total", "samples_seen",
                                                 "growth_events", "trajectory"))
    assert grown(tmp_path / "full") == grown(tmp_path / "part")
    assert len(grown(tmp_path / "full")) == (1 if base is GStack else 2)
    ckpt = lambda d: torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model"]
    x, y = ckpt(tmp_path / "full"), ckpt(tmp_path / "part")
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("method,over,key", [
    ("gstack", {"method.factor": 1}, "method.factor"),
    ("gstack", {"method.grow_at": 0}, "method.grow_at"),
    ("gstack", {"method.grow_at": 2}, "method.grow_at"),  # not before the last epoch
    ("gstack", {"method.grow_unit": "tokens"}, "method.grow_unit"),
    ("gstack", {"method.optimizer": "reset"}, "method.optimizer"),
    ("gstack", {"model.arch": "d2h2"}, "method.factor"),  # 2 x 4 = 8 > model.max_arch d6h8
    ("gstack", {"family": "resnet_basic"}, "model"),
    ("stackbert", {"method.schedule": "[1,1]"}, "method.schedule"),
    ("stackbert", {"method.schedule": "[2]"}, "method.schedule"),  # not before the last epoch
    ("stackbert", {"method.double_optimizer": "yes"}, "method.double_optimizer"),
    ("stackbert", {"grow.interval": 0}, "grow.interval"),
    ("stackbert", {"family": "resnet_basic"}, "model"),
])
def test_bad_settings_name_the_key(method, over, key, tmp_path):
    over = dict(over)  # the parametrize dict is shared: pop from a copy
    family = over.pop("family", "vit")
    c = cfg(family, method, **{**({} if family != "vit" else {"model.arch": "d1h2"}), "trainer.epochs": 2, **over})
    with pytest.raises(ConfigError) as e:
        prepare(c, tmp_path)
    assert e.value.key == key
