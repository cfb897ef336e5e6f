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


# ---- 9b: RandGrow places a transformer's new layers without saliency ------------------------------
def _transformer(family):
    """A ViT or BERT of 2 layers whose LayerNorm gammas differ (as after training): saliency would pick."""
    import torch

    torch.manual_seed(0)
    if family == "vit":
        from growth.models.vit import ViT
        m = ViT(depth=2, heads=1, embed_dim=8, head_dim=8, patch_size=4, img_size=8, in_chans=1, num_classes=3)
    else:
        from growth.models.bert import Bert
        m = Bert(depth=2, heads=1, head_dim=8, vocab_size=20, max_len=10, num_classes=3, dropout=0.0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return m


def _positions(family, events=4, **over):
    """Where RandGrow puts each of `events` new layers (the event's `position`), from d2 to d6."""
    from types import SimpleNamespace

    from growth.methods import build_method
    from tests.conftest import tiny_cfg

    method = build_method(tiny_cfg(**{"method": "randgrow", "grow_mode": "depth", **over}))
    trainer = SimpleNamespace(model=_transformer(family))
    out = []
    for _ in range(events):
        event = method.grow_layer(trainer)
        assert event["saliency"] == {}  # no saliency read
        out.append(event["position"])
    assert trainer.model.depth == 2 + events
    return out


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_randgrow_transformer_round_robin_positions(family):
    # after layer 0, then after the layer following each new one, wrapping: A n B, A n B n, A n n B n, ...
    assert _positions(family) == [1, 3, 1, 3]


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_randgrow_transformer_random_positions_are_seeded(family):
    a = _positions(family, 6, **{"method.where": "random"})
    assert a == _positions(family, 6, **{"method.where": "random"})  # same seed, same places
    assert all(1 <= p <= d for p, d in zip(a, range(2, 8)))  # after one of the layers there
    others = [_positions(family, 6, **{"method.where": "random", "grow.seed": s}) for s in (1, 2)]
    assert any(o != a for o in others)  # the RNG decides (checked for these seeds)
