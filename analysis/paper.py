"""The seed papers' numbers beside ours: experiments/reference/paper_numbers.yaml.

A run opts in by naming a table of that file in its config (`paper: adn_resnet50`, e.g. a sweep file's
`common`); `python -m analysis` then writes paper_<table>.md/.tex/.csv: one row per paper row that
some of those runs match, with ours (mean ± std over the runs, n), the paper's number and the
difference ours - paper for accuracy, params and compute; notes under the table say where the paper
counted with another counter than ours, and when our runs are a stand-in on another dataset.

What a run offers to match (`observations`): its config keys (dotted) and summary fields, plus
  ADN:       one observation per row of its summary's adn_table (`skip`, `arch` of that sub-network)
  ReduceNet: teacher and student (`role`)
  all:       `stages`, the number of stages of the arch.
Runs that name no table are left alone: the piece writes nothing for them.
"""
import logging
import math
from pathlib import Path

import pandas as pd
import yaml

from analysis.collect import read_config
from analysis.tables import mean_std, write_table

log = logging.getLogger("analysis")

ROOT = Path(__file__).resolve().parents[1]
PAPER_NUMBERS = ROOT / "experiments" / "reference" / "paper_numbers.yaml"

SCALES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}
TABLE_KEYS = {"method", "dataset", "source", "params", "compute", "rows", "claims"}
COLUMN_KEYS = {"unit", "name", "counter", "note"}
ROW_KEYS = {"model", "config", "match", "method", "dataset", "params", "compute", "accuracy", "gain_pp",
            "latency_ms", "counted_with"}
CLAIM_KEYS = {"what", "ratio", "text", "ours"}
# Our number beside a claim (analysis/sws.py family_ratios): the claims are "N x fewer / less".
CLAIM_OURS = {"storage": ("storage", False), "cost_saving": ("cost", True)}  # (ratio, inverted)
SIZES = ("params", "compute")  # columns whose printed numbers carry a unit (K/M/G)

# How our numbers are counted, per method (a note names both counters under each table).
OURS_COUNTED = {
    "adn": ("live params of the exported plain sub-network of that skip config",
            "FlopCounterMode MACs (conv, matmul, attention) of that sub-network, per sample"),
    "reducenet": ("live params of the teacher / the (unfolded) student",
                  "FlopCounterMode MACs (conv, matmul) of the deployed (folded) teacher / student, per sample"),
}
OURS_DEFAULT = ("live params of the final training-form model (grown branches included)",
                "FlopCounterMode MACs (conv, matmul, attention) of the deployed (fused) model, per sample")


class PaperNumbersError(ValueError):
    """experiments/reference/paper_numbers.yaml does not follow its schema (the message names where)."""


class Printed(float):
    """A number as the paper prints it: its value, and the digits after the point (8.10 keeps 2)."""
    decimals: int = 0


def _printed(text: str, where: str) -> tuple[float, int, str]:
    """"412.1K" -> (412.1, 1, "K"); "8.10" -> (8.1, 2, "")."""
    text = str(text).strip()
    unit = text[-1] if text[-1:] in ("K", "M", "G") else ""
    number = text[: len(text) - len(unit)]
    try:
        value = float(number)
    except ValueError:
        raise PaperNumbersError(f"{where}: {text!r} is not a number (a number, or one with a K/M/G "
                                f"suffix such as 412.1K)") from None
    return value, len(number.split(".")[1]) if "." in number else 0, unit


class _Loader(yaml.SafeLoader):
    """SafeLoader whose floats remember their printed decimals (YAML would turn 8.10 into 8.1)."""


def _float(loader, node):
    value = Printed(loader.construct_yaml_float(node))
    try:
        value.decimals = _printed(node.value, "")[1]
    except PaperNumbersError:  # 1e9, .inf: no printed decimals to keep
        value.decimals = 0
    return value


_Loader.add_constructor("tag:yaml.org,2002:float", _float)


def _check_keys(entry, allowed: set, where: str, required=()) -> None:
    if not isinstance(entry, dict):
        raise PaperNumbersError(f"{where}: must be a mapping, got {entry!r}")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise PaperNumbersError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise PaperNumbersError(f"{where}: missing key {missing[0]!r}")


def _number(value, where: str, unit: str = "") -> dict:
    """A printed number -> {value (in plain units), decimals, unit} (a string may carry its own unit)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PaperNumbersError(f"{where}: {value!r} is not a number")
    if isinstance(value, str):
        number, decimals, own = _printed(value, where)
        unit = own or unit
    else:
        number, decimals = float(value), getattr(value, "decimals", 0)
    # "4.11e9", not 4.11 * 1e9 (= 4110000000.0000005): the printed number, exactly
    exponent = round(math.log10(SCALES[unit]))
    return {"value": float(f"{number!r}e{exponent}"), "decimals": decimals, "unit": unit}


def _check_table(tid: str, t) -> dict:
    where = f"{PAPER_NUMBERS.name}: tables.{tid}"
    _check_keys(t, TABLE_KEYS, where, required=("method", "dataset", "source"))
    if ("rows" in t) == ("claims" in t):
        raise PaperNumbersError(f"{where}: needs either rows or claims (not both)")
    for col in SIZES:
        if col in t:
            _check_keys(t[col], COLUMN_KEYS, f"{where}.{col}", required=("unit", "counter"))
            if t[col]["unit"] not in SCALES:
                raise PaperNumbersError(f"{where}.{col}.unit: {t[col]['unit']!r}; allowed: K, M, G or ''")
    rows = []
    for i, row in enumerate(t.get("rows") or []):
        w = f"{where}.rows[{i}]"
        _check_keys(row, ROW_KEYS, w, required=("model", "config", "match"))
        if not isinstance(row["match"], dict) or not row["match"]:
            raise PaperNumbersError(f"{w}.match: a non-empty mapping of our run fields, e.g. {{skip: FFFF}}")
        if not isinstance(row.get("counted_with", {}), dict):
            raise PaperNumbersError(f"{w}.counted_with: a mapping of model arguments, e.g. {{num_classes: 200}}")
        out = {k: row[k] for k in ("model", "config", "match", "counted_with") if k in row}
        out["method"], out["dataset"] = row.get("method", t["method"]), row.get("dataset", t["dataset"])
        for key in ("accuracy", "gain_pp", "latency_ms"):
            if key in row:
                out[key] = _number(row[key], f"{w}.{key}")
        for col in SIZES:
            if col in row:
                if col not in t and not isinstance(row[col], str):
                    raise PaperNumbersError(f"{w}.{col}: the table has no `{col}` (unit, counter) for it")
                out[col] = _number(row[col], f"{w}.{col}", (t.get(col) or {}).get("unit", ""))
        rows.append(out)
    for i, claim in enumerate(t.get("claims") or []):
        _check_keys(claim, CLAIM_KEYS, f"{where}.claims[{i}]", required=("what", "ratio", "text"))
        _number(claim["ratio"], f"{where}.claims[{i}].ratio")
        if "ours" in claim and claim["ours"] not in CLAIM_OURS:
            raise PaperNumbersError(f"{where}.claims[{i}].ours: {claim['ours']!r}; allowed: "
                                    f"{', '.join(CLAIM_OURS)}")
    return {**{k: t[k] for k in t if k != "rows"}, "id": tid, "rows": rows}


def load_paper_numbers(path=None) -> dict:
    """{table id: table} with rows checked and numbers parsed; PaperNumbersError names a bad entry."""
    path = Path(path or PAPER_NUMBERS)
    data = yaml.load(path.read_text(), Loader=_Loader) or {}
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
        raise PaperNumbersError(f"{path.name}: needs a top-level `tables:` mapping of table id -> table")
    return {tid: _check_table(tid, t) for tid, t in data["tables"].items()}


# ---- our side -------------------------------------------------------------------------------------
def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def observations(run: pd.Series, config: dict) -> list[dict]:
    """What one run offers to match a paper row: fields (config, summary) and accuracy / params / compute."""
    base = {**config, **{k: v for k, v in run.items() if _scalar(v)}}
    acc = run.get("test_acc") if pd.notna(run.get("test_acc")) else run.get("final_val_acc")
    if run.get("method") == "adn" and isinstance(run.get("adn_table"), list):
        obs = [{**base, "skip": r.get("skip"), "arch": r.get("arch"),
                "accuracy": r.get("test_acc") if r.get("test_acc") is not None else r.get("val_acc"),
                "params": r.get("params"), "compute": r.get("macs")} for r in run["adn_table"]]
    elif run.get("method") == "reducenet":
        obs = [{**base, "role": "teacher", "accuracy": run.get("teacher_test_acc"),
                "params": run.get("teacher_params"), "compute": run.get("teacher_macs")},
               {**base, "role": "student", "accuracy": run.get("student_test_acc"),
                "params": run.get("params"), "compute": run.get("student_macs")}]
    else:
        obs = [{**base, "accuracy": acc, "params": run.get("params"), "compute": run.get("macs")}]
    for o in obs:
        o["stages"] = len(str(o.get("arch") or "").split("-"))
    return obs


def _same(a, b) -> bool:
    """Config and summary values compared as YAML writes them (1 == "1", 1.0 == 1)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return str(a) == str(b)


def matches(row: dict, obs: dict, datasets: set) -> bool:
    """Method and every match field equal; the dataset only when ours is one the table has rows for
    (runs on another dataset are a stand-in for the whole table)."""
    if obs.get("method") != row["method"]:
        return False
    if obs.get("data") in datasets and obs.get("data") != row["dataset"]:
        return False
    return all(k in obs and _same(obs[k], v) for k, v in row["match"].items())


def paper_ids(runs: pd.DataFrame) -> pd.Series:
    """Each run's `paper` config key (None where it has none)."""
    ids = runs["paper"] if "paper" in runs.columns else runs["run"].map(lambda d: read_config(Path(d)).get("paper"))
    # object dtype: pandas' string dtype would turn None back into NaN
    return pd.Series([str(v) if isinstance(v, (str, int)) and not isinstance(v, bool) else None for v in ids],
                     index=runs.index, dtype=object)


# ---- the table ------------------------------------------------------------------------------------
def _decimals(value: float, printed: int) -> int:
    """One digit more than the paper prints, and at least 3 significant digits (a stand-in's tiny MACs)."""
    if not value or not math.isfinite(value):
        return printed + 1
    return min(8, max(printed + 1, 2 - math.floor(math.log10(abs(value)))))


def _cells(values: pd.Series, paper: dict | None, scale: float, header: str, gain=None) -> dict:
    """{ours, paper, Δ} cells of one column, in the paper's unit; "-" where a side has no number."""
    vals = pd.to_numeric(values, errors="coerce").dropna() * scale
    if paper is None:
        return {}
    # printed in K, shown in M: three more decimals keep every printed digit
    printed = max(0, paper["decimals"] + round(math.log10(SCALES[header] / SCALES[paper["unit"]])))
    ref = paper["value"] / SCALES[header]
    cell_paper = f"{ref:.{printed}f}" + ("" if gain is None else f" ({gain['value']:+.{gain['decimals']}f})")
    if vals.empty:
        return {"ours": "-", "paper": cell_paper, "Δ": "-"}
    mean = vals.mean() / SCALES[header]
    d = 2 if paper.get("percent") else _decimals(mean, printed)
    # the same number in every run (a count of one arch) is shown without "± 0"
    ours = f"{mean:.{d}f}" if vals.nunique() == 1 else mean_std(vals / SCALES[header], 1, d)
    return {"ours": ours, "paper": cell_paper, "Δ": f"{mean - ref:+.{d}f}"}


def _units(table: dict) -> dict:
    return {col: (table.get(col) or {}).get("unit", "") for col in SIZES}


def compare(table: dict, obs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numbers): one row per (paper row, our model and data) with matching observations."""
    datasets = {r["dataset"] for r in table["rows"]}
    units = _units(table)
    display, numbers = [], []
    for row in table["rows"]:
        mine = pd.DataFrame([o for o in obs if matches(row, o, datasets)])
        if mine.empty:
            continue
        for (model, data), g in mine.groupby(["model", "data"], sort=False):
            line = {"paper model": row["model"], "config": row["config"], "ours": f"{model}, {data}",
                    "n": len(g)}
            num = {"table": table["id"], "paper_model": row["model"], "config": row["config"],
                   "model": model, "data": data, "n": len(g)}
            columns = [("accuracy", "acc (%)", 100.0, "")] + [
                (col, f"{col} ({units[col]})" if units[col] else col, 1.0, units[col]) for col in SIZES]
            for col, head, scale, unit in columns:
                paper = row.get(col)
                if paper is None:
                    continue
                # accuracy with 2 decimals, as every table of analysis/ shows it
                cells = _cells(g[col], paper if col != "accuracy" else {**paper, "percent": True}, scale,
                               unit, row.get("gain_pp") if col == "accuracy" else None)
                delta = "Δ acc (pp)" if col == "accuracy" else f"Δ {head}"
                line.update({f"{head} ours": cells["ours"], f"{head} paper": cells["paper"], delta: cells["Δ"]})
                vals = pd.to_numeric(g[col], errors="coerce") * scale
                num.update({f"{col}_ours": vals.mean(), f"{col}_ours_std": vals.std(ddof=1),
                            f"{col}_paper": paper["value"],
                            f"{col}_diff": vals.mean() - paper["value"]})
            display.append(line)
            numbers.append(num)
    return pd.DataFrame(display).fillna("-"), pd.DataFrame(numbers)


def notes(table: dict, numbers: pd.DataFrame, methods: set) -> str:
    """The lines under the table: source, how ours is counted vs the paper, stand-in datasets."""
    lines = [f"Paper: {table['source']} (table `{table['id']}`, {table['dataset']}). Ours: mean ± std over "
             f"the n runs that match the row; Δ = ours - paper, in the column's unit (accuracy in pp)."
             + (" In brackets: the paper's gain over individually trained nets (pp)."
                if any("gain_pp" in r for r in table["rows"]) else "")]
    ours_params, ours_compute = OURS_COUNTED.get(next(iter(methods)) if len(methods) == 1 else "", OURS_DEFAULT)
    for col, ours in (("params", ours_params), ("compute", ours_compute)):
        spec = table.get(col)
        if not spec or f"{col}_paper" not in numbers.columns:
            continue
        name = spec.get("name", col)
        if "FlopCounterMode" not in spec["counter"]:
            lines.append(f"Counters differ ({col}): the paper's {name} are {spec['counter']}; ours are {ours}.")
        if spec.get("note"):
            lines.append(spec["note"])
    other = sorted(set(numbers["data"]) - {r["dataset"] for r in table["rows"]})
    if other:
        lines.append(f"Stand-in: the paper's numbers are on {table['dataset']}, ours on {', '.join(other)}: "
                     "Δ shows the difference of scale, not a reproduction error.")
    return "\n\n".join(lines)


def compare_claims(table: dict, runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(display, note): each claim's ratio beside ours where our runs measure it (SWS's family ratios)."""
    from analysis.sws import family_ratios
    ratios = family_ratios(runs)
    rows = []
    for claim in table["claims"]:
        key, inverted = CLAIM_OURS.get(claim.get("ours"), (None, False))
        ours = ratios.get(key)
        ours = None if ours is None else (1 / ours if inverted else ours)
        rows.append({"claim": claim["what"], "paper": claim["text"], "paper ×": f"{float(claim['ratio']):g}",
                     "ours ×": "-" if ours is None else f"{ours:.2f}",
                     "Δ ×": "-" if ours is None else f"{ours - float(claim['ratio']):+.2f}"})
    note = [f"Paper: {table['source']} (table `{table['id']}`, {table['dataset']}): claims without a table. "
            "Ours (every depth with a descendant and a scratch twin, as the SWS depth table's row `all`): "
            "stored parameters = descendants' params / one learngene's; total training cost = scratch "
            "twins' training MACs / (learngene + descendants'). '-': our runs do not measure it."]
    data = sorted(set(runs["data"]) - {table["dataset"]})
    if data:
        note.append(f"Stand-in: the paper's claims are on {table['dataset']}, ours on {', '.join(data)}.")
    return pd.DataFrame(rows), "\n\n".join(note)


def paper_tables(runs, epochs, events, out_dir) -> list:
    """The registry piece: paper_<table>.{md,tex,csv} for every table some runs name; nothing otherwise."""
    ids = paper_ids(runs)
    named = sorted({i for i in ids if isinstance(i, str)})
    if not named:
        return []
    tables = load_paper_numbers()
    written = []
    for tid in named:
        if tid not in tables:
            log.warning("runs name paper table %r, which %s lacks; allowed: %s", tid, PAPER_NUMBERS.name,
                        ", ".join(sorted(tables)))
            continue
        table = tables[tid]
        chosen = runs[ids == tid]
        if table.get("claims"):
            display, note = compare_claims(table, chosen)
            written += write_table(display, None, out_dir, f"paper_{tid}", note)
            continue
        obs = [o for (_, run) in chosen.iterrows() for o in observations(run, read_config(Path(run["run"])))]
        display, numbers = compare(table, obs)
        if display.empty:
            log.warning("paper table %r: none of its %d rows matches the %d run(s) that name it (rows match "
                        "on method and %s)", tid, len(table["rows"]), len(chosen),
                        ", ".join(sorted({k for r in table["rows"] for k in r["match"]})))
            continue
        written += write_table(display, numbers, out_dir, f"paper_{tid}", notes(table, numbers,
                                                                                set(chosen["method"])))
    return written
