"""Shared files run no code: checkpoints, learngenes and teacher files load with torch's weights_only, a
file holding pickled Python objects is refused with one line (unless trainer.trust_pickles=true), and
what our runs write loads as it is."""
import numpy as np
import pytest
import torch

from growth.engine import io
from growth.engine.checkpoint import load_checkpoint
from growth.engine.env import rng_state, set_rng_state
from growth.engine.job import prepare, run_job
from growth.errors import ConfigError
from growth.methods.sws_teacher import load_our_file, timm_teacher
from growth.models import learngene
from growth.models.saved import from_file
from tests.conftest import TINY, max_diff, out, tiny_cfg
from tests.test_sws import TINY_AUX, sws_cfg

DIGITS = {"name": "digits", "image_size": 8, "in_chans": 1, "num_classes": 10}
REFUSED = "holds pickled Python objects (io.open); refused because unpickling can run code"


class Payload:
    """What a malicious file holds: unpickling it calls open(marker, "w"), which creates the marker."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture(autouse=True)
def untrusted():
    """Every test starts, and leaves the process, with the default: pickles refused."""
    io.set_trust_pickles(False)
    yield
    io.set_trust_pickles(False)


def _bad_file(path, marker, **plain):
    """A torch file that looks like ours but carries the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**plain, "payload": Payload(marker)}, path)
    return path


# ---- refused, and the payload never runs -----------------------------------------------------------
@pytest.mark.slow
def test_cli_refuses_a_pickled_checkpoint_in_one_line(cli, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "MARKER"
    _bad_file(run / "checkpoints" / "last.pt", marker, format=1, arch_spec={})
    proc = cli([*TINY, "trainer.epochs=1", f"hydra.run.dir={run}"])
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("error: checkpoints/last.pt=") and str(run) in errors[0] and REFUSED in errors[0]
    assert "trainer.trust_pickles=true" in errors[0]
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["checkpoint", "learngene", "teacher", "teacher_weights"])
def test_a_pickled_file_is_refused_and_its_payload_never_runs(tmp_path, kind):
    marker = tmp_path / "MARKER"
    path = _bad_file(tmp_path / f"{kind}.pt", marker, format={"learngene": learngene.FORMAT}.get(kind, 1))
    read, key = {"checkpoint": (lambda p: load_checkpoint(p), "trainer.resume"),
                 "learngene": (lambda p: learngene.load(str(p)), "method.learngene"),
                 "teacher": (lambda p: load_our_file(p), "method.teacher"),
                 "teacher_weights": (lambda p: timm_teacher("test_resnet", DIGITS, p), "method.teacher_weights")}[kind]
    with pytest.raises(ConfigError) as e:
        read(path)
    assert str(e.value) == f"{key}={str(path)!r}: {REFUSED}; set trainer.trust_pickles=true to load a file you trust"
    assert not marker.exists()


def test_a_corrupt_file_is_still_called_corrupt(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="checkpoint is corrupt or unreadable"):
        load_checkpoint(path)


def test_trust_pickles_takes_a_bool_only():
    for bad in ("yes", 1, "true"):
        with pytest.raises(ConfigError, match=r"^trainer.trust_pickles=.*: allowed: true, false$"):
            io.set_trust_pickles(bad)
    assert io.TRUST_PICKLES is False


# ---- what our runs write loads with weights_only ---------------------------------------------------
def test_rng_state_is_tensors_and_plain_values_and_round_trips(tmp_path):
    np.random.randn()  # numpy keeps a cached gaussian: that must survive too
    torch.save(rng_state(), tmp_path / "rng.pt")
    expect = (np.random.randn(3), torch.rand(3))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (np.random.randn(3) == expect[0]).all() and torch.equal(torch.rand(3), expect[1])


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("fixed")
    assert run_job(tiny_cfg(**{"trainer.epochs": 1}), run)["status"] == "completed"
    return run


@pytest.mark.slow
def test_a_runs_checkpoint_and_deploy_file_load_safely(fixed_run):
    ckpt = torch.load(fixed_run / "checkpoints" / "last.pt", weights_only=True)
    trained = from_file(ckpt)  # last.pt is spec + state too
    deployed = from_file(torch.load(fixed_run / "checkpoints" / "deploy.pt", weights_only=True))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    x = torch.randn(4, 1, 8, 8)
    assert max_diff(out(deployed, x), out(trained.deploy(), x)) == 0  # the same fused model, rebuilt
    assert load_checkpoint(fixed_run / "checkpoints" / "last.pt")["epoch"] == 1


@pytest.mark.slow
def test_an_aux_runs_learngene_and_teacher_load_safely_and_resume(fixed_run, tmp_path):
    """An SWS aux run distilling from a fixed run's deploy.pt: its learngene and its checkpoint (which
    holds the teacher as spec + state) load with weights_only, and resume rebuilds the same teacher."""
    teacher_path = fixed_run / "checkpoints" / "deploy.pt"
    cfg = sws_cfg("sws_aux", **TINY_AUX, **{"method.teacher": str(teacher_path)})
    summary = run_job(cfg, tmp_path / "aux")
    assert summary["status"] == "completed"
    gene = learngene.load(summary["learngene_path"])  # through read_torch: weights_only
    assert gene["format"] == learngene.FORMAT and learngene.gene_params(gene) > 0
    ckpt = torch.load(tmp_path / "aux" / "checkpoints" / "last.pt", weights_only=True)
    saved_teacher = ckpt["method"]["teacher"]
    assert saved_teacher["deployed"] is True and isinstance(saved_teacher["model"], dict)
    trainer, _ = prepare(cfg, tmp_path / "aux")  # resume: the teacher comes back from the checkpoint
    x = torch.randn(4, 1, 8, 8)
    original = from_file(load_our_file(teacher_path))
    assert max_diff(out(trainer.method.teacher.module, x), out(original, x)) == 0


# ---- trainer.trust_pickles=true: an older file loads -------------------------------------------
@pytest.mark.slow
def test_trusted_older_files_load(fixed_run, tmp_path):
    """Files as older versions wrote them: numpy's RNG state as an ndarray, deploy.pt holding the module."""
    ckpt = torch.load(fixed_run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["rng"]["numpy"], expect = np.random.get_state(), np.random.rand(3)
    torch.save(ckpt, tmp_path / "old_last.pt")
    deployed = from_file(torch.load(fixed_run / "checkpoints" / "deploy.pt", weights_only=True))
    torch.save({"arch_spec": ckpt["arch_spec"], "model": deployed}, tmp_path / "old_deploy.pt")
    for path, read in ((tmp_path / "old_last.pt", load_checkpoint), (tmp_path / "old_deploy.pt", load_our_file)):
        with pytest.raises(ConfigError, match=r"holds pickled Python objects \(.*\); refused"):
            read(path)
    io.set_trust_pickles(True)
    set_rng_state(load_checkpoint(tmp_path / "old_last.pt")["rng"])
    assert (np.random.rand(3) == expect).all()
    assert isinstance(load_our_file(tmp_path / "old_deploy.pt"), torch.nn.Module)


def test_trust_pickles_really_unpickles(tmp_path):
    """The switch is what it says: a trusted file runs its code (here: creates the marker)."""
    marker = tmp_path / "MARKER"
    path = _bad_file(tmp_path / "last.pt", marker, format=1, arch_spec={})
    io.set_trust_pickles(True)
    load_checkpoint(path)
    assert marker.exists()


def test_the_switch_is_read_from_the_job_config(tmp_path):
    marker = tmp_path / "MARKER"
    cfg = tiny_cfg(**{"trainer.trust_pickles": "true", "trainer.resume": str(tmp_path / "last.pt")})
    _bad_file(tmp_path / "last.pt", marker, format=1, arch_spec={"family": "none", "kwargs": {}})
    with pytest.raises(ConfigError, match="does not match the model"):  # unpickled, then does not fit
        prepare(cfg, tmp_path / "run")
    assert marker.exists() and io.TRUST_PICKLES is True
