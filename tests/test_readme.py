"""The README's commands still work: every `python run.py ...` composes with Hydra (no renamed key or
option), and those on embedded data also pass the growth-side checks that run before training (model,
method, data built); every `python sweep.py NAME` names an experiment that exists."""
import re
import shlex

import pytest

from benchmarks.common import compose
from growth.engine.job import prepare
from growth.sweeps import expand_jobs, load_experiment
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
# shown on purpose as a failing command (its one-line error is printed under it)
BAD_ON_PURPOSE = {"model.arch=2-x-2"}


def commands(script: str) -> list[list[str]]:
    """Argument lists of every `python SCRIPT ...` in the README (code blocks, continuation lines, inline)."""
    text = README.replace("\\\n", " ")
    found = []
    for m in re.finditer(rf"python {re.escape(script)}((?: +[^\s`#&]+)*)", text):
        args = shlex.split(m.group(1))
        if not any(a in BAD_ON_PURPOSE for a in args) and args not in found:
            found.append(args)
    return found


RUNS, SWEEPS = commands("run.py"), commands("sweep.py")


def _overrides(args: list[str]) -> dict:
    return dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("hydra."))


def test_the_readme_has_commands_to_check():
    assert len(RUNS) >= 20 and len(SWEEPS) >= 5  # the parser still finds them


@pytest.mark.parametrize("args", [a for a in RUNS if "-m" not in a], ids=" ".join)
def test_every_run_command_composes_and_passes_the_checks_before_training(args, tmp_path):
    over = _overrides(args)
    cfg = compose(**over)  # the config exactly as the command gives it
    on_files = cfg["data"]["name"] not in ("digits", "synthetic", "synthetic_text")
    needs_files = any(k in over for k in ("method.learngene", "trainer.resume"))
    if on_files or needs_files or cfg["trainer"]["device"] == "cuda":
        return  # composing is all that can be checked here: no dataset files, checkpoint or GPU
    prepare(cfg, tmp_path / "run")  # raises ConfigError on a value the growth side rejects


@pytest.mark.parametrize("args", SWEEPS, ids=" ".join)
def test_every_sweep_command_names_an_experiment(args):
    exp = load_experiment(ROOT / "experiments", args[0])  # raises with the allowed names
    scale = args[args.index("--scale") + 1] if "--scale" in args else None
    assert expand_jobs(exp, scale=scale)  # raises on a scale the experiment does not define
