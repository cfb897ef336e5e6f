"""analysis/: tables, plots, index.md and notebooks from the records of one real smoke sweep
(2 methods x 2 seeds on digits, made once for the module)."""
import base64
import io
import json
import re
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from analysis import registry
from analysis.collect import collect, flatten
from analysis.groups import group_keys, with_groups
from analysis.pareto import pareto_front
from analysis.report import make_report
from analysis.tables import write_table
from tests.conftest import ROOT, run_cli

PLOTS = ["trajectories", "pareto", "training_cost"]
ADAGROW_BLUE, FIXED_GREY = (0x1F, 0x77, 0xB4), (0x4D, 0x4D, 0x4D)
NOTEBOOKS = ROOT / "analysis" / "notebooks"


def analysis_cli(*args):
    """python -m analysis ARGS, as a user types it."""
    return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "sweep"
    res = run_cli(["smoke", "--out", str(out)], script="sweep.py")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def report(sweep):
    res = analysis_cli(sweep)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return sweep / "analysis"


def table_rows(md: str) -> dict:
    """{first cell: [cells]} of the first markdown table in md (header and rule lines left out)."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def pixels_near(png, rgb, tol=12) -> int:
    img = matplotlib.image.imread(png)[..., :3] * 255
    return int((np.abs(img - np.array(rgb)).max(axis=-1) <= tol).sum())


def assert_real_png(data: bytes, where, min_side=400):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", where
    img = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert min(img.shape[:2]) >= min_side, (where, img.shape)
    assert img[..., :3].std() > 0.05, f"{where} is (nearly) one flat colour"


def test_accuracy_table_mean_std_over_two_seeds(sweep, report):
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    md = (report / "accuracy.md").read_text()
    rows = table_rows(md)
    assert set(rows) == {"adagrow", "fixed"}
    header = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    assert header[:2] == ["method", "test acc (%)"] and header[-1] == "n"
    for method, cells in rows.items():
        accs = np.array([s["test_acc"] for s in summaries if s["method"] == method]) / 0.01
        assert len(accs) == 2 and cells[-1] == "2"  # n = 2 seeds
        expected = f"{accs.mean():.2f} ± {accs.std(ddof=1):.2f}"
        assert cells[1] == expected, (cells, expected)
    csv = pd.read_csv(report / "accuracy.csv").set_index("method")
    assert list(csv["n"]) == [2, 2]
    assert csv.loc["fixed", "deploy_params_mean"] == next(s["deploy_params"] for s in summaries
                                                          if s["method"] == "fixed")
    tex = (report / "accuracy.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex and "adagrow &" in tex


def test_adagrow_tables_in_the_seed_layout(report):
    modes = (report / "adagrow_modes.md").read_text()
    head = modes.splitlines()[0]
    assert re.search(r"\|\s*method\s*\|\s*width-depth\s*\|\s*no growth\s*\|", head), head
    rows = table_rows(modes)
    assert rows["adagrow"][1].endswith("(n=2)") and rows["adagrow"][2] == ""
    assert rows["fixed"][1] == "" and rows["fixed"][2].endswith("(n=2)")
    seed = table_rows((report / "adagrow_seed.md").read_text())
    assert seed["fixed"][2].startswith("1.00")  # the cheapest fixed baseline is the seed's "1x"
    assert float(seed["adagrow"][2].split(" ± ")[0]) < 1  # AdaGrow grew from 0-0-0: cheaper


def test_every_plot_written_and_legible(report):
    for name in PLOTS:
        png, pdf = report / f"{name}.png", report / f"{name}.pdf"
        assert_real_png(png.read_bytes(), png)
        assert pdf.read_bytes()[:5] == b"%PDF-"
        # One colour per method in every plot: both methods are drawn in their fixed colours.
        assert pixels_near(png, ADAGROW_BLUE) > 200, name
        assert pixels_near(png, FIXED_GREY) > 200, name
    equal = table_rows((report / "equal_cost.md").read_text())
    assert set(equal) == {"adagrow", "fixed"} and equal["fixed"][1] == "-"  # its first epoch costs more


def test_index_embeds_everything_with_relative_paths(report):
    index = (report / "index.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", index)
    assert sorted(images) == sorted(f"{n}.png" for n in PLOTS)
    links = re.findall(r"\]\(([^)]+)\)", index)
    assert all(not link.startswith("/") and (report / link).is_file() for link in links), links
    assert "| adagrow" in index and "4 completed run(s)" in index


def test_half_written_and_old_schema_runs_are_skipped_with_a_warning(sweep, tmp_path):
    runs = sorted(p for p in sweep.iterdir() if (p / "summary.json").exists())
    for run in runs:
        shutil.copytree(run, tmp_path / run.name)
    half, old = tmp_path / runs[1].name, tmp_path / runs[3].name
    (half / "summary.json").unlink()  # killed before the end: metrics but no summary
    summary = json.loads((old / "summary.json").read_text())
    (old / "summary.json").write_text(json.dumps({**summary, "schema_version": 0}))
    res = analysis_cli(tmp_path, "--out", tmp_path / "report")
    assert res.returncode == 0, res.stderr[-2000:]
    assert re.search(r"skipped 1 run\(s\): unfinished: no summary.json .*" + re.escape(half.name), res.stderr)
    assert re.search(r"skipped 1 run\(s\): other schema: .*version 1.*\(version 0\)", res.stderr), res.stderr
    index = (tmp_path / "report" / "index.md").read_text()
    assert "2 completed run(s); skipped 1: unfinished; skipped 1: other schema" in index
    rows = table_rows((tmp_path / "report" / "accuracy.md").read_text())
    assert rows["adagrow"][-1] == "1" and rows["fixed"][-1] == "1" and "±" not in rows["fixed"][1]


def test_no_completed_run_is_an_error(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    res = analysis_cli(tmp_path)
    assert res.returncode == 1 and "no completed run records" in res.stderr


def test_a_registered_piece_runs_only_for_its_method(sweep, tmp_path, monkeypatch):
    def count_table(runs, epochs, events, out_dir):
        table = runs.groupby("method").size().rename("runs").reset_index()
        return write_table(table, None, out_dir, "count")

    pieces = {"count": registry.Piece("Runs per method", count_table, methods=("fixed",)),
              "never": registry.Piece("Never", count_table, methods=("reducenet",))}
    monkeypatch.setattr("analysis.report.PIECES", pieces)
    paths = make_report([sweep], tmp_path)
    assert [p.name for p in paths] == ["runs.csv", "count.md", "count.tex", "count.csv", "index.md"]
    assert "## Runs per method" in (tmp_path / "index.md").read_text() and "Never" not in paths[-1].read_text()


def test_group_keys_leave_out_seed_and_derived_keys(sweep):
    runs, epochs, events = collect(sweep)
    assert {"method.name", "model.arch", "method.start_arch", "seed"} <= set(runs.attrs["config_keys"])
    assert group_keys(runs) == ["method.name"]  # model.arch and start_arch follow from the method here
    assert sorted(with_groups(runs)["group"]) == ["adagrow", "adagrow", "fixed", "fixed"]
    assert len(epochs) == 12 and set(events["kind"]) == {"grow_width", "grow_depth"}
    assert flatten({"a": {"b": [1, 2]}, "c": None}) == {"a.b": "[1, 2]", "c": None}


def test_pareto_front():
    cost, acc = [1, 2, 3, 4, 2.5], [0.5, 0.7, 0.6, 0.9, 0.7]
    assert list(pareto_front(cost, acc)) == [0, 1, 3]


@pytest.mark.parametrize("name", ["growth_curves", "accuracy_tables"])
def test_notebook_executes_with_figures(name, sweep):
    import nbformat  # the dev extra: nbformat, nbclient, ipykernel
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert nb.cells[0].source.startswith("RUNS = ")
    assert all(c.get("outputs", []) == [] for c in nb.cells)  # stored without outputs
    nb.cells[0].source = f"RUNS = {str(sweep)!r}"
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [base64.b64decode(o.data["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == {"growth_curves": 2, "accuracy_tables": 1}[name]
    for png in pngs:
        assert_real_png(png, name)
    text = "".join(o.get("text", "") for o in outputs)
    assert "4 completed runs" in text
    if name == "accuracy_tables":
        markdown = [o.data["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
        assert any("| adagrow" in m and "(n=2)" in m for m in markdown)


def test_groups_with_missing_config_values_make_a_table():
    """A key set for some runs only (method.variant for reducenet, not for fixed) is missing for the
    others; pandas 3 keeps NaN through astype(str), which once broke the group labels."""
    from analysis.tables import summary_table
    runs = pd.DataFrame({"method.name": ["fixed"] * 2 + ["reducenet"] * 4,
                         "method.variant": pd.Series([None, None, "fixed", "fixed", "faithful", "faithful"],
                                                     dtype="str"),
                         "seed": [0, 1] * 3, "test_acc": [0.9, 0.8, 0.95, 0.85, 0.9, 0.9],
                         "final_val_acc": [0.9, 0.8, 0.95, 0.85, 0.9, 0.9]})
    display, _ = summary_table(runs)
    assert len(display) == 3 and list(display["n"]) == [2, 2, 2]
