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
    from growth.methods import build_method
    from tests.conftest import grow_ctx, tiny_cfg

    method = build_method(tiny_cfg(**{"method": "randgrow", "grow_mode": "depth", **over}))
    trainer = grow_ctx(_transformer(family))
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


# ---- 9c: read_jsonl drops only a cut last line ------------------------------------------------------
ROW = '{"epoch": 1, "val_acc": 0.5}'


def test_read_jsonl_drops_only_a_cut_last_line(tmp_path):
    from growth.engine.io import read_jsonl

    path = tmp_path / "metrics.jsonl"
    path.write_text(f'{ROW}\n{ROW}\n{{"epoch": 3, "val_')  # killed while writing row 3: no newline
    assert read_jsonl(path) == [json.loads(ROW)] * 2
    path.write_text(f"{ROW}\n\n{ROW}\n")  # blank lines are no rows
    assert len(read_jsonl(path)) == 2


@pytest.mark.parametrize("text,line", [
    (f'{ROW}\n{{"epoch": 2, "val_\n{ROW}\n', 2),   # a bad line in the middle
    (f'{ROW}\n{{"epoch": 2, "val_\n', 2),         # a bad last line that was written whole (newline)
    (f'not json\n{ROW}', 1),
], ids=["middle", "last_with_newline", "first"])
def test_read_jsonl_bad_line_names_file_and_line(tmp_path, text, line):
    from growth.engine.io import read_jsonl
    from growth.errors import ConfigError

    path = tmp_path / "events.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        read_jsonl(path)
    assert str(e.value).startswith(f"{path}:{line}=") and "not a JSON row" in str(e.value)


def test_analysis_skips_a_run_with_a_broken_record_and_names_the_line(tmp_path, caplog):
    from analysis.collect import collect
    from growth.engine.job import run_job
    from tests.conftest import tiny_cfg

    for seed in (0, 1):
        run_job(tiny_cfg(**{"trainer.epochs": 1, "seed": seed}), tmp_path / f"r{seed}")
    metrics = tmp_path / "r1" / "metrics.jsonl"
    metrics.write_text("garbage\n" + metrics.read_text())
    runs, epochs, _ = collect(tmp_path)
    assert list(runs["seed"]) == [0] and len(epochs) == 1  # the other run is still read
    assert runs.attrs["skipped"]["broken record"] == 1
    assert "skipped 1 run(s): broken record" in caplog.text and f"{metrics}:1=" in caplog.text


# ---- 9e: an SWS descendant resumes from its checkpoint without the learngene file -----------------
def test_sws_descendant_resumes_without_its_learngene_file(tmp_path, monkeypatch):
    import torch

    from growth.engine.io import atomic_torch_save
    from growth.engine.job import run_job
    from growth.methods.sws import SWS
    from growth.models import learngene
    from growth.models.sws import SWSAux
    from tests.test_sws import sws_cfg

    def make_gene(path):  # an untrained tiny aux's learngene, as in tests/test_sws.py
        torch.manual_seed(0)
        gene = learngene.extract(SWSAux(stage_repeats=[1, 1], embed_dim=16, heads=2))
        gene.update(cost={"learngene_cost_macs": 10 ** 6}, data={"name": "digits", "num_classes": 10},
                    aux={"val_acc": 0.0, "params": 0, "variant": "fixed"})
        atomic_torch_save(path, gene)

    make_gene(tmp_path / "gene.pt")
    cfg = sws_cfg("sws_descendant", **{"model.depth": 2, "method.learngene": tmp_path / "gene.pt",
                                       "trainer.epochs": 2})
    full = run_job(cfg, tmp_path / "full")
    original = SWS.on_epoch_end

    def stop_after_one(self, ctx, epoch):
        ctx._trainer.stop_requested = "test stop"  # the run stops at epoch 2's first step, checkpoint at 1
        return original(self, ctx, epoch)
    monkeypatch.setattr(SWS, "on_epoch_end", stop_after_one)
    assert run_job(cfg, tmp_path / "part")["status"] == "interrupted"
    monkeypatch.setattr(SWS, "on_epoch_end", original)
    (tmp_path / "gene.pt").unlink()
    resumed = run_job(cfg, tmp_path / "part")
    assert resumed["status"] == "completed" and resumed["epochs_done"] == 2
    for key in ("final_val_acc", "test_acc", "learngene_params", "storage_ratio", "cost_ratio"):
        assert resumed[key] == full[key], key
