"""trainer.dry_run=true: the job built from the data config's shapes alone, one random step, summary.json
with status dry_run; no dataset file, no checkpoint, no metrics row."""
import json

import pytest
import timm
import torch

from benchmarks.common import compose
from growth.data import BUILDERS, build_data
from growth.data.info import INFO, data_info
from growth.engine.dry_run import dry_run
from growth.engine.job import run_job
from growth.errors import ConfigError
from growth.measure import count_params
from growth.methods.registry import METHODS
from tests.conftest import TINY, tiny_cfg


def summary_of(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_cli_dry_run_reports_the_sizes_a_real_run_reports(cli, tmp_path):
    dry_dir, real_dir = tmp_path / "dry", tmp_path / "real"
    proc = cli([*TINY, "trainer.dry_run=true", f"hydra.run.dir={dry_dir}"])
    assert proc.returncode == 0, proc.stderr
    dry = summary_of(dry_dir)
    assert "dry run: arch" in proc.stdout and f"params {dry['params']:,}" in proc.stdout
    assert not (dry_dir / "checkpoints").exists() and not (dry_dir / "metrics.jsonl").exists()
    real = run_job(tiny_cfg(**{"trainer.epochs": 1, "trainer.batch_size": 64}), real_dir)
    assert real["status"] == "completed" and real["arch"] == dry["arch"]  # no growth in one epoch
    assert dry["status"] == "dry_run"
    for key in ("params", "deploy_params", "macs", "arch_spec"):
        assert dry[key] == real[key], key
    assert dry["input_size"] == [1, 8, 8] and dry["num_classes"] == 10 and dry["method_sizes"] == {}
    assert torch.isfinite(torch.tensor(dry["step_loss"])) and dry["train_macs_per_sample"] > dry["macs"]
    # a real run's directory is not a dry run's to overwrite
    with pytest.raises(ConfigError, match="hydra.run.dir"):
        dry_run(tiny_cfg(**{"trainer.dry_run": "true"}), real_dir)
    assert summary_of(real_dir)["status"] == "completed"


def test_imagefolder_without_files(tmp_path):
    cfg = compose(**{"data": "imagefolder", "data.root": "/nonexistent", "data.num_classes": 7,
                      "data.image_size": 32, "model": "timm", "model.name": "resnet18", "trainer.dry_run": "true"})
    s = run_job(cfg, tmp_path)
    ref = timm.create_model("resnet18", num_classes=7)  # small stem: conv1 7x7 -> 3x3, no maxpool params
    expected = count_params(ref) - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    assert (s["status"], s["num_classes"], s["input_size"]) == ("dry_run", 7, [3, 32, 32])
    assert s["params"] == expected == 11_172_423 and s["deploy_params"] == expected


def test_imagefolder_class_count_is_needed_without_files(cli, tmp_path):
    proc = cli(["data=imagefolder", "trainer.dry_run=true", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data.num_classes"), proc.stderr
    assert not (tmp_path / "summary.json").exists()  # a dry run writes nothing else, not even a failure


def test_a_set_class_count_must_match_the_folders(tmp_path):
    from tests.test_data import write_folder
    write_folder(tmp_path / "train", {"cat": 2, "dog": 2, "emu": 2})
    args = {"batch_size": 2, "eval_batch_size": 2, "seed": 0, "device": torch.device("cpu"), "num_workers": 0,
            "pin_memory": False}
    cfg = {"name": "imagefolder", "root": str(tmp_path), "image_size": 8}
    assert data_info(cfg)["num_classes"] == 3  # null: counted from the folders, as the builder does
    assert build_data({**cfg, "num_classes": 3}, args).num_classes == 3
    with pytest.raises(ConfigError, match="data.num_classes=4.*3 class folders"):
        build_data({**cfg, "num_classes": 4}, args)


def test_adn_dry_run_has_method_sizes(tmp_path):
    s = dry_run(tiny_cfg(**{"method": "adn", "model.arch": "2-2-2", "trainer.dry_run": "true"}), tmp_path)
    assert s["method"] == "adn" and isinstance(s["method_sizes"], dict)


def test_a_methods_dry_run_sizes_reach_the_summary(tmp_path, monkeypatch):
    def sizes(self, ctx):
        return {"base": ctx.sizes()["params"], "half": ctx.sizes()["params"] // 2}
    monkeypatch.setattr(METHODS["fixed"], "dry_run_sizes", sizes, raising=False)
    s = dry_run(tiny_cfg(**{"method": "fixed", "trainer.dry_run": "true"}), tmp_path)
    assert s["method_sizes"] == {"base": s["params"], "half": s["params"] // 2}
    assert summary_of(tmp_path)["method_sizes"] == s["method_sizes"]
    dry_run(tiny_cfg(**{"method": "fixed", "trainer.dry_run": "true"}), tmp_path)  # a dry run's dir: again


def test_data_info_covers_every_dataset_and_matches_the_builders():
    assert set(INFO) == set(BUILDERS)
    args = {"batch_size": 8, "eval_batch_size": 8, "seed": 0, "device": torch.device("cpu"), "num_workers": 0,
            "pin_memory": False}
    for cfg in ({"name": "digits"}, {"name": "digits", "resize": 16},
                {"name": "synthetic", "channels": 3, "num_classes": 5, "image_size": 6},
                {"name": "synthetic_text", "num_classes": 3, "distractors": 2, "max_len": 10}):
        real = build_data(cfg, args).info
        info = data_info(cfg)
        assert {k: real[k] for k in info} == info, cfg
    assert data_info({"name": "cifar100"})["num_classes"] == 100
    with pytest.raises(ConfigError, match="data.vocab_size"):
        data_info({"name": "text", "num_classes": 2, "vocab_size": None})

