"""AdaGrow through the engine: optimizer state across growth, LR continuity, variants, initializers."""
import json

import pytest
import torch

from growth.engine.job import prepare, run_job
from tests.conftest import tiny_cfg

GROW = {"method": "adagrow", "model.arch": "0-1-0", "model.max_arch": "2-2-2", "grow.interval": 1}


def test_old_optimizer_state_is_bit_identical_after_growth(tmp_path):
    """Growth driven by the trainer (run_epoch), not by calling add_params here: the engine itself must
    register the new parameters, keep the old ones' groups and momentum, and train them all next step."""
    # batch 256: few steps per epoch, this test is about state bookkeeping, not training
    trainer, _ = prepare(tiny_cfg(**GROW, **{"trainer.epochs": 3, "trainer.batch_size": 256}), tmp_path)
    grow = trainer.method.on_epoch_end
    snap = {}

    def snapshot_then_grow(ctx, epoch):  # the optimizer as it stands just before the growth event
        opt = trainer.optimizer
        snap.update(state={id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in opt.state},
                    groups={id(p): gi for gi, g in enumerate(opt.param_groups) for p in g["params"]})
        return grow(ctx, epoch)

    trainer.method.on_epoch_end = snapshot_then_grow
    trainer.run_epoch(1)  # trains, then grows once (interval 1)
    opt, model = trainer.optimizer, trainer.model
    assert snap, "the trainer did not call the method's growth hook"
    now = {id(p): gi for gi, g in enumerate(opt.param_groups) for p in g["params"]}
    params = list(model.parameters())
    assert {id(p) for p in params} == set(now) and len(now) == sum(len(g["params"]) for g in opt.param_groups)
    assert len(now) > len(snap["groups"])  # new parameters joined, each in exactly one group
    assert snap["state"] and set(snap["state"]) == set(snap["groups"])
    for p in params:
        if id(p) in snap["groups"]:
            assert now[id(p)] == snap["groups"][id(p)]  # same group
            for k, v in snap["state"][id(p)].items():
                assert torch.equal(opt.state[p][k], v)  # bit-identical momentum
        else:
            assert len(opt.state[p]) == 0  # fresh state
    trainer.train_epoch(2)  # the next steps train every parameter, old and new
    assert all(len(opt.state[p]) > 0 for p in model.parameters())


def test_lr_after_growth_follows_the_uninterrupted_schedule(tmp_path):
    grown = run_job(tiny_cfg(**GROW, **{"trainer.epochs": 4}), tmp_path / "grow")
    fixed = run_job(tiny_cfg(**{"method": "fixed", "model.arch": "0-1-0", "trainer.epochs": 4}), tmp_path / "fix")
    assert grown["growth_events"] == 3
    lr = lambda d: [json.loads(r)["lr"] for r in (d / "metrics.jsonl").read_text().splitlines()]
    assert lr(tmp_path / "grow") == lr(tmp_path / "fix")
    assert grown["steps_done"] == fixed["steps_done"]


@pytest.mark.parametrize("variant", ["fixed", "faithful"])
def test_variants_run_and_are_recorded(tmp_path, variant):
    s = run_job(tiny_cfg(**GROW, **{"trainer.epochs": 4, "method.variant": variant,
                                    "grow_mode": "width-depth"}), tmp_path)
    assert s["status"] == "completed" and s["variants"]["variant"] == variant
    assert all(v == variant for k, v in s["variants"].items())
    events = [json.loads(r) for r in (tmp_path / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    # fixed reads the name literally (W D W); faithful follows the original parity (D W D)
    assert kinds == (["grow_width", "grow_depth", "grow_width"] if variant == "fixed"
                     else ["grow_depth", "grow_width", "grow_depth"])
    assert json.loads((tmp_path / "summary.json").read_text())["variants"]["variant"] == variant


def test_switch_overrides_variant(tmp_path):
    s = run_job(tiny_cfg(**GROW, **{"trainer.epochs": 2, "method.variant": "faithful",
                                    "method.transfer_buffers": "fixed"}), tmp_path)
    assert s["variants"]["transfer_buffers"] == "fixed" and s["variants"]["saliency"] == "faithful"


@pytest.mark.parametrize("init", ["zero", "original", "uniform", "gaussian", "adam", "global_fitting",
                                  "local-fitting"])
def test_each_initializer_runs_and_zero_preserves(tmp_path, init):
    cfg = tiny_cfg(**{**GROW, "trainer.epochs": 2, "initializer": init, "grow_mode": "depth",
                      "model.arch": "0-2-0"})
    if init == "adam":
        cfg["initializer"]["epochs"] = 1
    s = run_job(cfg, tmp_path)
    assert s["status"] == "completed" and s["growth_events"] == 1
    event = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert event["initializer"] == init.replace("-", "_") and event["arch_before"] != event["arch_after"]
    if init == "zero":
        assert event["max_abs_output_change"] < 1e-5
    elif init in ("gaussian", "uniform", "original", "global_fitting", "local_fitting"):
        assert event["max_abs_output_change"] > 1e-4
    if init == "adam":  # the extra Adam epoch is counted as training compute
        plain = run_job(tiny_cfg(**{**GROW, "trainer.epochs": 2, "grow_mode": "depth", "model.arch": "0-2-0"}),
                        tmp_path / "plain")
        assert s["samples_seen"] > plain["samples_seen"] and s["train_macs_total"] > plain["train_macs_total"]


def test_growth_stops_at_max_arch_and_max_events(tmp_path):
    s = run_job(tiny_cfg(**{**GROW, "model.max_arch": "0-2-1", "grow_mode": "depth", "trainer.epochs": 5}),
                tmp_path / "a")
    assert s["arch"] == "0-2-1" and s["growth_events"] == 2 and "max arch" in s["growth_stopped"]
    s = run_job(tiny_cfg(**{**GROW, "grow.max_events": 1, "trainer.epochs": 4}), tmp_path / "b")
    assert s["growth_events"] == 1 and "max_events" in s["growth_stopped"]


def test_bad_growth_settings_stop_before_training(tmp_path):
    from growth.errors import ConfigError
    with pytest.raises(ConfigError, match=r"model.max_arch='2-2-2-2': needs 3 stages"):
        prepare(tiny_cfg(**{**GROW, "model.max_arch": "2-2-2-2"}), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"model.max_arch='0-0-0': must be >="):
        prepare(tiny_cfg(**{**GROW, "model.max_arch": "0-0-0"}), tmp_path / "b")
    with pytest.raises(ConfigError, match=r"grow.width_ratio=1.5"):
        prepare(tiny_cfg(**{**GROW, "grow.width_ratio": 1.5}), tmp_path / "c")
    with pytest.raises(ConfigError, match=r"needs a growable model"):
        cfg = tiny_cfg(**GROW)
        cfg["model"] = {"name": "resnet18", "family": "timm", "small_input_stem": "auto", "max_arch": "2-2-2"}
        prepare(cfg, tmp_path / "d")


def test_threshold_grows_only_on_a_plateau_of_the_runs_val_history(tmp_path):
    """grow.threshold > 0 (fixed): grow when val acc improved by less than the threshold over the last
    interval, at least `interval` epochs after the last growth; the history is the engine's val rows."""
    cfg = tiny_cfg(**{**GROW, "grow.interval": 2, "grow.threshold": 0.005, "trainer.epochs": 10})
    run_job(cfg, tmp_path)
    from growth.engine.record import RunRecord
    record = RunRecord(tmp_path)
    acc = [r["val_acc"] for r in record.metrics()]
    want, last = [], 0
    for epoch in range(1, 10):  # never after the last epoch
        recent, before = acc[epoch - 2:epoch], acc[:epoch - 2] or [0.0]
        if epoch - last >= 2 and max(recent) - max(before) < 0.005:
            want.append(epoch)
            last = epoch
    assert [e["epoch"] for e in record.events()] == want and want  # growth happened, and only there
