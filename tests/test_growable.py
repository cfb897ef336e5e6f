"""The growth-site protocol (growth/models/growable.py) on every growable family: each is a `Growable`,
lists sites that match its arch, grows every kind of site it lists into a model that rebuilds exactly from
its spec, keeps its function when the new modules get the 'zero' initializer (AdaGrow's zero init), and
AdaGrow/RandGrow grow only through listed sites.

Tiny models on the CPU with non-trivial parameters (random BN affine maps and running statistics, O(1)
classifiers, perturbed transformer weights), so a growth step that changed the function would show."""
import copy
import functools
import json
import random
from types import SimpleNamespace

import pytest
import torch

from growth.blocks import RepUnit
from growth.grow.init import initialize
from growth.models import create_model, growable_families, model_from_spec
from growth.models.growable import SITE_KINDS, Growable, GrowthResult, Site, sites
from tests.conftest import max_diff, nontrivial_bn, out

CONV = ["resnet_basic", "resnet_bottleneck", "vgg", "mobilenet"]
TRANSFORMERS = ["vit", "bert"]
FAMILIES = CONV + TRANSFORMERS
CONV_DEPTHS = (1, 0, 2)  # an empty stage too: depth growth into it must keep the function


@functools.lru_cache(maxsize=None)
def _built(family):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if family in CONV:
        m = create_model(family, depths=list(CONV_DEPTHS), widths=[8, 12, 16], in_chans=1, num_classes=5,
                         stem_stride=1)
        return nontrivial_bn(m, gen)
    if family == "vit":
        from growth.models.vit import ViT
        m = ViT(depth=2, heads=1, embed_dim=8, head_dim=8, patch_size=4, img_size=8, in_chans=1, num_classes=3)
    else:
        from growth.models.bert import Bert
        m = Bert(depth=2, heads=1, head_dim=8, vocab_size=20, max_len=10, num_classes=3, dropout=0.0)
    with torch.no_grad():  # LayerNorms far from 1/0, weights far from their init
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    return m.eval()


def make(family):
    return copy.deepcopy(_built(family))


def inputs(family):
    gen = torch.Generator().manual_seed(5)
    if family == "bert":
        ids = torch.randint(1, 20, (4, 10), generator=gen)
        ids[0, 7:] = 0  # padding (pad id 0) in one sequence
        return ids
    return torch.randn(4, 1, 8, 8, generator=gen)


def how_for(kind) -> dict:
    """Growth that leaves each new module at its family's default init (no function-preserving init)."""
    return {"depth": {"init": "original"}, "branch": {"kernel": (1, 1)}, "heads": {"n": 1},
            "width": {"channels": 3, "generator": torch.Generator().manual_seed(2)}}[kind]


def all_sites(m) -> list[Site]:
    return m.depth_sites() + m.branch_sites() + m.width_sites() + m.head_sites()


def test_every_growable_family_is_covered_here():
    assert sorted(growable_families()) == sorted(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_is_growable_and_sites_match_the_arch(family):
    m = make(family)
    assert isinstance(m, Growable)
    for kind in SITE_KINDS:
        listed = sites(m, kind)
        assert all(isinstance(s, Site) and s.kind == kind for s in listed)
        assert len({s.index for s in listed}) == len(listed)  # no site twice
    if family in CONV:
        assert [(s.index, s.where) for s in m.depth_sites()] == [(0, "stage 0"), (1, "stage 1"), (2, "stage 2")]
        assert [s.index for s in m.width_sites()] == [0, 1, 2]
        unit_names = [n for n, u in m.named_modules() if isinstance(u, RepUnit)]
        assert [s.index for s in m.branch_sites()] == unit_names and len(unit_names) > 3
        assert m.head_sites() == []
    else:
        # one site per insert position 0..depth; one heads site (all layers); one hidden-size site;
        # FFN width in every layer or in one
        assert [(s.index, s.where) for s in m.depth_sites()] == [(0, "layer 0"), (1, "layer 1"), (2, "layer 2")]
        assert m.head_sites() == [Site("heads", "all", "all layers")]
        assert m.hidden_sites() == [Site("hidden", "all", "hidden size")]
        assert [s.index for s in m.ffn_sites()] == ["all", 0, 1]
        assert m.branch_sites() == [] and m.width_sites() == []


def _kinds(family):
    return ["depth", "branch", "width"] if family in CONV else ["depth", "heads"]


def _check_rebuilds(m, family):
    spec = json.loads(json.dumps(m.arch_spec()))
    rebuilt = model_from_spec(spec)
    rebuilt.load_state_dict(m.state_dict())  # strict: same names and shapes
    assert rebuilt.arch_spec() == spec
    x = inputs(family)
    assert torch.equal(out(rebuilt, x), out(m, x))


@pytest.mark.parametrize("family", FAMILIES)
def test_grow_every_site_kind(family):
    for kind in _kinds(family):
        listed = sites(make(family), kind)
        for site in (listed[0], listed[len(listed) // 2], listed[-1]):
            m = make(family)
            old_ids = {id(p) for p in m.parameters()}
            arch, spec = m.arch_string(), m.arch_spec()
            r = m.grow(site, how_for(kind))
            assert isinstance(r, GrowthResult) and r.site == site
            now = {id(p) for p in m.parameters()}
            assert r.new_params and {id(p) for p in r.new_params} <= now  # in the model
            assert not {id(p) for p in r.new} & old_ids  # new tensors, not old ones
            assert all(id(x.old) not in now for x in r.replaced)  # replaced tensors left the model
            assert all(any(mod is sub for sub in m.modules()) for mod in r.modules)
            assert m.arch_spec() != spec
            if kind in ("depth", "heads"):  # what the arch string describes (conv: stage depths only)
                assert m.arch_string() != arch
            else:
                assert m.arch_string() == arch
            _check_rebuilds(m, family)


@pytest.mark.parametrize("family", TRANSFORMERS)
def test_transformer_sites_grow_where_they_say(family):
    for position in range(3):
        m = make(family)
        old = list(m.blocks)
        block = m.grow(m.depth_sites()[position]).modules[0]
        assert list(m.blocks) == old[:position] + [block] + old[position:] and m.depth == 3
        assert m.arch_string() == "d3h1"
    m = make(family)
    r = m.grow(m.head_sites()[0], {"n": 2})
    assert m.arch_string() == "d2h3" and len(r.modules) == 2
    assert all(b.attn.groups[-1] is g and g.heads == 2 for b, g in zip(m.blocks, r.modules))
    assert r.details == {"heads": 2, "layers": 2}
    for bad in (Site("depth", 3, "layer 3"), Site("depth", -1, "x"), Site("branch", "blocks.0", "x"),
                Site("width", 0, "x")):
        with pytest.raises(ValueError):
            m.grow(bad)


def _preserving_sites(family):
    m = make(family)
    return m.depth_sites() + m.branch_sites() + m.head_sites()  # width growth is Net2Net (tests/test_widen.py)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_init_growth_keeps_the_function(family):
    """AdaGrow's function-preserving init on every site: initialize(module, 'zero') on the new modules."""
    x = inputs(family)
    for site in _preserving_sites(family):
        m = make(family)
        before = out(m, x)
        r = m.grow(site, how_for(site.kind))
        changed = max_diff(out(m, x), before)
        if family == "bert" and site.kind == "depth":
            assert changed == 0.0  # its depth gate starts at 0: kept whatever the layer computes
        else:
            assert changed > 1e-4, site  # the default init changes it: the zero init below does the work
        for module in r.modules:
            initialize(module, "zero", 0.0)
        assert max_diff(out(m, x), before) < 1e-5, site


def test_bert_without_gate_is_not_function_preserving():
    """BERT is post-LayerNorm: an ungated zero-init layer is LN2(LN1(x)), not x (growth/models/bert.py)."""
    m = make("bert")
    m.depth_gate = False
    x = inputs("bert")
    before = out(m, x)
    for module in m.grow(m.depth_sites()[1]).modules:
        initialize(module, "zero", 0.0)
    assert max_diff(out(m, x), before) > 1e-3


# ---- AdaGrow and RandGrow grow through the sites ---------------------------------------------------
def _recording_ctx(model):
    """ctx.grow as RunContext's: records each site and whether the model listed it at that moment."""
    calls = []

    def grow(site, how=None):
        calls.append((site, site in sites(model, site.kind)))
        return model.grow(site, how or {})
    return SimpleNamespace(model=model, grow=grow), calls


def _method(name, family, **method):
    from growth.methods import build_method
    from tests.conftest import tiny_cfg
    cfg = tiny_cfg(**{"method": name, "grow_mode": "width-depth", "grow.width_ratio": 0.5})
    cfg["method"].update(method)
    cfg["model"]["max_arch"] = "4-4-4" if family in CONV else "d5h4"
    ada = build_method(cfg)
    ada.setup(SimpleNamespace(model=make(family)))  # max arch
    return ada


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name,where", [("adagrow", None), ("randgrow", "random"), ("randgrow", "round_robin")])
def test_methods_grow_only_listed_sites(family, name, where):
    method = _method(name, family, **({"where": where} if where else {}))
    m = make(family)
    ctx, calls = _recording_ctx(m)
    event = method.grow_depth(ctx)
    assert len(calls) == 1 and calls[0][1] and calls[0][0].kind == "depth"
    assert event["where"] == calls[0][0].where
    if family in TRANSFORMERS and name == "randgrow" and where == "random":
        assert calls[0][0].index >= 1  # after one of the layers
    calls.clear()
    other = method.grow_width(ctx) if family in CONV else method.grow_heads(ctx)
    assert calls and all(listed for _, listed in calls)
    assert {s.kind for s, _ in calls} == {"branch" if family in CONV else "heads"}
    if family in CONV:
        assert other["where"] == [s.where for s, _ in calls]


def test_randgrow_random_layer_draw_is_randint():
    """RandGrow draws a transformer's insert site with rng.choice over the sites after a layer; that is
    the same draw as the rng.randint(1, depth) it made before sites (checkpointed RNG states agree)."""
    a, b = random.Random(7), random.Random(7)
    for depth in list(range(1, 30)) * 20:
        assert b.choice(list(range(depth + 1))[1:]) == a.randint(1, depth)
    assert a.getstate() == b.getstate()
