"""The number one job hands a hyperparameter search (Hydra's Optuna sweeper): `optimized_metric`.

- final_val_acc, best_val_acc, test_acc: read from summary.json;
- val_acc_at_macs: the val acc of the last epoch whose cumulative training MACs (metrics.jsonl
  `train_macs_cum`) are within `optimized_budget_macs`, so that a search compares growth schedules at
  equal training cost, not at equal epochs (a schedule that grows early pays for it in MACs).
A run that did not complete has no objective (None); so has a run whose first epoch already cost more
than the budget. What a sweeper is then told is `for_study`'s choice.
"""
import math

from growth.errors import ConfigError

METRICS = ("final_val_acc", "best_val_acc", "test_acc", "val_acc_at_macs")


def check(cfg: dict) -> None:
    """Before training: the metric is one we can read, and val_acc_at_macs has a budget."""
    metric = cfg.get("optimized_metric", "final_val_acc")
    if metric not in METRICS:
        raise ConfigError("optimized_metric", metric, f"allowed: {', '.join(METRICS)}")
    budget = cfg.get("optimized_budget_macs")
    if metric == "val_acc_at_macs":
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0 \
                or math.isinf(budget):
            raise ConfigError("optimized_budget_macs", budget, "allowed: a positive number of training MACs "
                              "(e.g. 5e9), required by optimized_metric=val_acc_at_macs")
    elif budget is not None:  # a budget nobody reads is a mistake in the command, not a setting
        raise ConfigError("optimized_budget_macs", budget,
                          "allowed: null, unless optimized_metric=val_acc_at_macs (which reads it)")


def value(cfg: dict, summary: dict, rows: list[dict]) -> float | None:
    """The objective of one run from its summary and its metrics.jsonl rows; None: the run has none."""
    if summary.get("status") != "completed":
        return None
    metric = cfg.get("optimized_metric", "final_val_acc")
    if metric == "val_acc_at_macs":
        return at_budget(rows, cfg["optimized_budget_macs"])
    found = summary.get(metric)
    return None if found is None or _nan(found) else float(found)


def at_budget(rows: list[dict], budget: float) -> float | None:
    """Val acc of the last epoch row within the budget. A run that ended under the budget counts with its
    last epoch: it reached that acc for less. Rows stay in file order (train_macs_cum only grows)."""
    within = [r for r in rows if r.get("train_macs_cum") is not None and r.get("val_acc") is not None
              and r["train_macs_cum"] <= budget]
    return float(within[-1]["val_acc"]) if within else None


def why_none(cfg: dict, summary: dict | None) -> str:
    """What a failed trial's line says."""
    if summary is None:
        return "no summary"
    if summary.get("status") != "completed":
        error = summary.get("error")
        return f"status {summary.get('status')}" + (f" ({str(error)[:200]})" if error else "")
    metric = cfg.get("optimized_metric", "final_val_acc")
    if metric == "val_acc_at_macs":
        return f"no epoch within optimized_budget_macs={cfg.get('optimized_budget_macs')}"
    return f"{metric} is {summary.get(metric)}"


def worst(direction) -> float:
    """The value that loses against every real one: -inf when maximizing, +inf when minimizing."""
    name = getattr(direction, "name", direction)  # the sweeper's config may hold its Direction enum
    if name not in ("maximize", "minimize"):
        raise ValueError(f"direction {direction!r}: allowed: maximize, minimize")
    return -math.inf if name == "maximize" else math.inf


def for_study(found, direction) -> float:
    """What a study is told: the objective, or the worst value when there is none (None, NaN)."""
    return worst(direction) if found is None or _nan(found) else float(found)


def _nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
