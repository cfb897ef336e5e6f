"""RepUnit and ResNet fusion: the deployed (fused) network computes what the multi-branch one does."""
import random

import pytest
import torch

from growth.blocks import ConvBN, RepUnit, fuse_convbn
from growth.blocks.repunit import odd_kernels_up_to
from growth.measure import count_params, forward_macs
from growth.models import create_model, model_from_spec


def _randomise_bn(module, gen):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))


def test_odd_kernels():
    assert odd_kernels_up_to((3, 3)) == [(1, 1), (1, 3), (3, 1), (3, 3)]
    assert len(odd_kernels_up_to((5, 5))) == 9


@pytest.mark.parametrize("trial", range(6))
def test_repunit_fuses_exactly(trial):
    rng, gen = random.Random(trial), torch.Generator().manual_seed(trial)
    base = rng.choice([(3, 3), (5, 5)])
    cin, stride = rng.choice([4, 6]), rng.choice([1, 2])
    groups = rng.choice([1, cin])
    cout = cin if groups > 1 else rng.choice([4, 8])
    kernels = [base] + [rng.choice(odd_kernels_up_to(base)) for _ in range(rng.randint(0, 4))]
    unit = RepUnit(cin, cout, base, stride=stride, groups=groups, kernels=kernels)
    _randomise_bn(unit, gen)
    unit.eval()
    x = torch.randn(3, cin, 9, 9, generator=gen)
    fused = unit.fuse()
    assert fused.kernel_size == base and fused.stride == (stride, stride)
    assert (fused(x) - unit(x)).abs().max().item() < 1e-4


def test_convbn_fuse():
    m = ConvBN(3, 5, (1, 3), stride=2)
    _randomise_bn(m, torch.Generator().manual_seed(0))
    m.eval()
    x = torch.randn(2, 3, 8, 8)
    assert (fuse_convbn(m)(x) - m(x)).abs().max().item() < 1e-5


# Live parameter counts and fused MACs of the original AdaGrow basic ResNet (docs/reference_numbers.md,
# "AdaGrow sizes"): 3x32x32 input, 10 classes, widths 64/96/128(/256).
@pytest.mark.parametrize("arch,params,fused_macs_m", [
    ((0, 0, 0), 169_770, 23.00), ((1, 1, 1), 706_026, 159.84), ((1, 2, 2), 1_168_170, 221.19),
    ((1, 2, 2, 1), 2_646_314, 244.78)])
def test_resnet_basic_matches_original_sizes(arch, params, fused_macs_m):
    m = create_model("resnet_basic", depths=arch, in_chans=3, num_classes=10)
    assert count_params(m) == params
    assert round(forward_macs(m.deploy(), (3, 32, 32)) / 1e6, 2) == fused_macs_m


def test_resnet_deploy_equals_model_and_has_no_branches():
    gen = torch.Generator().manual_seed(1)
    m = create_model("resnet_basic", depths=(1, 2, 0), widths=[8, 12, 16], in_chans=1, num_classes=10)
    for unit in [mod for mod in m.modules() if isinstance(mod, RepUnit)][:3]:
        unit.add_branch((1, 3))
        unit.add_branch((1, 1))
    _randomise_bn(m, gen)
    m.eval()
    x = torch.randn(4, 1, 8, 8, generator=gen)
    d = m.deploy()
    assert not any(isinstance(mod, (RepUnit, ConvBN, torch.nn.BatchNorm2d)) for mod in d.modules())
    assert (d(x) - m(x)).abs().max().item() < 1e-4


def test_arch_spec_round_trip_keeps_branches():
    m = create_model("resnet_basic", depths=(1, 0, 2), widths=[8, 12, 16], in_chans=1, num_classes=10)
    m.stages[2][1].ru2.add_branch((3, 1))
    rebuilt = model_from_spec(m.arch_spec())
    assert rebuilt.arch_spec() == m.arch_spec()
    rebuilt.load_state_dict(m.state_dict())  # strict: same tensors, same shapes


def test_deploy_leaves_the_global_rng_alone():
    m = create_model("resnet_basic", depths=(1, 0, 1), widths=[4, 6, 8], in_chans=1, num_classes=3)
    state = torch.get_rng_state()
    m.deploy()
    assert torch.equal(torch.get_rng_state(), state)


def test_grown_modules_follow_the_model_mode():
    m = create_model("resnet_basic", depths=(0, 0, 0), widths=[4, 6, 8], in_chans=1, num_classes=3).eval()
    assert not m.grow_depth(1).training
    assert not m.downs[0].unit.add_branch((1, 1)).training
    m.train()
    assert m.grow_depth(1).training
