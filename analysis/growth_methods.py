"""The growth-method table in the AdaGrow thesis's layout (../shared/reference/METHODS.md 1.8, the
plotting script multi_grow.py): one row per backbone, one column per method, cells
"test acc % ± std (params)" over seeds; then the same methods at equal training cost.

    growth_methods.md / .tex   the display table (experiments/growth_methods.yaml makes its runs)
    growth_methods.csv         the numbers, one row per backbone and method

Equal training cost: per backbone, the budget is the smallest training cost (train_macs_cum at the
last epoch) of any of its runs, i.e. its cheapest run; each method's val accuracy when it had spent that
much is read from its runs' epochs (linear between epochs, analysis/cost.py acc_at), mean ± std over
seeds, and its own training MACs at the end (mean) stand beside it.
"""
import pandas as pd

from analysis.cost import acc_at, equal_budget
from analysis.groups import SEED, as_text, group_keys
from analysis.style import prefix
from analysis.tables import mean_std, write_table

# (method, column name) in the thesis's order (RandGrow, SplitGrow, MoGrow, AdaGrow there), then ours.
COLUMNS = [("adagrow", "AdaGrow"), ("randgrow", "RandGrow"), ("splitgrow", "SplitGrow"), ("net2net", "Net2Net"),
           ("tiny", "TINY"), ("gradmax", "GradMax"), ("fixed", "fixed (max arch)")]
GROWING = tuple(m for m, _ in COLUMNS if m != "fixed")
# The thesis's backbone names; our model family in brackets.
BACKBONES = {"resnet_basic": "ResNet", "resnet_bottleneck": "Bottleneck", "vgg": "VGG",
             "mobilenet": "MobileNetV3", "gromo_mlp": "MLP"}
MISSING = "-"

NOTE = ("Cells: test accuracy %, mean ± std over seeds (deployed params of the final model, mean). "
        "Equal cost: val accuracy % when the run had spent the backbone's budget of training MACs "
        "(forward + backward), the total of its cheapest run, interpolated between epochs ('k of n runs': "
        "only k had a model that cheap); in brackets the method's own training MACs at its end (mean). "
        "'-': no run of that method on that backbone; 'k configs': its runs differ in more than the seed "
        "(see the accuracy table). MoGrow appears only as a name in the thesis's plotting script (no code, "
        "no text), so it has no column. TINY and GradMax run on the MLP backbone only: GroMo serves our "
        "gromo_mlp family, not the RepUnit conv nets. The fixed column trains model.max_arch from the start "
        "(the arch the growing methods end at is not known in advance); growing runs start at model.arch "
        "and may grow up to model.max_arch and grow.max_params.")


def backbone_label(model: str) -> str:
    name = BACKBONES.get(model)
    return f"{name} ({model})" if name else str(model)


def backbones(runs: pd.DataFrame) -> list[str]:
    """The models with runs, the thesis's order first, then the others as they come."""
    seen = list(dict.fromkeys(runs["model"]))
    return [m for m in BACKBONES if m in seen] + [m for m in seen if m not in BACKBONES]


def n_configs(cell: pd.DataFrame, keys: list[str]) -> int:
    """How many configurations a cell's runs are (runs that differ only in the seed are one)."""
    keys = [k for k in keys if k in cell.columns]
    return len(as_text(cell, keys).drop_duplicates()) if keys else 1


def with_unit(value: float, div: float, unit: str, name: str = "") -> str:
    return f"{mean_std([value], div)} {unit}{name}".rstrip()


def cell_numbers(cell: pd.DataFrame, epochs: pd.DataFrame, budget: float) -> dict:
    """Means and stds of one backbone x method cell; the per-run values ride along in "_acc" and "_at"
    (for mean_std in the display)."""
    acc = pd.to_numeric(cell["test_acc"], errors="coerce")
    at = pd.Series([acc_at(epochs[epochs["run"] == run], budget) for run in cell["run"]] if len(epochs)
                   else [], dtype=float)
    return {"test_acc_mean": acc.mean(), "test_acc_std": acc.std(ddof=1),
            "deploy_params_mean": pd.to_numeric(cell["deploy_params"], errors="coerce").mean(),
            "train_macs_total_mean": pd.to_numeric(cell["train_macs_total"], errors="coerce").mean(),
            "equal_cost_val_acc_mean": at.mean(), "equal_cost_val_acc_std": at.std(ddof=1),
            "_acc": list(acc), "_at": list(at)}


def numbers_frame(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per backbone and method (every column of the layout; n = 0 where there is no run)."""
    keys = [k for k in group_keys(runs) if k not in ("method.name", "model.name", SEED)]
    have_cost = not epochs.empty and "train_macs_cum" in epochs.columns
    rows = []
    for model in backbones(runs):
        own = runs[runs["model"] == model]
        mine = epochs[epochs["run"].isin(own["run"])] if have_cost else pd.DataFrame()
        budget = equal_budget(mine) if len(mine) else float("nan")
        for method, _ in COLUMNS:
            cell = own[own["method"] == method]
            row = {"backbone": model, "method": method, "n": len(cell),
                   "configs": n_configs(cell, keys) if len(cell) else 0, "equal_cost_budget_macs": budget}
            if len(cell):
                row.update(cell_numbers(cell, mine, budget))
            rows.append(row)
    return pd.DataFrame(rows)


def cells(r, pdiv, punit, mdiv, munit) -> tuple[str, str]:
    """(accuracy cell, equal-cost cell) of one numbers row."""
    if r["n"] == 0:
        return MISSING, MISSING
    if r["configs"] > 1:
        return (f"{int(r['configs'])} configs",) * 2
    acc = f"{mean_std(r['_acc'], 0.01, 2)} ({with_unit(r['deploy_params_mean'], pdiv, punit)})"
    at = pd.Series(r["_at"], dtype=float)
    reached = "" if at.notna().all() or at.isna().all() else f", {at.notna().sum()} of {len(at)} runs"
    cost = f"{mean_std(at, 0.01, 2)}{reached} ({with_unit(r['train_macs_total_mean'], mdiv, munit, 'MACs')})"
    return acc, cost


def display_frame(numbers: pd.DataFrame) -> pd.DataFrame:
    """Backbone rows; a column per method (accuracy), the budget, a column per method (equal cost)."""
    pdiv, punit = prefix(numbers["deploy_params_mean"])
    mdiv, munit = prefix(pd.concat([numbers["train_macs_total_mean"], numbers["equal_cost_budget_macs"]]))
    rows = []
    for model, block in numbers.groupby("backbone", sort=False):
        block = block.set_index("method")
        shown = {m: cells(block.loc[m], pdiv, punit, mdiv, munit) for m, _ in COLUMNS}
        budget = block["equal_cost_budget_macs"].iloc[0]
        row = {"backbone": backbone_label(model), **{name: shown[m][0] for m, name in COLUMNS},
               f"equal-cost budget ({munit}MACs)": MISSING if pd.isna(budget) else mean_std([budget], mdiv)}
        row.update({f"{name}: val acc % at equal cost (training MACs)": shown[m][1] for m, name in COLUMNS})
        rows.append(row)
    return pd.DataFrame(rows)


def growth_methods_table(runs, epochs, events, out_dir) -> list:
    runs = runs[runs["method"].isin([m for m, _ in COLUMNS])]
    if not runs["method"].isin(GROWING).any():
        return []
    numbers = numbers_frame(runs, epochs)  # some cell has runs: a growing method's
    return write_table(display_frame(numbers), numbers.drop(columns=["_acc", "_at"]), out_dir,
                       "growth_methods", NOTE)
