"""Net2Net on the growable conv nets (growth/grow/widen.py) and their growth sites (StagedRepNet.grow):
widening a stage keeps the function (eval and train mode), follows the given source map exactly, is
reproducible with a generator without touching the global RNG, rebuilds from its spec, fuses, and lists
every replaced parameter; noise changes the function; deepening keeps it.

Tiny models on the CPU: 1x8x8 input, widths 8/12/16, every other RepUnit with a second branch, random BN
affine parameters, running statistics from two train-mode forwards, an O(1) classifier."""
import copy
import functools
import json

import pytest
import torch

from growth.blocks import RepUnit
from growth.grow.widen import channel_map, deepen_stage, derived_map, widen_stage
from growth.models import create_model, model_from_spec
from growth.models.growable import Site, is_growable
from tests.conftest import max_diff, nontrivial_bn, out

FAMILIES = ["resnet_basic", "vgg", "mobilenet"]
DEPTHS = (1, 2, 1)


def make(family, depths=DEPTHS, seed=0, **kw):
    """A fresh copy of one cached model per setting (building and warming up BN costs the most)."""
    return copy.deepcopy(_built(family, tuple(depths), seed, tuple(sorted(kw.items()))))


@functools.lru_cache(maxsize=None)
def _built(family, depths, seed, kw):
    kw = dict(kw)
    torch.manual_seed(seed)
    m = create_model(family, depths=list(depths), widths=[8, 12, 16], in_chans=1, num_classes=10,
                     stem_stride=1, **kw)
    units = [u for u in m.modules() if isinstance(u, RepUnit)]
    for i, u in enumerate(units[::2]):
        u.add_branch((1, 1) if i % 2 else (3, 1))
    gen = torch.Generator().manual_seed(seed + 1)
    return nontrivial_bn(m, gen)


def inputs(seed=5):
    return torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_widen_keeps_function_eval_and_train(family, stage):
    m, x = make(family), inputs()
    before, before_train = out(m, x), copy.deepcopy(m).train()(x)
    widen_stage(m, stage, m.widths[stage] + 5, generator=gen())
    assert m.widths[stage] == [8, 12, 16][stage] + 5
    assert max_diff(out(m, x), before) < 1e-5
    # copies have equal batch statistics, so train mode is kept too
    assert max_diff(copy.deepcopy(m).train()(x), before_train) < 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_widen_two_stages_in_a_row(family):
    m, x = make(family), inputs()
    before = out(m, x)
    widen_stage(m, 1, 20, generator=gen(1))
    widen_stage(m, 2, 19, generator=gen(2))
    widen_stage(m, 1, 23, generator=gen(3))  # a stage widened twice
    assert m.widths == [8, 23, 19] and m.spec_kwargs()["widths"] == [8, 23, 19]
    assert max_diff(out(m, x), before) < 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_noise_changes_function(family):
    m, x = make(family), inputs()
    before = out(m, x)
    quiet, noisy = copy.deepcopy(m), m
    widen_stage(quiet, 1, 18, generator=gen(), noise=0.0)
    widen_stage(noisy, 1, 18, generator=gen(), noise=0.5)
    assert max_diff(out(quiet, x), before) < 1e-5
    assert max_diff(out(noisy, x), before) > 1e-3
    # noise only on the new channels' outgoing weights: rows and the old columns are the noise-free ones
    for (name, a), (_, b) in zip(quiet.named_parameters(), noisy.named_parameters()):
        if name.startswith("downs.1.unit.") and name.endswith("conv.weight"):
            assert torch.equal(a[:, :12], b[:, :12]) and not torch.equal(a[:, 12:], b[:, 12:])
        if name.startswith("downs.0.unit.") or name.startswith("fc."):
            assert torch.equal(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_given_source_gives_those_copies(family):
    m = make(family)
    old = copy.deepcopy(m)
    source = torch.tensor([2, 0, 2, 11])
    result = widen_stage(m, 1, 16, source=source)
    index = torch.tensor(list(range(12)) + [2, 0, 2, 11])
    counts = torch.tensor([2, 1, 3] + [1] * 8 + [2])[index].float()  # copies of each channel
    assert result.details["source"] == [2, 0, 2, 11]
    # producer: the downstream unit into stage 1, every branch's conv rows, bias and BN
    for new, was in zip(m.downs[0].unit.branches, old.downs[0].unit.branches):
        assert torch.equal(new.conv.weight, was.conv.weight[index])
        assert torch.equal(new.conv.bias, was.conv.bias[index])
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(new.bn, key), getattr(was.bn, key)[index])
    # consumer: the next downstream unit's columns, divided by the copy count
    for new, was in zip(m.downs[1].unit.branches, old.downs[1].unit.branches):
        assert torch.equal(new.conv.weight, was.conv.weight[:, index] / counts.view(1, -1, 1, 1))
    assert m.downs[0].unit.cout == 16 and m.downs[1].unit.cin == 16


def test_mobilenet_hidden_follows_the_source():
    """hidden = expand * c: new stage channel k brings the expand hidden channels expand*source[k] + e;
    the depthwise unit copies whole kernels (no division); the squeeze's columns are divided."""
    m = make("mobilenet")
    old = copy.deepcopy(m)
    widen_stage(m, 0, 10, source=torch.tensor([3, 3]))
    blk, was = m.stages[0][0], old.stages[0][0]
    hidden = torch.tensor(list(range(32)) + [12, 12, 13, 13, 14, 14, 15, 15])
    assert torch.equal(blk.expand.conv.weight, was.expand.conv.weight[hidden][:, [0, 1, 2, 3, 4, 5, 6, 7, 3, 3]]
                       / torch.tensor([1, 1, 1, 3, 1, 1, 1, 1, 3, 3.]).view(1, -1, 1, 1))
    for new, w in zip(blk.dw.branches, was.dw.branches):
        assert torch.equal(new.conv.weight, w.conv.weight[hidden]) and new.conv.groups == 40
    assert blk.dw.groups == blk.dw.cin == blk.dw.cout == 40
    counts = torch.bincount(hidden, minlength=32)[hidden].float()
    squeeze = blk.se.gate[1].conv.weight  # SE hidden max(40 // 4, 8) = 10 from 8
    assert squeeze.shape == (10, 40, 1, 1)
    assert torch.equal(squeeze[:8], was.se.gate[1].conv.weight[:, hidden] / counts.view(1, -1, 1, 1))


def test_derived_map_hand_computed():
    stream = channel_map(4, torch.tensor([1, 3]))
    assert derived_map(stream, 4, 6).index.tolist() == [0, 1, 2, 3, 1, 3]  # same width: the stage's map
    assert derived_map(stream, 16, 24).index.tolist()[16:] == [4, 12, 5, 13, 6, 14, 7, 15]  # expand 4
    assert derived_map(stream, 8, 8).index.tolist() == list(range(8))
    assert channel_map(4, torch.tensor([1, 1])).counts().tolist() == [1, 3, 1, 1, 3, 3]


@pytest.mark.parametrize("family", FAMILIES)
def test_generator_reproducible_and_global_rng_untouched(family):
    a, b, c = make(family), make(family), make(family)
    state = torch.get_rng_state()
    ra = widen_stage(a, 2, 21, generator=gen(7), noise=0.1)
    rb = widen_stage(b, 2, 21, generator=gen(7), noise=0.1)
    rc = widen_stage(c, 2, 21, generator=gen(8), noise=0.1)
    assert torch.equal(torch.get_rng_state(), state)
    assert ra.details["source"] == rb.details["source"] != rc.details["source"]
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("family", FAMILIES)
def test_spec_round_trip_after_widening(family):
    m, x = make(family), inputs()
    widen_stage(m, 0, 11, generator=gen(1))
    widen_stage(m, 2, 20, generator=gen(2))
    rebuilt = model_from_spec(json.loads(json.dumps(m.arch_spec())))
    assert rebuilt.arch_spec() == m.arch_spec()
    rebuilt.load_state_dict(m.state_dict())  # strict: every shape agrees
    assert max_diff(out(rebuilt, x), out(m, x)) == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_deploy_equals_unfused_after_widening(family):
    m, x = make(family), inputs()
    widen_stage(m, 1, 17, generator=gen(3))
    assert max_diff(m.deploy()(x), out(m, x)) < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_replaced_lists_every_grown_parameter(family):
    m = make(family)
    before = dict(m.named_parameters())
    result = widen_stage(m, 1, 15, generator=gen())
    after = dict(m.named_parameters())
    assert list(after) == list(before)  # same names, same order (optimizer groups keep their order)
    grown = {n for n in before if after[n].shape != before[n].shape}
    assert grown and {r.name for r in result.replaced} == grown and len(result.replaced) == len(grown)
    for r in result.replaced:
        assert r.old is before[r.name] and r.new is after[r.name] and isinstance(r.new, torch.nn.Parameter)
        dims = {d for d in range(r.old.dim()) if r.old.shape[d] != r.new.shape[d]}
        assert set(r.index) == dims
        for d, idx in r.index.items():
            assert torch.equal(idx, torch.arange(r.old.shape[d]))
            assert r.new.shape[d] in (15, 60)  # stage and basic inner width, MobileNet hidden (SE: 15)
    assert all(after[n] is before[n] for n in before if n not in grown)
    assert result.new == [] and result.new_params == [r.new for r in result.replaced]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_deepen_keeps_function(family, stage):
    m, x = make(family), inputs()
    before = out(m, x)
    result = deepen_stage(m, stage)
    assert result.modules == [m.stages[stage][-1]] and result.new == list(m.stages[stage][-1].parameters())
    assert m.depths[stage] == DEPTHS[stage] + 1
    assert max_diff(out(m, x), before) < 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_sites_and_grow_dispatch(family):
    m, x = make(family), inputs()
    before = out(m, x)
    assert is_growable(m) and m.head_sites() == []
    assert [s.where for s in m.width_sites()] == ["stage 0 width", "stage 1 width", "stage 2 width"]
    assert [s.index for s in m.depth_sites()] == [0, 1, 2]
    units = {n for n, u in m.named_modules() if isinstance(u, RepUnit)}
    assert {s.index for s in m.branch_sites()} == units and len(m.branch_sites()) == len(units)

    site = m.width_sites()[1]
    r = m.grow(site, {"channels": 3, "generator": gen()})
    assert r.site is site and m.widths[1] == 15
    r = m.grow(m.width_sites()[0], {"width": 10, "source": torch.tensor([1, 2])})
    assert r.details["source"] == [1, 2] and m.widths[0] == 10
    r = m.grow(m.depth_sites()[2])
    assert r.modules == [m.stages[2][-1]]
    site = m.branch_sites()[-1]
    r = m.grow(site, {"kernel": (1, 1), "init": "zero"})
    assert r.modules == [dict(m.named_modules())[site.index].branches[-1]] and r.new
    assert max_diff(out(m, x), before) < 1e-5
    # everything grown so far rebuilds from the spec
    rebuilt = model_from_spec(m.arch_spec())
    rebuilt.load_state_dict(m.state_dict())
    with pytest.raises(ValueError):
        m.grow(Site("heads", 0, "x"))
    with pytest.raises(ValueError):
        m.grow(Site("branch", "fc", "fc"), {"kernel": (1, 1)})


@pytest.mark.parametrize("bad", [{"width": 12}, {"width": 9}, {"width": 14, "source": torch.tensor([0, 12])},
                                 {"width": 14, "source": torch.tensor([0])}])
def test_bad_width_requests_raise(bad):
    m = make("vgg")
    with pytest.raises(ValueError):
        m.grow(m.width_sites()[1], bad)
    assert m.widths == [8, 12, 16]


@pytest.mark.parametrize("family,skippable", [("resnet_bottleneck", False), ("resnet_basic", True),
                                              ("mobilenet", True)])
def test_widen_other_blocks_and_switchable_norms(family, skippable):
    """Bottleneck blocks, and ADN's switchable norms (both norm sets widen): every sub-net kept."""
    m, x = make(family, depths=(2, 2, 1), skippable=skippable), inputs()
    configs = [None, (True, True)] if skippable else [None]
    before = []
    for cfg in configs:
        m.set_skip(cfg)
        before.append(out(m, x))
    widen_stage(m, 0, 13, generator=gen())
    widen_stage(m, 1, 14, generator=gen(1))
    for cfg, b in zip(configs, before):
        m.set_skip(cfg)
        assert max_diff(out(m, x), b) < 1e-5
        if not skippable:  # a skippable model's plain export drops extra branches (not widening's doing)
            assert max_diff(m.deploy()(x), b) < 1e-4
