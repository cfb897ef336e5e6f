"""One job in-process: the run record has every file and key of the contract; NaN stops cleanly."""
import json

import pytest
import torch

from growth.engine.job import run_job
from growth.engine.record import SCHEMA_VERSION
from growth.methods import METHODS
from growth.methods.fixed import Fixed
from growth.models.saved import from_file
from tests.conftest import tiny_cfg

# The documented contract (README "The run record", DESIGN.md section 5), written out here rather than
# imported from growth.engine.record: a key dropped from the schema module must turn this test red.
METRIC_KEYS = ("epoch", "phase", "arch", "params", "deploy_params", "macs", "train_loss", "train_acc",
               "val_loss", "val_acc", "lr", "epoch_time_s", "samples_seen", "train_macs_cum")
EVENT_KEYS = ("epoch", "step", "kind", "where", "arch_before", "arch_after", "params_before",
              "params_after", "max_abs_output_change")
SUMMARY_KEYS = ("schema_version", "status", "method", "model", "data", "seed", "variants", "final_val_acc",
                "best_val_acc", "test_acc", "arch", "params", "deploy_params", "macs", "train_time_s",
                "train_macs_total", "device", "git_commit", "versions")


def test_record_contract(tmp_path):
    # A growing job (AdaGrow from 0-1-0, grows after every epoch) so that events.jsonl has rows to check.
    summary = run_job(tiny_cfg(**{"method": "adagrow", "model.arch": "0-1-0", "model.max_arch": "1-1-1",
                                  "grow.interval": 1, "grow_mode": "depth"}), tmp_path)
    assert summary["status"] == "completed"
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION
    for key in SUMMARY_KEYS:
        assert key in on_disk, key
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert set(METRIC_KEYS) <= set(r), set(METRIC_KEYS) - set(r)
    assert rows[1]["samples_seen"] == 2 * rows[0]["samples_seen"] > 0
    assert rows[1]["train_macs_cum"] > 2 * rows[0]["train_macs_cum"] > 0  # epoch 2 trains the grown, bigger model
    assert on_disk["train_macs_total"] == rows[-1]["train_macs_cum"]
    assert on_disk["final_val_acc"] == rows[-1]["val_acc"]
    assert on_disk["best_val_acc"] == max(r["val_acc"] for r in rows)
    assert 0 <= on_disk["test_acc"] <= 1
    assert on_disk["deploy_params"] < on_disk["params"]  # BN folded away
    assert on_disk["deploy_max_abs_diff"] < 1e-4
    events = [json.loads(ln) for ln in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(events) == summary["growth_events"] >= 1
    for e in events:
        assert set(EVENT_KEYS) <= set(e), set(EVENT_KEYS) - set(e)
        assert e["kind"] == "grow_depth" and e["arch_before"] != e["arch_after"]
        assert e["params_after"] > e["params_before"]
    assert events[-1]["arch_after"] == on_disk["arch"] == rows[-1]["arch"]
    ckpt = torch.load(tmp_path / "checkpoints/last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["arch_spec"]["arch"] == on_disk["arch"]
    for key in ("model", "optimizer", "schedule", "rng", "step"):
        assert key in ckpt
    deployed = from_file(torch.load(tmp_path / "checkpoints/deploy.pt", weights_only=True))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    log = (tmp_path / "train.log").read_text().splitlines()
    assert sum("epoch " in ln and "val loss" in ln for ln in log) == 2


class _Diverges(Fixed):
    """Loss becomes NaN at the 3rd step of epoch 2."""
    name = "diverges"

    def loss(self, model, x, y, trainer):
        loss, logits = super().loss(model, x, y, trainer)
        if trainer.epoch == 1 and trainer.step == trainer.steps_per_epoch + 2:
            loss = loss * float("nan")
        return loss, logits


def test_nan_loss_fails_naming_epoch_and_step(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "diverges", _Diverges)
    cfg = tiny_cfg(**{"trainer.epochs": 3})
    cfg["method"]["name"] = "diverges"
    summary = run_job(cfg, tmp_path)
    assert summary["status"] == "failed"
    assert "epoch 2, step" in summary["error"] and "nan" in summary["error"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == "failed"
    ckpt = torch.load(tmp_path / "checkpoints/last.pt", weights_only=True)
    assert ckpt["epoch"] == 1  # the last good one
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_amp_on_cpu_warns_and_trains_fp32(tmp_path, caplog):
    summary = run_job(tiny_cfg(**{"trainer.epochs": 1, "trainer.precision": "bf16"}), tmp_path)
    assert summary["status"] == "completed"
    assert any("needs CUDA" in r.message for r in caplog.records)
