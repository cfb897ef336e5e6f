"""Experiment specs (experiments/NAME.yaml) -> a list of named jobs, each a list of overrides.

    description: what table or figure this reproduces
    common: {trainer.epochs: 12}               # every job (a YAML list = sweep over its values)
    runs:                                      # alternatives; lists inside are swept too
      - {method: adagrow, grow_mode: [width-depth, width-width-depth]}
      - {method: fixed, model.arch: 1-1-1}
    seeds: [0, 1, 2]
    scales: {cifar: {data: cifar10, trainer.epochs: 100}}   # sweep.py --scale cifar
    table: {rows: [method, grow_mode], metrics: [final_val_acc, test_acc]}

A job key `paper: <table id>` (usually in `common`) names the table of experiments/reference/
paper_numbers.yaml the runs are set beside (python -m analysis adds the paper's numbers); it is
checked here against that file's table ids.

A literal list value (e.g. widths) is written as a string: `model.widths: "[8,12,16]"`.

A run line may carry its own `scales:` for values that differ by run at a scale (a size budget per
model, say): `- {model: vgg, grow.max_params: 42146, scales: {cifar: {grow.max_params: 667370}}}`.
Precedence: common < the run line < the experiment's scale < the run line's scale. A run line may only
name scales the experiment defines.
"""
import itertools
import json
from pathlib import Path

import yaml


def load_experiment(directory, name: str) -> dict:
    path = Path(directory) / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in Path(directory).glob("*.yaml"))
        raise ValueError(f"experiment={name!r}: no {path}; allowed: {', '.join(names)}")
    exp = yaml.safe_load(path.read_text()) or {}
    exp.setdefault("runs", [{}])
    exp.setdefault("seeds", [0])
    check_paper_ids(exp, directory)
    return exp


# The tables a run may name with `paper:` (analysis/paper.py reads and checks the file in full).
PAPER_NUMBERS = Path("reference") / "paper_numbers.yaml"


def check_paper_ids(exp: dict, directory) -> None:
    """A `paper:` value anywhere in the experiment must be a table of experiments/reference/
    paper_numbers.yaml: a typo would otherwise surface only in the analysis, after the sweep has run."""
    specs = [exp.get("common") or {}, *(exp.get("runs") or []), *(exp.get("scales") or {}).values()]
    specs += [s for r in exp.get("runs") or [] for s in ((r or {}).get("scales") or {}).values()]
    named = {v for s in specs for v in (s.get("paper") if isinstance(s.get("paper"), list) else [s.get("paper")])
             if v is not None}
    if not named:
        return
    path = Path(directory) / PAPER_NUMBERS
    if not path.is_file():
        path = Path(__file__).resolve().parents[1] / "experiments" / PAPER_NUMBERS
    tables = (yaml.safe_load(path.read_text()) or {}).get("tables") or {}
    unknown = sorted(str(v) for v in named if v not in tables)
    if unknown:
        raise ValueError(f"paper={unknown[0]!r}: not a table of {path}; allowed: {', '.join(sorted(tables))}")


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _product(spec: dict) -> list[dict]:
    keys = list(spec)
    options = [v if isinstance(v, list) else [v] for v in spec.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*options)]


def _job_name(combo: dict, keys) -> str:
    return ",".join(f"{k}={_fmt(combo.get(k))}" for k in keys).replace("/", "_") or "job"


def expand_jobs(exp: dict, scale: str | None = None) -> list[dict]:
    """[{"name": "method=adagrow,seed=0", "overrides": ["method=adagrow", "seed=0"], "keys": {...}}]"""
    scales = exp.get("scales") or {}
    if scale is not None and scale not in scales:
        raise ValueError(f"--scale={scale!r}: allowed: {', '.join(sorted(scales)) or 'none defined'}")
    combos = []
    for run in exp["runs"]:
        run = dict(run or {})
        own = run.pop("scales", None) or {}
        unknown = sorted(set(own) - set(scales))
        if unknown:
            raise ValueError(f"a run line's scales {unknown} are not among the experiment's scales; "
                             f"allowed: {', '.join(sorted(scales)) or 'none defined'}")
        spec = {**(exp.get("common") or {}), **run, **(scales.get(scale) or {}), **(own.get(scale) or {})}
        for combo in _product(spec):
            for seed in exp["seeds"]:
                combos.append({**combo, "seed": seed})
    varying = [k for k in dict.fromkeys(k for c in combos for k in c)
               if len({_fmt(c.get(k)) for c in combos}) > 1]
    jobs, seen = [], set()
    for combo in combos:
        # only the varying keys this job sets: a key another run line sets would read `key=null` here
        name = _job_name(combo, [k for k in varying if k in combo])
        if name in seen:
            raise ValueError(f"experiment {exp.get('description', '')!r} has two identical jobs: {name}")
        seen.add(name)
        # the name before 2026-11-23 (every varying key, `key=null` for those the job does not set)
        legacy = _job_name(combo, varying)
        jobs.append({"name": name, "overrides": [f"{k}={_fmt(v)}" for k, v in combo.items()],
                     "keys": {k: _fmt(combo.get(k)) for k in varying}, "legacy_name": legacy})
    return jobs


def adopt_legacy_dirs(jobs, sweep_dir) -> list[tuple[str, str]]:
    """Rename job directories written under the old naming (with `key=null` parts) to today's names, so
    that --resume finds their checkpoints and records instead of running those jobs again."""
    sweep_dir, moved = Path(sweep_dir), []
    for job in jobs:
        old, new = sweep_dir / job["legacy_name"], sweep_dir / job["name"]
        # a legacy name longer than the file system allows (every varying key: 17 in growbench) was never
        # written: nothing to adopt
        if len(job["legacy_name"].encode()) > 255:
            continue
        if old != new and old.is_dir() and not new.exists():
            old.rename(new)
            moved.append((old.name, new.name))
    return moved


def job_status(run_dir) -> str | None:
    """'completed' / 'failed' / 'interrupted' from summary.json; 'unfinished' if started; None if absent."""
    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    if summary.exists():
        try:
            return json.loads(summary.read_text()).get("status", "unfinished")
        except json.JSONDecodeError:
            return "unfinished"
    return "unfinished" if (run_dir / "metrics.jsonl").exists() else None
