"""Training recipes (conf/recipe, issue 18 item 3): timm's transforms, Mixup/CutMix with soft targets,
model EMA, DeiT's repeated augmentation, and a resume inside such a run that equals the uninterrupted one."""
import json
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from growth.data.loaders import EpochSampler, TensorLoader, repeat_count, repeated_order
from growth.data.recipe_transforms import recipe_transforms
from growth.engine.checkpoint import load_checkpoint
from growth.engine.job import prepare, run_job
from growth.engine.mixup import Mixer
from growth.engine.optim import scale_lr
from growth.errors import ConfigError
from growth.losses import label_ce
from growth.methods.base import Method
from benchmarks.common import compose
from tests.conftest import tiny_cfg

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# mixup + cutmix + EMA + repeated augmentation on digits (the transforms are for image files; the rest
# applies to any data). A fast EMA (decay 0.9) so that its weights move visibly in a few steps.
MIXED = {"method": "fixed", "recipe": "deit", "recipe.ema.decay": 0.9, "trainer.epochs": 3, "seed": 5,
         "trainer.threads": 1}
IGNORED = {"epoch_time_s"}


def rows(run_dir):
    return [{k: v for k, v in json.loads(r).items() if k not in IGNORED}
            for r in (run_dir / "metrics.jsonl").read_text().splitlines()]


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


# ---- (1) resume inside a mixup + cutmix + EMA + repeated-aug run ---------------------------------------
def test_resume_inside_a_mixup_ema_run_equals_uninterrupted(tmp_path, monkeypatch):
    full = run_job(tiny_cfg(**MIXED), tmp_path / "full")
    assert full["status"] == "completed" and full["samples_seen"] == 3 * 1024  # RA: 1257 digits -> 1024 an epoch
    cfg = tiny_cfg(**MIXED, **{"trainer.checkpoint_every": 5})
    real = Method.loss

    def crash(self, model, x, y, ctx):
        if ctx.step == 23:  # inside epoch 2 (16 steps an epoch; saved at 16, then every 5): last at step 21
            raise Crash()
        return real(self, model, x, y, ctx)
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(Method, "loss", crash)
        run_job(cfg, tmp_path / "part")
    ckpt = load_checkpoint(tmp_path / "part/checkpoints/last.pt")
    assert ckpt["step"] == 21 and ckpt["in_epoch"]["batch"] == 5 and "ema" in ckpt
    resumed = run_job(cfg, tmp_path / "part")
    assert resumed["status"] == "completed"
    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    a, b = (load_checkpoint(tmp_path / d / "checkpoints/last.pt") for d in ("part", "full"))
    for key in ("model", "ema"):  # final weights and EMA weights, bit for bit
        assert a[key].keys() == b[key].keys() and all(a[key][k].equal(b[key][k]) for k in a[key]), key
    for key in ("test_acc", "test_acc_ema", "test_loss_ema", "steps_done", "samples_seen"):
        assert resumed[key] == full[key], key


# ---- (2) the repeated-augmentation sampler -------------------------------------------------------------
@pytest.mark.parametrize("n,world,repeats", [(600, 1, 3), (600, 4, 3), (1000, 3, 4), (100, 2, 3), (257, 8, 2)])
def test_repeated_order_is_deits_rasampler_at_seed_zero(n, world, repeats):
    """At seed 0 our (seed, epoch) generator is timm's epoch-seeded one: the order must be its exactly."""
    from timm.data.distributed_sampler import RepeatAugSampler
    for epoch in (0, 3):
        for rank in range(world):
            theirs = RepeatAugSampler(range(n), num_replicas=world, rank=rank, num_repeats=repeats)
            theirs.set_epoch(epoch)
            ours = repeated_order(n, 0, epoch, repeats, rank, world).tolist()
            assert ours == list(theirs) and len(ours) == len(theirs) == repeat_count(n, repeats, world)


def test_repeated_order_repeats_each_index_and_depends_on_seed_and_epoch_only():
    n, r, world = 90, 3, 3  # an epoch is n samples over all ranks (n < 256: ceil(n / world) each)
    window = Counter(i for rank in range(world) for i in repeated_order(n, 7, 2, r, rank, world).tolist())
    assert len(window) == n // r and set(window.values()) == {r}  # n / r samples, each r times
    for rank in range(world):  # a sample's r copies land on r different ranks
        assert len(set(repeated_order(n, 7, 2, r, rank, world).tolist())) == n // world
    assert repeated_order(n, 7, 2, r).equal(repeated_order(n, 7, 2, r))
    assert not repeated_order(n, 7, 2, r).equal(repeated_order(n, 8, 2, r))
    assert not repeated_order(n, 7, 2, r).equal(repeated_order(n, 7, 3, r))


def test_repeated_loaders_skip_to_a_mid_epoch_batch():
    x, y = torch.randn(300, 2), torch.arange(300)
    loader = TensorLoader(x, y, 16, shuffle=True, drop_last=True, seed=4)
    loader.repeat(3)
    assert len(loader) == 256 // 16  # 300 -> 256 samples an epoch (DeiT's rule), as many as without repeats
    loader.set_epoch(2)
    whole = [b for _, b in loader]
    loader.set_epoch(2, start_batch=5)
    assert all(a.equal(b) for a, b in zip([b for _, b in loader], whole[5:], strict=True))
    sampler = EpochSampler(300, seed=4)
    sampler.repeats = 3
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=80)
    assert list(sampler) == full[80:] and full == torch.cat(whole).tolist()  # both loaders: one order


# ---- (3) the recipe's transforms are timm's ---------------------------------------------------------------
def _ops(tf):
    return tf.transforms


def test_deit_recipe_builds_timms_train_and_eval_transforms():
    from timm.data.auto_augment import RandAugment
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T
    recipe = tiny_cfg(recipe="deit")["recipe"]
    train, evaluate, size = recipe_transforms(recipe, 224, MEAN, STD)
    ra = [op for op in _ops(train) if isinstance(op, RandAugment)]
    erase = [op for op in _ops(train) if isinstance(op, RandomErasing)]
    assert len(ra) == 1 and len(erase) == 1 and size == 224
    assert {op.magnitude for op in ra[0].ops} == {9} and {op.magnitude_std for op in ra[0].ops} == {0.5}
    assert ra[0].num_layers == 2 and erase[0].probability == 0.25 and erase[0].mode == "pixel"
    assert not any(isinstance(op, T.ColorJitter) for op in _ops(train))  # timm drops it under RandAugment
    resize = [op for op in _ops(evaluate) if isinstance(op, T.Resize)]
    crop = [op for op in _ops(evaluate) if isinstance(op, T.CenterCrop)]
    assert resize[0].size == 256 and resize[0].interpolation == T.InterpolationMode.BICUBIC  # 224 / 0.875
    assert crop[0].size == (224, 224)
    assert recipe_transforms(tiny_cfg()["recipe"], 224, MEAN, STD) is None  # recipe none: the data's own


def test_tv_resnet50_v2_recipe_is_trivialaugment_at_176_and_232_resize():
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T
    recipe = tiny_cfg(recipe="tv_resnet50_v2")["recipe"]
    train, evaluate, size = recipe_transforms(recipe, 224, MEAN, STD)
    kinds = [type(op).__name__ for op in _ops(train)]
    assert kinds.index("TrivialAugmentWide") == kinds.index("RandomHorizontalFlip") + 1
    assert _ops(train)[0].size == (176, 176) and size == 224
    assert [op.probability for op in _ops(train) if isinstance(op, RandomErasing)] == [0.1]
    assert [op.size for op in _ops(evaluate) if isinstance(op, T.Resize)] == [232]


def test_bad_recipe_values_stop_with_the_key(tmp_path):
    recipe = tiny_cfg(recipe="deit")["recipe"]
    with pytest.raises(ConfigError, match="recipe.auto_augment"):
        recipe_transforms({**recipe, "auto_augment": "rand-q9"}, 224, MEAN, STD)
    with pytest.raises(ConfigError, match="recipe.transforms"):
        recipe_transforms({**recipe, "transforms": "torchvision"}, 224, MEAN, STD)
    with pytest.raises(ConfigError, match="recipe.repeated_aug"):
        run_job(tiny_cfg(**{**MIXED, "recipe.repeated_aug": 0}), tmp_path)
    with pytest.raises(ConfigError, match="recipe.cutmix_minmax"):
        Mixer({**recipe, "cutmix_minmax": [1, 2]}, 10, 0.1, seed=0)
    with pytest.raises(ConfigError, match="recipe.mixup_mode"):
        Mixer({**recipe, "mixup_mode": "rows"}, 10, 0.1, seed=0)


# ---- mixup, soft targets, the label loss ---------------------------------------------------------------------
def test_soft_targets_take_timms_soft_target_ce_and_hard_labels_are_unchanged():
    from timm.loss import SoftTargetCrossEntropy
    z, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.equal(label_ce(z, y, 0.1), F.cross_entropy(z, y, label_smoothing=0.1))
    soft = torch.softmax(torch.randn(6, 5), 1)
    assert torch.equal(label_ce(z, soft, 0.1), SoftTargetCrossEntropy()(z, soft))  # no second smoothing


def test_mixer_draws_depend_on_seed_rank_step_and_leave_numpy_alone():
    recipe = tiny_cfg(recipe="deit")["recipe"]
    mixer = Mixer(recipe, 10, 0.1, seed=3)
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8)
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    a = mixer(x.clone(), y, step=7)
    assert np.array_equal(np.random.get_state()[1], before)  # the global numpy stream did not move
    np.random.seed(123)  # another global state: the same mix
    b = mixer(x.clone(), y, step=7)
    assert a[0].equal(b[0]) and a[1].equal(b[1]) and a[1].shape == (8, 10)
    assert torch.allclose(a[1].sum(1), torch.ones(8)) and a[1].min() >= 0.1 / 10 - 1e-7  # smoothed targets
    other = [mixer(x.clone(), y, step=s)[1] for s in (8, 9, 10)]
    assert any(not o.equal(a[1]) for o in other)
    with pytest.raises(ConfigError, match="trainer.batch_size"):
        mixer(torch.randn(3, 1, 8, 8), torch.arange(3), step=0)


def test_a_method_that_needs_class_labels_refuses_mixup(tmp_path, monkeypatch):
    from growth.methods.fixed import Fixed
    monkeypatch.setattr(Fixed, "soft_targets", False)
    with pytest.raises(ConfigError, match="recipe.mixup"):
        prepare(tiny_cfg(**MIXED), tmp_path)


def test_lr_scale_batch_is_deits_linear_rule():
    cfg = {"lr": 5e-4, "min_lr": 1e-5, "lr_scale_batch": 512}
    assert scale_lr(cfg, 128 * 4) == {**cfg, "lr": 5e-4, "min_lr": 1e-5}
    assert scale_lr(cfg, 64) == {**cfg, "lr": 5e-4 / 8, "min_lr": 1e-5 / 8}
    assert scale_lr({**cfg, "lr_scale_batch": None}, 64)["lr"] == 5e-4
    with pytest.raises(ConfigError, match="optim.lr_scale_batch"):
        scale_lr({**cfg, "lr_scale_batch": 0}, 64)


# ---- (5) EMA evaluation and growth -----------------------------------------------------------------------
def test_ema_is_evaluated_beside_the_model_and_restarts_after_growth(tmp_path):
    growing = {"method": "adagrow", "model.arch": "0-0-0", "model.max_arch": "1-1-1", "grow.interval": 1,
               "trainer.epochs": 3, "seed": 3, "recipe.ema.enabled": True, "recipe.ema.decay": 0.9}
    summary = run_job(tiny_cfg(**growing), tmp_path)
    assert summary["status"] == "completed" and "test_acc_ema" in summary
    got = rows(tmp_path)
    assert all("val_acc_ema" in r and "val_loss_ema" in r for r in got)
    events = [json.loads(r) for r in (tmp_path / "events.jsonl").read_text().splitlines()]
    grown = [e for e in events if e["kind"] != "phase_start" and e["params_before"] != e["params_after"]]
    hooks = {e["epoch"] for e in grown}  # one restart per hook that grew; a row counts those before it
    assert grown and [r["ema_resets"] for r in got] == [len({h for h in hooks if h < r["epoch"]}) for r in got]
    assert got[-1]["ema_resets"] >= 1
    assert "ema: restarted from the current model after" in (tmp_path / "train.log").read_text()
    ckpt = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ckpt["counters"]["ema_resets"] == len(hooks)
    assert ckpt["ema"].keys() == ckpt["model"].keys()  # the EMA follows the grown model
    assert any(not ckpt["ema"][k].equal(ckpt["model"][k]) for k in ckpt["model"] if ckpt["model"][k].is_floating_point())


# ---- (4) one step at 224 px through the real recipe transforms, ResNet-50 and Des-S ------------------------
def _image_tree(root):
    """ROOT/{train,val}/<class>/: one small image per class and split (a PNG and a JPEG), 3 classes."""
    from PIL import Image
    gen = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, name in enumerate(("ant", "bee", "cat")):
            (root / split / name).mkdir(parents=True)
            pixels = (gen.random((40 + 8 * k, 56, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / name / ("a.png" if k % 2 else "a.jpg"))
    return root


def _one_step(tmp_path, recipe, **over):
    """Build the job, spy on the training step's labels, train one epoch (one batch of 2), return what ran."""
    cfg = compose(data="imagefolder", recipe=recipe, **{"trainer.progress": "false",
        "data.root": str(_image_tree(tmp_path / "images")), "data.image_size": 224, "trainer.batch_size": 2,
        "trainer.eval_batch_size": 4, "trainer.epochs": 1, "trainer.threads": 1, "trainer.device": "cpu",
        "trainer.probe_batch": 1, "recipe.ema.enabled": True, "recipe.ema.every": 1, **over})
    trainer, _ = prepare(cfg, tmp_path / "run")
    seen = []
    real = trainer.method.loss

    def spy(model, x, y, ctx):
        seen.append((tuple(x.shape), tuple(y.shape), y.dtype))
        return real(model, x, y, ctx)
    trainer.method.loss = spy
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    return trainer, seen, before


def _ema_moved(trainer, before) -> bool:
    """The EMA is neither the initial weights nor the trained ones: it averaged after the step."""
    ema, now = trainer.ema.module.state_dict(), trainer.model.state_dict()
    floats = [k for k in now if now[k].is_floating_point() and not now[k].equal(before[k])]
    return bool(floats) and all(not ema[k].equal(before[k]) and not ema[k].equal(now[k]) for k in floats[:4])


def test_resnet50_adn_one_step_at_224_through_the_tv_v2_recipe(tmp_path):
    """ResNet-50-ADN (timm's resnet50, method=adn: super- and base-net in the step) under the ADN R50-v2
    recipe: TrivialAugment at 176, mixup/cutmix, EMA, RA x4."""
    trainer, seen, before = _one_step(tmp_path, "tv_resnet50_v2", model="timm", method="adn", **{
        "model.name": "resnet50", "method.epoch_eval": False, "method.eval_configs": "extremes"})
    assert trainer.model.skippable and trainer.model.num_skip_flags == 4
    assert seen == [((2, 3, 176, 176), (2, 3), torch.float32)]  # train crop 176, soft targets over 3 classes
    assert trainer.step == 1 and trainer.probe.shape[-1] == 224  # eval at the data's 224
    assert _ema_moved(trainer, before)
    assert "val_acc_ema" in trainer.record.metrics()[-1]
    trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not trained & {id(p) for p in trainer.ema.module.parameters()}  # the EMA is not trained
    assert trainer.sizes()["params"] == sum(p.numel() for p in trainer.model.parameters())  # nor counted


def test_des_s_one_step_at_224_through_the_deit_recipe(tmp_path):
    """Des-S, the SWS descendant at 224 px (12 layers, 384 wide, 6 heads, patch 16), from scratch."""
    trainer, seen, before = _one_step(tmp_path, "deit", model="sws_descendant", **{
        "method.phase": "scratch", "model.depth": 12, "model.embed_dim": 384, "model.heads": 6,
        "model.patch_size": 16, "model.mlp_ratio": 4.0})
    assert seen == [((2, 3, 224, 224), (2, 3), torch.float32)]
    assert trainer.model.arch_string().startswith("d12") and trainer.step == 1
    assert _ema_moved(trainer, before)


def test_a_phase_switch_restarts_the_ema_from_the_new_model(tmp_path):
    """ReduceNet's teacher -> student switch: the EMA follows the student from the switch on."""
    cfg = tiny_cfg(model="reducenet", **{"trainer.epochs": 2, "trainer.batch_size": 256, "recipe.ema.enabled": True,
                                          "recipe.ema.decay": 0.5})
    summary = run_job(cfg, tmp_path)
    assert summary["status"] == "completed" and [r["ema_resets"] for r in rows(tmp_path)] == [0, 1]
    assert "restarted from the current model after a phase switch" in (tmp_path / "train.log").read_text()
    ckpt = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ckpt["ema"].keys() == ckpt["model"].keys()
