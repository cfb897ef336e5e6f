"""Engine support for phased methods: a method swaps the model mid-run, and a resume rebuilds it."""
import math

import pytest

from growth.engine.event import Event
from growth.engine.job import run_job
from growth.engine.record import RunRecord
from growth.methods import METHODS
from growth.methods.fixed import Fixed
from growth.models import create_model
from tests.conftest import tiny_cfg


class SwapAfterOne(Fixed):
    """Trains the configured model for epoch 1, then a wider one for the rest."""
    name = "swap_test"

    def phase(self, epoch):
        return "first" if epoch <= 1 else "second"

    stop_after = None  # a test sets this to interrupt the run after that epoch's checkpoint

    def on_epoch_end(self, ctx, epoch):
        if epoch == self.stop_after:
            ctx._trainer.stop_requested = "test stop"  # a signal, as SLURM sends
        if epoch != 1:
            return
        before = ctx.model.arch_string()
        spec = ctx.model.arch_spec()
        ctx.swap_model(create_model("resnet_basic", **{**spec["kwargs"], "widths": [16, 16, 16]}))
        ctx.emit(Event("phase_start", "second", before, ctx.model.arch_string(), 0, 0))

    def finish(self, ctx):
        return {"swap_test_finish": ctx.model.spec_kwargs()["widths"]}


@pytest.fixture
def swap_method(monkeypatch):
    monkeypatch.setitem(METHODS, "swap_test", SwapAfterOne)


def _cfg(epochs):
    return tiny_cfg(**{"method": "fixed", "method.name": "swap_test", "trainer.epochs": epochs})


def test_replace_model_trains_new_model_and_restarts_schedule(tmp_path, swap_method):
    summary = run_job(_cfg(3), tmp_path)
    assert summary["status"] == "completed"
    assert summary["swap_test_finish"] == [16, 16, 16]  # the finish hook's keys join the summary
    rows = RunRecord(tmp_path).metrics()
    assert [r["phase"] for r in rows] == ["first", "second", "second"]
    assert rows[1]["params"] != rows[0]["params"]
    # epoch 2 starts a fresh cosine over the 2 remaining epochs: its LR is the base LR again ...
    lr, min_lr = 0.1, 1e-5  # conf/optim/sgd.yaml, no warmup
    assert rows[0]["lr"] == rows[1]["lr"] == pytest.approx(lr)
    # ... and epoch 3 starts half-way through that phase's cosine (t = 1 epoch / 2 epochs). A constant
    # schedule would give lr, one over the wrong length (e.g. all 3 epochs: t = 1/3) another value.
    half = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * 1 / 2))
    assert rows[2]["lr"] == pytest.approx(half, rel=1e-9)


def test_resume_after_swap_equals_uninterrupted(tmp_path, swap_method):
    full = run_job(_cfg(3), tmp_path / "full")
    SwapAfterOne.stop_after = 2
    try:
        assert run_job(_cfg(3), tmp_path / "part")["status"] == "interrupted"
    finally:
        SwapAfterOne.stop_after = None
    resumed = run_job(_cfg(3), tmp_path / "part")  # same dir: resumes the swapped model
    assert resumed["status"] == "completed"
    a, b = RunRecord(tmp_path / "full").metrics(), RunRecord(tmp_path / "part").metrics()
    assert [r["params"] for r in a] == [r["params"] for r in b]
    assert a[-1]["val_acc"] == b[-1]["val_acc"] and full["test_acc"] == resumed["test_acc"]
