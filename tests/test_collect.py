import json

from analysis.collect import collect
from growth.engine.job import run_job
from tests.conftest import tiny_cfg


def test_collect_skips_unfinished_and_old_schema(tmp_path, caplog):
    run_job(tiny_cfg(**{"trainer.epochs": 1}), tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "metrics.jsonl").write_text('{"epoch": 1}\n')  # killed before its summary
    run_job(tiny_cfg(**{"trainer.epochs": 1, "seed": 1}), tmp_path / "c")
    old = json.loads((tmp_path / "c" / "summary.json").read_text()) | {"schema_version": 0}
    (tmp_path / "c" / "summary.json").write_text(json.dumps(old))
    runs, epochs, events = collect(tmp_path)
    assert list(runs["seed"]) == [0] and len(epochs) == 1 and events.empty
    assert "skipped 1 run(s): unfinished" in caplog.text and "skipped 1 run(s): other schema" in caplog.text
