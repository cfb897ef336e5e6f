"""sweep.py: dry runs of every experiment, a local sweep with a failing job, --resume, submitit_local."""
import json

import pandas as pd
import pytest

from growth.sweeps import expand_jobs, job_status, load_experiment
from tests.conftest import ROOT

EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))


def test_expand_jobs_product_runs_seeds_and_names():
    exp = {"common": {"trainer.epochs": 2}, "seeds": [0, 1],
           "runs": [{"method": "adagrow", "grow_mode": ["depth", "width"]}, {"method": "fixed"}],
           "scales": {"big": {"trainer.epochs": 9}}}
    jobs = expand_jobs(exp)
    assert len(jobs) == 6 and len({j["name"] for j in jobs}) == 6
    assert jobs[0]["name"] == "method=adagrow,grow_mode=depth,seed=0"
    assert jobs[-1]["name"] == "method=fixed,seed=1"  # no `grow_mode=null`: the fixed run does not set it
    assert jobs[-1]["keys"]["grow_mode"] == "null" and "grow_mode=null" not in jobs[-1]["overrides"]
    assert "trainer.epochs=2" in jobs[0]["overrides"] and "trainer.epochs" not in jobs[0]["keys"]
    assert all("trainer.epochs=9" in j["overrides"] for j in expand_jobs(exp, scale="big"))
    with pytest.raises(ValueError, match="--scale='huge'"):
        expand_jobs(exp, scale="huge")
    with pytest.raises(ValueError, match="identical jobs"):
        expand_jobs({"runs": [{"method": "fixed"}, {"method": "fixed"}], "seeds": [0]})


def unknown_methods(jobs) -> list[str]:
    """Methods a job names that have no conf/method option on this branch (brought by another branch)."""
    names = {o.split("=", 1)[1] for j in jobs for o in j["overrides"] if o.startswith("method=")}
    return sorted(n for n in names if not (ROOT / "conf" / "method" / f"{n}.yaml").is_file())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_dry_run_lists_every_experiment(cli, name, tmp_path):
    missing = unknown_methods(expand_jobs(load_experiment(ROOT / "experiments", name)))
    if missing:  # sweep.py refuses the whole sweep until they land (experiments/growth_methods.yaml)
        pytest.skip(f"{name}: methods not on this branch yet: {', '.join(missing)}")
    # --out: a user's own finished runs under outputs/sweeps would show as [done]
    proc = cli([name, "--dry-run", "--out", str(tmp_path / name)], script="sweep.py")
    assert proc.returncode == 0, proc.stderr
    n = len(expand_jobs(load_experiment(ROOT / "experiments", name)))
    assert f"sweep {name}: {n} jobs" in proc.stdout and f"{n} job(s) would be launched" in proc.stdout
    assert proc.stdout.count("[todo]") == n


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiments_results_table_builds(tmp_path, name):
    """The collect step on made-up completed summaries: every `table.rows` key must resolve (a key set
    only in `common` once broke sws_aux's table after its jobs had all run)."""
    from analysis.sweeps import summarize_sweep
    exp = load_experiment(ROOT / "experiments", name)
    jobs = expand_jobs(exp)
    for i, job in enumerate(jobs):
        (tmp_path / job["name"]).mkdir()
        (tmp_path / job["name"] / "summary.json").write_text(json.dumps(
            {"status": "completed", "final_val_acc": 0.5, "test_acc": 0.5 + i / 1000, "params": 10,
             "deploy_params": 9, "macs": 8, "train_macs_total": 7, "arch": "x"}))
    assert summarize_sweep(jobs, tmp_path, exp) == []
    text = (tmp_path / "results.md").read_text()
    rows = (exp.get("table") or {}).get("rows") or []
    assert all(r in text for r in rows) and "(no completed runs)" not in text


def test_a_run_line_may_set_its_own_values_per_scale():
    exp = {"common": {"trainer.epochs": 2}, "seeds": [0],
           "runs": [{"model": "vgg", "grow.max_params": 10, "scales": {"big": {"grow.max_params": 99}}},
                    {"model": "mobilenet", "grow.max_params": 20}],
           "scales": {"big": {"trainer.epochs": 9, "grow.max_params": 50}}}
    small = {j["name"]: j["overrides"] for j in expand_jobs(exp)}
    assert small["model=vgg,grow.max_params=10"] == ["trainer.epochs=2", "model=vgg", "grow.max_params=10", "seed=0"]
    big = {j["name"]: j["overrides"] for j in expand_jobs(exp, scale="big")}
    # common < run line < the experiment's scale < the run line's scale
    assert "grow.max_params=99" in big["model=vgg,grow.max_params=99"]
    assert "grow.max_params=50" in big["model=mobilenet,grow.max_params=50"]
    assert all("trainer.epochs=9" in o for o in big.values()) and not any("scales" in " ".join(o) for o in big.values())
    exp["runs"][0]["scales"] = {"huge": {"grow.max_params": 1}}
    with pytest.raises(ValueError, match=r"run line's scales \['huge'\].*allowed: big"):
        expand_jobs(exp)


def test_unknown_experiment_and_bad_option(cli, tmp_path):
    proc = cli(["nosuch", "--dry-run"], script="sweep.py")
    assert proc.returncode == 2 and "experiment='nosuch'" in proc.stderr and "smoke" in proc.stderr
    (tmp_path / "bad.yaml").write_text("runs: [{model: resnett}]\n")
    proc = cli(["bad", "--experiments", str(tmp_path), "--dry-run"], script="sweep.py")
    assert proc.returncode == 2 and "model='resnett': unknown option" in proc.stderr


SPEC = """
description: two good jobs and one that diverges
common: {model.widths: "[8,12,16]", model.arch: 1-1-1, method: fixed, trainer.epochs: 2}
runs:
  - {optim.lr: [0.1, 1.0e+12]}
seeds: [0]
"""


@pytest.mark.slow
def test_failing_job_is_reported_and_the_others_finish(cli, tmp_path):
    (tmp_path / "mixed.yaml").write_text(SPEC.replace("seeds: [0]", "seeds: [0, 1]"))
    out = tmp_path / "sweep"
    proc = cli(["mixed", "--experiments", str(tmp_path), "--out", str(out)], script="sweep.py")
    assert proc.returncode == 1, proc.stderr
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4
    assert sorted(df["status"]) == ["completed", "completed", "failed", "failed"]
    assert set(df[df["status"] == "failed"]["optim.lr"].astype(float)) == {1e12}
    assert proc.stdout.count("FAILED optim.lr=1000000000000.0") == 2 and "loss became nan" in proc.stdout
    # a progress line as each job starts and ends
    assert "[0/4 ended] starting optim.lr=0.1,seed=0" in proc.stdout
    assert "[3/4 ended: 2 completed, 1 failed] starting optim.lr=1000000000000.0,seed=1" in proc.stdout
    assert "[4/4 ended: 2 completed, 2 failed] optim.lr=1000000000000.0,seed=1: failed" in proc.stdout
    status = cli(["mixed", "--experiments", str(tmp_path), "--out", str(out), "--status"], script="sweep.py")
    assert status.returncode == 0 and "2 done, 0 running, 0 pending, 2 failed, 0 interrupted" in status.stdout
    md = (out / "results.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table) == 3  # header, rule, one row: only the completed lr=0.1 jobs, n=2
    assert table[2].split("|")[1].strip() == "0.1" and table[2].rstrip("| ").endswith("2")
    assert "Failed or unfinished jobs" in md


@pytest.mark.slow
def test_submitit_local_sweep_and_resume(cli, tmp_path):
    out = tmp_path / "smoke"
    proc = cli(["smoke", "--launcher", "submitit_local", "--out", str(out)], script="sweep.py", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and (df["status"] == "completed").all()
    assert (out / ".submitit").is_dir() and (out / "results.md").exists()
    for job in df["job"]:
        summary = json.loads((out / job / "summary.json").read_text())
        assert summary["status"] == "completed" and (out / job / "checkpoints/last.pt").exists()
    # a finished sweep launches nothing
    proc = cli(["smoke", "--launcher", "submitit_local", "--out", str(out), "--resume"], script="sweep.py")
    assert proc.returncode == 0 and "nothing to launch" in proc.stdout and "launching:" not in proc.stdout
    # without --resume an existing sweep is refused rather than silently mixed
    proc = cli(["smoke", "--out", str(out)], script="sweep.py")
    assert proc.returncode == 2 and "--resume" in proc.stderr
    # one deleted run: --resume launches just that one
    gone = df["job"][1]
    import shutil
    shutil.rmtree(out / gone)
    proc = cli(["smoke", "--launcher", "submitit_local", "--out", str(out), "--resume"], script="sweep.py",
               timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("[todo]") == 1 and "launching:" in proc.stdout
    assert json.loads((out / gone / "summary.json").read_text())["status"] == "completed"
    launched = (out / "jobs.yaml").read_text()
    assert launched.count("name:") == 1 and gone in launched


def test_results_table_shows_text_metrics_as_values_not_nan():
    from analysis.sweeps import mean_std_table
    df = pd.DataFrame({"status": ["completed"] * 3, "method": ["a", "a", "b"], "test_acc": [0.5, 0.7, 0.9],
                       "arch": ["2-1-1", "2-2-1", "1-1-1"], "macs": [None, None, None],
                       "params": [10, None, 5]})
    table = mean_std_table(df, ["method"], ["test_acc", "arch", "macs", "params"]).set_index("method")
    assert table.loc["a", "test_acc"] == "0.600 ± 0.141" and table.loc["b", "test_acc"] == "0.900"  # as analysis/
    assert table.loc["a", "arch"] == "2-1-1 / 2-2-1" and table.loc["b", "arch"] == "1-1-1"
    assert table.loc["a", "macs"] == "-"
    assert table.loc["a", "params"] == "10.0 (1 of 2)" and table.loc["b", "params"] == "5.00"


def test_job_dirs_under_the_old_names_are_renamed_so_resume_finds_them(tmp_path):
    from growth.sweeps import adopt_legacy_dirs
    exp = {"runs": [{"method": "adagrow", "grow_mode": "depth"}, {"method": "fixed"}], "seeds": [0, 1]}
    jobs = expand_jobs(exp)
    fixed = next(j for j in jobs if j["name"] == "method=fixed,seed=0")
    assert fixed["legacy_name"] == "method=fixed,grow_mode=null,seed=0"
    (tmp_path / fixed["legacy_name"]).mkdir()
    (tmp_path / fixed["legacy_name"] / "summary.json").write_text('{"status": "completed"}')
    assert adopt_legacy_dirs(jobs, tmp_path) == [(fixed["legacy_name"], fixed["name"])]
    assert job_status(tmp_path / fixed["name"]) == "completed"
    assert adopt_legacy_dirs(jobs, tmp_path) == []  # once only; a job named the same both ways is left alone


def test_a_legacy_name_too_long_for_the_file_system_is_not_looked_up(tmp_path):
    """growbench has 17 varying keys: its legacy names (every key, `key=null` included) pass 255 bytes,
    and looking one up raised ENAMETOOLONG, so `sweep.py growbench --resume` crashed."""
    from growth.sweeps import adopt_legacy_dirs
    keys = {f"k{i}": [f"value_number_{i}", None] for i in range(17)}
    exp = {"runs": [{"method": "adagrow", **{k: v[0] for k, v in keys.items()}}, {"method": "fixed"}], "seeds": [0]}
    jobs = expand_jobs(exp)
    assert max(len(j["legacy_name"]) for j in jobs) > 255
    assert adopt_legacy_dirs(jobs, tmp_path) == []
