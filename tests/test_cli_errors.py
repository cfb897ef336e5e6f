"""Bad input stops before training: exit code non-zero, one line naming key, value and what is allowed,
and no run record marked completed."""
import json

import pytest
import torch

from tests.conftest import TINY


def _error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def _not_completed(run_dir):
    summary = run_dir / "summary.json"
    if summary.exists():
        assert json.loads(summary.read_text())["status"] == "failed"
    assert not (run_dir / "metrics.jsonl").exists() or (run_dir / "metrics.jsonl").read_text() == ""


@pytest.mark.parametrize("args,expect", [
    (["model=foo"], ["model='foo'", "unknown option", "resnet_basic", "timm"]),
    (["data=cifar11"], ["data='cifar11'", "allowed", "cifar10", "digits"]),
    (["model.arch=2-x-2"], ["model.arch='2-x-2'", "e.g. '2-2-2'"]),
    (["trainer.epochs=0"], ["trainer.epochs=0", "positive integer"]),
    (["trainer.batch_size=-4"], ["trainer.batch_size=-4", "positive integer"]),
    (["trainer.device=tpu"], ["trainer.device='tpu'", "auto, cpu, cuda"]),
    (["trainer.quantize=int4"], ["trainer.quantize='int4'", "allowed: null, int8"]),
    (["data=cifar10", "data.root=/nonexistent/cifar"], ["data.root='/nonexistent/cifar'", "does not exist",
                                                         "cifar-10-batches-py"]),
])
def test_bad_value_stops_with_one_line(cli, tmp_path, args, expect):
    run_dir = tmp_path / "run"
    proc = cli([*TINY, *args, f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    for part in expect:
        assert part in line, line
    _not_completed(run_dir)


def test_corrupt_checkpoint(cli, tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"this is not a checkpoint")
    run_dir = tmp_path / "run"
    proc = cli([*TINY, f"trainer.resume={bad}", f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 2
    line = _error_line(proc)
    assert f"trainer.resume='{bad}'" in line and "corrupt" in line
    _not_completed(run_dir)


def test_checkpoint_of_another_model(cli, tmp_path):
    first = tmp_path / "first"
    proc = cli([*TINY, "trainer.epochs=1", f"hydra.run.dir={first}"])
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "run"
    proc = cli(["model.arch=1-1-1", "model.widths=[8,12,20]", f"trainer.resume={first}/checkpoints/last.pt",
                f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 2
    line = _error_line(proc)
    assert "trainer.resume=" in line and "does not match the model" in line and "20" in line
    _not_completed(run_dir)


def test_checkpoint_in_run_dir_that_does_not_fit(cli, tmp_path):
    """A run dir whose last.pt was written by another model stops instead of silently retraining."""
    run_dir = tmp_path / "run"
    assert cli([*TINY, "trainer.epochs=1", f"hydra.run.dir={run_dir}"]).returncode == 0
    summary_before = (run_dir / "summary.json").read_text()
    proc = cli(["model.widths=[8,12,24]", f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 2
    assert "model.widths: [8, 12, 16] -> [8, 12, 24]" in _error_line(proc)  # the config check comes first
    # changing the config on purpose still cannot load weights of another shape
    proc = cli(["model.widths=[8,12,24]", "trainer.on_config_change=continue", f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 2
    assert "checkpoints/last.pt=" in _error_line(proc)
    assert (run_dir / "summary.json").read_text() == summary_before  # the finished record is untouched
    assert torch.load(run_dir / "checkpoints/last.pt", weights_only=False)["epoch"] == 1


@pytest.mark.parametrize("args,expect", [
    (["optim.lr=abc", "trainer.epochs=1"], ["optim.lr='abc'", "a number", "0.1"]),        # a value's type
    (["model=vit", "model.dim=100"], ["model.dim='100'", "unknown key", "embed_dim", "head_dim"]),  # Hydra struct
    (["data=synthetic", "data.num_samples=12"], ["data.num_samples=12", "at least 24"]),  # cannot be split
])
def test_wrong_type_unknown_key_or_unsplittable_data_is_one_line(cli, tmp_path, args, expect):
    """Exit 2 and stderr is exactly one `error:` line: no traceback, no Hydra footer, no record completed."""
    run_dir = tmp_path / "run"
    proc = cli([*args, f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "HYDRA_FULL_ERROR" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    for part in expect:
        assert part in lines[0], lines[0]
    _not_completed(run_dir)


@pytest.mark.parametrize("argv,expect", [
    (["optim.lr=[1"], "optim.lr='[1': not a valid override"),
    (["model.head_dm=3", "model=vit"], "model.head_dm='3': unknown key (did you mean model.head_dim?)"),
    (["trainer.foo.bar=1"], "trainer.foo.bar='1': unknown key trainer.foo; allowed: the keys of trainer: "),
    (["~model.foo"], "~model.foo: Could not delete from config. 'model.foo' does not exist."),
    (["model.arch=${nope}"], "model.arch='${nope}': Interpolation key 'nope' not found"),
    (["seed=0,1"], "seed='0,1': Ambiguous value"),
    (["-m", "model=vit,timm", "model.patch_size=4"], "model.patch_size='4': unknown key"),  # the 2nd job's
    (["-m", "seed=0,1,2", "method=adagrow,fixed", "hydra/launcher=local"], None),
    (["hydra.run.dir=x", "+model.extra=1", "model.widths=[8,12,16]", "optim.lr=1e-3"], None),
    (["--help", "model.dim=1"], None),  # Hydra's own flags that do not run a job stay Hydra's
])
def test_compose_problem_names_the_override(argv, expect):
    from run import compose_problem
    problem = compose_problem(argv)
    if expect is None:
        assert problem is None
    else:
        assert problem.startswith(expect) and "\n" not in problem, problem
