"""Unit tests for AdaGrow's growth pieces: grow modes, function-preserving growth, initializers, gradients of
zero-initialised blocks, stage/unit choice, and the faithful BN-buffer reset (METHODS.md 1.3, MEASURED.md).

Everything runs on tiny resnet_basic models (1x8x8 input, widths 8/12/16(/20)) on the CPU in seconds."""
import random

import pytest
import torch
import torch.nn.functional as F

from growth.blocks import RepUnit
from growth.blocks.repunit import odd_kernels_up_to
from growth.errors import ConfigError
from growth.grow import modes
from growth.grow.init import INITIALIZERS, PRESERVING, initialize, normalize
from growth.grow.policy import candidate_stages, choose_stage, rank_units, unit_saliency
from growth.methods.adagrow import _reset_bn_stats_like_original
from growth.models import create_model
from tests.conftest import grow_ctx, max_diff, out

WIDTHS = {3: [8, 12, 16], 4: [8, 12, 16, 20]}


# ---- helpers ---------------------------------------------------------------------------------------

def make(depths, downstream_act=True):
    return create_model("resnet_basic", depths=list(depths), widths=WIDTHS[len(depths)], in_chans=1,
                        num_classes=10, downstream_act=downstream_act)


def units(model):
    return [m for m in model.modules() if isinstance(m, RepUnit)]


def bns(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@torch.no_grad()
def make_nontrivial(model, gen, batches=3):
    """Random BN affine params and running stats, an O(1) classifier (the default N(0, 0.001) one would make
    every output difference tiny), then a few train-mode batches so running stats are real. Leaves eval."""
    for bn in bns(model):
        bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.3)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.momentum = 0.3
    model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=gen) * 0.5)
    model.train()
    for _ in range(batches):
        model(torch.randn(16, 1, 8, 8, generator=gen))
    for bn in bns(model):
        bn.momentum = 0.1
    model.eval()


def random_arch(seed):
    rng = random.Random(seed)
    return rng, [rng.randint(0, 2) for _ in range(rng.choice([3, 4]))]


# ---- 1. grow modes ---------------------------------------------------------------------------------

FAITHFUL_SEQ = {  # METHODS.md 1.3 table / growth/grow/modes.py docstring, k = 0..7
    "width-depth": "DWDWDWDW",
    "width-width-depth": "DWWDWWDW",
    "width-width-width-depth": "DWWWDWWW",
    "width-depth-depth": "WDDWDDWD",
    "width-depth-depth-depth": "WDDDWDDD",
    "depth": "DDDDDDDD",
    "width": "WWWWWWWW",
}
FIXED_SEQ = {  # the name read literally, cycling
    "width-depth": "WDWDWDWD",
    "width-width-depth": "WWDWWDWW",
    "width-width-width-depth": "WWWDWWWD",
    "width-depth-depth": "WDDWDDWD",
    "width-depth-depth-depth": "WDDDWDDD",
    "depth": "DDDDDDDD",
    "width": "WWWWWWWW",
}


def _letters(seq):
    return "".join({"depth": "D", "width": "W"}[s] for s in seq)


def test_every_mode_is_covered():
    assert set(modes.MODES) == set(FAITHFUL_SEQ) == set(FIXED_SEQ)


@pytest.mark.parametrize("mode", modes.MODES)
def test_grow_mode_sequences(mode):
    assert _letters(modes.sequence(mode, 8, faithful=True)) == FAITHFUL_SEQ[mode]
    assert _letters(modes.sequence(mode, 8, faithful=False)) == FIXED_SEQ[mode]
    assert _letters(modes.sequence(mode, 8)) == FIXED_SEQ[mode]  # fixed is the default
    assert modes.sequence(mode, 0, True) == []


@pytest.mark.parametrize("bad", ["bogus", "depth-width", "width_depth", ""])
@pytest.mark.parametrize("faithful", [False, True])
def test_unknown_grow_mode(bad, faithful):
    with pytest.raises(ConfigError) as e:
        modes.sequence(bad, 3, faithful)
    assert e.value.key == "grow_mode" and "grow_mode" in str(e.value)
    with pytest.raises(ConfigError):
        modes.growth_kind(bad, 0, faithful)


# ---- 2. function preservation on random archs --------------------------------------------------------

@pytest.mark.parametrize("faithful_zero", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_zero_depth_growth_preserves_function(seed, faithful_zero):
    rng, depths = random_arch(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make(depths)
    make_nontrivial(model, gen)
    x = torch.randn(8, 1, 8, 8, generator=gen)
    ref = out(model, x)
    assert ref.abs().max().item() > 0.1  # outputs are O(1), so < 1e-5 below means something
    stages = list(range(len(depths)))
    rng.shuffle(stages)
    for stage in stages + [rng.randrange(len(depths))]:
        n_before = len(model.stages[stage])
        block = model.grow_depth(stage)
        assert model.stages[stage][-1] is block and model.depths[stage] == n_before + 1
        initialize(block, "zero", 0.2, faithful_zero=faithful_zero)
        assert max_diff(out(model, x), ref) < 1e-5, (depths, stage, n_before)
    deployed = model.deploy()
    assert max_diff(deployed(x), ref) < 1e-4


def test_random_archs_include_empty_stages():
    """The random archs above do grow into empty stages (0 blocks), including a stage >= 1."""
    assert any(d[i] == 0 for s in range(6) for d in [random_arch(s)[1]] for i in range(1, len(d)))


def test_depth_growth_into_empty_stage_needs_downstream_act():
    """With the original's activation-free downstream, the block input may be negative, so relu(x + 0) != x."""
    gen = torch.Generator().manual_seed(0)
    model = make([1, 0, 1], downstream_act=False)
    make_nontrivial(model, gen)
    x = torch.randn(8, 1, 8, 8, generator=gen)
    ref = out(model, x)
    initialize(model.grow_depth(0), "zero", 0.2)  # stage 0: input is relu(stem) >= 0
    assert max_diff(out(model, x), ref) < 1e-5
    initialize(model.grow_depth(1), "zero", 0.2)  # empty stage 1: input is the raw downstream output
    assert max_diff(out(model, x), ref) > 1e-3


@pytest.mark.parametrize("faithful_zero", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_zero_width_growth_preserves_function(seed, faithful_zero):
    rng, depths = random_arch(100 + seed)
    gen = torch.Generator().manual_seed(seed)
    model = make(depths)
    make_nontrivial(model, gen)
    x = torch.randn(8, 1, 8, 8, generator=gen)
    ref = out(model, x)
    all_units = units(model)
    for _round in range(2):
        for unit in rng.sample(all_units, rng.randint(1, len(all_units))):
            kernel = rng.choice(odd_kernels_up_to(unit.base_kernel))
            n = len(unit.branches)
            branch = unit.add_branch(kernel)
            assert len(unit.branches) == n + 1 and branch.kernel == kernel
            initialize(branch, "zero", 0.2, faithful_zero=faithful_zero)
            assert max_diff(out(model, x), ref) < 1e-5, (depths, kernel)
    # then depth growth on top, and the fused model still computes the same function
    for _ in range(2):
        initialize(model.grow_depth(rng.randrange(len(depths))), "zero", 0.2, faithful_zero=faithful_zero)
    assert max_diff(out(model, x), ref) < 1e-5
    # the widened units now have non-trivial extra branches: give them real stats, then compare with deploy
    make_nontrivial(model, gen)
    now = out(model, x)
    assert max_diff(model.deploy()(x), now) < 1e-4


# ---- 3. initializers --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(INITIALIZERS) + ["global-fitting", "local-fitting"])
def test_initializers_run_on_new_block(name):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = make([1, 1, 1])
    make_nontrivial(model, gen)
    x = torch.randn(8, 1, 8, 8, generator=gen)
    ref = out(model, x)
    reference = list(model.parameters())
    block = model.grow_depth(1)
    initialize(block, name, 0.2, reference=reference)
    change = max_diff(out(model, x), ref)
    if normalize(name) in PRESERVING:
        assert change < 1e-5
    else:  # gaussian, uniform, fitting and the default init all move the output
        assert change > 1e-3, name


def test_zero_is_the_only_preserving_initializer():
    assert PRESERVING == ("zero",)
    assert normalize("global-fitting") == "global_fitting" and normalize("local-fitting") == "local_fitting"
    for name in INITIALIZERS:
        assert normalize(name) == name


@pytest.mark.parametrize("bad", ["bogus", "Gaussian", "zeros", ""])
def test_unknown_initializer(bad):
    with pytest.raises(ConfigError) as e:
        normalize(bad)
    assert e.value.key == "initializer" and "initializer" in str(e.value)
    with pytest.raises(ConfigError):
        initialize(torch.nn.Linear(2, 2), bad, 0.2)


def _big():
    return torch.nn.Linear(400, 250)  # 100,250 parameters


def _flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_gaussian_and_uniform_statistics():
    torch.manual_seed(0)
    m = _big()
    initialize(m, "gaussian", 0.2)
    v = _flat(m)
    assert abs(v.std().item() - 0.2) < 0.005 and abs(v.mean().item()) < 0.005
    initialize(m, "gaussian", 0.05)
    assert abs(_flat(m).std().item() - 0.05) < 0.002
    initialize(m, "uniform", 0.2)
    v = _flat(m)
    assert v.abs().max().item() <= 0.2 and v.abs().max().item() > 0.199
    assert abs(v.std().item() - 0.2 / 3 ** 0.5) < 0.005


@pytest.mark.parametrize("name", ["global_fitting", "local_fitting", "global-fitting"])
def test_fitting_matches_reference_statistics(name):
    gen = torch.Generator().manual_seed(0)
    reference = [torch.randn(300, 200, generator=gen) * 0.7 + 1.5, torch.randn(5000, generator=gen) * 0.7 + 1.5]
    m = _big()
    initialize(m, name, 0.2, reference=reference)
    v = _flat(m)
    ref = torch.cat([r.flatten() for r in reference])
    assert abs(v.mean().item() - ref.mean().item()) < 0.01
    assert abs(v.std().item() - ref.std().item()) < 0.01
    # without a reference it falls back to N(0, meta^2), as the original does
    for empty in (None, []):
        initialize(m, name, 0.2, reference=empty)
        v = _flat(m)
        assert abs(v.mean().item()) < 0.005 and abs(v.std().item() - 0.2) < 0.005


def test_original_and_adam_keep_default_init():
    torch.manual_seed(0)
    model = make([0, 0, 0])
    block = model.grow_depth(0)
    before = [p.detach().clone() for p in block.parameters()]
    for name in ("original", "adam"):
        initialize(block, name, 0.2)
        assert all(torch.equal(a, b) for a, b in zip(before, block.parameters()))


def test_zero_init_variants_touch_what_they_say():
    torch.manual_seed(0)
    model = make([0, 0, 0])
    block = model.grow_depth(0)
    initialize(block, "zero", 0.2)  # fixed: only the last BN (ru2's) gets gamma = beta = 0
    assert block.ru1.branches[0].conv.weight.abs().sum() > 0
    assert torch.equal(block.ru1.branches[0].bn.weight, torch.ones(8))
    assert block.ru2.branches[0].conv.weight.abs().sum() > 0
    assert block.ru2.branches[0].bn.weight.abs().sum() == 0 and block.ru2.branches[0].bn.bias.abs().sum() == 0
    initialize(block, "zero", 0.2, faithful_zero=True)  # faithful: every tensor 0
    assert all(p.abs().sum() == 0 for p in block.parameters())


# ---- 4. gradients after zero-init depth growth ----------------------------------------------------------

def _train_steps(model, block, steps, seed=0):
    """Plain SGD (lr 0.1) on the whole model, train mode, CE loss on random data; the new block's grads per step."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    grads = []
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grads.append({n: p.grad.detach().clone() for n, p in block.named_parameters()})
        opt.step()
    return grads


def test_fixed_zero_init_block_learns():
    torch.manual_seed(0)
    model = make([1, 1, 1])
    block = model.grow_depth(1)
    initialize(block, "zero", 0.2)
    g1, g2 = _train_steps(model, block, 2)
    # step 1: the zeroed last BN gets gradient, everything before it is gated by its gamma = 0
    assert g1["ru2.branches.0.bn.weight"].abs().max() > 0 and g1["ru2.branches.0.bn.bias"].abs().max() > 0
    assert g1["ru1.branches.0.conv.weight"].abs().max() == 0
    # step 2: every weight and BN parameter of the new block has a non-zero gradient. (They are small,
    # ~1e-8 for ru1, because ru2's gamma has only moved by lr * 1e-4 so far, but clearly above rounding.)
    for name, g in g2.items():
        if name.endswith("conv.bias"):
            continue
        assert g.abs().max().item() > 1e-11, name
        assert (g != 0).float().mean().item() > 0.5, name  # most entries, not one stray element
    # Conv biases feed straight into a train-mode BN, which subtracts the batch mean: their gradient is
    # mathematically 0. Numerically it is float rounding (~5e-15 here), at least 1e4 times below the
    # gradient of the same conv's weight.
    for unit in ("ru1", "ru2"):
        gb = g2[f"{unit}.branches.0.conv.bias"].abs().max().item()
        gw = g2[f"{unit}.branches.0.conv.weight"].abs().max().item()
        assert gb < 1e-4 * gw, (unit, gb, gw)


def test_faithful_zero_init_block_is_dead():
    torch.manual_seed(0)
    model = make([1, 1, 1])
    block = model.grow_depth(1)
    initialize(block, "zero", 0.2, faithful_zero=True)
    grads = _train_steps(model, block, 4)
    for step, g in enumerate(grads):
        live = {n for n, v in g.items() if v.abs().max().item() > 0}
        assert live == {"ru2.branches.0.bn.bias"}, (step, live)  # only the last BN's beta learns
        for n, v in g.items():
            if n.endswith("conv.weight") or n.endswith("bn.weight"):
                assert torch.equal(v, torch.zeros_like(v)), (step, n)
    # ... so after training the conv weights and gammas are still exactly zero (the original's dead block)
    for n, p in block.named_parameters():
        if n != "ru2.branches.0.bn.bias":
            assert p.abs().sum().item() == 0, n
    assert block.ru2.branches[0].bn.bias.abs().sum().item() > 0


# ---- 5. stage choice ---------------------------------------------------------------------------------

def test_candidate_stages():
    assert candidate_stages([0, 0, 0], [1, 1, 1], None) == [0, 1, 2]
    assert candidate_stages([0, 0, 0], [1, 1, 1], 1) == [0, 2]  # last grown stage left out
    assert candidate_stages([1, 0, 0], [1, 1, 1], None) == [1, 2]  # at max left out
    assert candidate_stages([1, 0, 2], [1, 2, 2], 1) == [1]  # last grown, but the only candidate
    assert candidate_stages([1, 2, 2], [1, 2, 2], 0) == []
    assert candidate_stages([0, 0, 0, 0], [2, 2, 2, 2], 3) == [0, 1, 2]


def _set_gamma(bn_list, value):
    with torch.no_grad():
        for bn in bn_list:
            bn.weight.fill_(value)


def test_choose_stage_faithful_reads_stem_bn():
    model = make([0, 0, 0])
    stem_bn = model.stem[0].bn
    _set_gamma([stem_bn], 1.2)
    _set_gamma(bns(model.downs), 5.0)  # live downstream BNs do not matter to the faithful probe
    stage, scores = choose_stage(model, [2, 2, 2], None, faithful=True)
    assert stage == 0 and scores[0] == pytest.approx(1.2) and scores[1] == scores[2] == 1.0
    _set_gamma([stem_bn], 0.9)
    assert choose_stage(model, [2, 2, 2], None, True)[0] == 1  # lowest-index candidate >= 1
    assert choose_stage(model, [2, 2, 2], 1, True)[0] == 2  # stage 1 grown last
    assert choose_stage(model, [2, 0, 2], None, True)[0] == 2  # stage 1 at max
    _set_gamma([stem_bn], 1.2)
    assert choose_stage(model, [2, 2, 2], 0, True)[0] == 1  # stage 0 grown last
    assert choose_stage(model, [2, 0, 0], 0, True)[0] == 0  # ... unless it is the only candidate
    # mean gamma, not max: one large channel does not make the mean exceed 1
    with torch.no_grad():
        stem_bn.weight.fill_(0.9)
        stem_bn.weight[0] = 1.5
    assert stem_bn.weight.mean().item() < 1 and choose_stage(model, [2, 2, 2], None, True)[0] == 1
    # a fresh model (gamma exactly 1.0) ties with the dead probes; the first maximum (stage 0) wins
    assert choose_stage(make([0, 0, 0]), [2, 2, 2], None, True)[0] == 0


def test_choose_stage_fixed_reads_live_bns():
    model = make([1, 0, 1])
    _set_gamma([model.stem[0].bn], 1.5)
    _set_gamma(bns(model.downs[0]), 0.7)
    _set_gamma(bns(model.downs[1]), -2.0)  # negative scales count by magnitude
    stage, scores = choose_stage(model, [2, 2, 2], None, faithful=False)
    assert stage == 2
    assert scores == pytest.approx({0: 1.5, 1: 0.7, 2: 2.0})
    # the faithful probe picks differently on the same model
    assert choose_stage(model, [2, 2, 2], None, faithful=True)[0] == 0
    # the downstream unit's extra branches count too (mean over all its branch BNs)
    branch = model.downs[0].unit.add_branch((1, 3))
    _set_gamma([branch.bn], 5.0)  # unit 1 mean |gamma| = (0.7 + 5.0) / 2
    stage, scores = choose_stage(model, [2, 2, 2], None, faithful=False)
    assert stage == 1 and scores[1] == pytest.approx(2.85)
    assert choose_stage(model, [2, 2, 2], 1, faithful=False)[0] == 2  # stage 1 grown last


# ---- 6. unit ranking ---------------------------------------------------------------------------------

@pytest.mark.parametrize("depths,n_units,n_chosen", [
    ([0, 0, 0], 2, 0), ([0, 0, 0, 0], 3, 0), ([1, 0, 0], 4, 1), ([1, 0, 0, 0], 5, 1), ([1, 1, 0], 6, 1),
    ([1, 1, 1], 8, 2), ([2, 1, 1], 10, 3)])
def test_rank_units_count(depths, n_units, n_chosen):
    model = make(depths)
    assert len(units(model)) == n_units
    for faithful in (False, True):
        chosen = rank_units(model, 0.3, faithful)
        assert len(chosen) == n_chosen
        assert all(isinstance(u, RepUnit) for _, u, _ in chosen)
    assert len(rank_units(model, 1.0, False)) == n_units


def test_rank_units_ties_keep_module_order():
    model = make([1, 1, 1])
    names = [n for n, m in model.named_modules() if isinstance(m, RepUnit)]
    assert [n for n, _, _ in rank_units(model, 1.0, False)] == names  # all gammas 1.0
    assert [n for n, _, _ in rank_units(model, 0.3, True)] == names[:2]
    # raise two later units to the same value: they come first, in module order
    modules = dict(model.named_modules())
    for n in (names[6], names[3]):
        _set_gamma(bns(modules[n]), 2.0)
    ranked = [n for n, _, _ in rank_units(model, 1.0, False)]
    assert ranked == [names[3], names[6]] + [n for i, n in enumerate(names) if i not in (3, 6)]


def test_rank_units_signed_vs_abs():
    model = make([1, 1, 0])  # 6 units, ratio 0.3 -> 1 chosen
    names = [n for n, m in model.named_modules() if isinstance(m, RepUnit)]
    unit = dict(model.named_modules())[names[4]]
    _set_gamma(bns(unit), -3.0)
    assert unit_saliency(unit, faithful=True) == pytest.approx(-3.0)
    assert unit_saliency(unit, faithful=False) == pytest.approx(3.0)
    assert [n for n, _, _ in rank_units(model, 0.3, False)] == [names[4]]  # fixed: most salient
    assert [n for n, _, _ in rank_units(model, 0.3, True)] == [names[0]]  # faithful: ...
    assert [n for n, _, _ in rank_units(model, 1.0, True)][-1] == names[4]  # ... it ranks last
    # saliency is the mean over branches of each branch BN's mean gamma
    branch = unit.add_branch((1, 1))
    with torch.no_grad():
        branch.bn.weight.copy_(torch.linspace(0.0, 2.0, branch.bn.num_features))  # mean 1.0
    assert unit_saliency(unit, faithful=True) == pytest.approx((-3.0 + 1.0) / 2)
    assert unit_saliency(unit, faithful=False) == pytest.approx((3.0 + 1.0) / 2)
    scores = {n: s for n, _, s in rank_units(model, 1.0, False)}
    assert scores[names[4]] == pytest.approx(2.0) and scores[names[0]] == pytest.approx(1.0)


# ---- 7. faithful BN-buffer reset ---------------------------------------------------------------------

@pytest.mark.parametrize("faithful_zero", [False, True])
def test_faithful_buffer_reset(faithful_zero):
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = make([1, 1, 1])
    widened = [u for u in units(model)][::3]  # a few units, downstream ones included
    for u in widened:
        initialize(u.add_branch((1, 3)), "zero", 0.2, faithful_zero=faithful_zero)
    make_nontrivial(model, gen)  # every BN, the new branches' included, now has non-trivial running stats
    x = torch.randn(8, 1, 8, 8, generator=gen)
    extra = {id(bn): (bn.running_mean.clone(), bn.running_var.clone())
             for u in widened for b in u.branches[1:] for bn in bns(b)}
    assert extra and all(not torch.equal(m, torch.zeros_like(m)) for m, _ in extra.values())

    block = model.grow_depth(2)
    initialize(block, "zero", 0.2, faithful_zero=faithful_zero)
    with torch.no_grad():
        for bn in bns(block):  # so that keeping the new block's buffers is observable
            bn.running_mean.fill_(0.25)
    ref = out(model, x)
    _reset_bn_stats_like_original(model, exclude=block)
    # the original's eval output moves by 0.49 after a zero-init depth growth (docs/reference_numbers.md,
    # "AdaGrow growth behaviour")
    assert max_diff(out(model, x), ref) > 1e-2

    for bn in bns(model):
        if id(bn) in extra:  # branches moved by reference keep their stats
            mean, var = extra[id(bn)]
            assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    for bn in bns(block):
        assert torch.equal(bn.running_mean, torch.full_like(bn.running_mean, 0.25))
    others = [bn for u in units(model) if not any(u is v for v in units(block)) for bn in bns(u.branches[0])]
    others.append(model.stem[0].bn)
    assert len(others) == 9
    for bn in others:  # everything else restarts at mean 0 / var 1
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))


# ---- 8. what the fitting initializers fit to, as AdaGrow calls them ------------------------------------

def _adagrow(init, variant="fixed", **switches):
    from growth.methods.adagrow import AdaGrow
    ada = AdaGrow({"method": {"variant": variant, **switches}, "grow_mode": {"name": "width-depth"},
                   "initializer": {"name": init, "meta": 0.2}, "grow": {"width_ratio": 1.0},
                   "model": {"max_arch": "3-3-3"}, "seed": 0})
    ada.max_arch = [4, 4, 4]
    return ada


def _record_references(monkeypatch):
    import growth.methods.adagrow as adagrow_mod
    calls, real = [], adagrow_mod.initialize

    def spy(module, name, meta, **kw):
        calls.append((module, None if kw.get("reference") is None else {id(p) for p in kw["reference"]}))
        return real(module, name, meta, **kw)
    monkeypatch.setattr(adagrow_mod, "initialize", spy)
    return calls


@pytest.mark.parametrize("variant", ["fixed", "faithful"])
def test_width_growth_fits_to_the_old_network(monkeypatch, variant):
    """The original fits every new branch to the network before this growth event (it deep-copies the net
    and reads the old one): branches added earlier in the same event must not enter the statistics."""
    calls = _record_references(monkeypatch)
    model = make([1, 1, 0])
    old = {id(p) for p in model.parameters()}
    old_unit = {id(u): {id(p) for p in u.parameters()} for u in units(model)}
    detail = _adagrow("global_fitting", variant).grow_width(grow_ctx(model))
    assert len(calls) == len(detail["where"]) == 6
    assert all(ref == old for _, ref in calls)
    calls.clear()
    _adagrow("local_fitting", variant).grow_width(grow_ctx(model))
    assert len(calls) == 6
    for branch, ref in calls:  # the same unit's branches as they were (one added by the previous event)
        unit = next(u for u in units(model) if u.branches[-1] is branch)
        assert ref == {id(p) for b in unit.branches[:-1] for p in b.parameters()}
        assert old_unit[id(unit)] < ref


@pytest.mark.parametrize("variant,switches,offset", [("fixed", {}, 1), ("faithful", {}, 2),
                                                     ("fixed", {"local_neighbour": "faithful"}, 2),
                                                     ("faithful", {"local_neighbour": "fixed"}, 1)])
def test_depth_growth_fits_to_the_old_network(monkeypatch, variant, switches, offset):
    """global: all old parameters; local: the last old block of the stage (the original: block len-2,
    its own switch `local_neighbour`)."""
    calls = _record_references(monkeypatch)
    model = make([1, 2, 0])
    old = {id(p) for p in model.parameters()}
    with torch.no_grad():
        model.stem[0].bn.weight.fill_(0.5)  # faithful saliency: stage 1 wins over stage 0
        for bn in bns(model.downs[0]):
            bn.weight.fill_(3.0)  # fixed saliency: stage 1 wins
    ada = _adagrow("global_fitting", variant)
    assert ada.grow_depth(grow_ctx(model))["stage"] == 1
    assert len(calls) == 1 and calls[0][0] is model.stages[1][-1] and calls[0][1] == old
    calls.clear()
    ada = _adagrow("local_fitting", variant, **switches)
    ada.last_stage = 0
    assert ada.grow_depth(grow_ctx(model))["stage"] == 1  # stage 1 now holds 3 old blocks
    assert calls[0][1] == {id(p) for p in model.stages[1][3 - offset].parameters()}
