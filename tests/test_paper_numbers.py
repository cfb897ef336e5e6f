"""The papers' numbers beside ours (experiments/reference/paper_numbers.yaml, analysis/paper.py), and the
thop-style counter that reproduces the AdaGrow thesis's params / compute columns (growth/paper_counters.py)."""
import json
import shutil

import pytest
import torch
import yaml
from torch import nn

from analysis import paper
from analysis.collect import collect
from growth.engine.record import SCHEMA_VERSION
from growth.measure import count_params
from growth.paper_counters import adagrow_thesis_counts, thop_counts, torchsummaryx_madds
from growth.models import create_model
from tests.conftest import tiny_cfg
from tests.test_analysis import table_rows

TABLES = paper.load_paper_numbers()
FAMILY = {"AdaGrow ResNet (basic)": "resnet_basic", "AdaGrow Bottleneck-ResNet": "resnet_bottleneck",
          "AdaGrow VGG": "vgg", "AdaGrow MobileNetV3": "mobilenet"}
THESIS_ROWS = [(tid, r) for tid in ("adagrow_cifar10", "adagrow_other_datasets") for r in TABLES[tid]["rows"]
               if r["model"] in FAMILY]


def md_rows(md: str) -> list[dict]:
    """The first markdown table in md as {header: cell} per row (rows may share their first cell)."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def printed(count: float, number: dict) -> float:
    """Our count in the paper's unit, rounded as the paper prints its number."""
    return round(count / paper.SCALES[number["unit"]], number["decimals"])


# ---- the thesis columns are our thop-style counts ------------------------------------------------
@pytest.mark.parametrize("tid,row", THESIS_ROWS, ids=[f"{t}:{r['model']}:{r['config']}:{r['dataset']}"
                                                      for t, r in THESIS_ROWS])
def test_thesis_params_and_compute_are_our_thop_counts(tid, row):
    """Every AdaGrow row of the thesis (METHODS.md 1.8), counted on our single-branch model of its arch
    at 3x32x32 with 10 classes (or the row's counted_with), equals the printed number to its digits."""
    kwargs = {"in_chans": 3, "num_classes": 10, **row.get("counted_with", {})}
    model = create_model(FAMILY[row["model"]], depths=[int(d) for d in row["config"].split("-")], **kwargs)
    params, macs = adagrow_thesis_counts(model, (3, 32, 32))
    assert printed(params, row["params"]) == printed(row["params"]["value"], row["params"])
    if "compute" in row:
        assert printed(macs, row["compute"]) == printed(row["compute"]["value"], row["compute"])


def test_thesis_rows_are_all_there():
    """22 AdaGrow rows: 8 CIFAR-10 (params and compute), 14 on other datasets (params)."""
    assert len(THESIS_ROWS) == 22
    assert sum("compute" in r for _, r in THESIS_ROWS) == 8


def test_thop_rules_on_a_small_net():
    """The rules thop 0.1.x applies, on a net whose counts are worked out by hand: conv MACs without
    bias, BN 4 per element, linear, adaptive pool (area + 1 per output), ReLU 0, a conv subclass and a
    module never called count nothing."""
    class MyConv(nn.Conv2d):
        pass

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      MyConv(4, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
            self.unused = nn.Linear(100, 100)

        def forward(self, x):
            return self.body(x)

    params, macs = thop_counts(Net(), (3, 6, 6))
    conv = 4 * 6 * 6 * 3 * 9
    assert params == (3 * 4 * 9 + 4) + 2 * 4 + (4 * 5 + 5)
    assert macs == conv + 4 * (4 * 36) + (36 + 1) * 4 + 4 * 5


def test_thop_counts_pinned_against_thop():
    """Measured with thop 0.1.1.post2209072238 (profile(model, (zeros(1, 3, 32, 32),))) on our basic
    1-2-2 and MobileNet 2-3-3: 1,168,170 / 222,627,072 and 811,210 / 20,317,376; the thesis adds the
    original's discarded Downstream BNs (1.17 M / 223.0 M printed)."""
    basic = create_model("resnet_basic", depths=(1, 2, 2), in_chans=3, num_classes=10)
    assert thop_counts(basic, (3, 32, 32)) == (1_168_170, 222_627_072)
    assert adagrow_thesis_counts(basic) == (1_168_170 + 2 * (64 + 96), 222_627_072 + 4 * (64 * 32 * 32 + 96 * 16 * 16))
    mobile = create_model("mobilenet", depths=(2, 3, 3), in_chans=3, num_classes=10)
    assert thop_counts(mobile, (3, 32, 32)) == (811_210, 20_317_376)
    assert all(not p.grad for p in basic.parameters()) and basic.training  # untouched, mode kept


REDUCENET_ROWS = TABLES["reducenet_cifar10"]["rows"]


@pytest.mark.parametrize("row", REDUCENET_ROWS, ids=[r["model"] for r in REDUCENET_ROWS])
def test_reducenet_readme_params_and_madds_are_our_counts(row):
    """Every ReduceNet README row (METHODS.md 2.4): our teacher (scaler 1) / student (scaler 0) of
    that depth and width, unfolded, counted as torchsummaryX counts, prints as the README does."""
    n, w = (row["match"]["model.depth"] - 2) // 6, row["match"]["model.width"]
    model = create_model("reducenet", depths=(n, n, n), widths=(16 * w, 32 * w, 64 * w),
                         scaler=1 if row["match"]["role"] == "teacher" else 0)
    assert printed(count_params(model), row["params"]) == printed(row["params"]["value"], row["params"])
    madds = torchsummaryx_madds(model, (3, 32, 32))
    assert printed(madds, row["compute"]) == printed(row["compute"]["value"], row["compute"])


def test_torchsummaryx_madds_counts_only_the_batchnorms_that_run():
    """reduce20 width 1, docs/reference_numbers.md "ReduceNet sizes": the student's branch1 is skipped,
    so its BNs add nothing (62.05 M teacher, 40.81 M student, MEASURED.md)."""
    teacher = create_model("reducenet")
    student = create_model("reducenet", scaler=0)
    assert round(torchsummaryx_madds(teacher, (3, 32, 32)) / 1e6, 2) == 62.05
    assert round(torchsummaryx_madds(student, (3, 32, 32)) / 1e6, 2) == 40.81


# ---- the file's schema ------------------------------------------------------------------------------
def test_every_table_of_methods_md_is_in_the_file():
    assert set(TABLES) == {"adagrow_cifar10", "adagrow_growth_methods", "adagrow_other_datasets",
                           "reducenet_cifar10", "sws_imagenet", "adn_resnet50", "adn_resnet50_v2",
                           "adn_mobilenetv2", "adn_vit_b16", "adn_swin_t"}
    ffff = TABLES["adn_resnet50"]["rows"][0]
    assert ffff["compute"] == {"value": 4.11e9, "decimals": 2, "unit": "G"} and ffff["accuracy"]["value"] == 77.6
    # printed digits kept (YAML alone would read 8.10 as 8.1), a row's own unit wins over the table's
    tiny = next(r for r in TABLES["adagrow_other_datasets"]["rows"] if r["config"] == "4-5-5")
    assert tiny["params"] == {"value": 8.1e6, "decimals": 2, "unit": "M"}
    assert TABLES["reducenet_cifar10"]["rows"][0]["params"] == {"value": 412.1e3, "decimals": 1, "unit": "K"}
    assert "accuracy" not in TABLES["adn_resnet50"]  # nothing invented: SWS has claims only
    assert TABLES["sws_imagenet"]["rows"] == [] and len(TABLES["sws_imagenet"]["claims"]) == 3


@pytest.mark.parametrize("edit,message", [
    (lambda t: t["rows"][0].update(acc=1), r"tables\.t\.rows\[0\]: unknown key 'acc'; allowed: accuracy, "),
    (lambda t: t["rows"][0].pop("match"), r"tables\.t\.rows\[0\]: missing key 'match'"),
    (lambda t: t["rows"][0].update(compute="4.11X"), r"tables\.t\.rows\[0\]\.compute: '4\.11X' is not a number"),
    (lambda t: t.pop("source"), r"tables\.t: missing key 'source'"),
    (lambda t: t["compute"].update(unit="T"), r"tables\.t\.compute\.unit: 'T'; allowed"),
])
def test_a_bad_entry_is_named(tmp_path, edit, message):
    table = {"method": "adn", "dataset": "imagenet1k", "source": "README",
             "compute": {"unit": "G", "counter": "outside"},
             "rows": [{"model": "R50", "config": "FFFF", "match": {"skip": "FFFF"}, "compute": 4.11}]}
    edit(table)
    path = tmp_path / "paper_numbers.yaml"
    path.write_text(yaml.safe_dump({"tables": {"t": table}}))
    with pytest.raises(paper.PaperNumbersError, match=message):
        paper.load_paper_numbers(path)


def test_a_sweep_naming_an_unknown_table_is_refused(tmp_path):
    from growth.sweeps import load_experiment
    (tmp_path / "x.yaml").write_text("common: {paper: adn_resnet5}\n")
    with pytest.raises(ValueError, match="paper='adn_resnet5': not a table of .*allowed: adagrow_cifar10"):
        load_experiment(tmp_path, "x")


# ---- matching runs to rows (made-up run records) -------------------------------------------------
def fake_run(root, name, summary: dict, config: dict):
    d = root / name
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.5}) + "\n")
    (d / "events.jsonl").write_text("")
    (d / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    (d / "summary.json").write_text(json.dumps({"status": "completed", "schema_version": SCHEMA_VERSION,
                                                "seed": 0, "data": "cifar10", **summary}))


def test_reducenet_rows_match_depth_width_and_role(tmp_path):
    common = {"method": "reducenet", "model": "reducenet", "test_acc": 0.9, "params": 272_474, "macs": 4e7}
    fake_run(tmp_path, "a", {**common, "teacher_test_acc": 0.92, "teacher_params": 412_058,
                             "teacher_macs": 61.4e6, "student_test_acc": 0.93, "student_macs": 40.5e6},
             {"paper": "reducenet_cifar10", "model": {"depth": 20, "width": 1}, "seed": 0})
    fake_run(tmp_path, "b", {**common, "seed": 1}, {"model": {"depth": 20, "width": 1}, "seed": 1})  # names none
    runs, epochs, events = collect(tmp_path)
    paths = paper.paper_tables(runs, epochs, events, tmp_path / "out")
    md = (tmp_path / "out" / "paper_reducenet_cifar10.md").read_text()
    rows = {c[0]: c for c in table_rows(md).values()}
    assert set(rows) == {"ResNet20-1-T", "ResNet20-1-S"} and len(paths) == 3
    header = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    t = dict(zip(header, rows["ResNet20-1-T"]))
    assert t["n"] == "1" and t["acc (%) ours"] == "92.00" and t["acc (%) paper"] == "91.97"
    assert t["Δ acc (pp)"] == "+0.03"
    # 412.1K in the column's unit M keeps its printed digits; ours one digit more
    assert t["params (M) paper"] == "0.4121" and t["params (M) ours"] == "0.41206" and t["Δ params (M)"] == "-0.00004"
    s = dict(zip(header, rows["ResNet20-1-S"]))
    assert s["params (M) ours"] == "0.27247" and s["compute (M) paper"] == "40.8" and s["Δ compute (M)"] == "-0.30"
    assert "Counters differ (compute): the paper's MAdds are torchsummaryX mult-adds" in md
    assert "Stand-in" not in md  # ours is on the paper's dataset


def test_runs_that_name_no_table_get_nothing(tmp_path):
    fake_run(tmp_path, "a", {"method": "adagrow", "model": "resnet_basic", "arch": "1-2-2", "test_acc": 0.9,
                             "params": 1, "macs": 1}, {"seed": 0})
    runs, epochs, events = collect(tmp_path)
    assert paper.paper_tables(runs, epochs, events, tmp_path / "out") == []
    assert not (tmp_path / "out").exists()


def test_thesis_rows_match_family_and_final_arch_on_their_dataset(tmp_path):
    for i, (arch, data) in enumerate([("1-2-2", "cifar10"), ("1-2-2", "cifar10"), ("1-1-1", "svhn")]):
        fake_run(tmp_path, f"r{i}", {"method": "adagrow", "model": "resnet_basic", "arch": arch, "data": data,
                                     "seed": i, "test_acc": 0.9 + i / 100, "params": 1_168_170, "macs": 221.19e6},
                 {"paper": "adagrow_cifar10" if data == "cifar10" else "adagrow_other_datasets", "seed": i})
    runs, epochs, events = collect(tmp_path)
    paper.paper_tables(runs, epochs, events, tmp_path)
    c10 = table_rows((tmp_path / "paper_adagrow_cifar10.md").read_text())
    assert list(c10) == ["AdaGrow ResNet (basic)"]
    cells = c10["AdaGrow ResNet (basic)"]
    assert cells[1:4] == ["1-2-2", "resnet_basic, cifar10", "2"] and "90.50 ± 0.71" in cells
    other = md_rows((tmp_path / "paper_adagrow_other_datasets.md").read_text())
    # 1-1-1 is both an SVHN and an MNIST row: a run on SVHN matches the SVHN row only
    assert [(r["config"], r["acc (%) paper"]) for r in other] == [("1-1-1", "96.01")]


# ---- acceptance: a digits stand-in shaped like ADN's table (experiments/adn_paper_standin.yaml) ---------
@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """One real tiny ADN run (4 stages, the README's skip configs, paper=adn_resnet50), and a second
    seed made from its record with other accuracies (n = 2 without training twice)."""
    from growth.engine.job import run_job
    out = tmp_path_factory.mktemp("standin") / "sweep"
    cfg = tiny_cfg(**{"method": "adn", "model": "resnet_bottleneck", "model.arch": "2-2-2-2",
                      "model.widths": "[8,12,16,24]", "method.eval_configs": "[FFFF,TFFF,TTFF,TTTT]",
                      "paper": "adn_resnet50", "trainer.epochs": 1, "method.latency_batch": 8})
    assert run_job(cfg, out / "seed=0")["status"] == "completed"
    shutil.copytree(out / "seed=0", out / "seed=1")
    summary = json.loads((out / "seed=1" / "summary.json").read_text())
    for i, r in enumerate(summary["adn_table"]):
        r["test_acc"] = 0.25 + i / 10
    (out / "seed=1" / "summary.json").write_text(json.dumps({**summary, "seed": 1}))
    return out


def test_analysis_prints_the_paper_column_and_the_difference(standin, capsys):
    from analysis.__main__ import main
    assert main([str(standin)]) == 0  # python -m analysis DIR, in-process
    md_path = standin / "analysis" / "paper_adn_resnet50.md"
    printed = capsys.readouterr().out
    md = md_path.read_text()
    assert str(md_path) in printed.splitlines() and f"paper_adn_resnet50.md:\n{md.strip()}" in printed
    rows = {r["config"]: r for r in md_rows(md)}
    assert list(rows) == ["FFFF", "TFFF", "TTFF", "TTTT"]  # the README's rows, in its order
    summaries = [json.loads(p.read_text()) for p in sorted(standin.glob("*/summary.json"))]
    for cfg, acc, gflops in [("FFFF", 77.6, 4.11), ("TTTT", 76.1, 2.58)]:
        ours = [100 * next(r["test_acc"] for r in s["adn_table"] if r["skip"] == cfg) for s in summaries]
        mean = sum(ours) / len(ours)
        row = rows[cfg]
        assert row["n"] == "2" and row["acc (%) paper"].startswith(str(acc))
        assert row["acc (%) ours"].startswith(f"{mean:.2f} ± ")
        assert row["Δ acc (pp)"] == f"{mean - acc:+.2f}"
        macs = next(r["macs"] for r in summaries[0]["adn_table"] if r["skip"] == cfg) / 1e9
        assert float(row["compute (G) ours"]) == pytest.approx(macs, rel=1e-2)
        assert row["compute (G) paper"] == f"{gflops:.2f}"
        assert float(row["Δ compute (G)"]) == pytest.approx(macs - gflops, abs=1e-6)
    assert rows["FFFF"]["acc (%) paper"] == "77.6 (+0.9)"
    assert "4.11 there vs 4.089 GMACs FlopCounterMode" in md and "Counters differ (compute)" in md
    assert "Stand-in: the paper's numbers are on imagenet1k, ours on digits" in md
    index = (standin / "analysis" / "index.md").read_text()
    assert "## The papers' numbers beside ours" in index and "| ResNet50-ADN" in index


def test_sws_claims_beside_our_family_ratios(tmp_path):
    """The SWS paper states ratios only (METHODS.md 3.4): ours are the depth table's row `all`."""
    lg, pre = 1000, 5e9
    for i, (phase, depth, params, macs) in enumerate([("descendant", 3, 3000, 1e9), ("descendant", 6, 6000, 2e9),
                                                      ("scratch", 3, 3000, 10e9), ("scratch", 6, 6000, 20e9)]):
        fake_run(tmp_path, f"r{i}", {"method": "sws", "model": "vit", "data": "digits", "test_acc": 0.5,
                                     "sws_phase": phase, "sws_depth": depth, "params": params,
                                     "train_macs_total": macs, "macs": 1,
                                     **({"learngene_params": lg, "learngene_cost_macs": pre}
                                        if phase == "descendant" else {})},
                 {"paper": "sws_imagenet", "seed": 0, "sws": {"phase": phase, "depth": depth}})
    runs, epochs, events = collect(tmp_path)
    paper.paper_tables(runs, epochs, events, tmp_path / "out")
    md = (tmp_path / "out" / "paper_sws_imagenet.md").read_text()
    rows = {r["claim"]: r for r in md_rows(md)}
    cost = rows["total training cost vs models trained from scratch"]
    assert cost["paper ×"] == "6.6" and cost["ours ×"] == f"{30e9 / (pre + 3e9):.2f}" == "3.75"
    assert cost["Δ ×"] == f"{3.75 - 6.6:+.2f}"
    assert rows["stored parameters vs pretrain-then-fine-tune"]["ours ×"] == "9.00"  # (3000 + 6000) / 1000
    assert rows["pre-training cost vs pretrain-then-fine-tune"]["ours ×"] == "-"
    assert "Stand-in: the paper's claims are on imagenet1k, ours on digits." in md
