"""Run benchmarks; per benchmark write DIR/<name>.json and append one row to DIR/results.md.

    python -m benchmarks [names...] [--quick] [--out DIR] [--threads N]
"""
import argparse
import importlib
import json
import math
import sys
import time
from pathlib import Path

import torch

from benchmarks import NAMES
from benchmarks.common import machine

HEADER = ("| benchmark | ratio | what was measured | device | torch | command |\n"
          "|---|---|---|---|---|---|\n")


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"default: all of {', '.join(NAMES)}")
    p.add_argument("--quick", action="store_true", help="tiny sizes, about a minute in all (for tests)")
    p.add_argument("--out", default="outputs/benchmarks", help="folder for the JSON files and results.md")
    # One thread by default: on a shared machine several threads per process wait on each other and the
    # timings scatter by 2-5x; one thread keeps the ratios stable. --threads N to use more.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; allowed: {', '.join(NAMES)}")
    return args


def command(argv) -> str:
    exe = Path(sys.executable)
    try:  # relative to the working directory when it is inside it (e.g. .venv/bin/python)
        exe = exe.relative_to(Path.cwd())
    except ValueError:
        pass
    return " ".join([str(exe), "-m", "benchmarks", *argv])


def cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def row(rec: dict) -> str:
    r = rec["ratio"]
    shown = f"{r:.4g}" if isinstance(r, float) and math.isfinite(r) else "null"
    cells = [rec["name"], shown, rec["measured"], rec["device"], rec["torch"], f"`{rec['command']}`"]
    return "| " + " | ".join(cell(c) for c in cells) + " |\n"


def write(out: Path, rec: dict) -> None:
    (out / f"{rec['name']}.json").write_text(json.dumps(rec, indent=2) + "\n")
    table = out / "results.md"
    if not table.exists():
        table.write_text(HEADER)
    with table.open("a") as f:
        f.write(row(rec))


def run_one(name: str, quick: bool, cmd: str) -> dict:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    result = importlib.import_module(f"benchmarks.{name}").run(quick)
    return {"name": name, "ratio": result["ratio"], "measured": result["measured"], "quick": quick,
            **machine(), "threads": torch.get_num_threads(), "command": cmd,
            "seconds": round(time.perf_counter() - t0, 2),
            **{k: v for k, v in result.items() if k not in ("ratio", "measured")}}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(argv)
    for name in args.names or NAMES:
        rec = run_one(name, args.quick, cmd)
        write(out, rec)
        print(f"{name}: ratio {rec['ratio']} ({rec['seconds']} s) -- {rec['measured']}", flush=True)
    print(f"results: {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
