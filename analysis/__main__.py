"""python -m analysis DIR... [--out DIR]: every table and plot the runs under DIR support, and index.md.

    python -m analysis outputs/sweeps/smoke                  # -> outputs/sweeps/smoke/analysis/index.md
    python -m analysis outputs/sweeps/a outputs/runs --out report
"""
import argparse
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: a cluster node or CI has no display

from analysis.paper import PaperNumbersError  # noqa: E402
from analysis.report import make_report  # noqa: E402  (after the backend is chosen)


def print_paper_tables(paths) -> None:
    """The papers' numbers beside ours are what a reproduction is read for: shown here, not only in a file."""
    for path in (Path(p) for p in paths):
        if path.name.startswith("paper_") and path.suffix == ".md":
            print(f"\n{path.name}:\n{path.read_text().strip()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n")[0])
    p.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    p.add_argument("--out", default=None, help="output directory (default: <first DIR>/analysis)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: not a directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        paths = make_report(args.dirs, args.out)
    except PaperNumbersError as e:  # runs name a paper table and the file of paper numbers is malformed
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    print_paper_tables(paths)
    if len(paths) == 1:  # index.md alone: no completed run was found
        print(f"error: no completed run records under {', '.join(args.dirs)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
