"""Every growable conv family (resnet_basic, resnet_bottleneck, vgg, mobilenet) under every growth op:
zero-init growth keeps the eval-mode output (VGG's new block starts as the identity), the fused net equals the
multi-branch one after growth, a grown model's spec rebuilds it; sizes equal the original's (docs/reference_numbers.md);
AdaGrow runs end to end on each new family.

Tiny models (1x8x8 input, widths 8/12/16(/20)) on the CPU."""
import copy
import json
import random

import pytest
import torch

from growth.blocks import ConvBN, RepUnit
from growth.blocks.repunit import odd_kernels_up_to
from growth.engine.job import run_job
from growth.grow.init import initialize
from growth.measure import count_params, forward_macs
from growth.models import create_model, model_from_spec
from tests.conftest import max_diff, out, tiny_cfg

FAMILIES = ["resnet_basic", "resnet_bottleneck", "vgg", "mobilenet"]
NEW_FAMILIES = ["resnet_bottleneck", "vgg", "mobilenet"]
WIDTHS = {3: [8, 12, 16], 4: [8, 12, 16, 20]}
ARCHS = [(1, 0, 2), (0, 1, 0, 1)]  # 3 and 4 stages, with empty stages
OPS = [("depth", s) for s in range(4)] + [("width", None)]
CASES = [(f, a, op, s) for f in FAMILIES for a in ARCHS for op, s in OPS if s is None or s < len(a)]


def make(family, depths):
    return create_model(family, depths=list(depths), widths=WIDTHS[len(depths)], in_chans=1, num_classes=10,
                        stem_stride=1)


def bns(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@torch.no_grad()
def make_nontrivial(model, gen, skip=()):
    """Random BN affine params and running stats (except the BNs in `skip`), and an O(1) classifier (the
    default N(0, 0.001) one would make every output difference tiny). Leaves the model in eval mode."""
    skip = {id(bn) for bn in skip}
    for bn in bns(model):
        if id(bn) in skip:
            continue
        bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.3)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
    model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=gen) * 0.5)
    model.eval()


def grow(model, op, stage, rng):
    """One zero-initialised growth event; returns the new module(s)."""
    if op == "depth":
        new = [model.grow_depth(stage)]
    else:
        units = [m for m in model.modules() if isinstance(m, RepUnit)]
        new = [u.add_branch(rng.choice(odd_kernels_up_to(u.base_kernel))) for u in rng.sample(units, 3)]
    for m in new:
        initialize(m, "zero", 0.2)
    return new


@pytest.mark.parametrize("family,arch,op,stage", CASES)
def test_growth_preserves_fuses_and_round_trips(family, arch, op, stage):
    gen, rng = torch.Generator().manual_seed(len(CASES)), random.Random(7)
    torch.manual_seed(0)
    m = make(family, arch)
    m.grow_depth(len(arch) - 1)  # some depth and some extra branches before the event under test
    grow(m, "width", None, rng)
    make_nontrivial(m, gen)
    x = torch.randn(6, 1, 8, 8, generator=gen)
    before, before_train = out(m, x), copy.deepcopy(m).train()(x)

    new = grow(m, op, stage, rng)
    change = max_diff(out(m, x), before)
    assert change < 1e-5
    if family != "vgg" or op != "depth":
        # the new path outputs exactly 0 in train mode too (BN with gamma = beta = 0); VGG's new block
        # is the identity only with its running statistics (eval mode)
        assert max_diff(m.train()(x), before_train) < 1e-5
    assert m.arch_string() == "-".join(str(d) for d in m.depths)

    # fused equals unfused after growth, with every BN (the new ones too) non-trivial
    make_nontrivial(m, gen)
    d = m.deploy()
    assert not any(isinstance(mod, (RepUnit, ConvBN, torch.nn.BatchNorm2d)) for mod in d.modules())
    assert max_diff(d(x), out(m, x)) < 1e-4

    # a checkpoint of the grown model rebuilds into the same shape
    rebuilt = model_from_spec(json.loads(json.dumps(m.arch_spec())))
    assert rebuilt.arch_spec() == m.arch_spec() and type(rebuilt) is type(m)
    rebuilt.load_state_dict(m.state_dict())  # strict
    assert max_diff(out(rebuilt, x), out(m, x)) == 0
    assert all(p.requires_grad for mod in new for p in mod.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_new_block_follows_model_mode(family):
    m = make(family, (0, 0, 0)).eval()
    assert not m.grow_depth(1).training
    m.train()
    assert m.grow_depth(2).training
    assert m.depths == [0, 1, 1] and len(m.stages[1]) == 1


@pytest.mark.parametrize("family,last", [("resnet_basic", "ru2"), ("resnet_bottleneck", "expand"),
                                         ("mobilenet", "project")])
def test_zero_init_zeroes_only_the_last_bn_of_the_path(family, last):
    block = make(family, (0, 0, 0)).grow_depth(0)
    initialize(block, "zero", 0.2)
    zeroed = {id(bn) for bn in bns(getattr(block, last))}
    for bn in bns(block):
        is_zero = bn.weight.abs().sum().item() == 0 and bn.bias.abs().sum().item() == 0
        assert is_zero == (id(bn) in zeroed)
    assert all(p.abs().sum() > 0 for n, p in block.named_parameters() if n.endswith("conv.weight"))


def test_vgg_new_block_starts_as_identity_and_learns():
    m = make("vgg", (0, 1, 0))
    block = m.grow_depth(1)
    initialize(block, "zero", 0.2)
    x = torch.relu(torch.randn(4, 12, 4, 4))
    assert torch.equal(block.eval()(x), x)
    block.train()
    block(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in block.named_parameters() if not n.endswith("conv.bias"))


def test_mobilenet_original_out_act_is_not_preserving():
    """The original's SiLU after the residual add turns a zero-output new block into silu(x) != x."""
    gen = torch.Generator().manual_seed(3)
    m = create_model("mobilenet", depths=[1, 0, 1], widths=WIDTHS[3], in_chans=1, num_classes=10,
                     stem_stride=1, out_act="silu")
    make_nontrivial(m, gen)
    x = torch.randn(4, 1, 8, 8, generator=gen)
    before = out(m, x)
    initialize(m.grow_depth(1), "zero", 0.2)
    assert max_diff(out(m, x), before) > 1e-3


# Live parameter counts and fused MACs of the original AdaGrow nets (docs/reference_numbers.md,
# "AdaGrow sizes"): 3x32x32 input,
# 10 classes, default widths. The original fuses only RepUnits; we also fold the stem, 1x1 and SE conv+BN
# pairs, which removes BNs but no MACs, so fused MACs agree while our fused params are fewer.
@pytest.mark.parametrize("family,arch,params,fused_macs_m", [
    ("resnet_bottleneck", (2, 2, 2), 234_746, 39.16), ("vgg", (1, 2, 2), 668_970, 122.09),
    ("mobilenet", (2, 3, 3), 811_210, 18.93)])
def test_matches_original_sizes(family, arch, params, fused_macs_m):
    m = create_model(family, depths=arch, in_chans=3, num_classes=10)
    assert count_params(m) == params
    assert round(forward_macs(m.deploy(), (3, 32, 32)) / 1e6, 2) == fused_macs_m


# The thesis table's 4-stage sizes (docs/reference_numbers.md "Thesis sizes"; thop, millions, as printed).
# thop counts every module the forward pass calls, so it includes each Downstream's BN whose output the
# original discards (docs/reference_numbers.md "AdaGrow sizes": 2 * in-width parameters each; we do not
# allocate it): MobileNet 2-2-3-2 is 670,298 live + 224 = 0.671M. The only 4-stage arch with a live count
# measured from the original code is basic 1-2-2-1, asserted exactly; for these three the thesis's rounded
# print is all there is, so the rounding check stays (see docs/reference_numbers.md).
@pytest.mark.parametrize("family,arch,params_m", [
    ("resnet_bottleneck", (2, 2, 2, 2), 0.673), ("vgg", (1, 1, 2, 2), 2.06), ("mobilenet", (2, 2, 3, 2), 0.671)])
def test_four_stage_sizes_match_thesis(family, arch, params_m):
    m = create_model(family, depths=arch, in_chans=3, num_classes=10)
    dead_downstream_bn = 2 * sum(m.widths[:-1])
    assert round((count_params(m) + dead_downstream_bn) / 1e6, 3 if params_m < 1 else 2) == params_m
    basic = create_model("resnet_basic", depths=(1, 2, 2, 1), in_chans=3, num_classes=10)
    assert count_params(basic) == 2_646_314  # docs/reference_numbers.md "AdaGrow sizes": exact, live


def test_zero_block_families_are_one_network():
    """Basic, bottleneck and VGG at 0-0-0 are the same network (docs/reference_numbers.md, "AdaGrow sizes")."""
    counts = {f: count_params(create_model(f, depths=(0, 0, 0))) for f in ("resnet_basic", "resnet_bottleneck", "vgg")}
    assert set(counts.values()) == {169_770}


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_adagrow_runs_end_to_end(tmp_path, family):
    s = run_job(tiny_cfg(**{"model": family, "method": "adagrow", "model.arch": "0-1-0", "model.widths": "[8,12,16]",
                            "model.max_arch": "2-2-2", "grow.interval": 1, "trainer.epochs": 3}), tmp_path)
    assert s["status"] == "completed" and s["growth_events"] >= 2
    events = [json.loads(r) for r in (tmp_path / "events.jsonl").read_text().splitlines()]
    grown = [e for e in events if e["kind"].startswith("grow_")]
    assert {e["kind"] for e in grown} == {"grow_width", "grow_depth"}
    for e in grown:
        assert e["max_abs_output_change"] < 1e-5
