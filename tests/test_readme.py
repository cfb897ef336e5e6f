"""The README's commands still work: every `python run.py ...` composes with Hydra (no renamed key or
option) and passes the growth-side checks that run before training (model, method, data built): those
on files (CIFAR, a checkpoint, a learngene) against small stand-ins in the real format, the CUDA one only
on a machine with a GPU (skipped, with the reason, elsewhere); every `python sweep.py NAME` names an
experiment that exists."""
import json
import re
import shlex

import pytest
import torch

from benchmarks.common import compose
from growth.engine.job import prepare
from growth.sweeps import expand_jobs, load_experiment
from tests.conftest import ROOT
from tests.test_data import no_md5, write_cifar10  # noqa: F401  (no_md5 is a fixture, used by name)

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


@pytest.fixture(scope="module")
def learngene_file(tmp_path_factory):
    """A real learngene.pt, written by a 1-epoch aux run of the README's aux model (stage repeats 2-2-2).
    No teacher and 96 synthetic 8x8 images, to be quick: the file has the same format either way."""
    from growth.engine.job import run_job
    run_dir = tmp_path_factory.mktemp("aux")
    cfg = compose(**{"model": "sws_aux", "model.stage_repeats": "[2,2,2]", "trainer.epochs": 1,
                     "data": "synthetic", "data.num_samples": 96, "trainer.progress": "false"})
    assert run_job(cfg, run_dir)["status"] == "completed"
    return run_dir / "checkpoints" / "learngene.pt"


def _stand_ins(over: dict, tmp_path, request) -> dict:
    """The command's overrides with each path it names replaced by a small file of the real on-disk
    format: CIFAR-10's python batches, a checkpoint written by the trainer, a learngene from an aux run."""
    over = dict(over)
    if compose(**over)["data"]["name"] == "cifar10":
        write_cifar10(tmp_path / "cifar10", per_batch=4, n_test=4)
        request.getfixturevalue("no_md5")
        over["data.root"] = str(tmp_path / "cifar10")
    if "trainer.resume" in over:  # a checkpoint of the configured model, one weight set apart to see it load
        source, _ = prepare(compose(**{k: v for k, v in over.items() if k != "trainer.resume"}), tmp_path / "src")
        with torch.no_grad():
            next(source.model.parameters()).add_(1.0)
        source.save()
        over["trainer.resume"] = str(tmp_path / "src" / "checkpoints" / "last.pt")
    if "method.learngene" in over:
        over["method.learngene"] = str(request.getfixturevalue("learngene_file"))
    return over


@pytest.mark.parametrize("args", [a for a in RUNS if "-m" not in a], ids=" ".join)
def test_every_run_command_composes_and_passes_the_checks_before_training(args, tmp_path, request, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what a command writes beside it (logger=mlflow: outputs/mlflow.db) stays here
    monkeypatch.setenv("WANDB_MODE", "disabled")  # logger=wandb: checked and opened, no W&B service started
    over = _overrides(args)
    cfg = compose(**over)  # the config exactly as the command gives it
    if cfg["trainer"]["device"] == "cuda" and not torch.cuda.is_available():
        pytest.skip("composes; its checks before training need a CUDA device, and this machine has none")
    on_disk = _stand_ins(over, tmp_path, request)
    changed = {k for k in over if on_disk[k] != over[k]}
    assert changed <= {"data.root", "trainer.resume", "method.learngene"}  # only paths were swapped ...
    stand_in = json.dumps(compose(**on_disk))
    for key in changed:  # ... so the config is the command's but for them (and what interpolates them)
        stand_in = stand_in.replace(json.dumps(on_disk[key]), json.dumps(over[key]))
    assert stand_in == json.dumps(cfg)
    trainer, _ = prepare(compose(**on_disk), tmp_path / "run")  # raises ConfigError on a value the growth side rejects
    trainer.trackers.close()  # logger=...: its tracker run was opened
    if "trainer.resume" in over:
        src = torch.load(on_disk["trainer.resume"], weights_only=False)["model"]
        assert all(torch.equal(v, src[k]) for k, v in trainer.model.state_dict().items())  # it did load


@pytest.mark.parametrize("args", SWEEPS, ids=" ".join)
def test_every_sweep_command_names_an_experiment(args):
    exp = load_experiment(ROOT / "experiments", args[0])  # raises with the allowed names
    scale = args[args.index("--scale") + 1] if "--scale" in args else None
    assert expand_jobs(exp, scale=scale)  # raises on a scale the experiment does not define
