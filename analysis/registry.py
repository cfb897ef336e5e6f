"""Every table and plot `python -m analysis` can make: name -> Piece.

A piece is a function (runs, epochs, events, out_dir) -> list of the paths it wrote (.md tables are
shown inline in index.md, .png images embedded, other files linked). `methods` says when it runs: None
for any set of runs, else when at least one run has one of these methods; `when`, if given, is a
further test on the runs (GrowBench's: their config says bench: growbench). It gets every run, not
only those, so that it can compare with the baselines.

To add one (e.g. ReduceNet's teacher/student table): write analysis/reducenet.py with

    def reducenet_table(runs, epochs, events, out_dir):
        display = ...                      # a DataFrame, e.g. from analysis.tables.summary_table
        return write_table(display, None, out_dir, "reducenet")

and add a line to PIECES below:

    "reducenet": Piece("ReduceNet: teacher vs student", reducenet.reducenet_table, methods=("reducenet",)),
"""
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from analysis import adagrow, adn, cost, growbench, growth_methods, pareto, reducenet, tables, trajectory
from analysis import paper, sws


@dataclass(frozen=True)
class Piece:
    title: str
    make: Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame, object], list]
    methods: tuple[str, ...] | None = None
    when: Callable[[pd.DataFrame], bool] | None = None  # a further test on the runs (e.g. which sweep made them)

    def applies(self, runs: pd.DataFrame) -> bool:
        if runs.empty:
            return False
        if self.methods is not None and not runs["method"].isin(self.methods).any():
            return False
        return self.when is None or self.when(runs)


PIECES = {
    "accuracy": Piece("Accuracy table: mean ± std over seeds", tables.accuracy_table),
    "trajectories": Piece("Growth trajectories", trajectory.trajectories),
    "pareto": Piece("Accuracy vs params and MACs, Pareto front", pareto.pareto),
    "training_cost": Piece("Training cost: val accuracy vs cumulative training MACs", cost.training_cost),
    "adagrow": Piece("AdaGrow: method x grow mode, and the seed's table", adagrow.adagrow_tables,
                     methods=("adagrow",)),
    "growth_methods": Piece("Growth methods per backbone (the AdaGrow thesis's layout), and at equal training cost",
                            growth_methods.growth_methods_table, methods=growth_methods.GROWING),
    # runs of experiments/growbench*.yaml only (they set bench: growbench)
    "growbench": Piece("GrowBench: every growth method vs the fixed final model at equal training cost",
                       growbench.growbench_tables, when=growbench.is_growbench),
    "adn": Piece("ADN: every skip config vs individually trained nets", adn.adn_report, methods=("adn",)),
    "reducenet": Piece("ReduceNet: teacher vs student vs the student's shape from scratch",
                       reducenet.reducenet_pieces, methods=("reducenet",)),
    "sws": Piece("Learngene SWS: descendants vs scratch per depth", sws.sws_pieces, methods=("sws",)),
    # any method: it writes only for runs whose config names a table of experiments/reference/paper_numbers.yaml
    "paper": Piece("The papers' numbers beside ours", paper.paper_tables),
}
