import math

import pytest
import torch

from growth.engine.optim import add_params, build_optimizer
from growth.engine.schedule import Schedule
from growth.errors import ConfigError
from growth.models import create_model

CFG = {"name": "sgd", "lr": 0.1, "min_lr": 0.001, "momentum": 0.9, "weight_decay": 5e-4,
       "no_decay_norm_bias": True, "schedule": "cosine", "warmup_epochs": 1}


def _model():
    return create_model("resnet_basic", depths=(1, 0, 0), widths=[4, 6, 8], in_chans=1, num_classes=3)


def test_groups_split_decay():
    opt = build_optimizer(_model(), CFG)
    decay, no_decay = opt.param_groups
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    opt = build_optimizer(_model(), {**CFG, "no_decay_norm_bias": False})
    assert len(opt.param_groups[1]["params"]) == 0


def test_schedule_warmup_then_cosine_to_min():
    opt = build_optimizer(_model(), CFG)
    s = Schedule(opt, total_steps=100, cfg=CFG, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(s.lr)
        s.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)  # linear warmup over 10 steps
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then never increases
    assert s.lr == pytest.approx(0.001)  # ends at min_lr
    mid = 0.001 + 0.5 * (0.1 - 0.001) * (1 + math.cos(math.pi * 45 / 90))
    assert lrs[55] == pytest.approx(mid)


def test_schedule_state_round_trip_and_weight_decay_end():
    cfg = {**CFG, "weight_decay_end": 5e-6, "warmup_epochs": 0}
    opt = build_optimizer(_model(), cfg)
    s = Schedule(opt, 50, cfg, 10)
    for _ in range(50):
        s.step()
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(5e-6)
    # Round-trip a real state_dict() taken mid-run into a schedule built with another total (as after a
    # phase switch): it must take over step AND total, so LR and weight decay continue where they were.
    s = Schedule(build_optimizer(_model(), cfg), 50, cfg, 10)
    for _ in range(20):
        s.step()
    opt2 = build_optimizer(_model(), cfg)
    s2 = Schedule(opt2, 80, cfg, 10)
    s2.load_state_dict(s.state_dict())
    assert s2.total == 50 and s2.step_num == 20
    assert s2.lr == pytest.approx(0.001 + 0.5 * (0.1 - 0.001) * (1 + math.cos(math.pi * 20 / 50)))
    assert s2.lr == s.lr and opt2.param_groups[0]["weight_decay"] == s.optimizer.param_groups[0]["weight_decay"]
    assert s2.lr != Schedule(build_optimizer(_model(), cfg), 80, cfg, 10).lr_factor(20) * 0.1  # total mattered
    for _ in range(30):
        s2.step()
    assert s2.lr == pytest.approx(0.001)  # ends at min_lr on the restored total


def test_add_params_keeps_old_state():
    model = _model()
    opt = build_optimizer(model, CFG)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    opt.step()
    before = {id(p): opt.state[p]["momentum_buffer"].clone() for g in opt.param_groups for p in g["params"]}
    new = model.stages[0][0].ru1.add_branch((1, 1))
    assert add_params(opt, model.named_parameters(), CFG) == 4  # conv w, b, bn w, b
    ids = [{id(p) for p in g["params"]} for g in opt.param_groups]
    assert id(new.conv.weight) in ids[0] and id(new.bn.weight) in ids[1] and id(new.conv.bias) in ids[1]
    for g in opt.param_groups:
        for p in g["params"]:
            if id(p) in before:
                assert torch.equal(opt.state[p]["momentum_buffer"], before[id(p)])
    assert add_params(opt, model.named_parameters(), CFG) == 0


def test_bad_optimizer_and_schedule():
    with pytest.raises(ConfigError, match="optim.name='lion'"):
        build_optimizer(_model(), {**CFG, "name": "lion"})
    with pytest.raises(ConfigError, match="optim.schedule='step'"):
        Schedule(build_optimizer(_model(), CFG), 10, {**CFG, "schedule": "step"}, 5)


def test_multistep_schedule_steps_per_epoch_after_warmup_and_resumes():
    """torchvision's MultiStepLR, stepped once an epoch: x gamma at each milestone epoch (counted from the
    warmup's end), a pure function of the step, so a reloaded state gives the same lr."""
    cfg = {**CFG, "schedule": "multistep", "milestones": [2, 4], "gamma": 0.1, "warmup_epochs": 1}
    s = Schedule(build_optimizer(_model(), cfg), 100, cfg, steps_per_epoch=10)
    lrs = []
    for _ in range(70):
        lrs.append(s.lr)
        s.step()
    base = CFG["lr"]
    assert lrs[0] == pytest.approx(base / 10) and lrs[9] == pytest.approx(base)  # warmup epoch 0
    assert lrs[10] == lrs[29] == pytest.approx(base)                           # epochs 1-2: 0-1 after warmup
    assert lrs[30] == lrs[49] == pytest.approx(base * 0.1)                     # 2 epochs after warmup
    assert lrs[50] == lrs[69] == pytest.approx(base * 0.01)
    again = Schedule(build_optimizer(_model(), cfg), 100, cfg, 10)
    again.load_state_dict(s.state_dict())
    assert again.lr == pytest.approx(s.lr)


@pytest.mark.parametrize("bad", [{"milestones": None}, {"milestones": [5, 3]}, {"milestones": [0]},
                                 {"milestones": [2], "gamma": 0}, {"milestones": [2], "gamma": 1.5}])
def test_multistep_needs_increasing_milestones_and_a_gamma(bad):
    cfg = {**CFG, "schedule": "multistep", **bad}
    key = "optim.gamma" if "gamma" in bad else "optim.milestones"
    with pytest.raises(ConfigError, match=key):
        Schedule(build_optimizer(_model(), cfg), 10, cfg, 5)
