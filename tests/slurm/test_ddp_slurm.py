"""Data parallel on SLURM: one job of two tasks (hydra.launcher.tasks_per_node=2) trains one model
with growth; submitit's environment gives the ranks, gloo joins them, rank 0 writes the record and the
run checks that both ranks end with bit-identical weights."""
import json

from tests.slurm.test_sweep_slurm import SLURM, sweep

DDP_JOB = """
description: one AdaGrow job on two SLURM tasks
common: {method: adagrow, model.widths: "[8,12,16]", grow_mode: depth, grow.interval: 1, trainer.epochs: 3,
         trainer.device: cpu, trainer.progress: false}
seeds: [0]
"""


def test_two_task_slurm_job_trains_one_model(slurm_cluster, tmp_path):
    (tmp_path / "ddp.yaml").write_text(DDP_JOB)
    out = tmp_path / "sweep"
    proc = sweep(slurm_cluster, ["ddp", "--experiments", str(tmp_path), "--out", str(out), *SLURM,
                                 "hydra.launcher.tasks_per_node=2"])
    assert proc.returncode == 0, proc.stdout + proc.stderr + slurm_cluster.logs()
    summary = json.loads((out / "job" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2, summary
    events = [json.loads(line) for line in (out / "job" / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["grow_depth", "grow_depth"]
    assert len((out / "job" / "metrics.jsonl").read_text().splitlines()) == 3
