"""Every config option composes, and every option that needs no files on disk builds its model/data."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from run import preflight
from tests.conftest import ROOT

GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in (ROOT / "conf").iterdir()
          if g.is_dir() and g.name not in ("local", "hydra")}
CASES = [(group, option) for group, options in GROUPS.items() for option in options]


# Options that read files from disk: composed only here. Their data are built from stand-in files in
# tests/test_data.py; every experiment trains on digits in test_every_ready_made_experiment_... below.
NEEDS_FILES = {("data", o) for o in ("cifar10", "cifar100", "svhn", "mnist", "imagefolder", "text")} | {
    ("experiment", o) for o in GROUPS["experiment"]}
# An Optuna search (global keys and hydra.sweeper): composed here, its trials run in tests/test_optuna.py.
SEARCHES = {("hparams_search", o) for o in GROUPS["hparams_search"]}
# Tiny sizes per model, so that building every option stays fast; the default model is resnet_basic.
TINY_MODEL = {
    "resnet_basic": {"model.widths": "[8,12,16]"}, "resnet_bottleneck": {"model.widths": "[8,12,16]"},
    "vgg": {"model.widths": "[8,12,16]"}, "mobilenet": {"model.widths": "[8,12,16]"},
    "vit": {"model.arch": "d1h2", "model.head_dim": 8},
    "bert": {"model.arch": "d1h2", "model.head_dim": 8, "data": "synthetic_text"},  # needs token data
    "sws_aux": {"model.embed_dim": 16, "model.stage_repeats": "[1,1]"},
    "sws_descendant": {"model.depth": 2, "method.phase": "scratch"},  # descendant would need a learngene file
    "reducenet": {"model.depth": 8}, "timm": {}, "gromo_mlp": {},
}
# A method or data option that needs a model other than the default one.
PARTNER = {("method", "reducenet"): "reducenet", ("method", "sws"): "sws_aux", ("data", "synthetic_text"): "bert",
           ("method", "tiny"): "gromo_mlp", ("method", "gradmax"): "gromo_mlp", ("method", "gstack"): "vit",
           ("method", "stackbert"): "vit", ("method", "msg"): "vit",
           ("method", "bert2bert"): "vit"}


def _build_overrides(group, option) -> dict:
    model = option if group == "model" else PARTNER.get((group, option), "resnet_basic")
    return {**({"model": model} if model != "resnet_basic" else {}), **TINY_MODEL[model], group: option,
            "trainer.device": "cpu", "trainer.progress": "false"}


@pytest.mark.parametrize("group,option", CASES)
def test_compose(group, option, tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"{group}={option}"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    if group == "experiment":  # a ready-made combination sets keys of other groups, at the top level
        assert plain["data"]["name"] != "digits"
    elif (group, option) in SEARCHES:  # a search sets the method and data it searches, at the top level
        assert plain["method"]["name"] and plain["optimized_metric"]
    else:
        assert plain[group] is not None
    assert plain["trainer"]["epochs"] > 0 and isinstance(plain["seed"], int)
    if (group, option) in NEEDS_FILES | SEARCHES:
        return  # built elsewhere, see NEEDS_FILES and SEARCHES
    # Build what the option selects: data, model, method, optimizer (prepare), then one training-mode
    # forward and backward of a real batch, so that data and model fit together.
    from benchmarks.common import compose as plain_compose
    from growth.engine.job import prepare
    over = _build_overrides(group, option)
    cfg, alone = plain_compose(**over), plain_compose(**{group: option})
    untouched = lambda c: {k: v for k, v in c[group].items() if f"{group}.{k}" not in over}
    assert untouched(cfg) == untouched(alone)  # the tiny sizes changed nothing else of the option
    trainer, _ = prepare(cfg, tmp_path)
    x, y = next(iter(trainer.data.train))
    loss, logits = trainer.method.loss(trainer.train_model, x, y, trainer.ctx)
    loss.backward()
    assert logits.shape == (len(y), trainer.data.info["num_classes"]) and loss.isfinite()


def test_groups_are_the_designed_ones():
    for group in ("data", "model", "method", "optim", "trainer"):
        assert group in GROUPS
    assert {"digits", "synthetic", "cifar10", "cifar100", "svhn", "mnist", "imagefolder"} <= set(GROUPS["data"])


def test_preflight():
    assert preflight(["model=timm", "trainer.epochs=3", "data=digits,synthetic"]) is None
    msg = preflight(["model=resnett"])
    assert msg.startswith("model='resnett': unknown option; allowed: ")
    assert {"resnet_basic", "resnet_bottleneck", "vgg", "mobilenet", "vit", "timm"} <= set(msg.split(": ")[-1].split(", "))
    assert "data='bogus'" in preflight(["-m", "data=digits,bogus"])
    assert preflight(["hydra.run.dir=x", "+model.extra=1"]) is None


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_a_model_may_pick_its_method_and_optimizer_but_the_command_line_wins():
    assert _compose("model=sws_aux").optim.name == "adamw"
    assert _compose("model=sws_aux").method.name == "sws"
    assert _compose("model=sws_aux", "optim=sgd").optim.name == "sgd"
    assert _compose("model=timm").method.name == "fixed"
    assert _compose("model=resnet_basic").optim.name == "sgd"
    for model in ("vit", "bert"):  # SGD at lr 0.1 leaves a ViT at chance on digits
        assert _compose(f"model={model}").optim.name == "adamw"
        assert _compose(f"model={model}", "optim=sgd").optim.name == "sgd"
        assert _compose(f"model={model}", "method=adn").model.name == model


# ImageNet-scale experiments that also need files besides the data (a teacher's weights, a learngene) and
# whose models do not fit 8 px digits (patch 16): tests/test_sws_scale.py builds, counts and steps them.
AT_SCALE = {n for n in GROUPS["experiment"] if n.startswith("sws_") and n.endswith("_imagenet")}
# ImageNet-size ADN nets (ResNet-50, ViT-B/16 at full width): 2 digits epochs take minutes of CPU each (a
# quarter of the CI suite), so here they only compose. One ADN step of each is elsewhere: MobileNetV2 and
# ViT-B/16 on digits (tests/test_adn_timm.py), ResNet-50 at 224 px through its recipe (tests/test_recipe.py).
HEAVY = {"adn_resnet50_imagenet", "adn_mobilenetv2_imagenet", "adn_vit_b16_imagenet"}


@pytest.mark.parametrize("name", GROUPS["experiment"])
def test_every_ready_made_experiment_trains_on_digits_and_the_command_line_wins(name, tmp_path):
    """conf/experiment/NAME.yaml on the embedded data for 2 epochs: the experiment's method and model
    run, and command-line values win over the experiment's."""
    if name in AT_SCALE:
        pytest.skip(f"{name}: ImageNet scale, needs weight files; see tests/test_sws_scale.py")
    from growth.engine.job import run_job
    from benchmarks.common import compose as plain
    cfg = plain(**{"experiment": name, "data": "digits", "data.val_fraction": 0.15, "trainer.epochs": 2,
                   "grow.interval": 1, "trainer.num_workers": 0, "trainer.progress": "false"})
    full = plain(experiment=name)
    assert cfg["data"]["name"] == "digits" and cfg["trainer"]["epochs"] == 2
    assert cfg["method"] == full["method"] and cfg["model"] == full["model"]
    if name in HEAVY:
        pytest.skip(f"{name}: composes with digits; its one ADN step is in test_adn_timm.py / test_recipe.py")
    summary = run_job(cfg, tmp_path / name)
    assert summary["status"] == "completed" and summary["method"] == full["method"]["name"]


def test_an_experiments_optimizer_is_replaced_whole_and_fixed_keeps_its_own_start_arch():
    # an experiment's SGD settings live in an optim option, so optim=adamw does not inherit lr 0.1
    assert _compose("experiment=adagrow_cifar10").optim.weight_decay_end == 5.0e-6
    adamw = _compose("experiment=adagrow_cifar10", "optim=adamw").optim
    assert adamw.name == "adamw" and adamw.lr == 1.0e-3 and adamw.weight_decay_end is None
    assert _compose("experiment=reducenet_cifar10", "optim=adamw").optim.lr == 1.0e-3
    assert _compose("experiment=adagrow_cifar10").model.arch == "0-0-0"
    assert _compose("experiment=adagrow_cifar10", "method=fixed").model.arch == "1-1-1"
