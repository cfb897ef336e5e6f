import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Tiny, fast model settings for CLI tests (digits is 8x8: three stages at 8, 4, 2 px).
TINY = ["model.arch=1-1-1", "model.widths=[8,12,16]", "trainer.batch_size=64"]

# `make test` runs the suite in pytest-xdist workers (one per core): each worker and every process it starts
# then gets one core's share of threads, so workers do not fight over cores (a waiting thread costs a time
# slice per small op on this 2-core machine).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)


def run_cli(args, script="run.py", timeout=600, env=None):
    """Run a Hydra entry point as a user would; returns CompletedProcess with text output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


@pytest.fixture
def cli():
    return run_cli


def tiny_cfg(**over) -> dict:
    """A plain config dict (as run.py hands to growth/) for in-process tests; keys as on the CLI."""
    from benchmarks.common import compose

    defaults = {"model.arch": "1-1-1", "model.widths": "[8,12,16]", "trainer.epochs": 2,
                "trainer.progress": "false"}
    return compose(**{**defaults, **over})


def grow_ctx(model):
    """The least of a run context a method's growth step reads: the model, and `grow` (as RunContext.grow,
    without the optimizer's side)."""
    from types import SimpleNamespace
    return SimpleNamespace(model=model, grow=lambda site, how=None: model.grow(site, how or {}))


@torch.no_grad()
def out(model, x):
    """Eval-mode output."""
    model.eval()
    return model(x)


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def nontrivial_bn(model, gen: torch.Generator):
    """BN scales, shifts and running statistics away from (1, 0, 0, 1), and an O(1) classifier, so a test
    of function preservation sees a real function (8x8 single-channel inputs). Returns the model in eval."""
    for bn in (b for b in model.modules() if isinstance(b, torch.nn.BatchNorm2d)):
        bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
    model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=gen) * 0.5)
    model.train()
    for _ in range(2):  # running statistics that are not (0, 1)
        model(torch.randn(8, 1, 8, 8, generator=gen) * 2 + 0.5)
    return model.eval()


class StopAfter:
    """A method mixin for resume tests: ask the run to stop after epoch `at` (a signal, as SLURM sends),
    after the method's own hook. Use as type("Stopping", (StopAfter, MethodClass), {})."""
    at = None

    def on_epoch_end(self, ctx, epoch):
        super().on_epoch_end(ctx, epoch)
        if epoch == self.at:
            ctx._trainer.stop_requested = "test stop"


@pytest.fixture
def one_thread():
    """One torch thread for tiny jobs and 224 px steps: on the shared 2-core machine a second thread only
    waits (each small op then waits a time slice; a 1 s 224 px step took 15 s). Use it per file with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cached_onnx_registry():
    """Tests only: torch's ONNX exporter rebuilds its op registry (~500 onnxscript functions parsed from
    source, about 2 s here) on every torch.onnx.export call; the tests export dozens of small models, so
    they build it once. The registry is only read during an export. Without the private hook (another
    torch) the exporter is left as it is."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        yield
        return
    original = _registration.ONNXRegistry.__dict__.get("from_torchlib")
    if not isinstance(original, classmethod):
        yield
        return
    built = {}

    def from_torchlib(cls, *args, **kwargs):
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = original.__func__(cls, *args, **kwargs)
        return built[key]

    _registration.ONNXRegistry.from_torchlib = classmethod(from_torchlib)
    yield
    _registration.ONNXRegistry.from_torchlib = original


def exp_avg_across_growth(trainer, epoch: int = 1) -> dict:
    """Run `epoch` of a prepared trainer whose method grows at its end; returns each parameter name's
    Adam exp_avg just before the growth step (the method's on_epoch_end)."""
    seen, hook = {}, trainer.method.on_epoch_end

    def spy(ctx, ep):
        seen.update({n: trainer.optimizer.state[p]["exp_avg"].clone() for n, p in trainer.model.named_parameters()})
        return hook(ctx, ep)

    trainer.method.on_epoch_end = spy
    trainer.run_epoch(epoch)
    trainer.method.on_epoch_end = hook
    return seen


def check_old_slice_kept(trainer, seen: dict, name: str, p) -> bool:
    """Parameter `p`'s exp_avg equals `seen[name]` in its old slice, and is zero in its new entries (MSG's
    and bert2BERT's optimizer transfer). Returns whether `p` grew."""
    avg, old = trainer.optimizer.state[p]["exp_avg"], seen[name]
    part = tuple(slice(0, s) for s in old.shape)
    assert torch.equal(avg[part], old), name
    if avg.shape == old.shape:
        return False
    rest = avg.clone()
    rest[part] = 0
    assert not rest.any(), name  # the new entries start at zero
    return True


def run_stopped_and_resumed(stopping, make_cfg, tmp_path, at, between=None) -> tuple[dict, dict]:
    """The resume tests' three runs: uninterrupted in tmp_path/full; in tmp_path/part stopped after epoch `at`
    (`stopping`: a StopAfter method class), `between(part_dir)` checks what it left, then resumed. Returns
    the (full, resumed) summaries."""
    from growth.engine.job import run_job
    full = run_job(make_cfg(), tmp_path / "full")
    stopping.at = at
    assert run_job(make_cfg(), tmp_path / "part")["status"] == "interrupted"
    if between is not None:
        between(tmp_path / "part")
    stopping.at = None
    resumed = run_job(make_cfg(), tmp_path / "part")
    assert resumed["status"] == "completed"
    return full, resumed


def assert_same_run(tmp_path, full: dict, resumed: dict, epochs: int, keys, fields=("val_acc", "train_loss", "lr")):
    """tmp_path/part (resumed) has `epochs` metrics rows equal to tmp_path/full's in `fields`, and the two
    summaries agree on `keys`."""
    from growth.engine.record import RunRecord
    a, b = RunRecord(tmp_path / "full").metrics(), RunRecord(tmp_path / "part").metrics()
    assert len(b) == epochs and [tuple(r[f] for f in fields) for r in a] == [tuple(r[f] for f in fields) for r in b]
    for key in keys:
        assert full[key] == resumed[key], key
