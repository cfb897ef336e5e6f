#!/usr/bin/env python
"""Train one job: compose the Hydra config, hand a plain dict to growth/, leave a run record.

    python run.py                                   # default job on digits
    python run.py model=timm model.name=resnet18 trainer.epochs=1
    python run.py hydra.run.dir=outputs/runs/mine   # re-run the same dir to resume
"""
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


def main() -> None:
    problem = preflight(sys.argv[1:]) or require_run_dir(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


def _hydra_app():
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from growth.engine.job import run_job
    from growth.engine.record import RunRecord
    from growth.errors import ConfigError, RunDirBusy

    @hydra.main(version_base="1.3", config_path="conf", config_name="config")
    def app(cfg):
        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        multirun = hc.mode == RunMode.MULTIRUN
        try:  # config_resolved.yaml is written by run_job, once it is checked against a resumed run's
            summary = run_job(OmegaConf.to_container(cfg, resolve=True), run_dir)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            record = RunRecord(run_dir, write=not isinstance(e, RunDirBusy))  # a busy dir is not ours to write
            if record.write and not record.path("summary").exists():
                record.write_summary({"status": "failed", "error": str(e)})
            if multirun:  # one bad job must not stop the sweep; the summary says it failed
                return None
            sys.exit(2)
        except Exception as e:  # noqa: BLE001 - in a sweep, a crash is recorded, not propagated
            if not multirun:
                raise
            import traceback
            RunRecord(run_dir).write_summary({"status": "failed", "error": f"{type(e).__name__}: {e}",
                                              "traceback": traceback.format_exc()})
            print(f"error: job crashed: {type(e).__name__}: {e}", file=sys.stderr)
            return None
        if int(os.environ.get("RANK", "0")) != 0:  # distributed: rank 0 reports
            return summary.get("final_val_acc")
        if summary.get("already_completed"):  # nothing trained, nothing rewritten
            print(f"already completed: {status_line(summary)}\nrun record: {run_dir}")
            return summary.get("final_val_acc")
        print_report(summary, run_dir)
        print(status_line(summary))
        if summary["status"] != "completed" and not multirun:
            print(f"error: {summary['error']}", file=sys.stderr)
            sys.exit(1)
        return summary.get("final_val_acc")

    return app


def status_line(summary: dict) -> str:
    return (f"status {summary['status']}: arch {summary['arch']}, params {summary['params']:,} "
            f"(deployed {summary['deploy_params']:,}), final val acc {summary['final_val_acc']}, "
            f"test acc {summary['test_acc']}, train time {summary['train_time_s']:.1f}s")


def print_report(summary: dict, run_dir: Path) -> None:
    """What a person wants to see at the end: the growth trajectory and the deployed size."""
    if summary.get("trajectory"):
        print("growth trajectory:")
        for t in summary["trajectory"]:
            where = t["where"] if isinstance(t["where"], str) else f"{len(t['where'])} unit(s)"
            print(f"  epoch {t['epoch']:>3}  {t['kind']:<11} {where:<12} arch {t['arch_after']:<9} "
                  f"params {t['params_after']:>10,}  deployed {t['deploy_params_after']:>10,}")
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
