"""Hyperparameter search: what one run returns (growth/objective.py, run.py) and a real Optuna study
(conf/hparams_search/adagrow_digits.yaml) whose best parameters are those of its best run record."""
import json
import math

import pytest
import yaml
from omegaconf import OmegaConf

import run
from growth import objective
from growth.errors import ConfigError
from tests.conftest import tiny_cfg

ROWS = [{"epoch": 1, "val_acc": 0.5, "train_macs_cum": 100}, {"epoch": 2, "val_acc": 0.7, "train_macs_cum": 200},
        {"epoch": 3, "val_acc": 0.6, "train_macs_cum": 300}]
DONE = {"status": "completed", "final_val_acc": 0.6, "best_val_acc": 0.7, "test_acc": 0.65}
SEARCH = ["-m", "hparams_search=adagrow_digits", "model.widths=[4,8,8]", "trainer.epochs=1", "trainer.progress=false",
          "trainer.device=cpu"]


def _cfg(metric="final_val_acc", budget=None):
    return {"optimized_metric": metric, "optimized_budget_macs": budget}


@pytest.mark.parametrize("metric,expect", [("final_val_acc", 0.6), ("best_val_acc", 0.7), ("test_acc", 0.65)])
def test_a_summary_metric_is_read_from_the_summary(metric, expect):
    assert objective.value(_cfg(metric), DONE, ROWS) == expect


@pytest.mark.parametrize("budget,expect", [(100, 0.5), (250, 0.7), (300, 0.6), (1e9, 0.6), (99, None)])
def test_val_acc_at_macs_is_the_last_epoch_within_the_budget(budget, expect):
    assert objective.value(_cfg("val_acc_at_macs", budget), DONE, ROWS) == expect


@pytest.mark.parametrize("summary", [{"status": "failed", "error": "loss became nan"}, {"status": "interrupted"},
                                     {"status": "dry_run"}, {**DONE, "final_val_acc": float("nan")},
                                     {**DONE, "final_val_acc": None}])
def test_a_run_without_an_objective_is_none_and_a_study_gets_the_worst_value(summary):
    assert objective.value(_cfg(), summary, ROWS) is None
    assert objective.for_study(objective.value(_cfg(), summary, ROWS), "maximize") == -math.inf
    assert objective.for_study(None, "minimize") == math.inf
    assert objective.for_study(0.25, "minimize") == 0.25


@pytest.mark.parametrize("cfg,start", [
    (_cfg("val_acc"), "optimized_metric='val_acc': allowed: final_val_acc, best_val_acc, test_acc, val_acc_at_macs"),
    (_cfg("val_acc_at_macs"), "optimized_budget_macs=None: allowed: a positive number"),
    (_cfg("val_acc_at_macs", -5), "optimized_budget_macs=-5: allowed: a positive number"),
    (_cfg("val_acc_at_macs", "1e9"), "optimized_budget_macs='1e9': allowed: a positive number"),
    (_cfg("val_acc_at_macs", math.inf), "optimized_budget_macs=inf: allowed: a positive number"),
    (_cfg("test_acc", 1e9), "optimized_budget_macs=1000000000.0: allowed: null, unless optimized_metric=val_acc_at_macs"),
])
def test_a_bad_metric_or_budget_is_one_config_error(cfg, start):
    with pytest.raises(ConfigError) as e:
        objective.check(cfg)
    assert str(e.value).startswith(start)


def test_the_job_checks_the_metric_and_the_budget_type_before_training():
    from growth.engine.job import validate
    validate(tiny_cfg(optimized_metric="val_acc_at_macs", optimized_budget_macs=2e9))  # passes the type check too
    validate(tiny_cfg(optimized_metric="val_acc_at_macs", optimized_budget_macs=2000000000))
    with pytest.raises(ConfigError, match="^optimized_metric='loss': allowed: final_val_acc"):
        validate(tiny_cfg(optimized_metric="loss"))


def _hc(sweeper):
    return OmegaConf.create({"sweeper": sweeper})


def test_the_direction_is_read_from_the_optuna_sweeper_only():
    target = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert run.study_direction(_hc({"_target_": target, "direction": "maximize"})) == "maximize"
    assert run.study_direction(_hc({"_target_": target, "direction": ["minimize"]})) == "minimize"
    assert run.study_direction(_hc({"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"})) is None
    with pytest.raises(SystemExit) as e:  # one number per run cannot serve two objectives
        run.study_direction(_hc({"_target_": target, "direction": ["maximize", "minimize"]}))
    assert e.value.code == 2


def test_a_failed_trial_returns_the_worst_value_under_optuna_and_none_outside(tmp_path, capsys):
    failed = {"status": "failed", "error": "loss became nan at epoch 1, step 3"}
    assert run.sweep_value(_cfg(), failed, tmp_path, None) is None
    assert run.sweep_value(_cfg(), failed, tmp_path, "maximize") == -math.inf
    line = capsys.readouterr().out.strip()
    assert line.startswith("trial failed: status failed (loss became nan") and "returned -inf" in line
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert run.sweep_value(_cfg("val_acc_at_macs", 250), DONE, tmp_path, "maximize") == 0.7
    assert run.sweep_value(_cfg("val_acc_at_macs", 50), DONE, tmp_path, "minimize") == math.inf
    assert "no epoch within optimized_budget_macs=50" in capsys.readouterr().out


def test_hparams_search_is_a_group_the_command_line_checks_know():
    assert run.preflight(["-m", "hparams_search=adagrow_digits"]) is None
    assert "hparams_search='nope': unknown option; allowed: adagrow_digits" in run.preflight(["hparams_search=nope"])
    cfg = run._compose(["hparams_search=adagrow_digits"])
    assert cfg.method.name == "adagrow" and cfg.data.name == "digits" and cfg.optimized_metric == "final_val_acc"


def _trials(sweep_dir):
    """(params the sweeper set, summary) of each trial's run dir."""
    out = []
    for summary in sorted(sweep_dir.glob("*/summary.json")):
        overrides = yaml.safe_load((summary.parent / ".hydra" / "overrides.yaml").read_text())
        params = dict(o.split("=", 1) for o in overrides)
        out.append((params, json.loads(summary.read_text())))
    return out


@pytest.mark.slow
def test_a_search_of_4_trials_writes_the_best_runs_parameters(cli, tmp_path):
    proc = cli([*SEARCH, f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    trials = _trials(tmp_path)
    assert len(trials) == 4 and all(s["status"] == "completed" for _, s in trials)
    best_params, best = max(trials, key=lambda t: t[1]["final_val_acc"])
    assert result["best_value"] == best["final_val_acc"]
    assert set(result["best_params"]) == {"grow.interval", "grow.width_ratio", "optim.lr"}
    for key, value in result["best_params"].items():
        assert float(best_params[key]) == value, key
    assert len({t[0]["optim.lr"] for t in trials}) == 4  # the sampler did vary the trials


@pytest.mark.slow
def test_a_bad_metric_stops_the_command_with_one_line(cli, tmp_path):
    proc = cli(["optimized_metric=loss", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == ["error: optimized_metric='loss': allowed: final_val_acc, best_val_acc, test_acc, val_acc_at_macs"]
    assert not (tmp_path / "run" / "metrics.jsonl").exists() or not (tmp_path / "run" / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_the_search_runs_its_trials_through_submitit_and_a_diverged_one_is_minus_inf(cli, tmp_path):
    # a batch of 2 trials at once, each its own process (hydra/launcher=submitit_local): -inf comes back too
    proc = cli([*SEARCH, "hydra/launcher=submitit_local", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                "grow.interval=3", "grow.width_ratio=0.3", "optim.lr=choice(0.1,1e12)", f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = {float(p["optim.lr"]): s["status"] for p, s in _trials(tmp_path)}
    assert statuses == {1e12: "failed", 0.1: "completed"}
    assert list(tmp_path.glob(".submitit/*/*_result.pkl"))  # the trials did run under submitit
    logs = "".join(p.read_text() for p in tmp_path.glob(".submitit/*/*_log.out"))
    assert "returned -inf to the Optuna sweeper" in logs  # the failed trial said what it returned
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert result["best_params"] == {"optim.lr": 0.1} and result["best_value"] > 0
