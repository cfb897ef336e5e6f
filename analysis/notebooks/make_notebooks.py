"""Write growth_curves.ipynb and accuracy_tables.ipynb (no outputs stored): `python analysis/notebooks/make_notebooks.py`.

The notebooks only call analysis/ functions, so a change there shows in them without editing JSON.
Their FIRST cell sets RUNS; the tests replace that cell's source to point them at a fresh sweep.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

RUNS_CELL = '''RUNS = "outputs/sweeps/smoke"  # a run or sweep directory, or a list of them; relative to the repo root'''

SETUP = '''%matplotlib inline
import sys
from pathlib import Path

from IPython.display import Markdown, display

# The repo root (where pyproject.toml is): analysis/ imports from it even without `pip install -e .`,
# and a relative RUNS is read from there, wherever Jupyter was started.
ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists()), Path.cwd())
sys.path.insert(0, str(ROOT))

from analysis.collect import collect

dirs = [ROOT / d for d in ([RUNS] if isinstance(RUNS, (str, Path)) else RUNS)]
runs, epochs, events = collect(*dirs)
print(f"{len(runs)} completed runs, {len(epochs)} epoch rows, {len(events)} events; skipped: {runs.attrs['skipped']}")'''

GROWTH = [
    new_markdown_cell("# Growth curves\n\nParameters and val accuracy per epoch with the growth events, "
                      "and val accuracy against the training MACs spent. Set `RUNS` in the first cell."),
    new_code_cell(SETUP),
    new_markdown_cell("## Growth trajectories (mean ± std over seeds)"),
    new_code_cell("from analysis.trajectory import trajectory_figure\n\n"
                  "display(trajectory_figure(runs, epochs, events))"),
    new_markdown_cell("## Growth events"),
    new_code_cell('cols = [c for c in ["run", "epoch", "kind", "where", "arch_before", "arch_after", '
                  '"params_before", "params_after"] if c in events.columns]\n'
                  "events[cols] if not events.empty else 'no structural events'"),
    new_markdown_cell("## Training cost: val accuracy vs cumulative training MACs"),
    new_code_cell("from analysis.cost import cost_figure, equal_budget, equal_cost_table\n"
                  "from analysis.groups import with_groups\n"
                  "from analysis.tables import to_markdown\n\n"
                  "display(cost_figure(runs, epochs))\n"
                  "display(Markdown(to_markdown(equal_cost_table(with_groups(runs), epochs, "
                  "equal_budget(epochs)))))"),
]

TABLES = [
    new_markdown_cell("# Accuracy tables\n\nMean ± std over seeds per configuration (the config keys that "
                      "vary, seed excluded), the AdaGrow tables and the Pareto plot. Set `RUNS` in the "
                      "first cell."),
    new_code_cell(SETUP),
    new_markdown_cell("## All configurations"),
    new_code_cell("from analysis.tables import summary_table, to_latex, to_markdown\n\n"
                  "table, numbers = summary_table(runs)\n"
                  "display(Markdown(to_markdown(table)))\n"
                  "numbers  # the same in the record's units, as written to CSV"),
    new_code_cell("print(to_latex(table))"),
    new_markdown_cell("## AdaGrow: method x grow mode, and the seed's layout"),
    new_code_cell("from analysis.adagrow import modes_table, seed_table\n\n"
                  "if (runs['method'] == 'adagrow').any():\n"
                  "    display(Markdown(to_markdown(modes_table(runs))))\n"
                  "    display(Markdown(to_markdown(seed_table(runs))))\n"
                  "else:\n"
                  "    print('no adagrow runs')"),
    new_markdown_cell("## Accuracy vs params and MACs, Pareto front"),
    new_code_cell("from analysis.pareto import pareto_figure\n\ndisplay(pareto_figure(runs))"),
]


def notebook(cells, name: str):
    nb = new_notebook(cells=[new_code_cell(RUNS_CELL), *cells])
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name}-{i}"  # stable ids: regenerating gives the same file
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    nbformat.validate(nb)
    return nb


def main() -> None:
    for name, cells in [("growth_curves", GROWTH), ("accuracy_tables", TABLES)]:
        path = HERE / f"{name}.ipynb"
        nbformat.write(notebook(cells, name), path)
        print(path)


if __name__ == "__main__":
    main()
