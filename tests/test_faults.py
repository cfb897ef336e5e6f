"""Smaller faults of issue 16 item 9, one test each: DDP cost of a method's extra passes, RandGrow's
where-to-grow on transformers, read_jsonl on a broken record, an SWS descendant resumed without its
learngene file."""
import json

import pytest

from tests.conftest import run_cli
from tests.test_ddp import torchrun

SYNTH = ["data=synthetic", "model.widths=[8,12,16]", "trainer.device=cpu", "trainer.progress=false"]


# ---- 9a: under DDP a method's extra passes are counted over every rank ----------------------------
@pytest.mark.slow
@pytest.mark.parametrize("args", [
    # ADN: a base-net forward per step besides the super-net's
    ["method=adn", "trainer.epochs=1", "method.epoch_eval=false", "method.eval_configs=extremes"],
    # AdaGrow's adam initializer: an extra epoch training the new block (1-1-1 -> 2-1-1 after epoch 1)
    ["model.arch=1-1-1", "model.max_arch=2-1-1", "grow_mode=depth", "grow.interval=1", "trainer.epochs=2",
     "initializer=adam", "initializer.epochs=1"],
], ids=["adn", "adagrow_adam"])
def test_two_ranks_count_the_cost_of_one_process(tmp_path, args):
    # the same global batch: 2 ranks x 32 = 1 process x 64 (268 train samples: 4 steps either way)
    torchrun(tmp_path / "ddp", [*SYNTH, *args, "trainer.batch_size=32"])
    single = run_cli([f"hydra.run.dir={tmp_path / 'single'}", *SYNTH, *args, "trainer.batch_size=64"],
                     env={"OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-2000:]
    ddp, one = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("ddp", "single"))
    assert ddp["world_size"] == 2 and ddp["arch"] == one["arch"]
    assert ddp["samples_seen"] == one["samples_seen"]
    assert ddp["train_macs_total"] == one["train_macs_total"]
