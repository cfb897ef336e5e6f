"""logger=tensorboard|wandb|mlflow (issue 20 item 1): each tracker's files read back with its own reader.

One job with all three loggers grows after epoch 1, is stopped inside epoch 2 (a signal, as SLURM sends)
and resumed: every tracker must hold the three epochs' metrics and the growth event, in ONE tracker run."""
import json
import struct
import subprocess
import sys

import pytest

from growth.engine.job import run_job
from growth.engine.record import RunRecord
from growth.errors import ConfigError
from growth.methods import METHODS
from tests.conftest import ROOT, tiny_cfg

pytest.importorskip("mlflow")
pytest.importorskip("wandb")
pytest.importorskip("tensorboard")
pytestmark = pytest.mark.slow


def _cfg(tmp, **over):
    return tiny_cfg(**{"logger": "[tensorboard,wandb,mlflow]", "trainer.epochs": 3, "grow.interval": 1,
                       "grow.max_events": 1, "logger.tensorboard.every_n_steps": 5,
                       "logger.wandb.every_n_steps": 5, "logger.mlflow.every_n_steps": 5,
                       "logger.mlflow.tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}", **over})


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """(run dir, summary of the resumed run, summary of the stopped one, tmp dir)."""
    tmp = tmp_path_factory.mktemp("trackers")
    method = METHODS["adagrow"]
    original = method.on_epoch_end

    def stop_after_one(self, ctx, epoch):
        out = original(self, ctx, epoch)
        if epoch == 1:
            ctx._trainer.stop_requested = "test stop"  # stops at epoch 2's first step, step checkpoint
        return out

    method.on_epoch_end = stop_after_one
    try:
        stopped = run_job(_cfg(tmp), tmp / "run")
    finally:
        method.on_epoch_end = original
    resumed = run_job(_cfg(tmp), tmp / "run")
    return tmp / "run", resumed, stopped, tmp


def test_the_run_was_stopped_resumed_and_grew(resumed_run):
    run_dir, resumed, stopped, _ = resumed_run
    assert stopped["status"] == "interrupted" and resumed["status"] == "completed"
    rows, events = RunRecord(run_dir).metrics(), RunRecord(run_dir).events()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert len([e for e in events if e["kind"].startswith("grow")]) == 1  # grow.max_events=1, after epoch 1
    assert all(r["step"] == r["epoch"] * rows[0]["step"] for r in rows)  # each row at its global step


def _tb(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_holds_the_epochs_the_steps_and_the_growth_event(resumed_run):
    run_dir, resumed, _, _ = resumed_run
    rows, events = RunRecord(run_dir).metrics(), RunRecord(run_dir).events()
    acc = _tb(run_dir)
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the run and its resume
    val = [(s.step, round(s.value, 6)) for s in acc.Scalars("epoch/val_acc")]
    assert val == [(r["step"], round(r["val_acc"], 6)) for r in rows]  # each epoch once: the resume purged
    steps = [s.step for s in acc.Scalars("step/train_loss")]
    assert steps == sorted(set(steps)) and steps[0] == 5 and all(s % 5 == 0 for s in steps)
    grow = [e for e in events if e["kind"].startswith("grow")]
    assert [s.step for s in acc.Scalars("growth/event")] == [e["step"] for e in events]
    texts = [t for t in acc.Tensors("growth/events/text_summary")]
    assert any(grow[0]["kind"].encode() in t.tensor_proto.string_val[0] for t in texts)
    assert [round(s.value, 6) for s in acc.Scalars("hparam/final_val_acc")] == [round(resumed["final_val_acc"], 6)]
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
    assert "custom_scalars__config__" in acc.Tags()["tensors"]  # the val acc + growth markers chart


def test_mlflow_holds_one_finished_run_with_params_metrics_events_and_artifacts(resumed_run):
    from mlflow import MlflowClient
    run_dir, resumed, _, tmp = resumed_run
    rows = RunRecord(run_dir).metrics()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("growth")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]  # the resume continued the same MLflow run
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.params["optim.lr"] == "0.1"
    assert run.data.params["method.name"] == "adagrow"
    history = client.get_metric_history(run.info.run_id, "epoch/val_acc")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [(r["step"], round(r["val_acc"], 6)) for r in rows]
    growth = client.get_metric_history(run.info.run_id, "growth/event")
    assert [m.step for m in growth] == [e["step"] for e in RunRecord(run_dir).events()]
    assert any(".grow_" in k for k in run.data.tags)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "metrics.jsonl", "events.jsonl", "config_resolved.yaml", "deploy.pt"} <= artifacts
    assert run.data.metrics["summary/final_val_acc"] == pytest.approx(resumed["final_val_acc"])


def wandb_records(path):
    """The records of a W&B run file (<run dir>/wandb/offline-run-*/run-ID.wandb), parsed with W&B's own
    protobuf schema. wandb 0.31 ships no Python reader; the container is LevelDB's log format (32 KiB
    blocks, 7-byte record headers: crc32, length, type full/first/middle/last) after a 7-byte W&B header."""
    from wandb.proto import wandb_internal_pb2
    data, block, pos, parts, out = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            out.append(record)
            parts = b""
    return out


def _wandb_history(run_dir):
    """{run id: [{key: value} per history row]} from every offline run directory of the job."""
    runs = {}
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                runs.setdefault(record.run.run_id, [])
                rid = record.run.run_id
            elif kind == "history":
                runs[rid].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return runs


def test_wandb_offline_files_hold_one_run_id_with_the_epochs_and_the_growth_event(resumed_run):
    run_dir, _, _, _ = resumed_run
    rows = RunRecord(run_dir).metrics()
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 2  # the run and its resume
    runs = _wandb_history(run_dir)
    assert len(runs) == 1, runs.keys()  # the same run id both times: W&B joins them when synced
    history = next(iter(runs.values()))
    val = [(h["_step"], round(h["epoch/val_acc"], 6)) for h in history if "epoch/val_acc" in h]
    # W&B keeps a step only once: the resume's rows continue after the stopped run's last step
    assert val == [(r["step"], round(r["val_acc"], 6)) for r in rows]
    growth = [h for h in history if "growth/text" in h]
    assert growth and all("grow" in h["growth/text"] or "phase_start" in h["growth/text"] for h in growth)


def test_a_failing_logger_warns_once_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    # tensorboard raises on its first scalars (a full disk); mlflow cannot even start (no such store)
    from growth.engine.trackers import tensorboard_log
    calls = []

    def broken(self, values, step):
        calls.append(step)
        raise OSError("disk full")
    monkeypatch.setattr(tensorboard_log.TensorBoardTracker, "scalars", broken)
    cfg = tiny_cfg(logger="[tensorboard,mlflow]", **{"logger.tensorboard.every_n_steps": 2,
                                                      "logger.mlflow.tracking_uri": "nosuchscheme://x"})
    with caplog.at_level("WARNING", logger="growth"):
        summary = run_job(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and len(RunRecord(tmp_path / "run").metrics()) == 2
    warned = [r.message for r in caplog.records if "logger.tensorboard" in r.message]
    assert len(calls) == 1 and len(warned) == 1 and "disk full" in warned[0]
    assert len([r for r in caplog.records if "logger.mlflow" in r.message]) == 1
    assert "logger.mlflow" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.parametrize("key,value,match", [
    ("logger.tensorboard.every_n_steps", 0, r"^logger.tensorboard.every_n_steps=0: allowed: a positive number"),
    ("logger.wandb.mode", "sometimes", r"^logger.wandb.mode='sometimes': allowed: null"),
])
def test_bad_logger_values_stop_before_training(tmp_path, key, value, match):
    cfg = tiny_cfg(logger="[tensorboard,wandb]")
    section, name, leaf = key.split(".")
    cfg[section][name][leaf] = value
    with pytest.raises(ConfigError, match=match):
        run_job(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_only_rank_zero_logs():
    from growth.engine.trackers import build_trackers
    cfg = tiny_cfg(logger="tensorboard")
    assert build_trackers(cfg, "/tmp/unused", is_main=False).active == []


def test_a_default_run_imports_no_tracker(tmp_path):
    """As run.py imports the engine: inside wandb_hidden, so timm's import of wandb (timm.utils.summary) is
    skipped too; afterwards wandb imports as usual, as our W&B logger needs."""
    code = ("import sys; from growth.imports import wandb_hidden\n"
            "with wandb_hidden(): from growth.engine.job import run_job\n"
            "from tests.conftest import tiny_cfg; "
            f"s = run_job(tiny_cfg(**{{'trainer.epochs': 1}}), {str(tmp_path / 'run')!r}); "
            "print(s['status'], sorted(m for m in sys.modules if m.startswith(('mlflow', 'tensorboard', 'wandb', "
            "'torch.utils.tensorboard', 'growth.engine.trackers.')) and m != 'growth.engine.trackers.base')); "
            "import wandb; print('wandb', wandb.__version__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = out.stdout.split("\n")
    assert lines[-3] == "completed []" and lines[-2].startswith("wandb 0."), out.stdout + out.stderr


def test_a_sweep_job_is_named_by_its_directory_and_grouped_by_the_sweep(tmp_path):
    from growth.engine.trackers.base import run_info
    cfg = tiny_cfg()
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "multirun.yaml").write_text("{}")
    job = run_info(cfg, tmp_path / "sweep" / "3_adagrow_resnet_basic_digits_s0")
    assert (job.name, job.group) == ("3_adagrow_resnet_basic_digits_s0", "sweep")
    alone = run_info(cfg, tmp_path / "one")
    assert (alone.name, alone.group) == (cfg["run_name"], None)
    assert alone.params["optim.lr"] == cfg["optim"]["lr"] and not any(k.startswith("hydra") for k in alone.params)
