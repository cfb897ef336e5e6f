"""Mean ± std over seeds per configuration, written as markdown, LaTeX and CSV.

    display, numbers = summary_table(runs)            # one row per group, n = seeds
    write_table(display, numbers, out_dir, "accuracy")  # accuracy.md, accuracy.tex, accuracy.csv
"""
import math
from pathlib import Path

import pandas as pd

from analysis.groups import as_text, group_keys, short
from analysis.style import prefix

# (summary field, header, kind): kind "acc" is shown in %, "count" and "macs" with a K/M/G prefix.
METRICS = [("test_acc", "test acc", "acc"), ("final_val_acc", "val acc", "acc"),
           ("deploy_params", "deployed params", "count"), ("macs", "MACs / sample", "macs"),
           ("train_macs_total", "training MACs", "macs")]


def _decimals(x: float) -> int:
    """Three significant digits for a value below 1000 (the prefix puts it there)."""
    if not x or not math.isfinite(x):
        return 2
    return min(3, max(0, 2 - math.floor(math.log10(abs(x)))))


def mean_std(values, scale: float = 1.0, decimals: int | None = None) -> str:
    """"84.81 ± 1.05"; a single value (n = 1) is shown without ±; no value at all as "-"."""
    vals = pd.to_numeric(pd.Series(values), errors="coerce").dropna() / scale
    if vals.empty:
        return "-"
    mean = vals.mean()
    d = _decimals(mean) if decimals is None else decimals
    if len(vals) == 1:
        return f"{mean:.{d}f}"
    return f"{mean:.{d}f} ± {vals.std(ddof=1):.{d}f}"


def metric_header(runs: pd.DataFrame, column: str, header: str, kind: str) -> tuple[str, float, int | None]:
    """(header with unit, divisor, decimals) shared by a whole column, so that rows compare at a glance."""
    if kind == "acc":
        return f"{header} (%)", 0.01, 2
    div, unit = prefix(pd.to_numeric(runs[column], errors="coerce").groupby(runs["_g"]).mean())
    name = "MACs" if kind == "macs" else ""
    inside = f"{unit}{name}".strip()
    return (f"{header} ({inside})" if inside else header), div, None


def summary_table(runs: pd.DataFrame, keys: list[str] | None = None, metrics=METRICS):
    """(display, numbers): one row per group of runs that differ only in seed.

    display holds "mean ± std" strings with units in the headers (for markdown and LaTeX); numbers
    holds <metric>_mean, <metric>_std in the record's own units (for CSV). Both end with n, the seeds."""
    keys = group_keys(runs) if keys is None else keys
    metrics = [m for m in metrics if m[0] in runs.columns and runs[m[0]].notna().any()]
    runs = runs.assign(_g=as_text(runs, keys).agg("|".join, axis=1) if keys else "all")
    heads = {m[0]: metric_header(runs, *m) for m in metrics}
    display, numbers = [], []
    for _, g in runs.groupby("_g", sort=False):
        label = {short(k): g[k].iloc[0] for k in keys}
        row, num = dict(label), dict(label)
        for column, _, _ in metrics:
            head, div, dec = heads[column]
            row[head] = mean_std(g[column], div, dec)
            vals = pd.to_numeric(g[column], errors="coerce")
            num[f"{column}_mean"], num[f"{column}_std"] = vals.mean(), vals.std(ddof=1)
        row["n"] = num["n"] = len(g)
        display.append(row)
        numbers.append(num)
    return pd.DataFrame(display), pd.DataFrame(numbers)


def to_markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True)


def _tex(cell) -> str:
    text = str(cell).replace("\\", "\x00")  # backslash last: its replacement has braces
    for a, b in [("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"), ("{", r"\{"),
                 ("}", r"\}")]:
        text = text.replace(a, b)
    return text.replace("\x00", r"\textbackslash{}").replace("±", r"$\pm$")


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); text columns left, numbers right."""
    align = "".join("r" if c == "n" or df[c].astype(str).str.match(r"^[-\d.]").all() else "l"
                    for c in df.columns)
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(_tex(c) for c in df.columns) + r" \\",
             r"\midrule"]
    lines += [" & ".join(_tex(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_table(display: pd.DataFrame, numbers: pd.DataFrame | None, out_dir, name: str,
                note: str = "") -> list[Path]:
    """name.md (with an optional note under the table), name.tex, name.csv (numbers if given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, tex, csv = (out_dir / f"{name}.{ext}" for ext in ("md", "tex", "csv"))
    md.write_text(to_markdown(display) + (f"\n\n{note}" if note else "") + "\n")
    tex.write_text(to_latex(display))
    (display if numbers is None else numbers).to_csv(csv, index=False)
    return [md, tex, csv]


def accuracy_table(runs, epochs, events, out_dir) -> list[Path]:
    """The main table: every configuration, mean ± std over seeds, n."""
    display, numbers = summary_table(runs)
    note = ("Mean ± std over seeds (n); accuracy of the final epoch's model; params and MACs of the "
            "deployed (fused) model, MACs per sample; training MACs count forward and backward passes.")
    return write_table(display, numbers, out_dir, "accuracy", note)
