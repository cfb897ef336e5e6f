"""Optimizer surgery when growth replaces a tensor by a larger one (growth/engine/optim.replace_params).

A small MLP (4 -> 3 -> 2) trains a few steps, then its hidden layer is widened to 5 by new tensors whose
old slice holds the old values. Every check is bit-exact: the moved state (old slice = old state, the
rest zero, Adam's step kept), the groups (same hyperparameters, same positions), the next step (the old
slice moves exactly as the old model would, the new entries exactly as computed by hand), a resume from
state_dict() into an optimizer rebuilt from scratch, and 2 gloo ranks under DDP."""
import copy

import pytest
import torch
from torch import nn

from growth.engine.dist import DistInfo, wrap
from growth.engine.optim import add_params, build_optimizer, group_param_names, replace_params, restore_group_order
from growth.models.growable import Replaced

CFGS = {
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.05},
    "nesterov": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05},
    "adamw": {"name": "adamw", "lr": 0.01, "weight_decay": 0.05},
}
MAPS = {"arange": [0, 1, 2], "spread": [0, 2, 4], "shuffled": [3, 0, 4]}  # old hidden unit -> new position
HIDDEN, WIDE = 3, 5


def _mlp(hidden=HIDDEN, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 2))


def _batch(seed=1, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randn(n, 2, generator=g)


def _train(model, opt, steps, seed=1, call=None):
    for s in range(steps):
        x, y = _batch(seed + s)
        opt.zero_grad()
        nn.functional.mse_loss((call or model)(x), y).backward()
        opt.step()


def _widen(model, where, seed=2) -> list[Replaced]:
    """Hidden layer HIDDEN -> WIDE: new random tensors whose old slice (rows of fc1, columns of fc2) holds
    the old values; put on the model in place of the old ones, as a width-growth method would."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.tensor(where)
    fc1, fc2 = model[0], model[2]
    out = []
    for mod, attr, dim in [(fc1, "weight", 0), (fc1, "bias", 0), (fc2, "weight", 1)]:
        old = getattr(mod, attr)
        shape = list(old.shape)
        shape[dim] = WIDE
        new = torch.randn(shape, generator=g)
        new.index_copy_(dim, idx, old.detach())
        new = nn.Parameter(new)
        setattr(mod, attr, new)
        out.append(Replaced(name=f"{'0' if mod is fc1 else '2'}.{attr}", old=old, new=new, index={dim: idx}))
    return out


def _old_slice(t, r):
    for d, idx in r.index.items():
        t = t.index_select(d, idx)
    return t


def _new_entries(t, r):
    """The entries no old index reaches (one mapped dim here, so the complement of index_fill)."""
    (d, idx), = r.index.items()
    keep = torch.ones(t.shape, dtype=torch.bool).index_fill_(d, idx, False)
    return t[keep]


def _snapshot(opt):
    return {id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in opt.state.items()}


def _hyper(opt):
    return [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]


def _grown(opt_name, where):
    """A model and optimizer trained 3 steps, a reference copy of both, then the widening."""
    cfg = CFGS[opt_name]
    model = _mlp()
    opt = build_optimizer(model, cfg)
    _train(model, opt, 3)
    ref = copy.deepcopy(model)
    ref_opt = build_optimizer(ref, cfg)
    ref_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict may share tensors
    before = _snapshot(opt)
    positions = {id(p): (gi, i) for gi, g in enumerate(opt.param_groups) for i, p in enumerate(g["params"])}
    hyper, names = _hyper(opt), group_param_names(opt, model)
    replaced = _widen(model, where)
    assert replace_params(opt, replaced) == 3
    return cfg, model, opt, ref, ref_opt, before, positions, hyper, names, replaced


@pytest.mark.parametrize("where", MAPS.values(), ids=MAPS.keys())
@pytest.mark.parametrize("opt_name", CFGS)
def test_state_moves_through_the_index_map(opt_name, where):
    cfg, model, opt, ref, ref_opt, before, positions, hyper, names, replaced = _grown(opt_name, where)
    for r in replaced:
        assert r.old not in opt.state and r.new in opt.state
        old_state, new_state = before[id(r.old)], opt.state[r.new]
        assert new_state.keys() == old_state.keys()
        for k, v in new_state.items():
            if k == "step":  # scalar state: kept as is
                was = old_state[k]
                assert torch.equal(v, was) and v.dtype == was.dtype and v.device == was.device
                continue
            assert v.shape == r.new.shape, k
            assert torch.equal(_old_slice(v, r), old_state[k]), k  # old slice: old state, bit for bit
            assert (_new_entries(v, r) == 0).all(), k               # new entries: no history
            assert old_state[k].abs().sum() > 0, k                  # (so the copy really moved something)
    expected_keys = {"step", "exp_avg", "exp_avg_sq"} if opt_name == "adamw" else {"momentum_buffer"}
    assert set(opt.state[replaced[0].new]) == expected_keys
    # Groups: same hyperparameters, same names, the new tensor at the old one's position.
    assert _hyper(opt) == hyper and group_param_names(opt, model) == names
    for r in replaced:
        gi, i = positions[id(r.old)]
        assert opt.param_groups[gi]["params"][i] is r.new
    assert sum(len(g["params"]) for g in opt.param_groups) == 4


@pytest.mark.parametrize("where", MAPS.values(), ids=MAPS.keys())
@pytest.mark.parametrize("opt_name", CFGS)
def test_next_step_matches_the_old_model_and_the_hand_computed_new_entries(opt_name, where):
    """One step with the old model's gradient on the old slice and zero on the new entries: the old slice
    moves exactly as the old model does; a new entry (zero state, zero gradient) moves only by weight
    decay, computed here by hand."""
    cfg, model, opt, ref, ref_opt, *_, replaced = _grown(opt_name, where)
    g = torch.Generator().manual_seed(3)
    grads = {n: torch.randn(p.shape, generator=g) for n, p in ref.named_parameters()}
    by_name = {r.name: r for r in replaced}
    news = {}
    for n, p in ref.named_parameters():
        p.grad = grads[n].clone()
    for n, p in model.named_parameters():
        if n in by_name:
            r = by_name[n]
            (d, idx), = r.index.items()
            p.grad = torch.zeros_like(p).index_copy_(d, idx, grads[n])
            news[n] = _new_entries(p.detach(), r).clone()
        else:
            p.grad = grads[n].clone()
    ref_opt.step()
    opt.step()
    ref_params = dict(ref.named_parameters())
    lr, m = cfg["lr"], cfg.get("momentum", 0.0)
    for n, p in model.named_parameters():
        if n not in by_name:
            assert torch.equal(p, ref_params[n]), n
            continue
        r = by_name[n]
        assert torch.equal(_old_slice(p.detach(), r), ref_params[n].detach()), n
        wd = cfg["weight_decay"] if p.ndim > 1 else 0.0  # biases sit in the no-decay group
        w = news[n]
        if cfg["name"] == "adamw":   # zero moments, zero gradient: update exactly 0; decoupled decay only
            expect = w * (1 - lr * wd)
        else:                        # d = wd*w; buffer = d (it was 0); nesterov adds momentum*buffer
            d = w * wd
            expect = w - lr * (d + m * d if cfg.get("nesterov") else d)
        assert torch.equal(_new_entries(p.detach(), r), expect), n
        if wd == 0:
            assert torch.equal(_new_entries(p.detach(), r), w), n  # no decay: a new entry does not move at all


def _one_sgd_step(*shape):
    """(param, SGD with momentum after one step, a copy of its momentum buffer)."""
    w = nn.Parameter(torch.randn(*shape))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = torch.randn(*shape)
    opt.step()
    return w, opt, opt.state[w]["momentum_buffer"].clone()


def test_index_map_over_two_dims_copies_each_entry_to_its_place():
    """A tensor grown in rows and columns at once (a hidden-to-hidden weight), checked entry by entry."""
    w, opt, buf = _one_sgd_step(3, 3)
    rows, cols = [0, 2, 4], [3, 1, 2]
    new = nn.Parameter(torch.randn(5, 4))
    assert replace_params(opt, [Replaced("w", w, new, {0: torch.tensor(rows), 1: torch.tensor(cols)})]) == 1
    grown = opt.state[new]["momentum_buffer"]
    hit = {(rows[i], cols[j]): buf[i, j] for i in range(3) for j in range(3)}
    for a in range(5):
        for b in range(4):
            assert grown[a, b] == hit.get((a, b), 0.0), (a, b)
    assert opt.param_groups[0]["params"] == [new]


def test_a_tensor_without_state_gets_none_and_steps():
    model = _mlp()
    opt = build_optimizer(model, CFGS["adamw"])
    replaced = _widen(model, MAPS["spread"])
    assert replace_params(opt, replaced) == 3 and len(opt.state) == 0
    _train(model, opt, 1)
    assert opt.state[replaced[0].new]["exp_avg"].shape == (WIDE, 4)


def test_add_params_after_a_replacement_adds_only_what_is_new():
    cfg = CFGS["sgd"]
    model = _mlp()
    opt = build_optimizer(model, cfg)
    _train(model, opt, 1)
    replace_params(opt, _widen(model, MAPS["spread"]))
    assert add_params(opt, model.named_parameters(), cfg) == 0  # the replacements are already known
    model.append(nn.Linear(2, 2))
    assert add_params(opt, model.named_parameters(), cfg) == 2
    assert group_param_names(opt, model) == [["0.weight", "2.weight", "3.weight"], ["0.bias", "2.bias", "3.bias"]]
    _train(model, opt, 1)


def _one(model, where=None, **over):
    """A single Replaced for fc1.weight (3, 4) -> (5, 4), optionally with a broken field."""
    old = model[0].weight
    r = Replaced("0.weight", old, nn.Parameter(torch.zeros(WIDE, 4)), {0: torch.tensor(where or [0, 2, 4])})
    for k, v in over.items():
        setattr(r, k, v)
    return r


@pytest.mark.parametrize("broken, message", [
    (dict(old=nn.Parameter(torch.zeros(3, 4))), "not in the optimizer"),
    (dict(index={0: torch.tensor([0, 1])}), "needs length 3"),
    (dict(index={0: torch.tensor([0, 2, 5])}), "goes outside 0..4"),
    (dict(index={0: torch.tensor([-1, 2, 4])}), "goes outside 0..4"),
    (dict(index={0: torch.tensor([0, 2, 2])}), "two old entries to one place"),
    (dict(index={0: torch.tensor([0.0, 2.0, 4.0])}), "dtype"),
    (dict(index={0: [0, 2, 4]}), "needs a LongTensor"),
    (dict(index={}), "dim 0 changed size"),
    (dict(index={0: torch.tensor([0, 2, 4]), 2: torch.tensor([0])}), "dim 2 of a 2-d"),
    (dict(new=nn.Parameter(torch.zeros(5, 4, 1))), "changes the rank"),
], ids=["not-in-optimizer", "short-map", "past-end", "negative", "duplicate", "float-map", "list-map",
        "no-map", "bad-dim", "rank"])
def test_a_bad_replacement_is_refused_and_changes_nothing(broken, message):
    model = _mlp()
    opt = build_optimizer(model, CFGS["sgd"])
    _train(model, opt, 1)
    params, state = [list(g["params"]) for g in opt.param_groups], _snapshot(opt)
    good = Replaced("2.weight", model[2].weight, nn.Parameter(torch.zeros(2, WIDE)), {1: torch.tensor([0, 1, 2])})
    with pytest.raises(ValueError, match=message):
        replace_params(opt, [good, _one(model, **broken)])  # the good one first: it must not be applied
    assert [list(g["params"]) for g in opt.param_groups] == params
    assert all(torch.equal(opt.state[p]["momentum_buffer"], state[id(p)]["momentum_buffer"])
               for g in opt.param_groups for p in g["params"])


def test_a_new_tensor_already_added_is_refused():
    cfg = CFGS["sgd"]
    model = _mlp()
    opt = build_optimizer(model, cfg)
    r = _one(model)
    add_params(opt, [("0.weight", r.new)], cfg)
    with pytest.raises(ValueError, match="already in the optimizer"):
        replace_params(opt, [r])
    with pytest.raises(ValueError, match="replaced twice"):
        replace_params(opt, [_one(model), _one(model)])


@pytest.mark.parametrize("opt_name", CFGS)
def test_resume_after_surgery_into_an_optimizer_rebuilt_from_scratch(opt_name):
    """state_dict() taken right after surgery loads into a fresh optimizer over a widened model built
    from scratch (same names), and the next steps match bit for bit."""
    cfg = CFGS[opt_name]
    model = _mlp()
    opt = build_optimizer(model, cfg)
    _train(model, opt, 3)
    replace_params(opt, _widen(model, MAPS["shuffled"]))
    saved, names = copy.deepcopy(opt.state_dict()), group_param_names(opt, model)
    weights = copy.deepcopy(model.state_dict())

    fresh = _mlp(hidden=WIDE, seed=7)
    fresh.load_state_dict(weights)
    fresh_opt = build_optimizer(fresh, cfg)
    restore_group_order(fresh_opt, fresh, names)
    fresh_opt.load_state_dict(saved)
    assert fresh_opt.state[fresh[0].weight].keys() == opt.state[model[0].weight].keys()
    _train(model, opt, 2, seed=10)
    _train(fresh, fresh_opt, 2, seed=10)
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), n
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert a.keys() == b.keys()
    for i in a:
        for k in a[i]:
            assert torch.equal(a[i][k], b[i][k]), (i, k)
            assert a[i][k].dtype == b[i][k].dtype, (i, k)


# --- 2 gloo ranks ------------------------------------------------------------------------------------

DDP_STEPS = (2, 2)  # before and after the widening


def _half(x, rank):
    return x[rank * 4:(rank + 1) * 4]


def _ddp_rank(rank, init_file, out_dir):
    """One of 2 ranks: DDP, train, widen on every rank the same way, re-wrap, train; save the result."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    info = DistInfo(rank=rank, world=2)
    try:
        for opt_name in ("nesterov", "adamw"):
            model = _mlp()
            opt = build_optimizer(model, CFGS[opt_name])
            ddp = wrap(model, info, torch.device("cpu"))
            for s in range(DDP_STEPS[0]):
                _ddp_step(ddp, opt, s, rank)
            replace_params(opt, _widen(model, MAPS["spread"]))
            del ddp  # the old wrapper holds the old tensors; the new one broadcasts rank 0's new tensors
            ddp = wrap(model, info, torch.device("cpu"))
            for s in range(DDP_STEPS[1]):
                _ddp_step(ddp, opt, DDP_STEPS[0] + s, rank)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, out_dir / f"{opt_name}{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _ddp_step(ddp, opt, s, rank):
    x, y = _batch(20 + s)
    opt.zero_grad()
    nn.functional.mse_loss(ddp(_half(x, rank)), _half(y, rank)).backward()
    opt.step()


def _reference_step(model, opt, s, whole):
    """What DDP computes: the mean of the two ranks' gradients (each halved, then summed), or, `whole`,
    the gradient of the loss on the concatenated batch (equal up to rounding)."""
    x, y = _batch(20 + s)
    opt.zero_grad()
    if whole:
        nn.functional.mse_loss(model(x), y).backward()
    else:
        params = list(model.parameters())
        g0, g1 = [torch.autograd.grad(nn.functional.mse_loss(model(_half(x, r)), _half(y, r)), params)
                  for r in (0, 1)]
        for p, a, b in zip(params, g0, g1):
            p.grad = a / 2 + b / 2
    opt.step()


def _reference(opt_name, whole):
    model = _mlp()
    opt = build_optimizer(model, CFGS[opt_name])
    for s in range(DDP_STEPS[0]):
        _reference_step(model, opt, s, whole)
    replace_params(opt, _widen(model, MAPS["spread"]))
    for s in range(DDP_STEPS[1]):
        _reference_step(model, opt, DDP_STEPS[0] + s, whole)
    return {"model": model.state_dict(), "opt": opt.state_dict()}


def _flat(result):
    out = dict(result["model"])
    for i, s in result["opt"]["state"].items():
        out.update({f"state.{i}.{k}": v for k, v in s.items()})
    return out


@pytest.mark.slow  # two spawned processes: about 10 s
def test_two_gloo_ranks_replace_rewrap_and_stay_identical(tmp_path):
    torch.multiprocessing.spawn(_ddp_rank, args=(tmp_path / "init", tmp_path), nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the ranks, so the reference's sums run in the same order
    try:
        for opt_name in ("nesterov", "adamw"):
            r0, r1 = (_flat(torch.load(tmp_path / f"{opt_name}{r}.pt")) for r in (0, 1))
            exact, whole = _flat(_reference(opt_name, False)), _flat(_reference(opt_name, True))
            assert r0.keys() == r1.keys() == exact.keys() and len(r0) > 4
            assert r0["0.weight"].shape == (WIDE, 4)
            for k in r0:
                assert torch.equal(r0[k], r1[k]), (opt_name, k)      # both ranks bit-identical
                assert torch.equal(r0[k], exact[k]), (opt_name, k)   # = one process averaging the halves
                torch.testing.assert_close(r0[k], whole[k], rtol=1e-5, atol=1e-6)  # = the whole batch
    finally:
        torch.set_num_threads(threads)


def test_a_tensor_grown_twice_in_one_hook_moves_its_state_through_both_maps():
    """rows 3 -> 5 (old rows at 0, 2, 4), then columns 4 -> 6 (old columns at 1, 2, 3, 5): one chain."""
    w, opt, buf = _one_sgd_step(3, 4)
    mid, new = nn.Parameter(torch.randn(5, 4)), nn.Parameter(torch.randn(5, 6))
    rows, cols = torch.tensor([0, 2, 4]), torch.tensor([1, 2, 3, 5])
    chain = [Replaced("w", w, mid, {0: rows}), Replaced("w", mid, new, {1: cols})]
    assert replace_params(opt, chain) == 1
    assert opt.param_groups[0]["params"] == [new] and mid not in opt.state
    grown = opt.state[new]["momentum_buffer"]
    expect = torch.zeros(5, 6)
    expect[rows[:, None], cols[None, :]] = buf
    assert torch.equal(grown, expect)
