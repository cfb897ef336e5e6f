"""method=tiny and method=gradmax (growth/methods/gromo.py) as whole runs on digits: events, training
cost, resume, the optimizer after growth, and the family check."""
import json
import math

import pytest
import torch

from benchmarks.common import compose
from growth.engine.job import prepare, run_job
from growth.errors import ConfigError
from growth.grow.gromo_step import grow_step
from growth.methods import METHODS
from growth.methods.gromo import GradMax, Tiny
from growth.models import build_model
from run import print_report
from growth.engine.record import RunRecord
from tests.conftest import StopAfter, assert_same_run, run_stopped_and_resumed

RUN = {"model": "gromo_mlp", "model.arch": "2-2", "trainer.epochs": 3, "grow.interval": 1,
       "trainer.batch_size": 64, "trainer.device": "cpu", "trainer.progress": "false"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def cfg(method, **over) -> dict:
    return compose(**{**RUN, "method": method, **over})


def events(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def grown(run_dir) -> list[dict]:
    return [e for e in events(run_dir) if e["kind"] == "grow_width"]


def test_gradmax_keeps_the_function_grows_and_costs_more_than_fixed(tmp_path, capsys):
    s = run_job(cfg("gradmax"), tmp_path / "gm")
    fixed = run_job(cfg("fixed"), tmp_path / "fixed")
    assert s["status"] == fixed["status"] == "completed"
    ev = grown(tmp_path / "gm")
    assert len(ev) == 2 and [e["epoch"] for e in ev] == [1, 2]  # not after the last epoch
    for e in ev:
        # Zero fan-in keeps the function; a wider matmul sums in another order, so the logits (~10) may
        # move by an ulp or two (1.9e-6 on the CI machine). A non-zero fan-in moves them by ~0.1.
        assert e["max_abs_output_change"] < 1e-5
        assert e["params_after"] > e["params_before"] and e["neurons"] >= 1 and e["samples"] == 4 * 64
        assert e["where"] == f"hidden {e['layer']}" and "line_search_samples" not in e
    assert ev[0]["arch_before"] == "2-2" and ev[1]["arch_before"] == ev[0]["arch_after"] == \
        RunRecord(tmp_path / "gm").metrics()[1]["arch"]
    assert s["params"] > fixed["params"] and s["growth_events"] == 2
    assert s["train_macs_total"] > fixed["train_macs_total"]
    assert s["samples_seen"] == fixed["samples_seen"] + 2 * 4 * 64  # the statistics passes count
    print_report(s, tmp_path / "gm")  # run.py's end-of-run lines read the trajectory rows
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "growth trajectory:" and f"arch {ev[1]['arch_after']}" in lines[2]


def test_tiny_logs_a_finite_improvement_and_counts_its_line_search(tmp_path):
    s = run_job(cfg("tiny"), tmp_path / "tiny")
    fixed = run_job(cfg("fixed"), tmp_path / "fixed")
    ev = grown(tmp_path / "tiny")
    assert s["status"] == "completed" and len(ev) == 2
    for e in ev:
        assert math.isfinite(e["first_order_improvement"]) and e["scale"] > 0
        assert e["line_search_samples"] >= 101 * e["samples"] and e["line_search_macs"] > 0
    # without counting the line search's forward passes the total would be a few times fixed's
    assert s["train_macs_total"] > fixed["train_macs_total"] + sum(e["line_search_macs"] for e in ev)


@pytest.mark.parametrize("base", [Tiny, GradMax])
def test_resume_equals_an_uninterrupted_run(base, tmp_path, monkeypatch):
    stopping = type("Stopping", (StopAfter, base), {})
    monkeypatch.setitem(METHODS, base.name, stopping)
    four = lambda: cfg(base.name, **{"trainer.epochs": 4})  # growth after epoch 3 needs the method's state
    full, resumed = run_stopped_and_resumed(stopping, four, tmp_path, 2)
    assert_same_run(tmp_path, full, resumed, 4, ("params", "arch", "test_acc", "train_macs_total", "samples_seen",
                                                 "growth_events", "trajectory"), fields=("val_acc",))
    assert grown(tmp_path / "full") == grown(tmp_path / "part") and len(grown(tmp_path / "full")) == 3


def test_the_optimizer_holds_every_parameter_once_with_moved_momentum(tmp_path):
    trainer, _ = prepare(cfg("gradmax", **{"trainer.epochs": 2}), tmp_path)
    method, snap = trainer.method, {}
    hook = method.on_epoch_end

    def spy(ctx, epoch):  # the momentum just before growth, by parameter name
        snap.update({n: trainer.optimizer.state[p]["momentum_buffer"].clone()
                     for n, p in trainer.model.named_parameters()})
        return hook(ctx, epoch)

    method.on_epoch_end = spy
    trainer.run_epoch(1)
    assert method.events == 1
    held = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    params = list(trainer.model.parameters())
    assert len(held) == len({id(p) for p in held}) == len(params)  # each once
    assert {id(p) for p in held} == {id(p) for p in params}  # no stale (pre-growth) tensor
    assert {id(p) for p in trainer.optimizer.state} <= {id(p) for p in params}
    layer = grown(tmp_path)[0]["layer"]
    for name, p in trainer.model.named_parameters():
        buf, old = trainer.optimizer.state[p]["momentum_buffer"], snap[name]
        assert buf.shape == p.shape
        if name == f"net.layers.{layer}.layer.weight":  # new rows: zero momentum, old rows: kept
            assert torch.equal(buf[:old.shape[0]], old) and not buf[old.shape[0]:].any()
        elif name == f"net.layers.{layer + 1}.layer.weight":  # new columns
            assert torch.equal(buf[:, :old.shape[1]], old) and not buf[:, old.shape[1]:].any()
        else:
            assert torch.equal(buf[:old.shape[0]], old)
    trainer.run_epoch(2)  # and it trains on


def test_growth_stops_at_max_arch_and_never_passes_it(tmp_path):
    s = run_job(cfg("gradmax", **{"model.max_arch": "2-4", "trainer.epochs": 5}), tmp_path)
    ev = grown(tmp_path)
    assert ev and all(e["layer"] == 1 for e in ev)  # hidden 0 is full from the start
    assert all(int(e["arch_after"].split("-")[1]) <= 4 for e in ev)
    assert s["arch"] == "2-4" and s["growth_stopped"] == "reached max arch 2-4"


def test_grow_step_picks_the_best_of_a_list_of_layers():
    torch.manual_seed(0)
    m = build_model({"family": "gromo_mlp", "arch": "4-4"}, {"in_chans": 1, "image_size": 8, "num_classes": 10})
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    _, det = grow_step(m, [(x, y)], {"how": "gradmax", "layer": [1], "neurons": 2})
    assert det["layer"] == 1 and set(det["improvement_per_layer"]) == {1} and m.hidden == [4, 6]
    with pytest.raises(ConfigError, match="gromo.layer"):
        grow_step(m, [(x, y)], {"how": "gradmax", "layer": [1, 1]})


def test_another_family_or_bad_setting_stops_before_training(tmp_path):
    with pytest.raises(ConfigError) as e:
        run_job(compose(method="tiny", **{"trainer.device": "cpu", "model.widths": "[8,12,16]"}), tmp_path / "a")
    assert str(e.value) == "model='resnet_basic': method=tiny grows only the gromo_mlp family (model=gromo_mlp)"
    with pytest.raises(ConfigError, match="method.scale='line_search'"):  # GradMax is flat in the scale
        run_job(cfg("gradmax", **{"method.scale": "line_search"}), tmp_path / "b")
    with pytest.raises(ConfigError, match=r"model.max_arch='8-8-8': 2 widths, each >= model.arch=2-2"):
        run_job(cfg("tiny", **{"model.max_arch": "8-8-8"}), tmp_path / "c")
    for d in ("a", "b", "c"):
        metrics = tmp_path / d / "metrics.jsonl"
        assert not metrics.exists() or not metrics.read_text().strip()
