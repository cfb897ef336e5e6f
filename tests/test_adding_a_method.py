"""docs/adding_a_method.md works as written: its class and config, copied out of the page into a folder
outside the repository, run through run.py (hydra.searchpath + PYTHONPATH), and the event it describes
happens with the function kept. Plus register_method's and method.module's errors."""
import json
import re

import pytest

from growth.errors import ConfigError
from growth.methods import METHODS, Method, build_method, register_method
from tests.conftest import ROOT

PAGE = (ROOT / "docs" / "adding_a_method.md").read_text()


def _block(lang: str, path: str) -> str:
    """The fenced block whose first line is `# <path>`."""
    m = re.search(rf"```{lang}\n# {re.escape(path)}\n(.*?)```", PAGE, re.S)
    assert m, f"docs/adding_a_method.md has no {lang} block for {path}"
    return m.group(1)


@pytest.fixture
def outside(tmp_path):
    """The page's two files, in a folder of the user's own."""
    (tmp_path / "my_methods").mkdir()
    (tmp_path / "my_methods" / "grow_once.py").write_text(_block("python", "my_methods/grow_once.py"))
    (tmp_path / "conf" / "method").mkdir(parents=True)
    (tmp_path / "conf" / "method" / "grow_once.yaml").write_text(_block("yaml", "conf/method/grow_once.yaml"))
    return tmp_path


def _run(cli, outside, *args):
    run_dir = outside / "run"
    # the page's command, plus where to find the files and where to write
    proc = cli(["method=grow_once", "model.arch=1-1-1", "trainer.epochs=4", "trainer.progress=false", f"hydra.searchpath=[file://{outside / 'conf'}]",
                f"hydra.run.dir={run_dir}", *args], env={"PYTHONPATH": str(outside)})
    return proc, run_dir


def test_the_pages_method_runs_from_outside_the_repository(cli, outside):
    proc, run_dir = _run(cli, outside)
    assert proc.returncode == 0, proc.stderr
    assert "event grow_depth at epoch 2: stage 0 1-1-1 -> 2-1-1" in proc.stdout  # as the page says
    (event,) = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert event["kind"] == "grow_depth" and event["params_after"] > event["params_before"]
    assert event["max_abs_output_change"] < 1e-6  # the zero-initialised block keeps the function
    archs = [json.loads(line)["arch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert archs == ["1-1-1", "1-1-1", "2-1-1", "2-1-1"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["method"] == "grow_once" and summary["arch"] == "2-1-1"
    assert (run_dir / "checkpoints" / "deploy.pt").exists()


def test_the_pages_setup_check_is_one_line_before_training(cli, outside):
    proc, run_dir = _run(cli, outside, "method.stage=7")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: method.stage=7: a stage index, 0..2"
    metrics = run_dir / "metrics.jsonl"
    assert not metrics.exists() or not metrics.read_text().strip()  # not one epoch trained


def test_a_module_that_does_not_import_is_a_config_error():
    with pytest.raises(ConfigError, match="method.module='no_such_pkg.mine': cannot be imported"):
        build_method({"method": {"name": "mine", "module": "no_such_pkg.mine"}})


def test_register_method_refuses_a_non_method_and_a_taken_name():
    with pytest.raises(TypeError, match="not a growth.methods.Method subclass"):
        register_method("not_a_method")(dict)
    with pytest.raises(ValueError, match="taken by AdaGrow"):
        register_method("adagrow")(type("Other", (Method,), {}))
    assert "not_a_method" not in METHODS
