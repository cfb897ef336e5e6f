"""Text data (word tokenizer, local tokenizer directory, synthetic_text) and the growable BERT: head growth
keeps the function, post-LN depth growth keeps it only in the documented case, spec round trip, resume,
AdaGrow end to end; and ViT's insertion rule is unchanged by `layer_saliency`."""
import csv
import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from growth.data import build_data
from growth.data.text import CLS, PAD, UNK
from growth.engine.job import prepare, run_job
from growth.errors import ConfigError
from growth.grow.init import initialize
from growth.methods.adagrow import AdaGrow
from growth.models import model_from_spec
from growth.models.bert import Bert
from tests.conftest import tiny_cfg

ARGS = {"batch_size": 4, "eval_batch_size": 8, "seed": 0, "device": torch.device("cpu"), "num_workers": 0,
        "pin_memory": False}
BERT = {"name": "bert", "family": "bert", "head_dim": 8, "dropout": 0.0}


def text_cfg(root, **over):
    return {"name": "text", "root": str(root), "max_len": 6, "vocab_size": None, "min_freq": 1, **over}


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def one_line(e, *fragments):
    msg = str(e.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)


# ---- text data --------------------------------------------------------------------------------------

def test_csv_word_tokenizer_unk_padding_truncation_string_labels(tmp_path):
    write_csv(tmp_path / "train.csv", [("the cat sat", "pos"), ("The dog, the cat", "neg"), ("a dog", "pos")])
    write_csv(tmp_path / "val.csv", [("the zebra", "neg")])
    write_csv(tmp_path / "test.csv", [("cat cat cat cat cat cat cat", "pos")])
    b = build_data(text_cfg(tmp_path), ARGS)
    # the: 3, cat: 2, dog: 2, then 1 each (ties alphabetical): ",", a, sat
    vocab = ["[PAD]", "[UNK]", "[CLS]", "the", "cat", "dog", ",", "a", "sat"]
    assert b.info["vocab_size"] == len(vocab) and b.info["pad_id"] == PAD and b.info["max_len"] == 6
    assert b.info["classes"] == ["neg", "pos"] and b.num_classes == 2 and b.image_size == 6
    x_val, y_val = next(iter(b.val))
    assert x_val.tolist() == [[CLS, 3, UNK, PAD, PAD, PAD]] and y_val.tolist() == [0]  # zebra unknown
    x_test, _ = next(iter(b.test))
    assert x_test.tolist() == [[CLS, 4, 4, 4, 4, 4]]  # truncated to max_len, [CLS] included
    xs = torch.cat([x for x, _ in b.train])  # a set smaller than one batch still gives one batch of 3
    ys = torch.cat([y for _, y in b.train])
    # every training row, each once, with its label (neg = 0, pos = 1): not a subset, the whole split
    assert sorted(zip(map(tuple, xs.tolist()), ys.tolist())) == sorted(
        [((CLS, 3, 4, 8, 0, 0), 1), ((CLS, 3, 5, 6, 3, 4), 0), ((CLS, 7, 5, 0, 0, 0), 1)])
    assert xs.dtype == torch.long and xs.shape[1] == 6
    small = build_data(text_cfg(tmp_path, vocab_size=5, min_freq=2), ARGS)  # cut at 5 ids: the, cat
    assert small.info["vocab_size"] == 5
    assert next(iter(small.val))[0].tolist() == [[CLS, 3, UNK, PAD, PAD, PAD]]


def test_jsonl_holdout_int_labels_and_vocab_from_train_only(tmp_path):
    rows = [{"sentence": f"common w{i}", "y": i % 3} for i in range(20)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = text_cfg(tmp_path, text_column="sentence", label_column="y", val_fraction=0.25, max_len=4)
    b = build_data(cfg, ARGS)
    assert b.num_classes == 3 and b.val.num_samples == 5 and b.test.num_samples == 5  # test = val
    assert b.train.num_samples == 15 and b.info["vocab_size"] == 3 + 1 + 15  # held-out words unseen
    x_val, y_val = next(iter(b.val))
    assert (x_val[:, 2] == UNK).all() and (x_val[:, 1] == 3).all() and set(y_val.tolist()) <= {0, 1, 2}
    assert (b.train.x[:, 2] > 3).all()
    again = build_data(cfg, ARGS)  # the held-out rows depend only on split_seed
    assert torch.equal(again.val.x, b.val.x)
    write_jsonl(tmp_path / "test.jsonl", rows[:2])
    on_test = build_data({**cfg, "val_fraction": 0}, ARGS)  # 0: validate on the test file, train on all
    assert on_test.train.num_samples == 20 and on_test.val.num_samples == on_test.test.num_samples == 2


def test_local_tokenizer_directory(tmp_path):
    from transformers import BertTokenizer
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(tmp_path / "tok")  # offline
    write_csv(tmp_path / "train.csv", [("the cat sat", 0), ("the dog", 1)])
    b = build_data(text_cfg(tmp_path, tokenizer=str(tmp_path / "tok"), val_fraction=0.5), ARGS)
    assert b.info["vocab_size"] == 8 and b.info["pad_id"] == 0
    assert next(iter(b.val))[0].shape == (1, 6)
    # val_fraction 0.5 of 2 rows: one trains, the other validates, each with its label; dog -> [UNK]
    rows = lambda loader: [(tuple(r), int(c)) for x, y in loader for r, c in zip(x.tolist(), y.tolist())]
    assert len(rows(b.train)) == len(rows(b.val)) == 1
    assert sorted(rows(b.train) + rows(b.val)) == sorted([((2, 5, 6, 7, 3, 0), 0), ((2, 5, 1, 3, 0, 0), 1)])


def test_text_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        build_data(text_cfg(tmp_path / "nope"), ARGS)
    one_line(e, "data.root=", "does not exist", "train.csv")
    with pytest.raises(ConfigError) as e:
        build_data(text_cfg(tmp_path), ARGS)
    one_line(e, "data.root=", "has no train.csv or train.jsonl")
    write_csv(tmp_path / "train.csv", [("a b", "x"), ("c", "y")], header=("body", "label"))
    with pytest.raises(ConfigError) as e:
        build_data(text_cfg(tmp_path), ARGS)
    one_line(e, "data.text_column='text'", "columns: body, label")
    write_csv(tmp_path / "train.csv", [("a b", "x"), ("c", "y")])
    write_csv(tmp_path / "val.csv", [("a", "z")])
    with pytest.raises(ConfigError) as e:
        build_data(text_cfg(tmp_path), ARGS)
    one_line(e, "data.label_column='label'", "['z'] of the val split", "allowed: x, y")
    (tmp_path / "val.csv").unlink()
    write_csv(tmp_path / "train.csv", [("a b", "x"), ("c", "y")] * 5)  # a held-out row leaves both in train
    with pytest.raises(ConfigError) as e:
        build_data(text_cfg(tmp_path, tokenizer=str(tmp_path / "none")), ARGS)
    one_line(e, "data.tokenizer=", "does not exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as e:
        build_data(text_cfg(tmp_path, tokenizer=str(tmp_path / "empty")), ARGS)
    one_line(e, "data.tokenizer=", "not a loadable tokenizer")
    (tmp_path / "train.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError) as e:
        build_data(text_cfg(tmp_path), ARGS)
    one_line(e, "data.root=", "holds both train.csv and train.jsonl")


def test_synthetic_text_labels_the_most_frequent_class_token():
    b = build_data({"name": "synthetic_text", "num_samples": 200, "max_len": 12}, ARGS)
    x, y = b.train.x, b.train.y
    assert x.shape == (b.train.num_samples, 12) and (x[:, 0] == CLS).all() and b.num_classes == 4
    counts = torch.stack([(x == 3 + c).sum(1) for c in range(4)], dim=1)
    assert torch.equal(counts.argmax(1), y)
    assert b.info["vocab_size"] == 3 + 4 + 4 and b.info["pad_id"] == 0


def test_synthetic_text_is_learnable(tmp_path):
    """A fixed d1h2 BERT (head_dim 8), 5 epochs: val acc 0.75-0.79 over seeds 0-3 (measured); chance
    (the majority class of val) is ~0.3."""
    cfg = tiny_cfg(**{"method": "fixed", "data": "synthetic_text", "optim": "adamw", "optim.lr": 0.003,
                      "trainer.batch_size": 32, "trainer.epochs": 5})
    cfg["model"] = {**BERT, "arch": "d1h2"}
    s = run_job(cfg, tmp_path)
    val_y = build_data(cfg["data"], ARGS).val.y
    chance = np.bincount(val_y.numpy()).max() / len(val_y)
    assert s["status"] == "completed" and chance < 0.35
    assert s["final_val_acc"] > chance + 0.25 and s["test_acc"] > chance + 0.25


# ---- the model --------------------------------------------------------------------------------------

def _bert(depth=2, heads=2, seed=0, depth_gate=True):
    torch.manual_seed(seed)
    m = Bert(depth=depth, heads=heads, head_dim=8, vocab_size=20, max_len=10, num_classes=3, dropout=0.1,
             depth_gate=depth_gate)
    with torch.no_grad():  # make every layer matter, LayerNorms included (as after training)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def _ids(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, 20, (4, 10), generator=g)
    x[:, 0] = CLS
    x[1, 4:], x[2, 7:] = PAD, PAD
    return x


@pytest.mark.parametrize("seed", range(3))
def test_zero_head_growth_preserves_function_and_fuses(seed):
    m, x = _bert(depth=random.Random(seed).randint(1, 3), seed=seed), _ids(seed)
    before = m(x)
    for _ in range(2):
        for group in m.grow_heads(1):
            initialize(group, "zero", 0.2)
        assert (m(x) - before).abs().max().item() < 1e-5
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    deployed = m.deploy()
    assert (deployed(x) - m(x)).abs().max().item() < 1e-5
    assert m.arch_string().endswith("h4")
    assert all(layer.qkv.out_features == 3 * m.heads * m.head_dim for layer in deployed.layers)


def test_ungated_post_ln_depth_growth_is_kept_only_when_the_feeding_norm_is_uniform():
    m, x = _bert(depth_gate=False), _ids()
    before = m(x)
    initialize(m.grow_depth(0, 1), "zero", 0.2)  # fed by a perturbed (trained-like) LayerNorm
    assert (m(x) - before).abs().max().item() > 1e-3
    m = _bert(depth_gate=False)
    for position in (0, 2):
        feed = m.layers[position - 1].output.LayerNorm if position else m.bert.embeddings.LayerNorm
        with torch.no_grad():
            feed.weight.fill_(1.7)  # uniform positive gamma, zero beta: LN2(LN1(x)) = x exactly
            feed.bias.zero_()
        before = m(x)
        initialize(m.grow_depth(0, position), "zero", 0.2)
        assert (m(x) - before).abs().max().item() < 1e-5
    assert m.arch_string() == "d4h2"


@pytest.mark.parametrize("position", [0, 1, 2])
def test_gated_depth_growth_keeps_the_function_and_the_gate_learns(position):
    m, x = _bert(), _ids()  # trained-like LayerNorms: the ungated layer would change the output
    before = m(x)
    layer = m.grow_depth(0, position)
    initialize(layer, "zero", 0.2)
    assert (m(x) - before).abs().max().item() < 1e-5
    m.train()
    m(x).square().sum().backward()
    assert layer.gate.grad.abs().item() > 0  # the gate opens at the first step
    rebuilt = Bert.from_spec(m.arch_spec())
    rebuilt.load_state_dict(m.state_dict())
    assert rebuilt.layers[position].gate is not None and rebuilt.arch_string() == "d3h2"


def test_deploy_of_a_grown_gated_bert_is_the_same_function_in_plain_torch():
    m, x = _bert(), _ids()
    m.grow_heads(1)
    for position in (0, 3):
        initialize(m.grow_depth(0, position), "zero", 0.2)
    with torch.no_grad():  # the gates and new heads as after training (non-zero, not 1)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert all(abs(m.layers[i].gate.item()) > 0 for i in (0, 3))
    x[3] = PAD  # a sequence of padding only
    deployed = m.deploy()
    assert not any(isinstance(mod, type(m.layers[0])) for mod in deployed.modules())  # no BertLayer left
    assert (deployed(x) - m(x)).abs().max().item() < 1e-5
    assert sum(p.numel() for p in deployed.parameters()) < sum(p.numel() for p in m.parameters())


def test_padding_is_masked_and_attention_backends_agree():
    m, x = _bert(), _ids()
    before = m(x)
    with torch.no_grad():
        m.bert.embeddings.word_embeddings.weight[PAD] = torch.randn(m.hidden) * 5
    assert (m(x) - before).abs().max().item() < 1e-5  # pad tokens are neither attended to nor pooled
    m.config._attn_implementation = "eager"  # our attention passes transformers' mask through as given
    assert (m(x) - before).abs().max().item() < 1e-5


def test_spec_round_trip_of_a_grown_bert():
    m, x = _bert(depth=1), _ids()
    m.grow_heads(1)
    m.grow_depth(0, 0)
    m.grow_heads(2)
    assert m.arch_string() == "d2h5" and m.layer_saliency() and len(m.layer_saliency()) == 2
    assert [[g.heads for g in layer.attn.groups] for layer in m.layers] == [[3, 2], [2, 1, 2]]
    rebuilt = model_from_spec(json.loads(json.dumps(m.arch_spec())))
    rebuilt.load_state_dict(m.state_dict())  # strict
    assert torch.equal(rebuilt.eval()(x), m(x))


def test_bert_needs_token_data(tmp_path):
    cfg = tiny_cfg(**{"method": "fixed"})
    cfg["model"] = {**BERT, "arch": "d1h1"}
    with pytest.raises(ConfigError, match="data='digits': model=bert reads token ids"):
        prepare(cfg, tmp_path)


def _grow_cfg(epochs, **over):
    cfg = tiny_cfg(**{"method": "adagrow", "data": "synthetic_text", "optim": "adamw", "grow.interval": 1,
                      "grow_mode": "width-depth", "trainer.epochs": epochs, "trainer.batch_size": 32, **over})
    cfg["model"] = {**BERT, "arch": "d1h1", "max_arch": "d3h3"}
    return cfg


def test_adagrow_grows_bert_on_synthetic_text(tmp_path):
    s = run_job(_grow_cfg(4), tmp_path)
    assert s["status"] == "completed" and s["arch"] == "d2h3" and s["deploy_max_abs_diff"] < 1e-4
    events = [json.loads(r) for r in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["grow_heads", "grow_depth", "grow_heads"]
    assert all(e["max_abs_output_change"] < 1e-5 for e in events)  # the new layer is gated at 0
    assert events[1]["where"] == "layer 1" and list(events[1]["saliency"]) == ["0"]  # after the only layer
    assert all(e["params_after"] > e["params_before"] for e in events)


def test_grown_bert_checkpoint_resumes_into_the_same_shape(tmp_path):
    first = run_job(_grow_cfg(3), tmp_path)
    assert first["arch"] == "d2h2"
    more = _grow_cfg(5)
    more["trainer"]["on_config_change"] = "continue"  # more epochs for a finished run, on purpose
    second = run_job(more, tmp_path)  # same directory, more epochs: resumes from the grown last.pt
    assert second["status"] == "completed" and second["epochs_done"] == 5
    assert second["growth_events"] > first["growth_events"] == 2
    layer_heads = second["arch_spec"]["kwargs"]["layer_heads"]
    # epoch 3 was the first run's last (no growth there); the resumed run grows heads at epoch 4
    assert second["arch"] == "d2h3" and layer_heads == [[1, 1, 1], [2, 1]]  # every event is in the spec
    rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5] and rows[3]["arch"] == first["arch"]


def test_vit_insert_position_still_follows_norm1():
    from growth.models.vit import ViT
    vit = ViT(depth=3, heads=1, head_dim=8, img_size=8, in_chans=1, num_classes=2)
    with torch.no_grad():
        for b, g in zip(vit.blocks, (0.5, -2.0, 1.0)):
            b.norm1.weight.fill_(g)
    fixed = SimpleNamespace(faithful=lambda switch: False)
    site, scores = AdaGrow.insert_position(fixed, vit)
    assert (site.kind, site.index) == ("depth", 2) and scores == {0: 0.5, 1: 2.0, 2: 1.0}  # after the block
    # of largest mean |gamma|; faithful appends (the last depth site, position 3)
    assert AdaGrow.insert_position(SimpleNamespace(faithful=lambda switch: True), vit) == (vit.depth_sites()[3], {})
