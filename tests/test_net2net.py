"""method=net2net: every event keeps the function (no noise) on resnet_basic, vgg and mobilenet; noise
changes it; a widened run resumes exactly; optimizer state follows the widened tensors."""
import json

import pytest
import torch

from growth.engine.job import prepare, run_job
from growth.engine.record import RunRecord
from growth.methods import METHODS
from growth.methods.net2net import Net2Net
from tests.conftest import tiny_cfg

GROW = {"method": "net2net", "grow.interval": 1, "trainer.batch_size": 128, "model.max_arch": "2-2-2"}


def _events(run_dir):
    return RunRecord(run_dir).events()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["resnet_basic", "vgg", "mobilenet"])
def test_every_event_keeps_the_function(tmp_path, family):
    s = run_job(tiny_cfg(**{**GROW, "model": family, "trainer.epochs": 5}), tmp_path)
    assert s["status"] == "completed"
    events = _events(tmp_path)
    assert [e["kind"] for e in events] == ["grow_width", "grow_depth", "grow_width", "grow_depth"]
    for e in events:
        assert e["params_after"] > e["params_before"]
        assert e["max_abs_output_change"] < 1e-5, e
    widths = [e for e in events if e["kind"] == "grow_width"]
    assert widths[0]["widths_after"][0] == 10 and widths[1]["widths_after"][2] == 20  # 8 + 2, 16 + 4
    assert s["widths"] == [10, 12, 20] and s["arch"] == "2-2-1"


def test_noise_breaks_the_symmetry(tmp_path):
    run_job(tiny_cfg(**{**GROW, "method.noise": 0.5, "method.operations": "wider", "trainer.epochs": 2}), tmp_path)
    (event,) = _events(tmp_path)
    assert event["max_abs_output_change"] > 1e-3


def test_optimizer_state_follows_the_widened_tensors(tmp_path):
    trainer, _ = prepare(tiny_cfg(**{**GROW, "method.operations": "wider", "trainer.epochs": 3}), tmp_path)
    trainer.train_epoch(1)
    conv = trainer.model.stem[0].conv
    momentum = trainer.optimizer.state[conv.weight]["momentum_buffer"].clone()
    trainer.epoch = 1
    trainer.call_hook(trainer.method.on_epoch_end, 1)  # widens stage 0: 8 -> 10 channels
    conv = trainer.model.stem[0].conv
    assert conv.weight.shape[0] == 10
    state = trainer.optimizer.state[conv.weight]["momentum_buffer"]
    assert torch.equal(state[:8], momentum) and not state[8:].any()  # old slice copied, new slice zero
    in_opt = [id(p) for g in trainer.optimizer.param_groups for p in g["params"]]
    assert sorted(in_opt) == sorted(id(p) for p in trainer.model.parameters())  # each once, none stale


class StopAfter(Net2Net):
    stop_after = None

    def on_epoch_end(self, ctx, epoch):
        super().on_epoch_end(ctx, epoch)
        if epoch == self.stop_after:
            ctx._trainer.stop_requested = "test stop"  # a signal, as SLURM sends


@pytest.mark.slow
def test_resume_of_a_widened_run_equals_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "net2net", StopAfter)
    cfg = lambda: tiny_cfg(**{**GROW, "trainer.epochs": 4, "method.where": "random"})
    full = run_job(cfg(), tmp_path / "full")
    StopAfter.stop_after = 3  # after the second widening (epochs 1 and 3 widen)
    try:
        assert run_job(cfg(), tmp_path / "part")["status"] == "interrupted"
    finally:
        StopAfter.stop_after = None
    resumed = run_job(cfg(), tmp_path / "part")
    a, b = RunRecord(tmp_path / "full").metrics(), RunRecord(tmp_path / "part").metrics()
    assert [r["val_acc"] for r in a] == [r["val_acc"] for r in b] and len(b) == 4
    assert resumed["widths"] == full["widths"] != [8, 12, 16]
    assert resumed["test_acc"] == full["test_acc"]
    assert json.dumps(full["trajectory"]) == json.dumps(resumed["trajectory"])


@pytest.mark.parametrize("over, words", [
    ({"method.operations": "sideways"}, "method.operations='sideways'"),
    ({"method.max_widths": [4, 4, 4]}, "method.max_widths=[4, 4, 4]"),
    ({"method.noise": -1.0}, "method.noise=-1.0"),
])
def test_bad_settings_are_one_line_errors(tmp_path, over, words):
    from growth.errors import ConfigError
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        prepare(tiny_cfg(**{**GROW, **over}), tmp_path)
