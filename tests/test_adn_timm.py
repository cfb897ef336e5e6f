"""ADN on timm's own networks (model=timm method=adn): the sizes MEASURED.md gives for the papers' models,
the plain exports, the switchable norms as the original ties them, --fpn, and a short run on digits.

ImageNet-size models (224 px, 1000 classes) are only counted, on the meta device: FlopCounterMode reads
shapes only, so its counts there are the CPU counts (test_meta_counts_are_the_cpu_counts) at no compute.
"""
import functools
import json

import pytest
import timm
import torch
import torch.nn.functional as F

from growth.blocks.switchable import SwitchableNorm
from growth.errors import ConfigError
from growth.measure import count_params, forward_macs
from growth.methods.adn import config_sizes
from growth.models import create_model
from growth.models.saved import from_file, to_file
from growth.models.skippable import all_configs, config_name
from tests.conftest import max_diff, out
from tests.test_adn import _adn, _Trainer

IMAGENET = (3, 224, 224)
# MEASURED.md, ADN: params actually used / GMACs (FlopCounterMode, math attention) at 224 px, 1000 classes
MEASURED = {
    "resnet50": {"FFFF": (25_557_032, 4.089), "TTTT": (17_112_360, 2.561)},
    "vit_base_patch16_224": {"FFFF": (86_567_656, 17.564), "TTTT": (58_216_168, 11.748)},
    "mobilenetv2_100": {"FFFFF": (3_504_872, 0.301), "TTTTT": (2_934_376, 0.205)},
}
# Small stand-ins of the same layouts for tests that compute (ResNet-50's depths at tiny widths)
SMALL = {
    "resnet50": {"channels": [8, 8, 16, 16], "stem_width": 8},
    "mobilenetv2_050": {},
    "vit_tiny_patch16_224": {"img_size": 32, "patch_size": 8},
}


def skippable(name, classes=10, meta=False, **extra):
    torch.manual_seed(0)
    with torch.device("meta" if meta else "cpu"):
        return create_model("timm", name=name, num_classes=classes, skippable=True, extra=extra)


# The configs counted per model: MEASURED's rows and a few more: ResNet-50 one skipped stage at a time
# (each skipped block's cost, stage by stage), ViT the
# README's FFFT and TTFT. ViT-B counts on the meta device (its CPU init and forward take seconds a
# config); the convnets on the CPU (the meta kernels of BN are slower than the real ones).
COUNTED = {"resnet50": ["FFFF", "TFFF", "FTFF", "FFTF", "FFFT", "TTTT"],
           "vit_base_patch16_224": ["FFFF", "FFFT", "TTFT", "TTTT"], "mobilenetv2_100": ["FFFFF", "TFTFT", "TTTTT"]}


@functools.lru_cache(maxsize=None)
def imagenet_sizes(name) -> dict:
    """Skip configs of `name` at 224 px / 1000 classes, as ADN reports them (config_sizes: params of the
    plain export, MACs of its deployed form), with the blocks kept per group. Counted once for all tests."""
    model = skippable(name, 1000, meta=name.startswith("vit"))
    configs = [[c == "T" for c in skip] for skip in COUNTED[name]]
    return {config_name(cfg): {**config_sizes(model, cfg, IMAGENET)[0], "keep": model.kept_counts(cfg)}
            for cfg in configs}


@pytest.mark.parametrize("name", list(MEASURED))
def test_sizes_equal_measured(name):
    sizes = imagenet_sizes(name)
    for skip, (params, gmacs) in MEASURED[name].items():
        assert sizes[skip]["params"] == params and round(sizes[skip]["macs"] / 1e9, 3) == gmacs, skip
        assert sizes[skip]["deploy_params"] == params  # timm's deploy folds nothing in these nets


def test_every_skipped_resnet50_block_costs_0218_gmacs():
    sizes = imagenet_sizes("resnet50")
    full = sizes["FFFF"]["macs"]
    per_block = (full - sizes["TTTT"]["macs"]) // 7  # 7 skippable blocks: [1, 2, 3, 1]
    assert round(per_block / 1e9, 3) == 0.218
    for skip, row in sizes.items():  # each config: exactly its skipped blocks' cost less, in every stage
        assert row["macs"] == full - per_block * sum(n - k for n, k in zip([3, 4, 6, 3], row["keep"])), skip


def test_every_skipped_vit_block_costs_the_same_and_mobilenet_in_between():
    vit = imagenet_sizes("vit_base_patch16_224")
    per_block = (vit["FFFF"]["macs"] - vit["TTTT"]["macs"]) // 4
    assert vit["FFFT"]["macs"] == vit["FFFF"]["macs"] - per_block
    assert vit["TTFT"]["macs"] == vit["FFFF"]["macs"] - 3 * per_block
    assert vit["FFFF"]["params"] - vit["FFFT"]["params"] == 7_087_872  # one ViT-B block (MEASURED, SWS)
    mb = imagenet_sizes("mobilenetv2_100")
    assert all(mb["TTTTT"][k] < mb["TFTFT"][k] < mb["FFFFF"][k] for k in ("params", "macs"))


def test_skip_forward_costs_what_its_export_costs():
    model = skippable("vit_base_patch16_224", 1000, meta=True)
    for skip in ("FFFF", "TTTT"):
        model.set_skip([c == "T" for c in skip])
        assert forward_macs(model, IMAGENET) == imagenet_sizes("vit_base_patch16_224")[skip]["macs"]


def test_meta_counts_are_the_cpu_counts():
    for name in ("resnet50", "vit_tiny_patch16_224"):
        cpu, meta = skippable(name, **SMALL[name]), skippable(name, meta=True, **SMALL[name])
        for cfg in (all_configs(cpu.num_skip_flags)[0], all_configs(cpu.num_skip_flags)[-1]):
            a, b = config_sizes(cpu, cfg, (3, 32, 32))[0], config_sizes(meta, cfg, (3, 32, 32))[0]
            assert a == b and a["macs"] > 0


def test_exports_are_the_networks_timm_builds_with_fewer_blocks():
    cases = [("resnet50", "TTTT", {"layers": [2, 2, 3, 2]}), ("resnet50", "TFFT", {"layers": [2, 4, 6, 2]}),
             ("vit_base_patch16_224", "TTTT", {"depth": 8})]
    for name, skip, timm_kwargs in cases:
        model = skippable(name, 1000, meta=True)
        plain = model.export_plain([c == "T" for c in skip])
        with torch.device("meta"):
            want = timm.create_model(name, num_classes=1000, **timm_kwargs)
        assert type(plain.net) is type(want) and not plain.skippable
        assert {k: v.shape for k, v in plain.net.state_dict().items()} == \
               {k: v.shape for k, v in want.state_dict().items()}


@pytest.mark.parametrize("name", ["resnet18", "resnet101", "resnet152", "vit_small_patch16_224"])
def test_other_timm_models_of_the_layouts_skip(name):
    model = skippable(name, 1000, meta=True)
    with torch.device("meta"):
        timm_params = count_params(timm.create_model(name, num_classes=1000))
    assert model.num_skip_flags == 4
    assert count_params(model.export_plain([False] * 4)) == timm_params  # the super-net is timm's model
    base = model.export_plain([True] * 4)
    want = {"resnet18": "1-1-1-1", "resnet101": "2-2-12-2", "resnet152": "2-4-18-2",
            "vit_small_patch16_224": "2-2-2-2"}[name]
    assert base.arch_string() == f"{name}:{want}" and count_params(base) < timm_params


@torch.no_grad()
def nontrivial(model, x):
    """Norm affine maps away from (1, 0), each set its own; both BN sets' statistics moved by train-mode
    forwards in every config (each in its own way), then eval."""
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
    model.train()
    for i, cfg in enumerate(all_configs(model.num_skip_flags)):
        model.set_skip(cfg)
        model(x * (1 + i / 10))
    model.set_skip(None)
    return model.eval()


@pytest.mark.parametrize("name", list(SMALL))
def test_every_export_computes_the_skip_forward(name):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model = nontrivial(skippable(name, **SMALL[name]), x)
    configs = all_configs(model.num_skip_flags)
    for cfg in configs:
        model.set_skip(cfg)
        want = out(model, x)
        plain = model.export_plain(cfg)
        assert not any(isinstance(m, SwitchableNorm) for m in plain.modules())
        assert max_diff(out(plain, x), want) < 1e-5, config_name(cfg)
        if cfg in (configs[0], configs[-1]):  # through the file format too, plain and deployed
            assert max_diff(out(from_file(to_file(plain, deployed=True)), x), want) < 1e-5
    saved = to_file(model, deployed=False)  # the skippable model itself: spec + state, active config
    assert saved["arch_spec"]["kwargs"]["skippable"] and max_diff(out(from_file(saved), x), want) < 1e-5


def switch_state(model, index):
    return {n: m.norms[index].running_mean.clone() for n, m in model.named_modules()
            if isinstance(m, SwitchableNorm)}


def test_tfff_moves_only_stage_1_skip_statistics_and_shares_stem_and_downsample():
    model = skippable("resnet50", **SMALL["resnet50"])
    net = model.net
    assert type(net.bn1) is torch.nn.BatchNorm2d and type(net.layer2[0].downsample[1]) is torch.nn.BatchNorm2d
    assert isinstance(net.layer2[0].bn1, SwitchableNorm) and isinstance(net.layer3[2].bn3, SwitchableNorm)
    assert type(net.layer3[3].bn1) is torch.nn.BatchNorm2d  # skippable blocks: one set
    skip0, full0 = switch_state(model, 1), switch_state(model, 0)
    model.train()
    model.set_skip((True, False, False, False))
    model(torch.randn(4, 3, 32, 32))
    skip1, full1 = switch_state(model, 1), switch_state(model, 0)
    moved_skip = {k.split(".")[1] for k in skip0 if not torch.equal(skip0[k], skip1[k])}
    moved_full = {k.split(".")[1] for k in full0 if not torch.equal(full0[k], full1[k])}
    assert moved_skip == {"layer1"} and moved_full == {"layer2", "layer3", "layer4"}


def test_mobilenetv2_stem_last_conv_and_single_block_stages_follow_flags_0_and_4():
    model = skippable("mobilenetv2_050")
    net = model.net
    assert model.num_skip_flags == 5 and [len(s) for s in net.blocks] == [1, 2, 3, 4, 3, 3, 1]
    first = [net.bn1, net.blocks[0][0].bn1, net.blocks[0][0].bn2]
    last = [net.bn2, net.blocks[6][0].bn1, net.blocks[6][0].bn3]
    assert all(isinstance(m, SwitchableNorm) for m in first + last)
    for skip in ("TFFFF", "FFFFT", "TTTTT", "FTTTF"):
        model.set_skip([c == "T" for c in skip])
        assert [m.active for m in first] == [int(skip[0] == "T")] * 3
        assert [m.active for m in last] == [int(skip[4] == "T")] * 3
    stem = switch_state(model, 1)["net.bn1"]
    model.train()
    model.set_skip([True, False, False, False, False])
    model(torch.randn(2, 3, 32, 32))
    assert not torch.equal(switch_state(model, 1)["net.bn1"], stem)  # the stem's skip set moved


def test_vit_pseudo_stages_of_3_switch_the_mandatory_blocks_layernorms():
    model = skippable("vit_tiny_patch16_224", **SMALL["vit_tiny_patch16_224"])
    blocks = model.net.blocks
    assert model.num_skip_flags == 4 and model.arch_string() == "vit_tiny_patch16_224:3-3-3-3"
    for i, block in enumerate(blocks):  # blocks 2, 5, 8, 11 skippable: one LayerNorm set
        assert isinstance(block.norm1, SwitchableNorm) == isinstance(block.norm2, SwitchableNorm) == (i % 3 != 2)
    assert isinstance(model.net.norm, torch.nn.LayerNorm)  # the final norm is shared (timm's LayerNorm)
    model.set_skip((False, True, False, True))
    assert blocks.skipped == {5, 11} and [blocks[i].norm1.active for i in (0, 3, 4, 6, 9)] == [0, 1, 1, 0, 1]


def test_fpn_loss_is_the_original_sum():
    x, y = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 3, 4, 5])
    # timm zero-inits each block's last BN: a skipped block would change nothing, nor the features
    model = nontrivial(skippable("resnet50", **SMALL["resnet50"]), x).train()
    method = _adn(alpha=0.3, temperature=2.0, top_k=3, fpn=True)
    method.prepare(model)
    loss, _ = method.loss(model, x, y, _Trainer())
    assert not any(m._forward_hooks for m in model.modules())  # the capture left nothing behind

    def run(cfg):  # logits and pooled layer1..3 outputs, with the test's own hooks
        feats = []
        hooks = [getattr(model.net, f"layer{i}").register_forward_hook(lambda m, i, o: feats.append(o.mean((2, 3))))
                 for i in (1, 2, 3)]
        model.set_skip(cfg)
        z = model(x)
        for h in hooks:
            h.remove()
        return z, feats

    def kl(teacher, student, t=2.0):  # T^2 KL(softmax(teacher/T) || softmax(student/T)), batch mean
        p, log_q = F.softmax(teacher / t, 1), F.log_softmax(student / t, 1)
        return t * t * (p * (p.log() - log_q)).sum(1).mean()

    (z_s, f_s), (z_b, f_b) = run((False,) * 4), run((True,) * 4)
    idx = z_s.topk(3, dim=1).indices
    feature = sum(kl(s, b) for s, b in zip(f_s, f_b))
    want = 0.3 * F.cross_entropy(z_s, y) + 0.7 * (kl(z_s.gather(1, idx), z_b.gather(1, idx)) + feature)
    assert feature.item() > 1e-4 and abs(loss.item() - want.item()) < 1e-5
    without = _adn(alpha=0.3, temperature=2.0, top_k=3)
    without.prepare(model)
    assert abs(without.loss(model, x, y, _Trainer())[0].item() - (want - 0.7 * feature).item()) < 1e-5


def test_fpn_needs_a_resnet_layout():
    vit = skippable("vit_tiny_patch16_224", **SMALL["vit_tiny_patch16_224"])
    with pytest.raises(ConfigError, match="^method.fpn=True: feature distillation needs a ResNet layout"):
        _adn(fpn=True).prepare(vit)
    with pytest.raises(ConfigError, match="^method.fpn="):
        _adn(fpn="yes")


def test_other_timm_models_refuse_skippable():
    with pytest.raises(ConfigError, match="^model.name='convnext_atto': skippable sub-paths"):
        create_model("timm", name="convnext_atto", skippable=True)


def test_adn_trains_a_timm_resnet_on_digits(tmp_path):
    from benchmarks.common import compose
    from growth.engine.job import run_job
    cfg = compose(**{"model": "timm", "model.name": "resnet18", "method": "adn", "trainer.epochs": 2,
                     "trainer.progress": "false", "model.kwargs": "{channels:[8,8,16,16],stem_width:8}",
                     "method.latency_batch": 4})
    run_job(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    table = summary["adn_table"]
    assert summary["status"] == "completed" and summary["arch"] == "resnet18:2-2-2-2"
    assert [r["skip"] for r in table] == [config_name(c) for c in all_configs(4)]
    assert table[-1]["arch"] == "resnet18:1-1-1-1" and all(r["export_max_abs_diff"] < 1e-5 for r in table)
    assert table[0]["params"] > table[-1]["params"] and table[0]["macs"] > table[-1]["macs"]
    assert table[0]["val_acc"] > 0.2  # learnt something in 2 epochs (chance: 0.1)
    assert len(summary["adn"]["history"]) == 2
    saved = torch.load(tmp_path / "checkpoints" / "adn_TTTT.pt", weights_only=True)
    assert from_file(saved).arch_string() == "resnet18:1-1-1-1"


def test_imagenet_experiments_hold_the_original_recipes():
    from benchmarks.common import compose
    r50, mb, vit = (compose(experiment=f"adn_{n}_imagenet") for n in ("resnet50", "mobilenetv2", "vit_b16"))
    for c, name in ((r50, "resnet50"), (mb, "mobilenetv2_100"), (vit, "vit_base_patch16_224")):
        assert c["method"]["name"] == "adn" and c["model"]["family"] == "timm" and c["model"]["name"] == name
        assert c["model"]["skippable"] is True and c["data"]["name"] == "imagefolder"
        assert c["data"]["image_size"] == 224 and c["data"]["num_classes"] == 1000
        m = c["method"]
        assert (m["alpha"], m["temperature"], m["top_k"], m["fpn"]) == (0.5, 1.0, 500, False)
        assert c["trainer"]["batch_size"] == 64  # per rank, x 4 ranks
    o = r50["optim"]  # --opt sgd --lr 0.1 --momentum 0.9 --wd 1e-4 --norm-weight-decay 0 --bias-weight-decay 0
    assert (o["name"], o["lr"], o["momentum"], o["weight_decay"], o["no_decay_norm_bias"]) == ("sgd", 0.1, 0.9, 1e-4, True)
    assert r50["trainer"]["epochs"] == 150 and r50["trainer"]["label_smoothing"] == 0.0
    assert (o["schedule"], o["milestones"], o["gamma"], o["warmup_epochs"]) == ("multistep", [60, 100, 140], 0.1, 0)
    o = mb["optim"]  # --lr 0.1 --wd 1e-5 on every parameter, 300 epochs
    assert (o["name"], o["lr"], o["weight_decay"], o["no_decay_norm_bias"]) == ("sgd", 0.1, 1e-5, False)
    assert mb["trainer"]["epochs"] == 300
    assert (o["schedule"], o["milestones"], o["gamma"]) == ("multistep", [150, 225, 285], 0.1)
    o, t = vit["optim"], vit["trainer"]  # adamw lr 7.5e-4 wd 0.2, warmup 30, ls 0.11, clip 1, 300 epochs
    assert (o["name"], o["lr"], o["weight_decay"], o["warmup_epochs"], o["schedule"]) == ("adamw", 7.5e-4, 0.2, 30, "cosine")
    assert (t["epochs"], t["label_smoothing"], t["grad_clip"]) == (300, 0.11, 1.0)


def test_imagenet_sweeps_trained_alone_base_is_the_adn_base_export():
    """experiments/adn_imagenet.yaml's fixed base-net jobs: timm's own net at the base depth, the same
    size as ADN's base export (MEASURED.md), and not skippable."""
    from benchmarks.common import compose
    from growth.models import build_model
    data = {"in_chans": 3, "num_classes": 1000, "image_size": 224}
    for exp, kwargs, base in (("adn_resnet50_imagenet", "{layers:[2,2,3,2]}", 17_112_360),
                              ("adn_vit_b16_imagenet", "{depth:8}", 58_216_168)):
        cfg = compose(experiment=exp, method="fixed", **{"model.kwargs": kwargs})
        assert cfg["method"]["name"] == "fixed" and cfg["model"]["skippable"] is False
        with torch.device("meta"):
            model = build_model(cfg["model"], data)
        assert not model.skippable and count_params(model) == base


@pytest.mark.parametrize("name", ["mobilenetv2", "vit_b16"])  # resnet50: as the digits run above
def test_imagenet_experiments_take_an_adn_step_on_digits(name, tmp_path):
    """The experiment's model, method and optimizer on 8x8 digits, one loss and backward at batch 2 (a
    whole digits run at these sizes is the slow test in tests/test_configs.py)."""
    from benchmarks.common import compose
    from growth.engine.job import prepare
    cfg = compose(**{"experiment": f"adn_{name}_imagenet", "data": "digits", "trainer.batch_size": 2,
                     "trainer.num_workers": 0, "trainer.progress": "false", "trainer.probe_batch": 2})
    trainer, _ = prepare(cfg, tmp_path)
    x, y = next(iter(trainer.data.train))
    loss, logits = trainer.method.loss(trainer.train_model, x, y, trainer.ctx)
    loss.backward()
    assert trainer.model.skippable and logits.shape == (2, 10) and loss.isfinite()


def test_dry_run_reports_the_measured_resnet50_sizes(cli, tmp_path):
    """The dry run (no ImageNet on disk) gives ADN's per-config sizes in method_sizes; extremes only here
    (the 16 configs are counted above)."""
    proc = cli(["model=timm", "model.name=resnet50", "method=adn", "data=imagefolder", "data.root=/nonexistent",
                "data.num_classes=1000", "data.image_size=224", "trainer.dry_run=true",
                "method.eval_configs=extremes", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "dry_run" and summary["input_size"] == [3, 224, 224]
    rows = {r["skip"]: r for r in summary["method_sizes"]["adn_configs"]}
    assert list(rows) == ["FFFF", "TTTT"]
    for skip, (params, gmacs) in MEASURED["resnet50"].items():
        assert rows[skip]["params"] == params and round(rows[skip]["macs"] / 1e9, 3) == gmacs
        assert rows[skip]["arch"] == {"FFFF": "resnet50:3-4-6-3", "TTTT": "resnet50:2-2-3-2"}[skip]
