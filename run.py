#!/usr/bin/env python
"""Train one job: compose the Hydra config, hand a plain dict to growth/, leave a run record.

    python run.py                                   # default job on digits
    python run.py model=timm model.name=resnet18 trainer.epochs=1
    python run.py hydra.run.dir=outputs/runs/mine   # re-run the same dir to resume
"""
import difflib
import os
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent / "conf"


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def preflight(argv: list[str]) -> str | None:
    """Unknown config-group options, caught before Hydra prints a screenful: one line instead."""
    if any(a.startswith("hydra.searchpath=") for a in argv):
        return None  # more config folders: their options are Hydra's to find (and to report)
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key.startswith("hydra") or "." in key or not (CONF / key).is_dir():
            continue
        listed = value.startswith("[") and value.endswith("]")  # logger=[tensorboard,mlflow]: several at once
        value = value[1:-1] if listed else value
        if any(c in value for c in "()$[]{}*") or value in ("", "null"):
            continue
        allowed = _group_options(key)
        for option in value.split(","):
            if option not in allowed:
                return f"{key}={option!r}: unknown option; allowed: {', '.join(allowed)}"
    return None


def require_run_dir(argv: list[str]) -> str | None:
    """Under torchrun every rank composes its own config; a time-stamped run dir could differ by rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not any(a.startswith("hydra.run.dir=") for a in argv):
        return (f"hydra.run.dir: not set, with WORLD_SIZE={world} (torchrun); allowed: an explicit "
                "directory, so that every rank writes to the same run record")
    return None


def compose_problem(argv: list[str]) -> str | None:
    """What Hydra would report as a screenful and exit 1 (bad override syntax, a key the config does not
    have, an interpolation that does not resolve), found by composing the config here, as one line.

    A multirun composes each sweep value once, the other sweeps at their first value (Hydra composes
    every job; a bad value would stop the sweep half-way). Hydra's flags that run nothing (--help,
    --info, ...) or pick another config are Hydra's to handle; so is an error we do not know."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = get_args_parser().parse_args(argv)  # a bad flag: argparse says so and exits 2, as Hydra would
    if any(getattr(args, flag) for flag in ("help", "hydra_help", "info", "shell_completion", "config_path",
                                            "config_name", "config_dir", "experimental_rerun")):
        return None
    parser = OverridesParser.create()
    parsed = []
    for arg in args.overrides:
        try:
            parsed.append(parser.parse_override(arg))
        except HydraException as e:
            return f"{_shown(arg)}: not a valid override ({_one_line(e)}); allowed: key=value, e.g. optim.lr=0.01"
    try:
        jobs = _jobs(parsed, args.overrides) if args.multirun else [list(args.overrides)]
    except HydraException:  # e.g. glob(): Hydra expands it against the config groups itself
        return None
    for job in jobs:
        problem = _compose_job(job)
        if problem:
            return problem
    return None


def _jobs(parsed, overrides: list[str]) -> list[list[str]]:
    """The first job of a sweep, and for each sweep's other values one job with only that value changed."""
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [arg]
              for o, arg in zip(parsed, overrides)]
    keys = [o.get_key_element() if o.is_sweep_override() else None for o in parsed]
    pick = lambda i, v: v if keys[i] is None else f"{keys[i]}={v}"
    first = [pick(i, vs[0]) for i, vs in enumerate(values)]
    jobs = [first]
    for i, vs in enumerate(values):
        jobs += [[*first[:i], pick(i, v), *first[i + 1:]] for v in vs[1:]]
    return jobs


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    OmegaConf.to_container(cfg, resolve=True)  # interpolations resolve here (hydra.* are not composed)
    return cfg


def _compose_job(overrides: list[str]) -> str | None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        _compose(overrides)
        return None
    except (HydraException, OmegaConfBaseException) as e:
        error = e
    except Exception:  # noqa: BLE001 - not a config error we can name: Hydra reports it as it always did
        return None
    # Which override is it? Hydra applies hydra.* (search path) and group choices before values: add them
    # in that order until the config stops composing.
    key = lambda a: a.partition("=")[0].lstrip("+~")
    ordered = sorted(overrides, key=lambda a: (not key(a).startswith("hydra"), "." in key(a)))
    try:
        good = _compose([])  # the keys there are before the culprit
    except (HydraException, OmegaConfBaseException):
        return _describe(None, error, None)  # conf/ itself does not compose
    for i, arg in enumerate(ordered):
        try:
            good = _compose(ordered[:i + 1])
        except (HydraException, OmegaConfBaseException) as e:
            return _describe(arg, e, good)
    return _describe(None, error, good)  # only together (or in conf/ itself): name the key Hydra names


def _describe(arg: str | None, error: Exception, good) -> str:
    """One line for a composition error: key=value, then what is allowed."""
    from omegaconf import DictConfig, OmegaConf

    cause = error.__cause__ if error.__cause__ is not None else error
    full_key = getattr(cause, "full_key", None) or getattr(error, "full_key", None)
    if arg is None:
        return f"{full_key or 'config'}: {_one_line(error)}"
    key = arg.partition("=")[0].lstrip("+~")
    if "not in struct" in str(cause) and good is not None:  # a key the config does not have: list those it has
        unknown = full_key if isinstance(full_key, str) and key.startswith(full_key) else key
        parent, _, leaf = unknown.rpartition(".")
        node = OmegaConf.select(good, parent) if parent else good
        if isinstance(node, DictConfig):
            names = sorted(str(k) for k in node.keys())
            close = difflib.get_close_matches(leaf, names, n=1)
            hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
            what = "unknown key" if unknown == key else f"unknown key {unknown}"
            return (f"{_shown(arg)}: {what}{hint}; allowed: the keys of {parent or 'the config'}: "
                    f"{', '.join(names)}")
    return f"{_shown(arg)}: {_one_line(error)}"


def _shown(arg: str) -> str:
    key, sep, value = arg.partition("=")
    return f"{key.lstrip('+~')}={value!r}" if sep else arg


def _one_line(error: Exception) -> str:
    """Hydra's and OmegaConf's lines joined, without OmegaConf's where-in-the-tree lines."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    noise = ("full_key:", "object_type=", "reference_type=")
    return "; ".join(ln for ln in lines if ln and not ln.startswith(noise))


def main() -> None:
    problem = preflight(sys.argv[1:]) or require_run_dir(sys.argv[1:]) or compose_problem(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


def _hydra_app():
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from growth.imports import wandb_hidden
    with wandb_hidden():  # timm (imported by the engine) would import wandb too: 1.5 s of every start
        from growth.engine.job import run_job
    from growth.engine.record import RunRecord
    from growth.errors import ConfigError, RunDirBusy

    @hydra.main(version_base="1.3", config_path="conf", config_name="config")
    def app(cfg):
        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        multirun = hc.mode == RunMode.MULTIRUN
        direction = study_direction(hc)  # before training: a direction we cannot serve stops here
        plain = {}
        try:  # config_resolved.yaml is written by run_job, once it is checked against a resumed run's
            plain = OmegaConf.to_container(cfg, resolve=True)
            summary = run_job(plain, run_dir)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            # A busy dir is not ours to write; a dry run writes nothing but its own summary.
            record = RunRecord(run_dir, write=not isinstance(e, RunDirBusy) and not cfg.trainer.get("dry_run"))
            if record.write and not record.path("summary").exists():
                record.write_summary({"status": "failed", "error": str(e)})
            if not multirun:
                sys.exit(2)
            summary = {"status": "failed", "error": str(e)}  # one bad job must not stop the sweep
        except Exception as e:  # noqa: BLE001 - in a sweep, a crash is recorded, not propagated
            if not multirun:
                raise
            import traceback
            summary = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            RunRecord(run_dir).write_summary({**summary, "traceback": traceback.format_exc()})
            print(f"error: job crashed: {type(e).__name__}: {e}", file=sys.stderr)
        else:
            report(summary, run_dir, multirun)
        return sweep_value(plain, summary, run_dir, direction)

    return app


def report(summary: dict, run_dir: Path, multirun: bool) -> None:
    """What a finished job prints; a run that did not complete exits 1 outside a sweep."""
    if int(os.environ.get("RANK", "0")) != 0:  # distributed: rank 0 reports
        return
    if summary["status"] == "dry_run":
        print(dry_run_line(summary))
        print(f"run record: {run_dir / 'summary.json'}")
        return
    if summary.get("already_completed"):  # nothing trained, nothing rewritten
        print(f"already completed: {status_line(summary)}\nrun record: {run_dir}")
        return
    print_report(summary, run_dir)
    print(status_line(summary))
    if summary["status"] != "completed" and not multirun:
        print(f"error: {summary['error']}", file=sys.stderr)
        sys.exit(1)


def study_direction(hc):
    """The direction of an Optuna sweep (`hydra/sweeper=optuna`), a string or a one-item list; None under
    any other sweeper (basic, jobs_file), which reads no return value."""
    sweeper = hc.get("sweeper") or {}
    if "optuna" not in str(sweeper.get("_target_", "")).lower():
        return None
    direction = sweeper.get("direction")
    if isinstance(direction, str) or not hasattr(direction, "__len__"):
        return direction
    if len(direction) != 1:  # several objectives would need several numbers per run: not what a run returns
        print(f"error: hydra.sweeper.direction={list(direction)}: allowed: one direction "
              "(run.py returns one objective, optimized_metric)", file=sys.stderr)
        sys.exit(2)
    return direction[0]


def sweep_value(cfg: dict, summary: dict, run_dir: Path, direction):
    """The job's return value: its objective (optimized_metric, growth/objective.py), or None without one.

    Hydra's Optuna sweeper casts every return value to float and re-raises when it cannot: one failed,
    diverged or interrupted trial (None) would end the whole study, and no optimization_results.yaml would
    be written. Under that sweeper a trial without an objective returns the worst value of the study's
    direction instead (-inf for maximize, +inf for minimize), which Optuna records as a completed trial
    that loses to every real one; its summary.json keeps the status it had. Outside Optuna a failure
    returns None, as before."""
    from growth import objective
    from growth.engine.record import RunRecord

    at_macs = cfg.get("optimized_metric") == "val_acc_at_macs"  # the only metric that reads metrics.jsonl
    rows = RunRecord(run_dir, write=False).metrics() if at_macs and summary["status"] == "completed" else []
    found = objective.value(cfg, summary, rows)
    if direction is None:
        return found
    told = objective.for_study(found, direction)
    if told != found:
        print(f"trial failed: {objective.why_none(cfg, summary)}; returned {told} to the Optuna sweeper "
              f"(the worst for direction {getattr(direction, 'name', direction)}), the study goes on")
    return told


def status_line(summary: dict) -> str:
    return (f"status {summary['status']}: arch {summary['arch']}, params {summary['params']:,} "
            f"(deployed {summary['deploy_params']:,}), final val acc {summary['final_val_acc']}, "
            f"test acc {summary['test_acc']}, train time {summary['train_time_s']:.1f}s")


def dry_run_line(summary: dict) -> str:
    sizes = summary["method_sizes"]
    extra = f", method sizes: {', '.join(map(str, sizes))}" if sizes else ""
    return (f"dry run: arch {summary['arch']}, params {summary['params']:,} (deployed {summary['deploy_params']:,}), "
            f"{summary['macs'] / 1e6:.2f} M MACs per sample (train {summary['train_macs_per_sample'] / 1e6:.2f} M), "
            f"input {'x'.join(map(str, summary['input_size']))}, {summary['num_classes']} classes, "
            f"random step loss {summary['step_loss']:.4f}{extra}")


def print_report(summary: dict, run_dir: Path) -> None:
    """What a person wants to see at the end: the growth trajectory and the deployed size."""
    if summary.get("trajectory"):
        print("growth trajectory:")
        for t in summary["trajectory"]:
            if "arch_after" not in t:  # not a growth step (e.g. MSG's mask fold-away marks)
                continue
            # the stacking methods' entries name no kind or site (they stack every layer)
            where = t.get("where", "all layers")
            where = where if isinstance(where, str) else f"{len(where)} unit(s)"
            line = (f"  epoch {t['epoch']:>3}  {t.get('kind', 'grow_depth'):<11} {where:<12} arch {t['arch_after']:<9} "
                    f"params {t['params_after']:>10,}")
            if "deploy_params_after" in t:
                line += f"  deployed {t['deploy_params_after']:>10,}"
            if "widths_after" in t:  # methods that widen stages (Net2Net, SplitGrow)
                line += f"  widths {'-'.join(map(str, t['widths_after']))}"
            print(line)
        if summary.get("growth_stopped"):
            print(f"  growth stopped: {summary['growth_stopped']}")
    for line in summary.get("report") or []:  # a method's own results (ReduceNet phases, SWS ratios)
        print(line)
    if summary["status"] == "completed":
        print(f"fused model: {summary['deploy_params']:,} params, {summary['macs'] / 1e6:.2f} M MACs per sample "
              f"(training form {summary['params']:,} params; max |fused - unfused| "
              f"{summary['deploy_max_abs_diff']:.1e}); training cost {summary['train_macs_total'] / 1e9:.1f} GMACs")
    print(f"run record: {run_dir}")


def hydra_main():
    return _hydra_app()()


if __name__ == "__main__":
    main()
