import json

import pytest

from growth.engine.job import run_job
from growth.errors import ConfigError
from growth.methods import build_method
from tests.conftest import tiny_cfg

CFG = {"method": "randgrow", "model.arch": "0-0-0", "model.max_arch": "2-2-2", "grow.interval": 1,
       "grow_mode": "depth", "trainer.epochs": 6}


def _stages(run_dir):
    return [json.loads(r)["stage"] for r in (run_dir / "events.jsonl").read_text().splitlines()]


def test_round_robin_cycles_stages(tmp_path):
    s = run_job(tiny_cfg(**CFG), tmp_path)
    assert s["status"] == "completed" and s["variants"]["where"] == "round_robin"
    assert _stages(tmp_path) == [0, 1, 2, 0, 1]
    assert s["arch"] == "2-2-1"


def test_round_robin_skips_stages_at_max(tmp_path):
    run_job(tiny_cfg(**{**CFG, "model.max_arch": "1-2-0"}), tmp_path)
    assert _stages(tmp_path) == [0, 1, 1]


def test_random_is_seeded_and_differs_from_round_robin(tmp_path):
    cfg = {**CFG, "method.where": "random", "trainer.epochs": 7}
    run_job(tiny_cfg(**cfg), tmp_path / "a")
    run_job(tiny_cfg(**cfg), tmp_path / "b")
    run_job(tiny_cfg(**{**cfg, "grow.seed": 123}), tmp_path / "c")
    a, b, c = (_stages(tmp_path / d) for d in "abc")
    assert a == b and len(a) == 6  # same seed, same choices
    assert a != c  # another seed, other choices (checked for these two seeds)


def test_width_round_robin_walks_the_units(tmp_path):
    s = run_job(tiny_cfg(**{**CFG, "model.arch": "1-1-1", "grow_mode": "width", "grow.width_ratio": 0.5,
                            "trainer.epochs": 4}), tmp_path)
    wheres = [json.loads(r)["where"] for r in (tmp_path / "events.jsonl").read_text().splitlines()]
    # 8 units (6 in blocks + 2 downstream), 4 per event, in module order, wrapping around
    assert wheres[0] == ["stages.0.0.ru1", "stages.0.0.ru2", "stages.1.0.ru1", "stages.1.0.ru2"]
    assert wheres[1] == ["stages.2.0.ru1", "stages.2.0.ru2", "downs.0.unit", "downs.1.unit"]
    assert wheres[2] == wheres[0] and s["growth_events"] == 3


def test_bad_where():
    cfg = tiny_cfg(**CFG)
    cfg["method"]["where"] = "saliency"
    with pytest.raises(ConfigError, match="method.where='saliency'"):
        build_method(cfg)
