"""The run context methods see: batches drawn for growth count as training cost, events go through
ctx.emit only, and AdaGrow's fixed width event grows at least one unit (faithful: the original's count)."""
import pytest
import torch

from growth.engine.event import Event
from growth.engine.job import prepare, run_job
from growth.methods import METHODS
from growth.methods.fixed import Fixed
from tests.conftest import tiny_cfg


class DrawsBatches(Fixed):
    """Reads one pass of training batches at epoch 1's end (as a growth method fitting new weights would)."""
    name = "draws_batches"

    def on_epoch_end(self, ctx, epoch):
        if epoch == 1:
            self.seen = sum(len(y) for _, y in ctx.train_batches(1_000_000))
            ctx.emit(Event("grow_depth", "nowhere", "a", "a", 1, 1))


def test_train_batches_count_as_training_cost(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "draws_batches", DrawsBatches)
    cfg = lambda name: tiny_cfg(**{"method": "fixed", "method.name": name, "trainer.epochs": 2})
    plain = run_job(cfg("fixed"), tmp_path / "plain")
    trainer, _ = prepare(cfg("draws_batches"), tmp_path / "draws")
    trainer.fit()
    per_sample = trainer.sizes()["train_macs_per_sample"]
    assert trainer.method.seen == plain["samples_seen"] // 2 > 0  # one pass = one epoch's samples
    assert trainer.counters["samples_seen"] == plain["samples_seen"] + trainer.method.seen
    assert trainer.counters["train_macs_cum"] == plain["train_macs_total"] + trainer.method.seen * per_sample
    (event,) = trainer.record.events()  # emitted: epoch and step filled in by the context
    assert event["epoch"] == 1 and event["step"] == trainer.steps_per_epoch


class ReturnsEvents(Fixed):
    name = "returns_events"

    def on_epoch_end(self, ctx, epoch):
        return [{"kind": "grow_depth"}]


def test_a_hook_that_returns_events_is_told_to_emit_them(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "returns_events", ReturnsEvents)
    trainer, _ = prepare(tiny_cfg(**{"method": "fixed", "method.name": "returns_events", "trainer.epochs": 1}),
                         tmp_path)
    with pytest.raises(TypeError, match="ctx.emit"):
        trainer.fit()


def test_event_details_cannot_hide_schema_keys():
    with pytest.raises(ValueError, match="params_after"):
        Event("grow_depth", "x", "a", "b", 1, 2, details={"params_after": 3}).row()


@pytest.mark.parametrize("rule, units", [("fixed", 1), ("faithful", 0)])
def test_width_event_minimum(tmp_path, rule, units):
    """0-0-0 has two RepUnits (the downstream units): int(0.3 x 2) = 0. The fixed rule grows one."""
    cfg = tiny_cfg(**{"model.arch": "0-0-0", "grow.interval": 1, "trainer.epochs": 2, "method.min_units": rule})
    run_job(cfg, tmp_path)
    from growth.engine.record import RunRecord
    (event,) = RunRecord(tmp_path).events()
    assert event["kind"] == "grow_width" and len(event["where"]) == units
    assert (event["params_after"] > event["params_before"]) == bool(units)


def test_adam_initializer_survives_an_event_that_grows_nothing(tmp_path):
    """The original rule's empty width event used to hand Adam an empty parameter list (a crash)."""
    cfg = tiny_cfg(**{"model.arch": "0-0-0", "grow.interval": 1, "trainer.epochs": 2, "method.min_units": "faithful",
                      "initializer": "adam", "initializer.epochs": 1})
    assert run_job(cfg, tmp_path)["status"] == "completed"


def test_context_offers_no_optimizer():
    from growth.engine.context import RunContext
    assert not any(hasattr(RunContext, name) for name in ("optimizer", "counters", "record", "schedule"))
    assert torch.is_tensor(torch.zeros(1))  # (the context's surface is its docstring table)
