"""analysis/growth_methods.py on hand-made run records (cells computed by hand), and
experiments/growth_methods.yaml: every job composes (methods not registered on this branch skip), every
backbone's growing jobs share one start arch and budget, and the budget is the fixed max arch's size."""
import pandas as pd
import pytest
import yaml

from analysis import registry
from analysis.collect import collect
from analysis.growth_methods import COLUMNS, GROWING, growth_methods_table
from growth.engine.record import RunRecord
from growth.methods import METHODS
from growth.sweeps import expand_jobs, load_experiment
from tests.conftest import ROOT

G = 1e9


def fake_run(root, name, method, model, seed, test_acc, deploy_params, curve, **config):
    """A completed run record: config_resolved.yaml, one metrics row per (train_macs_cum, val_acc), summary."""
    record = RunRecord(root / name)
    for epoch, (cum, val) in enumerate(curve, 1):
        record.add_metrics({"epoch": epoch, "phase": "train", "arch": "x", "params": deploy_params,
                            "deploy_params": deploy_params, "macs": 1, "train_loss": 1.0, "train_acc": val,
                            "val_loss": 1.0, "val_acc": val, "lr": 0.1, "epoch_time_s": 1.0,
                            "samples_seen": epoch, "train_macs_cum": cum})
    nested = {"method": {"name": method}, "model": {"name": model}, "seed": seed}
    for key, value in config.items():  # grow_mode__name="depth" -> grow_mode: {name: depth}
        group, field = key.split("__")
        nested.setdefault(group, {})[field] = value
    record.path("config").write_text(yaml.safe_dump(nested))
    record.write_summary({"status": "completed", "method": method, "model": model, "data": "digits",
                          "seed": seed, "variants": {}, "final_val_acc": curve[-1][1], "best_val_acc": curve[-1][1],
                          "test_acc": test_acc, "arch": "x", "params": deploy_params,
                          "deploy_params": deploy_params, "macs": 1, "train_time_s": 1.0,
                          "train_macs_total": curve[-1][0], "device": "cpu", "git_commit": None, "versions": {}})


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # resnet_basic: adagrow (2 seeds), randgrow (1), fixed (2). The cheapest run is adagrow s1: 2 GMACs.
    fake_run(root, "a0", "adagrow", "resnet_basic", 0, 0.90, 1.0e6, [(1 * G, 0.5), (3 * G, 0.7)])
    fake_run(root, "a1", "adagrow", "resnet_basic", 1, 0.92, 1.2e6, [(1 * G, 0.6), (2 * G, 0.8)])
    fake_run(root, "r0", "randgrow", "resnet_basic", 0, 0.85, 0.5e6, [(2.5 * G, 0.8)])
    fake_run(root, "f0", "fixed", "resnet_basic", 0, 0.94, 2.0e6, [(4 * G, 0.9), (8 * G, 0.95)])
    fake_run(root, "f1", "fixed", "resnet_basic", 1, 0.94, 2.0e6, [(1.5 * G, 0.4), (6 * G, 0.96)])
    # gromo_mlp: one TINY run; its budget is its own total.
    fake_run(root, "t0", "tiny", "gromo_mlp", 0, 0.50, 3000, [(1e6, 0.3), (2e6, 0.5)])
    # vgg: adagrow in two grow modes -> two configurations in one cell.
    for mode in ("depth", "width-depth"):
        for seed in (0, 1):
            fake_run(root, f"v_{mode}_{seed}", "adagrow", "vgg", seed, 0.8, 1e5, [(G, 0.8)], grow_mode__name=mode)
    runs, epochs, events = collect(root)
    out = root / "analysis"
    paths = growth_methods_table(runs, epochs, events, out)
    return {p.suffix: p for p in paths}


def rows(md: str) -> list[dict]:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], r)) for r in cells[2:]]


def test_cells_are_mean_std_over_seeds_with_params(table):
    got = {r["backbone"]: r for r in rows(table[".md"].read_text())}
    assert list(got) == ["ResNet (resnet_basic)", "VGG (vgg)", "MLP (gromo_mlp)"]  # the thesis's order
    res = got["ResNet (resnet_basic)"]
    # test acc 90, 92 -> 91 ± sqrt(2) = 1.41; params (1.0 + 1.2) / 2 = 1.10 M
    assert res["AdaGrow"] == "91.00 ± 1.41 (1.10 M)"
    assert res["RandGrow"] == "85.00 (0.500 M)"  # one seed: no ±
    assert res["fixed (max arch)"] == "94.00 ± 0.00 (2.00 M)"
    assert res["SplitGrow"] == res["Net2Net"] == res["TINY"] == res["GradMax"] == "-"
    mlp = got["MLP (gromo_mlp)"]
    assert mlp["TINY"] == "50.00 (0.003 M)" and mlp["AdaGrow"] == mlp["GradMax"] == "-"
    assert got["VGG (vgg)"]["AdaGrow"] == "2 configs"  # two grow modes are not averaged into one cell


def test_equal_cost_columns(table):
    got = {r["backbone"]: r for r in rows(table[".md"].read_text())}
    res, mlp = got["ResNet (resnet_basic)"], got["MLP (gromo_mlp)"]
    cost = lambda name: f"{name}: val acc % at equal cost (training MACs)"
    assert res["equal-cost budget (GMACs)"] == "2.00" and mlp["equal-cost budget (GMACs)"] == "0.002"
    # at 2 G: a0 halfway from 0.5 to 0.7 -> 0.6, a1 at its end 0.8: 70 ± 14.14; totals (3 + 2) / 2 = 2.5 G
    assert res[cost("AdaGrow")] == "70.00 ± 14.14 (2.50 GMACs)"
    # f0's first epoch cost 4 G (no model at 2 G); f1: 0.4 + (0.5 / 4.5) * 0.56 = 0.46222
    assert res[cost("fixed (max arch)")] == "46.22, 1 of 2 runs (7.00 GMACs)"
    assert res[cost("RandGrow")] == "- (2.50 GMACs)"  # its only epoch cost 2.5 G
    assert res[cost("SplitGrow")] == "-"
    assert mlp[cost("TINY")] == "50.00 (0.002 GMACs)"


def test_csv_numbers_and_tex(table):
    csv = pd.read_csv(table[".csv"]).set_index(["backbone", "method"])
    assert len(csv) == 3 * len(COLUMNS)  # every backbone x method, n = 0 where no run
    ada = csv.loc[("resnet_basic", "adagrow")]
    assert ada["n"] == 2 and ada["test_acc_mean"] == pytest.approx(0.91)
    assert ada["equal_cost_val_acc_mean"] == pytest.approx(0.7) and ada["equal_cost_budget_macs"] == 2 * G
    assert csv.loc[("resnet_basic", "splitgrow"), "n"] == 0
    assert csv.loc[("vgg", "adagrow"), "configs"] == 2
    tex = table[".tex"].read_text()
    assert r"91.00 $\pm$ 1.41 (1.10 M)" in tex and "MoGrow" in table[".md"].read_text()  # the note says why


def test_registered_piece_for_the_growing_methods():
    piece = registry.PIECES["growth_methods"]
    assert piece.methods == ("adagrow", "randgrow", "splitgrow", "net2net", "tiny", "gradmax") == GROWING
    assert piece.applies(pd.DataFrame({"method": ["net2net"]}))
    assert not piece.applies(pd.DataFrame({"method": ["fixed", "reducenet"]}))


# ---- experiments/growth_methods.yaml ------------------------------------------------------------
EXP = load_experiment(ROOT / "experiments", "growth_methods")
SCALES = [None, "cifar"]


def keys(job) -> dict:
    return dict(o.split("=", 1) for o in job["overrides"])


def jobs_of(method, scale):
    return [j for j in expand_jobs(EXP, scale) if keys(j)["method"] == method]


def test_every_backbone_and_method_is_in_the_sweep():
    jobs = [keys(j) for j in expand_jobs(EXP)]
    have = {(k["model"], k["method"]) for k in jobs}
    conv = ("resnet_basic", "resnet_bottleneck", "vgg", "mobilenet")
    want = {(m, g) for m in conv for g in ("adagrow", "randgrow", "net2net", "fixed")}
    want |= {(m, "splitgrow") for m in conv[:3]} | {("gromo_mlp", g) for g in ("tiny", "gradmax", "fixed")}
    assert have == want and len(jobs) == 3 * len(want)  # 3 seeds each
    assert {int(k["trainer.epochs"]) for k in jobs} == {12}
    assert {int(k["trainer.epochs"]) for k in map(keys, expand_jobs(EXP, "cifar"))} == {100}


@pytest.mark.parametrize("scale", SCALES)
def test_same_start_and_budget_per_backbone_and_fixed_at_the_max_arch(scale):
    by_model = {}
    for k in map(keys, expand_jobs(EXP, scale)):
        by_model.setdefault(k["model"], []).append(k)
    for model, jobs in by_model.items():
        max_arch = {k.get("model.max_arch", k.get("++model.max_arch")) for k in jobs}
        growing = [k for k in jobs if k["method"] != "fixed"]
        assert len(max_arch) == 1, model
        assert len({(k["model.arch"], k["grow.max_params"], k.get("model.widths")) for k in growing}) == 1, model
        assert {k["model.arch"] for k in jobs if k["method"] == "fixed"} == max_arch, model


def deployed_params(overrides: dict, scale) -> int:
    """The fixed max-arch model's deployed params at the scale's input size (CIFAR-10: 3x32x32)."""
    from growth.measure import count_params
    from growth.models import build_model
    from benchmarks.common import compose
    cfg = compose(**overrides)
    info = {"in_chans": 1, "image_size": 8, "num_classes": 10} if scale is None else \
        {"in_chans": 3, "image_size": 32, "num_classes": 10}
    return count_params(build_model(cfg["model"], {**cfg["data"], **info}).deploy())


@pytest.mark.parametrize("scale", SCALES)
def test_the_budget_is_the_fixed_max_arch_models_size(scale):
    jobs = [keys(j) for j in expand_jobs(EXP, scale) if j["overrides"][-1] == "seed=0"]
    for fixed in [k for k in jobs if k["method"] == "fixed"]:
        budget = {int(k["grow.max_params"]) for k in jobs if k["model"] == fixed["model"] and k["method"] != "fixed"}
        over = {k: v for k, v in fixed.items() if k in ("model", "method", "model.arch", "model.widths")}
        assert budget == {deployed_params(over, scale)}, fixed["model"]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("method", sorted({keys(j)["method"] for j in expand_jobs(EXP)}))
def test_every_job_composes(method, scale):
    """Each job's overrides compose into a config (one seed: the seed changes no composition). Methods that
    other branches bring (splitgrow, tiny, gradmax) skip until they are registered."""
    from run import compose_problem, preflight
    if method not in METHODS:
        pytest.skip(f"method {method!r} is not registered in growth.methods.METHODS on this branch")
    jobs = [j for j in jobs_of(method, scale) if j["overrides"][-1] == "seed=0"]
    assert jobs
    for job in jobs:
        assert preflight(job["overrides"]) is None, job["name"]
        assert compose_problem(job["overrides"]) is None, job["name"]
