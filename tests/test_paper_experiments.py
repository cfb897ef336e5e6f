"""The paper-table experiments (conf/experiment/adagrow_cifar100.yaml, reducenet_cifar10.yaml) dry-run
without their data and build the sizes the originals report (MEASURED.md, METHODS.md 2.4)."""
import pytest

from benchmarks.common import compose
from growth.engine.dry_run import dry_run
from growth.measure import count_params


def experiment_dry_run(tmp_path, name, **over) -> dict:
    return dry_run(compose(**{"experiment": name, "trainer.dry_run": "true", **over}), tmp_path)


def test_adagrow_cifar100_dry_run_reports_100_classes_at_the_start_arch(tmp_path):
    from growth.models import create_model
    s = experiment_dry_run(tmp_path, "adagrow_cifar100")
    assert (s["num_classes"], s["input_size"], s["arch"]) == (100, [3, 32, 32], "0-0-0")
    # MEASURED.md: basic ResNet 0-0-0 has 169,770 live params with 10 classes; 90 more classes add 90 x (128 + 1)
    assert s["params"] == 169_770 + 90 * 129
    start = create_model("resnet_basic", depths=[0, 0, 0], in_chans=3, num_classes=100)
    assert s["deploy_params"] == count_params(start.deploy())


M = 1e6
# MEASURED.md "ReduceNet": teacher params / MACs, student params / MACs, folded student params
REDUCENET = {(20, 1): (412_058, 62.05, 272_474, 40.81, 271_690), (20, 2): (1_640_234, 247.30, 1_084_586, 162.37, 1_083_018),
             (56, 1): (1_320_602, 194.17, 855_770, 125.75, 853_642)}


@pytest.mark.parametrize("depth,width", [(20, 1), (56, 1)])
def test_reducenet_dry_run_sizes_are_the_originals(tmp_path, depth, width):
    """experiment=reducenet_cifar10 is reduce20 width 1; the 56-layer row of the paper sweep at width 1."""
    s = experiment_dry_run(tmp_path, "reducenet_cifar10", **{"model.depth": depth, "model.width": width})
    t, st, f = (s["method_sizes"][k] for k in ("teacher", "student", "folded_student"))
    assert (t["params"], round(t["macs"] / M, 2), st["params"], round(st["macs"] / M, 2), f["params"]) == \
        REDUCENET[depth, width]
    assert s["params"] == t["params"] and s["epochs"] == 400  # the teacher trains first; 200 + 200 epochs


def test_reducenet56w2_is_the_readme_row():
    """ResNet56-2-T 5.3 M / 775.8 M MAdds, -S 3.4 M / 502.1 M (the README's rounding; MEASURED.md has no row).
    Built from the sweep row's config without a training step (a dry run at 56-2 takes a minute on one thread)."""
    from growth.data.info import data_info
    from growth.measure import forward_macs
    from growth.models import build_model
    c = compose(**{"experiment": "reducenet_cifar10", "model.depth": 56, "model.width": 2})  # the paper sweep's row
    teacher = build_model(c["model"], data_info(c["data"]))
    student = build_model({**c["model"], "scaler": 0}, data_info(c["data"]))
    for model, size in ((teacher, (5.3, 775.8)), (student, (3.4, 502.1))):
        assert (round(count_params(model) / M, 1), round(forward_macs(model, (3, 32, 32)) / M, 1)) == size
