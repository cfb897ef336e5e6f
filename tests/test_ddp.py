"""Data-parallel training that survives growth: 2 CPU processes (gloo) under torchrun grow the model
twice; every rank ends with bit-identical weights (the run checks a digest of every tensor across
ranks before it writes summary.json), only rank 0 writes the record, and the arch sequence equals a
single-process run's. That check is tested on its own too: the digest sees one ulp in any tensor, and
check_same stops every rank of a real 2-process gloo group whose digests differ."""
import copy
import json
import shutil
import subprocess
import sys

import pytest
import torch

from growth.engine.dist import DistInfo, check_same, weight_digest
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow
ARGS = ["model.widths=[8,12,16]", "grow_mode=depth", "grow.interval=1", "trainer.epochs=3",
        "trainer.device=cpu", "trainer.progress=false"]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def torchrun(run_dir, args):
    """2 CPU processes; the run itself fails unless both ranks end with bit-identical weights."""
    exe = shutil.which("torchrun", path=str(ROOT / ".venv" / "bin")) or shutil.which("torchrun")
    cmd = [exe or sys.executable, *([] if exe else ["-m", "torch.distributed.run"]),
           "--standalone", "--nproc_per_node", "2", str(ROOT / "run.py"), f"hydra.run.dir={run_dir}", *args]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def test_two_gloo_ranks_grow_twice_and_stay_identical(tmp_path):
    torchrun(tmp_path / "ddp", ARGS)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    events = [json.loads(line) for line in (tmp_path / "ddp" / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["grow_depth", "grow_depth"]  # written once, by rank 0
    ddp_rows = _rows(tmp_path / "ddp")
    assert len(ddp_rows) == 3

    single = run_cli([f"hydra.run.dir={tmp_path / 'single'}", *ARGS], env={"OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-2000:]
    assert [r["arch"] for r in ddp_rows] == [r["arch"] for r in _rows(tmp_path / "single")]
    assert [r["params"] for r in ddp_rows] == [r["params"] for r in _rows(tmp_path / "single")]


@pytest.mark.parametrize("args", [
    ["method=adn", "model.widths=[8,12,16]"],  # two forwards (super and base net) before one backward
    ["model=reducenet", "model.depth=8"],       # a model swap (teacher -> student) mid-run, KD from a frozen copy
], ids=["adn", "reducenet"])
def test_phased_methods_run_distributed(tmp_path, args):
    torchrun(tmp_path, [*args, "trainer.epochs=2", "trainer.device=cpu", "trainer.progress=false"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2


def _tiny_model():
    from growth.models import create_model
    torch.manual_seed(0)
    return create_model("resnet_basic", depths=(1, 0, 0), widths=[4, 6, 8], in_chans=1, num_classes=3)


def test_weight_digest_sees_one_ulp_in_one_weight_or_buffer():
    """The DDP tests above rest on check_same(weight_digest): it must see the smallest possible change."""
    model = _tiny_model()
    ref = weight_digest(model)
    assert weight_digest(copy.deepcopy(model)) == ref  # equal weights, equal digest
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not t.is_floating_point():
            continue
        with torch.no_grad():
            old = t.view(-1)[-1].clone()
            t.view(-1)[-1] = torch.nextafter(old, torch.tensor(float("inf")))  # one ulp up
            assert weight_digest(model) != ref, name
            t.view(-1)[-1] = old
        assert weight_digest(model) == ref, name


def _check_same_rank(rank, init_file, result_dir):
    """One of 2 gloo ranks: equal values pass; a digest one ulp apart on rank 1 must stop the run."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    info = DistInfo(rank=rank, world=2)
    try:
        model = _tiny_model()
        check_same(info, "the final weights", weight_digest(model))  # identical: no error
        if rank == 1:
            with torch.no_grad():
                w = next(model.parameters()).view(-1)
                w[0] = torch.nextafter(w[0], torch.tensor(float("inf")))
        try:
            check_same(info, "the final weights", weight_digest(model))
            outcome = "no error"
        except RuntimeError as e:
            outcome = str(e)
        (result_dir / f"rank{rank}.txt").write_text(outcome)
    finally:
        torch.distributed.destroy_process_group()


def test_check_same_raises_when_two_gloo_ranks_disagree(tmp_path):
    torch.multiprocessing.spawn(_check_same_rank, args=(tmp_path / "init", tmp_path), nprocs=2, join=True)
    for rank in (0, 1):  # every rank stops, not only the odd one
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        assert outcome.startswith("distributed ranks disagree on the final weights"), (rank, outcome)


def test_torchrun_without_a_run_dir_is_refused():
    p = run_cli(["trainer.epochs=1"], env={"WORLD_SIZE": "2"})
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("error: hydra.run.dir: not set")


def test_compiled_training_grows_like_eager(tmp_path):
    """trainer.compile=true: a fresh compiled module after each growth event; same arch sequence."""
    runs = {}
    for name, flag in (("eager", "false"), ("compiled", "true")):
        p = run_cli([f"hydra.run.dir={tmp_path / name}", f"trainer.compile={flag}", *ARGS[:-2],
                     "trainer.progress=false"], env={"OMP_NUM_THREADS": "1"})
        assert p.returncode == 0, p.stderr[-2000:]
        runs[name] = _rows(tmp_path / name)
    assert [r["arch"] for r in runs["compiled"]] == [r["arch"] for r in runs["eager"]]
    assert abs(runs["compiled"][-1]["val_acc"] - runs["eager"][-1]["val_acc"]) < 0.05


def test_gpu_only_options_warn_on_cpu(tmp_path):
    p = run_cli([f"hydra.run.dir={tmp_path}", "trainer.epochs=1", "trainer.device=cpu", "trainer.channels_last=true",
                 "trainer.precision=fp16", "model.widths=[8,12,16]"])
    assert p.returncode == 0, p.stderr[-2000:]
    text = p.stdout + p.stderr
    assert "trainer.channels_last=true needs CUDA" in text and "trainer.precision=fp16 needs CUDA" in text
