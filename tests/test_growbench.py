"""analysis/growbench.py on hand-made run records (numbers computed by hand), and experiments/growbench.yaml,
growbench_smoke.yaml: both parse, expand, and every job names a method that exists or is one GrowBench
waits for; every family's growing jobs share one start arch, max arch and size budget."""
import json

import pandas as pd
import pytest
import yaml

from analysis import registry
from analysis.collect import collect
from analysis.growbench import METHODS, first_reach, growbench_tables
from growth.engine.record import RunRecord
from growth.sweeps import expand_jobs, load_experiment
from tests.conftest import ROOT

G = 1e9
pytestmark = pytest.mark.usefixtures("one_thread")  # the budget test builds models


DIVERGED = "loss became nan at epoch 2, step 9; the last good checkpoint is kept"


def fake_run(root, name, method, model, seed, curve, status="completed", events=(), bench="growbench",
             deploy_params=1000, error=DIVERGED):
    """A run record: config_resolved.yaml, one metrics row per (train_macs_cum, val_acc) of curve (epoch
    time 10 s, 100 samples an epoch), growth events (max_abs_output_change values), summary.json."""
    record = RunRecord(root / name)
    for epoch, (cum, val) in enumerate(curve, 1):
        record.add_metrics({"epoch": epoch, "phase": "train", "arch": "x", "params": deploy_params,
                            "deploy_params": deploy_params, "macs": 1, "train_loss": 1.0, "train_acc": val,
                            "val_loss": 1.0, "val_acc": val, "lr": 0.1, "epoch_time_s": 10.0,
                            "samples_seen": 100 * epoch, "train_macs_cum": cum})
    for change in events:
        record.add_event({"epoch": 1, "step": 1, "kind": "grow_depth", "where": "0", "arch_before": "a",
                          "arch_after": "b", "params_before": 1, "params_after": 2, "max_abs_output_change": change})
    record.path("config").write_text(yaml.safe_dump({"method": {"name": method}, "model": {"name": model},
                                                     "seed": seed, "bench": bench}))
    summary = {"status": status, "method": method, "model": model, "data": "digits", "seed": seed,
               "variants": {}, "final_val_acc": curve[-1][1] if curve else None, "best_val_acc": None,
               "test_acc": 0.5, "arch": "x", "params": deploy_params, "deploy_params": deploy_params, "macs": 1,
               "train_time_s": 1.0, "train_macs_total": curve[-1][0] if curve else 0, "device": "cpu",
               "git_commit": None, "versions": {}}
    if status == "failed":
        summary["error"] = error
    record.write_summary(summary)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("growbench")
    # fixed: 2 seeds, final val 0.80 and 0.90 -> target 0.85; whole run 8 GMACs, 400 samples, 40 s.
    fake_run(root, "f0", "fixed", "resnet_basic", 0, [(2 * G, 0.5), (4 * G, 0.7), (6 * G, 0.8), (8 * G, 0.8)])
    fake_run(root, "f1", "fixed", "resnet_basic", 1, [(2 * G, 0.6), (4 * G, 0.8), (6 * G, 0.9), (8 * G, 0.9)])
    # adagrow reaches 0.85 exactly at its 2nd epoch: 4 GMACs (50% saved), 200 samples (50%), 20 s (2x).
    fake_run(root, "a0", "adagrow", "resnet_basic", 0, [(1 * G, 0.6), (4 * G, 0.85), (5 * G, 0.9)], events=[1e-7])
    # randgrow: best 0.75 -> never, gap 10 pts; its seed 1 diverged.
    fake_run(root, "r0", "randgrow", "resnet_basic", 0, [(1 * G, 0.7), (3 * G, 0.75)])
    fake_run(root, "r1", "randgrow", "resnet_basic", 1, [(1 * G, 0.3)], status="failed")
    # gstack: only a run that failed before training (a row with its status and error, no numbers).
    fake_run(root, "g0", "gstack", "resnet_basic", 0, [], status="failed",
             error="model='resnet_basic': gstack stacks transformer layers; allowed: vit, bert")
    (root / "jobs.yaml").write_text(yaml.safe_dump([
        {"name": "s0", "overrides": ["model=resnet_basic", "method=splitgrow", "seed=0"]}]))  # never started
    runs, epochs, events = collect(root)
    paths = growbench_tables(runs, epochs, events, root / "analysis")
    return {p.name: p for p in paths}, runs


def rows(md: str) -> dict:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return {r[0]: dict(zip(cells[0], r)) for r in cells[2:]}


def test_first_reach_is_linear_between_epochs():
    assert first_reach([1, 3], [0.5, 0.9], 0.7) == pytest.approx(2.0)
    assert first_reach([1, 3], [0.8, 0.9], 0.7) == 1.0  # the first epoch already there: its cost
    assert pd.isna(first_reach([1, 3], [0.5, 0.6], 0.7))


def test_half_the_macs_is_a_50_percent_saving(bench):
    paths, _ = bench
    got = rows(paths["growbench_resnet_basic.md"].read_text())
    ada = got["AdaGrow"]
    assert ada["MACs to reach (GMACs)"] == "4.00" and ada["wall time to reach (s)"] == "20.0"
    assert ada["(a) MACs saved"] == "50%" and ada["(b) samples saved"] == "50%"
    assert ada["(c) wall-clock speed-up"] == "2.00x"
    assert ada["training MACs (% of fixed)"] == "62%"  # 5 of 8 GMACs
    assert ada["function-preserving (claim, measured)"] == "yes (max output change 1e-07)"
    # equal MACs: the smallest total is randgrow's 3 G; adagrow at 3 G: 0.6 + (2/3) * 0.25 = 0.7667
    assert ada["val acc % at 3 GMACs"] == "76.67"
    fixed = got["fixed (final model)"]
    assert fixed["(a) MACs saved"] == "0%" and fixed["(c) wall-clock speed-up"] == "1.00x"
    assert fixed["val acc % at 3 GMACs"] == "65.00 ± 7.07"  # 0.6 and 0.7
    # the all-families summary (the README's table): the same cells, the family first
    line = [ln for ln in paths["growbench_summary.md"].read_text().splitlines() if "| AdaGrow " in ln][0]
    assert [c.strip() for c in line.strip("|").split("|")] == [
        "resnet_basic", "AdaGrow", "yes (max output change 1e-07)", "90.00", "76.67", "62%", "50%", "50%", "2.00x"]


def test_never_reaching_gives_the_gap_and_failed_runs_are_rows(bench):
    paths, _ = bench
    got = rows(paths["growbench_resnet_basic.md"].read_text())
    rand = got["RandGrow"]
    assert rand["MACs to reach (GMACs)"] == "never (gap 10.0 pts)" and rand["(a) MACs saved"] == "never"
    assert rand["status"] == "1 completed, 1 failed (diverged)"
    assert got["G_stack"]["status"] == "1 failed (model='resnet_basic': gstack stacks transformer layers; allo...)"
    assert got["G_stack"]["final val acc %"] == "-"
    assert got["SplitGrow"]["status"] == "1 no record"
    assert list(got)[-1] == "fixed (final model)"  # METHODS order: fixed last
    csv = pd.read_csv(paths["growbench.csv"]).set_index("method")
    assert csv.loc["adagrow", "mac_saving"] == pytest.approx(0.5) and csv.loc["fixed", "target"] == pytest.approx(0.85)
    assert csv.loc["randgrow", "gap"] == pytest.approx(0.10)
    note = paths["growbench_resnet_basic.md"].read_text()
    assert "tuned on LLM pre-training" in note  # G_stack's schedule note: its defaults, tuned elsewhere
    assert {"growbench_resnet_basic.png", "growbench_resnet_basic.pdf"} <= set(paths)


def test_a_family_without_a_fixed_run_has_no_target(tmp_path):
    fake_run(tmp_path, "a", "adagrow", "vgg", 0, [(G, 0.5), (2 * G, 0.6)])
    runs, epochs, events = collect(tmp_path)
    paths = {p.name: p for p in growbench_tables(runs, epochs, events, tmp_path / "analysis")}
    text = paths["growbench_vgg.md"].read_text()
    assert rows(text)["AdaGrow"]["(a) MACs saved"] == "no target (no fixed run)" and "No completed fixed run" in text


def test_the_piece_runs_only_for_growbench_runs(bench, tmp_path):
    _, runs = bench
    piece = registry.PIECES["growbench"]
    assert piece.applies(runs)
    fake_run(tmp_path, "x", "adagrow", "vgg", 0, [(G, 0.5)], bench=None)
    other, epochs, events = collect(tmp_path)
    assert not piece.applies(other) and growbench_tables(other, epochs, events, tmp_path / "a") == []


def test_every_method_has_a_claim_and_a_schedule():
    for name, claim in METHODS.items():
        assert claim.preserving in ("yes", "no", "approx", "n/a") and claim.source and claim.schedule, name
    assert {"msg", "bert2bert"} <= set(METHODS)  # ready for their rows


# ---- experiments/growbench.yaml, growbench_smoke.yaml -----------------------------------------------
def overrides(job) -> dict:
    return dict(o.split("=", 1) for o in job["overrides"])


@pytest.mark.parametrize("name", ["growbench", "growbench_smoke"])
@pytest.mark.parametrize("scale", [None, "cifar", "imagenet", "text"])
def test_sweep_files_expand_with_one_start_and_budget_per_family(name, scale):
    exp = load_experiment(ROOT / "experiments", name)
    if scale is not None and scale not in (exp.get("scales") or {}):
        pytest.skip(f"{name} has no scale {scale}")
    jobs = [overrides(j) for j in expand_jobs(exp, scale)]
    assert jobs and all(j["+bench"] == "growbench" for j in jobs)
    known = {p.stem for p in (ROOT / "conf" / "method").glob("*.yaml")}
    assert {j["method"] for j in jobs} <= known
    for model in {j["model"] for j in jobs}:
        own = [j for j in jobs if j["model"] == model]
        # bert2BERT widens, which no other method here can: it starts narrower (its own start, said in the
        # table), and ends at the same max arch
        growing = [j for j in own if j["method"] not in ("fixed", "bert2bert")]
        fixed = [j for j in own if j["method"] == "fixed"]
        assert growing and fixed, model
        assert {j["model.max_arch"] for j in own if j["method"] == "bert2bert"} <= {growing[0]["model.max_arch"]}
        assert len({(j["model.arch"], j["model.max_arch"], j.get("grow.max_params"), j.get("data"))
                    for j in growing}) == 1, model
        assert {j["model.arch"] for j in fixed} == {growing[0]["model.max_arch"]}, model
        assert len({j["trainer.epochs"] for j in own}) == 1, model  # same epochs for every method
    if name == "growbench" and scale is None:
        assert {j["seed"] for j in jobs} == {"0", "1", "2"}


def test_smoke_transformer_jobs_compose():
    """The new lines (vit, bert on synthetic_text, the +bench key); the conv lines are growth_methods.yaml's."""
    from run import compose_problem, preflight
    exp = load_experiment(ROOT / "experiments", "growbench_smoke")
    jobs = {overrides(j)["model"]: j for j in expand_jobs(exp) if overrides(j)["method"] != "fixed"}
    for model in ("vit", "bert"):
        job = jobs[model]["overrides"]
        assert preflight(job) is None and compose_problem(job) is None, model


@pytest.mark.parametrize("family", ["resnet_basic", "vgg", "mobilenet"])
def test_conv_budget_is_the_fixed_models_deployed_params(family):
    from benchmarks.common import compose  # its first import (Hydra, the models) takes seconds on a loaded machine
    from growth.measure import count_params
    from growth.models import build_model
    jobs = [overrides(j) for j in expand_jobs(load_experiment(ROOT / "experiments", "growbench")) if j["overrides"][-1] == "seed=0"]
    for fixed in [j for j in jobs if j["method"] == "fixed" and j["model"] == family]:
        cfg = compose(**{k: fixed[k] for k in ("model", "method", "model.arch", "model.widths")})
        deployed = count_params(build_model(cfg["model"], {**cfg["data"], "in_chans": 1, "image_size": 8,
                                                            "num_classes": 10}).deploy())
        assert {int(j["grow.max_params"]) for j in jobs if j["model"] == fixed["model"] and j["method"] != "fixed"} \
            == {deployed}, fixed["model"]


def test_smoke_keeps_growbench_start_arch_and_budget():
    """Per family, the smoke's growing and fixed lines are the full benchmark's (fewer methods, seeds, epochs)."""
    def per_family(name):
        out = {}
        for j in map(overrides, expand_jobs(load_experiment(ROOT / "experiments", name))):
            if j["method"] == "bert2bert":  # its own, narrower start (test_sweep_files_expand_...)
                continue
            kind = "fixed" if j["method"] == "fixed" else "growing"
            out.setdefault((j["model"], kind), set()).add(
                tuple(j.get(k) for k in ("model.arch", "model.max_arch", "grow.max_params", "model.widths",
                                         "model.head_dim", "model.patch_size", "data")))
        return out
    full, smoke = per_family("growbench"), per_family("growbench_smoke")
    assert {m for m, _ in smoke} == {m for m, _ in full}  # every family
    assert all(smoke[k] == full[k] for k in smoke), {k: (smoke[k], full[k]) for k in smoke if smoke[k] != full[k]}


def test_end_of_run_report_takes_the_stacking_methods_trajectory(capsys):
    """gstack / stackbert trajectory entries carry no kind or where: run.py's report once raised on them
    after the summary was written (exit 1 for a completed run)."""
    from run import print_report
    print_report({"trajectory": [{"epoch": 1, "step": 9, "arch_after": "d4h4", "params_after": 200,
                                  "max_abs_output_change": 0.2}], "status": "failed"}, ROOT)
    assert "grow_depth  all layers" in capsys.readouterr().out


@pytest.mark.slow
def test_the_smoke_sweep_runs_and_its_analysis_writes_every_familys_table(cli, tmp_path):
    """`python sweep.py growbench_smoke` (what CI runs of GrowBench), then `python -m analysis` on it: every
    job completes, and each family's table has a row for each of its methods with the fixed model's."""
    import subprocess
    import sys
    out = tmp_path / "smoke"
    proc = cli(["growbench_smoke", "--out", str(out)], script="sweep.py", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " raised: " not in proc.stdout + proc.stderr  # a job that failed after its summary (run.py's report)
    jobs = [overrides(j) for j in expand_jobs(load_experiment(ROOT / "experiments", "growbench_smoke"))]
    summaries = [json.loads(p.read_text()) for p in out.rglob("summary.json")]
    assert len(summaries) == len(jobs) and all(s["status"] == "completed" for s in summaries)
    proc = subprocess.run([sys.executable, "-m", "analysis", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for family in {j["model"] for j in jobs}:
        md = next(out.rglob(f"growbench_{family}.md")).read_text()
        assert next(out.rglob(f"growbench_{family}.png")).stat().st_size > 0
        table = rows(md)
        names = {METHODS[j["method"]].label for j in jobs if j["model"] == family}
        assert names <= set(table), (family, names, set(table))


def test_the_readme_quotes_the_measured_growbench_table():
    """README's GrowBench table is benchmarks/growbench_summary.md as `python -m analysis` wrote it after
    `python sweep.py growbench` (the README names the commit and machine)."""
    table = (ROOT / "benchmarks" / "growbench_summary.md").read_text().strip()
    assert table.count("\n") > 20 and table in (ROOT / "README.md").read_text()


def test_every_method_has_its_own_colour_in_the_plot():
    from analysis.style import colour
    colours = [colour(m) for m in METHODS]
    assert len(set(colours)) == len(colours)
