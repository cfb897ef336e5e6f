"""Run every piece that applies to a set of runs and write index.md, which shows them all.

    paths = make_report(["outputs/sweeps/smoke"], out_dir="outputs/sweeps/smoke/analysis")
"""
import logging
import os
from pathlib import Path

from analysis.collect import collect
from analysis.registry import PIECES

log = logging.getLogger("analysis")


def _scalar_columns(runs):
    """Columns fit for a CSV cell (summary dicts and lists, e.g. arch_spec, are left out)."""
    return [c for c in runs.columns if not runs[c].map(lambda v: isinstance(v, (dict, list))).any()]


def _section(title: str, paths: list[Path], out_dir: Path) -> str:
    """Tables inline (the .md as it is), images embedded, the rest linked; paths relative to index.md."""
    text = [f"## {title}", ""]
    others = []
    for path in paths:
        rel = Path(os.path.relpath(path, out_dir)).as_posix()
        if path.suffix == ".md":
            text += [path.read_text().rstrip(), ""]
        elif path.suffix == ".png":
            text += [f"![{path.stem}]({rel})", ""]
        else:
            others.append(f"[{path.name}]({rel})")
    if others:
        text += ["Files: " + ", ".join(others), ""]
    return "\n".join(text)


def make_report(dirs, out_dir=None) -> list[Path]:
    """Collect the runs under `dirs`, write every applicable table and plot and index.md to out_dir
    (default <first dir>/analysis). Returns the paths written, index.md last."""
    out_dir = Path(out_dir or Path(dirs[0]) / "analysis")
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, epochs, events = collect(*dirs)
    skipped = {k: v for k, v in runs.attrs.get("skipped", {}).items() if v}
    head = ["# Analysis", "", "Runs from: " + ", ".join(f"`{d}`" for d in dirs), "",
            f"{len(runs)} completed run(s)" + "".join(f"; skipped {n}: {why}" for why, n in skipped.items())
            + ".", ""]
    if runs.empty:
        index = out_dir / "index.md"
        index.write_text("\n".join(head + ["No completed runs: nothing to show."]) + "\n")
        return [index]
    runs_csv = out_dir / "runs.csv"
    runs[_scalar_columns(runs)].to_csv(runs_csv, index=False)
    written, sections = [runs_csv], []
    for name, piece in PIECES.items():
        if not piece.applies(runs):
            continue
        paths = [Path(p) for p in piece.make(runs, epochs, events, out_dir)]
        log.info("%s: %s", name, ", ".join(p.name for p in paths) or "nothing to draw")
        written += paths
        if paths:
            sections.append(_section(piece.title, paths, out_dir))
    index = out_dir / "index.md"
    index.write_text("\n".join(head + sections + ["One row per run: [runs.csv](runs.csv)", ""]))
    return written + [index]
