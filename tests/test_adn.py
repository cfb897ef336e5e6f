"""ADN: skippable sub-paths, switchable norms, the loss, per-config evaluation and export (tiny, CPU)."""
import json

import pytest
import torch
import torch.nn.functional as F

from growth.blocks.switchable import SwitchableNorm
from growth.errors import ConfigError
from growth.measure import count_params, forward_macs
from growth.methods.adn import ADN, parse_skip, topk_distill
from growth.models import create_model, model_from_spec
from growth.models.saved import from_file
from growth.models.skippable import all_configs, config_name, n_mandatory
from growth.losses import label_ce
from tests.conftest import max_diff, out, tiny_cfg

TINY = {
    "resnet_basic": dict(depths=[2, 3, 1], widths=[8, 12, 16], in_chans=1),
    "resnet_bottleneck": dict(depths=[2, 2, 2], widths=[8, 12, 16], in_chans=1),
    "mobilenet": dict(depths=[2, 1, 3], widths=[8, 12, 16], in_chans=1, stem_stride=1),
    "vit": dict(depth=6, heads=2, head_dim=8, in_chans=1),
}
FLAGS = {"resnet_basic": 2, "resnet_bottleneck": 3, "mobilenet": 2, "vit": 2}  # stages of >= 2 blocks
FAMILIES = list(TINY)


def build(family, skippable=True):
    torch.manual_seed(0)
    return create_model(family, skippable=skippable, **TINY[family])


def x_batch(n=6):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def warm(model, x):
    """Train-mode forwards in both extremes so that both norm sets hold non-default statistics."""
    model.train()
    n = model.num_skip_flags
    for cfg in ((True,) * n, (False,) * n):
        model.set_skip(cfg)
        model(x)
    model.set_skip(None)


def norm_state(model, index):
    return {f"{n}.{k}": v.clone() for n, m in model.named_modules() if isinstance(m, SwitchableNorm)
            for k, v in m.norms[index].state_dict().items()}


def test_mandatory_rule_as_the_original():
    # ResNet-50 [3, 4, 6, 3] -> mandatory [2, 2, 3, 2]; MobileNetV2 i >= ceil(n/2) skippable; 1 block: none
    assert [n_mandatory(n) for n in (3, 4, 6, 3)] == [2, 2, 3, 2]
    assert [n_mandatory(n) for n in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert len(all_configs(4)) == 16 and all_configs(2)[0] == (False, False) and all_configs(2)[-1] == (True, True)


@pytest.mark.parametrize("family", FAMILIES)
def test_configs_are_2_to_the_s(family):
    model = build(family)
    assert model.num_skip_flags == FLAGS[family]
    assert len(all_configs(model.num_skip_flags)) == 2 ** FLAGS[family]
    with pytest.raises(ValueError):
        model.set_skip([True] * (FLAGS[family] + 1))


@pytest.mark.parametrize("family", FAMILIES)
def test_macs_fall_strictly_with_every_added_skip(family):
    model = build(family).eval()
    x = x_batch(1)
    macs = {cfg: forward_macs(model.export_plain(cfg).deploy(), x) for cfg in all_configs(model.num_skip_flags)}
    for cfg, m in macs.items():
        for i, flag in enumerate(cfg):
            if not flag:
                more = cfg[:i] + (True,) + cfg[i + 1:]
                assert macs[more] < m, (config_name(cfg), config_name(more))
        model.set_skip(cfg)  # the skip forward costs what its export costs
        assert forward_macs(model, x) == m


@pytest.mark.parametrize("family", FAMILIES)
def test_switching_configs_never_mixes_norm_statistics(family):
    model = build(family)
    x = x_batch()
    n = model.num_skip_flags
    full, skip = norm_state(model, 0), norm_state(model, 1)
    model.train()
    model.set_skip((True,) * n)  # base-net: only the skip sets move (BN statistics; LN has none)
    model(x).sum().backward()
    assert all(torch.equal(v, norm_state(model, 0)[k]) for k, v in full.items())
    grads = lambda i: [p.grad for m in model.modules() if isinstance(m, SwitchableNorm)
                       for p in m.norms[i].parameters()]
    assert all(g is None for g in grads(0)) and all(g is not None for g in grads(1))
    if family != "vit":
        assert any(not torch.equal(v, norm_state(model, 1)[k]) for k, v in skip.items())
    skip = norm_state(model, 1)
    model.zero_grad(set_to_none=True)
    model.set_skip((False,) * n)  # super-net: only the full sets move
    model(x).sum().backward()
    assert all(torch.equal(v, norm_state(model, 1)[k]) for k, v in skip.items())
    assert all(g is None for g in grads(1)) and all(g is not None for g in grads(0))


def test_one_flag_moves_only_its_stage_skip_set():
    model = build("resnet_basic")  # flags: stage 0 (2 blocks), stage 1 (3 blocks); stage 2 has 1 block
    before = norm_state(model, 1)
    model.train()
    model.set_skip((True, False))
    model(x_batch())
    after = norm_state(model, 1)
    moved = {k.split(".")[1] for k, v in before.items() if "running_mean" in k and not torch.equal(v, after[k])}
    assert moved == {"0"}  # stages.<0>...: only stage 0's skip set


@pytest.mark.parametrize("family", FAMILIES)
def test_export_equals_the_skip_forward(family):
    model = build(family)
    x = x_batch()
    warm(model, x)
    for cfg in all_configs(model.num_skip_flags):
        model.set_skip(cfg)
        want = out(model, x)
        plain = model.export_plain(cfg)
        assert not plain.skippable and not any(isinstance(m, SwitchableNorm) for m in plain.modules())
        assert max_diff(out(plain, x), want) < 1e-5
        assert max_diff(out(plain.deploy(), x), want) < 1e-4  # fused too
        assert count_params(plain) < count_params(model) or not any(cfg)
    assert model.skip == all_configs(model.num_skip_flags)[-1]  # export leaves the active config alone


def test_base_export_is_the_family_with_fewer_blocks():
    model = build("resnet_basic")
    plain = model.export_plain((True, True))
    assert plain.arch_string() == "1-2-1" and type(plain) is type(model)
    vit = build("vit").export_plain((True, True))
    assert vit.arch_string() == "d4h2"


@pytest.mark.parametrize("family", FAMILIES)
def test_off_by_default_changes_nothing(family):
    torch.manual_seed(0)
    plain = create_model(family, **TINY[family])
    model = build(family, skippable=True)
    assert "skippable" not in plain.spec_kwargs() and plain.num_skip_flags == 0
    assert not any(isinstance(m, SwitchableNorm) for m in plain.modules())
    assert max_diff(out(plain, x_batch()), out(model, x_batch())) < 1e-6  # same init, super-net = plain
    rebuilt = model_from_spec(model.arch_spec())  # a checkpoint rebuilds the skippable model
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.num_skip_flags == model.num_skip_flags


def _adn(alpha=0.5, temperature=1.0, top_k=500, **m):
    return ADN({"method": {"name": "adn", "alpha": alpha, "temperature": temperature, "top_k": top_k, **m},
                "seed": 0})


class _Trainer:  # the members of the run context ADN's loss reads
    label_smoothing = 0.0
    label_loss = staticmethod(label_ce)  # ctx.label_loss at label_smoothing 0

    def __init__(self):
        self.train_macs = 0

    def add_train_macs(self, samples, macs_per_sample):
        self.train_macs += samples * macs_per_sample


def test_loss_is_the_formula():
    model = build("resnet_basic").train()
    x, y = x_batch(), torch.tensor([0, 1, 2, 3, 4, 5])
    method = _adn(alpha=0.3, temperature=2.0, top_k=3)
    method.prepare(model)
    assert method.k == 3
    torch.manual_seed(0)
    loss, logits = method.loss(model, x, y, _Trainer())
    # the same two forwards by hand (train mode: the BN statistics move once more, outputs do not depend on it)
    model.set_skip((False, False))
    z_s = model(x)
    model.set_skip((True, True))
    z_b = model(x)
    model.set_skip(None)
    idx = z_s.topk(3, dim=1).indices
    p = F.softmax(z_s.gather(1, idx) / 2.0, dim=1)
    log_q = F.log_softmax(z_b.gather(1, idx) / 2.0, dim=1)
    kl = (p * (p.log() - log_q)).sum(1).mean()
    want = 0.3 * F.cross_entropy(z_s, y) + 0.7 * 4.0 * kl
    assert abs(loss.item() - want.item()) < 1e-5
    assert max_diff(logits, z_s) < 1e-6  # train accuracy is the super-net's


def test_base_gets_no_label_loss_and_the_teacher_is_detached():
    model = build("resnet_basic").train()
    method = _adn(alpha=0.0)  # distillation only
    method.prepare(model)
    loss, _ = method.loss(model, x_batch(), torch.zeros(6, dtype=torch.long), _Trainer())
    loss.backward()
    # the skippable blocks run only in the super-net, which is a detached target: no gradient reaches them
    for stage in (0, 1):
        skippable = model.stages[stage][n_mandatory(len(model.stages[stage])):]
        assert all(p.grad is None or not p.grad.any() for p in skippable.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.stages[0][0].parameters())


def test_topk_over_all_classes_is_plain_kl():
    t, s = torch.randn(4, 10), torch.randn(4, 10)
    want = F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean")
    assert abs(topk_distill(t, s, 10, 1.0).item() - want.item()) < 1e-6


def test_k_fixed_and_faithful():
    model = build("resnet_basic")
    fixed = _adn()
    fixed.prepare(model)
    assert fixed.k == 10 and fixed.variants == {"variant": "fixed", "topk": "fixed"}
    with pytest.raises(ConfigError, match="method.top_k=500: faithful"):
        _adn(variant="faithful").prepare(model)


def test_bad_settings_are_one_line_config_errors():
    model = build("resnet_bottleneck")  # 3 flags
    assert parse_skip("tft", 3, "k") == (True, False, True) and parse_skip([False] * 3, 3, "k") == (False,) * 3
    with pytest.raises(ConfigError, match=r"^method.export=\[True, False\]: "):
        _adn(export=[True, False]).prepare(model)
    with pytest.raises(ConfigError, match="method.eval_configs"):
        _adn(eval_configs=["TT"]).prepare(model)
    with pytest.raises(ConfigError, match="method.alpha"):
        _adn(alpha=2)
    with pytest.raises(ConfigError, match="model.skippable"):
        _adn().prepare(build("resnet_basic", skippable=False))
    with pytest.raises(ConfigError, match="model.arch"):
        _adn().prepare(create_model("resnet_basic", depths=[1, 1, 1], widths=[8, 8, 8], skippable=True))


def test_cli_config_error_before_training(tmp_path):
    from growth.engine.job import run_job
    cfg = tiny_cfg(**{"method": "adn", "model.arch": "2-2-2", "method.export": "TT"})
    with pytest.raises(ConfigError, match="^method.export='TT'"):
        run_job(cfg, tmp_path)
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("data", ["synthetic", pytest.param("digits", marks=pytest.mark.slow)])
def test_run_writes_the_per_config_table(tmp_path, data):
    from growth.engine.job import run_job
    cfg = tiny_cfg(**{"method": "adn", "data": data, "model.arch": "2-2-1", "trainer.epochs": 1,
                      "method.latency_batch": 4, "method.export": "all"})
    run_job(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["variants"] == {"variant": "fixed", "topk": "fixed"}
    table = summary["adn_table"]
    assert [r["skip"] for r in table] == ["FF", "FT", "TF", "TT"]
    assert all(r["export_max_abs_diff"] < 1e-4 and r["latency_ms"] > 0 for r in table)
    assert table[0]["macs"] > table[1]["macs"] > table[3]["macs"] and table[0]["macs"] > table[2]["macs"]
    assert summary["adn_super_test_acc"] == table[0]["test_acc"]
    assert summary["adn"]["k"] == {"synthetic": 4, "digits": 10}[data]  # min(top_k=500, classes)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["skip_eval"] and events[0]["arch_after"] == "1-1-1"
    saved = torch.load(tmp_path / "checkpoints" / "adn_TT.pt", weights_only=True)
    plain = from_file({**saved, "deployed": False})
    assert saved["skip"] == "TT" and plain.arch_string() == "1-1-1"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in from_file(saved).modules())  # fused


def _fake_runs():
    """Two ADN seeds (2 skip configs) and fixed nets of both archs, as collect() gives them."""
    import pandas as pd
    table = lambda a, b: [{"skip": "F", "arch": "2-2-2", "params": 900, "deploy_params": 890, "macs": 9000,
                           "latency_ms": 1.0, "val_acc": a, "test_acc": a},
                          {"skip": "T", "arch": "1-2-2", "params": 600, "deploy_params": 590, "macs": 6000,
                           "latency_ms": 0.7, "val_acc": b, "test_acc": b}]
    adn = [{"run": f"a{s}", "method": "adn", "data": "digits", "model": "resnet_basic", "seed": s,
            "arch": "2-2-2", "adn_table": table(0.9 + s / 100, 0.8), "macs": 9000, "test_acc": 0.9}
           for s in (0, 1)]
    fixed = [{"run": f"f{a}", "method": "fixed", "data": "digits", "model": "resnet_basic", "seed": 0,
              "arch": a, "adn_table": None, "macs": m, "test_acc": acc, "final_val_acc": acc}
             for a, m, acc in (("2-2-2", 9000, 0.9), ("1-2-2", 6000, 0.75))]
    return pd.DataFrame(adn + fixed)


def test_analysis_table_in_the_seed_layout_and_plot(tmp_path):
    from analysis.adn import adn_report, per_config_table
    display, numbers = per_config_table(_fake_runs())
    assert list(display["skip-cfg"]) == ["F", "T"] and list(display["n"]) == [2, 2]
    assert display["test acc (%)"].iloc[1] == "80.00 ± 0.00 (+5.00 pp)"
    assert abs(numbers["gain_pp"].iloc[0] - 0.5) < 1e-9
    paths = adn_report(_fake_runs(), None, None, tmp_path)
    assert {p.suffix for p in paths} == {".md", ".tex", ".csv", ".png", ".pdf"}
