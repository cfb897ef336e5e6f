"""The "original's settings" files (conf/optim/sgd_*.yaml, conf/experiment/*.yaml) hold the original code's
values, key by key. Each value's source is named beside it: ustbmicl-sirr/modelGrow AdaGrow/ (convnet and
transformer scripts, optimizer.py) and ohmydroid/reducenet main.py at aeb75cf, as in METHODS.md 1.6 and 2.3."""
import pytest
import torch

from benchmarks.common import compose
from growth.engine.optim import build_optimizer


def _decay_of_every_param(optim_cfg) -> dict:
    """weight decay each parameter of a conv + BN + linear net gets, by parameter name."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=True), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    opt = build_optimizer(net, optim_cfg)
    names = {id(p): n for n, p in net.named_parameters()}
    return {names[id(p)]: g["weight_decay"] for g in opt.param_groups for p in g["params"]}


def test_sgd_adagrow_is_the_original_convnet_optimizer():
    o = compose(optim="sgd_adagrow")["optim"]
    assert o["name"] == "sgd" and o["momentum"] == 0.9 and o["nesterov"] is False  # optimizer.py get_optimizer
    assert o["lr"] == 0.1 and o["min_lr"] == 1e-5  # training_adagrow_convnets.py --lr, --min-lr
    assert o["weight_decay"] == 5e-4 and o["weight_decay_end"] == 5e-6  # --weight-decay, --weight-decay-end
    assert o["schedule"] == "cosine" and o["warmup_epochs"] == 0  # cosine_scheduler per iteration, no warmup
    # optim.SGD(net.parameters(), ..., weight_decay=wd): BN scales/shifts and biases are decayed too
    assert o["no_decay_norm_bias"] is False
    assert set(_decay_of_every_param(o).values()) == {5e-4}


def test_sgd_reducenet_is_the_original_optimizer():
    o = compose(optim="sgd_reducenet")["optim"]
    # main.py: optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    assert o["name"] == "sgd" and o["lr"] == 0.1 and o["momentum"] == 0.9 and o["nesterov"] is True
    assert o["weight_decay"] == 1e-4 and o["weight_decay_end"] is None  # -wd 1e-4, constant
    assert o["schedule"] == "cosine" and o["min_lr"] == 0.0 and o["warmup_epochs"] == 0  # CosineAnnealingLR
    assert o["no_decay_norm_bias"] is False  # net.parameters(): BN and biases decayed too
    assert set(_decay_of_every_param(o).values()) == {1e-4}


def test_plain_sgd_still_exempts_norms_and_biases():
    """Our own default (sgd.yaml) keeps its exemption: only the originals' files drop it."""
    decay = _decay_of_every_param(compose(optim="sgd")["optim"])
    assert decay["0.weight"] == decay["3.weight"] == 5e-4
    assert decay["1.weight"] == decay["1.bias"] == decay["0.bias"] == 0.0


def test_adagrow_cifar10_experiment():
    c = compose(experiment="adagrow_cifar10")
    assert c["optim"] == compose(optim="sgd_adagrow")["optim"]  # the convnet script's SGD, as tested above
    assert c["method"]["name"] == "adagrow" and c["model"]["name"] == "resnet_basic"
    assert c["model"]["widths"] is None  # 64-96-128: get_ada_growing_basic_resnet, 3 stages
    assert c["model"]["arch"] == "0-0-0" and c["model"]["max_arch"] == "2-5-1"  # --net, --max-net defaults
    assert c["grow_mode"]["name"] == "width-depth" and c["grow"]["interval"] == 3  # --grow-mode, --grow-interval
    assert c["grow"]["width_ratio"] == 0.3  # --growing-depth-ratio
    assert c["grow"]["threshold"] == 0.0 and c["grow"]["max_params"] is None  # dead threshold, 70B cap
    assert c["initializer"]["name"] == "gaussian" and c["initializer"]["meta"] == 0.2  # --initializer, --init-meta
    assert c["trainer"]["batch_size"] == 128  # --batch-size (per GPU)
    assert c["trainer"]["epochs"] == 100  # the thesis logs (visualizer.txt), not the script's 300
    assert c["trainer"]["label_smoothing"] == 0.0  # nn.CrossEntropyLoss()
    assert c["data"]["name"] == "cifar10" and c["data"]["val_fraction"] == 0  # validates on the test split
    assert c["data"]["augment"] is True  # dataset.py: RandomCrop(32, padding=4) + RandomHorizontalFlip


def test_adagrow_vit_cifar10_experiment():
    c = compose(experiment="adagrow_vit_cifar10")
    assert c["method"]["name"] == "adagrow" and c["model"]["name"] == "vit"
    assert c["model"]["arch"] == "d2h6" and c["model"]["head_dim"] == 64  # transformers script --net d2h6
    assert c["grow_mode"]["name"] == "width-width-depth" and c["grow"]["interval"] == 3  # --grow-mode default
    assert c["initializer"]["name"] == "gaussian" and c["initializer"]["meta"] == 0.2
    assert c["trainer"]["batch_size"] == 128 and c["data"]["val_fraction"] == 0
    # documented differences: AdamW (the original: the convnet script's SGD), patch 4, max d6h8
    assert c["optim"]["name"] == "adamw" and c["model"]["patch_size"] == 4 and c["model"]["max_arch"] == "d6h8"


def test_reducenet_cifar10_experiment():
    c = compose(experiment="reducenet_cifar10")
    assert c["optim"] == compose(optim="sgd_reducenet")["optim"]  # main.py's SGD, as tested above
    assert c["method"]["name"] == "reducenet" and c["model"]["name"] == "reducenet"
    assert c["model"]["depth"] == 20 and c["model"]["width"] == 1 and c["model"]["expansion"] == 1  # -m reduce20
    assert c["method"]["same_budget"] is False and c["trainer"]["epochs"] == 200  # --epoch 200 per phase
    assert c["method"]["alpha"] == 0.7 and c["method"]["temperature"] == 5.0  # loss_fn_kd(alpha=0.7, T=5.0)
    assert c["trainer"]["batch_size"] == 128  # --batch_size 128
    assert c["data"]["val_fraction"] == 0 and c["data"]["augment"] is True  # test split; crop pad 4 + flip


def test_adagrow_cifar100_is_adagrow_cifar10_on_cifar100():
    """--dataset cifar100 with every other setting of the convnet script: each key is adagrow_cifar10's."""
    c, b = compose(experiment="adagrow_cifar100"), compose(experiment="adagrow_cifar10")
    assert c["data"] == compose(experiment="adagrow_cifar10", data="cifar100", **{"data.val_fraction": 0})["data"]
    assert {k: v for k, v in c.items() if k not in ("data", "run_name")} == \
        {k: v for k, v in b.items() if k not in ("data", "run_name")}


@pytest.mark.parametrize("path", ["conf/optim/sgd_adagrow.yaml", "conf/optim/sgd_reducenet.yaml",
                                  "conf/experiment/adagrow_cifar10.yaml", "conf/experiment/adagrow_vit_cifar10.yaml",
                                  "conf/experiment/reducenet_cifar10.yaml", "conf/experiment/adagrow_cifar100.yaml"])
def test_each_file_says_what_still_differs(path):
    from tests.conftest import ROOT

    assert "Still differs" in (ROOT / path).read_text()
