"""ReduceNet: blocks, fold, the switch, KD, LambdaReLU, the two-phase run and its resume."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from growth.blocks.reducenet import LambdaReLU, ReduceBlock, lambda_at
from growth.engine.job import prepare, run_job
from growth.engine.record import RunRecord
from growth.errors import ConfigError
from growth.measure import count_params
from growth.methods import METHODS
from growth.methods.distill import kd_loss
from growth.methods.reducenet import ReduceNetMethod, phase_epochs
from growth.models import create_model
from growth.models.saved import from_file
from growth.losses import label_ce
from tests.conftest import TINY, max_diff, out, tiny_cfg

SMALL = {"depths": [2, 1, 1], "widths": [8, 12, 16], "in_chans": 3, "num_classes": 5}


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so folds are really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def _x(n=4, size=8):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _student_of(teacher, **kw):
    method = ReduceNetMethod(tiny_cfg(model="reducenet", **{f"method.{k}": v for k, v in kw.items()}))
    return method._student(teacher)


# ---- fold -------------------------------------------------------------------------------------
@pytest.mark.parametrize("design", ["head", "blog"])
@pytest.mark.parametrize("lora", [0, 2])
def test_folded_student_equals_student(design, lora):
    torch.manual_seed(0)
    student = _randomize(create_model("reducenet", **SMALL, design=design, scaler=0, lora_expansion=lora))
    x = _x()
    deployed = student.deploy()
    assert max_diff(out(deployed, x), out(student, x)) < 1e-4
    kinds = {type(m) for m in deployed.modules()}
    assert nn.BatchNorm2d not in kinds and ReduceBlock not in kinds and LambdaReLU not in kinds
    assert count_params(deployed) < count_params(student)


def test_teacher_deploy_fuses_conv_bn_only():
    teacher = _randomize(create_model("reducenet", **SMALL))
    x = _x()
    assert max_diff(out(teacher.deploy(), x), out(teacher, x)) < 1e-4


def test_sizes_match_the_original_reduce20():
    """reduce20 width 1 on CIFAR-10 has 412,058 (teacher) / 272,474 (student) params in the original
    (docs/reference_numbers.md, "ReduceNet sizes")."""
    teacher = create_model("reducenet")
    student = create_model("reducenet", scaler=0)
    # docs/reference_numbers.md "ReduceNet sizes": measured from the original (HEAD aeb75cf)
    assert (count_params(teacher), count_params(student)) == (412_058, 272_474)
    # The fold, derived from the student's modules rather than pinned: every BN goes into the bias-less
    # conv before it, so each BN's weight and bias leave and that conv gains one bias per channel.
    bns = [m for m in student.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(c.bias is None for c in student.modules() if isinstance(c, nn.Conv2d))
    removed = sum(bn.weight.numel() + bn.bias.numel() for bn in bns)
    added = sum(bn.num_features for bn in bns)
    folded = student.deploy()
    assert count_params(folded) == count_params(student) - removed + added
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(bns) and all(c.bias is not None for c in convs)
    assert count_params(student) - removed + added == 271_690  # docs/reference_numbers.md "ReduceNet sizes"


# ---- the switch -------------------------------------------------------------------------------
@pytest.mark.parametrize("design", ["head", "blog"])
def test_scaler_zero_removes_every_trace_of_branch1(design):
    torch.manual_seed(0)
    teacher = _randomize(create_model("reducenet", **SMALL, design=design))
    x = _x()
    silenced = copy.deepcopy(teacher)
    for block in silenced.blocks():  # branch1 contributes exactly 0 (blog: relu(0) = 0)
        nn.init.zeros_(block.branch1.b.bn.weight)
        nn.init.zeros_(block.branch1.b.bn.bias)
    for block in teacher.blocks():  # whatever branch1 holds, the student never sees it
        for p in block.branch1.parameters():
            p.data.fill_(float("nan"))
    student = _student_of(teacher)
    assert not any("branch1" in n for n, _ in student.named_parameters())
    y = out(student, x)
    assert torch.isfinite(y).all()
    assert max_diff(y, out(silenced, x)) < 1e-5


def test_blog_scaler_scales_branch1():
    torch.manual_seed(0)
    half = _randomize(create_model("reducenet", **SMALL, design="blog", scaler=0.5))
    block, x = half.blocks()[0], torch.randn(2, 8, 8, 8)
    block.eval()
    with torch.no_grad():
        expected = block.conv3(0.5 * block.branch1(x) + F.relu(block.branch2(x))) + x
        assert max_diff(block(x), expected) < 1e-6


def test_new_lora_starts_silent():
    torch.manual_seed(0)
    teacher = _randomize(create_model("reducenet", **SMALL, lora_expansion=2))
    student = _student_of(teacher)
    assert all(b.lora is not None for b in student.blocks())
    plain = create_model("reducenet", **SMALL, scaler=0)
    plain.load_state_dict(teacher.state_dict(), strict=False)
    x = _x()
    assert max_diff(out(student, x), out(plain, x)) == 0


# ---- KD -------------------------------------------------------------------------------------------
def test_kd_alpha_zero_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g), torch.arange(6)
    for per_class in (True, False):  # faithful (KLDivLoss 'mean') and fixed ('batchmean')
        assert torch.equal(kd_loss(s, t, y, 0.0, 5.0, per_class), F.cross_entropy(s, y))


def test_kd_faithful_divides_kl_by_classes():
    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g), torch.arange(6)
    kl = lambda per_class: kd_loss(s, t, y, 1.0, 5.0, per_class)  # alpha 1: the KL term alone
    assert kl(True).item() == pytest.approx(kl(False).item() / 10, rel=1e-5)
    assert kl(False).item() > 0 and kd_loss(s, s, y, 1.0, 5.0).abs().item() < 1e-5


def test_student_loss_with_alpha_zero_never_runs_the_teacher():
    method = ReduceNetMethod(tiny_cfg(model="reducenet", **{"method.alpha": 0}))
    method.switched = True
    method.teacher = lambda x: pytest.fail("the teacher ran")

    class T:
        label_smoothing = 0.0
        label_loss = staticmethod(label_ce)  # ctx.label_loss at label_smoothing 0
    model = create_model("reducenet", **SMALL, scaler=0)
    x, y = _x(), torch.arange(4)
    loss, logits = method.loss(model, x, y, T())
    assert torch.equal(loss, F.cross_entropy(logits, y))


# ---- LambdaReLU ---------------------------------------------------------------------------------
def test_lambda_relu_goes_from_relu_to_identity():
    assert lambda_at(0.0) == 1.0 and lambda_at(1.0) == 0.0 and 0 < lambda_at(0.5) < 1
    x = torch.randn(100)
    act = LambdaReLU()
    assert torch.equal(act(x), F.relu(x))
    act.lam.fill_(lambda_at(0.5))
    assert torch.allclose(act(x), 0.5 * F.relu(x) + 0.5 * x)
    act.lam.fill_(lambda_at(1.0))
    assert torch.equal(act(x), x)


@pytest.mark.slow
def test_lambda_run_ends_at_identity_and_switch_keeps_the_function(tmp_path):
    """act=lambda: the schedule reaches identity on the teacher's last step; the linear branch1 carries
    over into the student's LoRA, so the switch changes nothing and the student still folds."""
    cfg = tiny_cfg(model="reducenet", **{"model.act": "lambda", "trainer.epochs": 2, "trainer.batch_size": 256})
    trainer, record = prepare(cfg, tmp_path)
    trainer.run_epoch(1)
    assert isinstance(trainer.model.blocks()[0].lora.act, nn.Identity)
    acts = [m for m in trainer.method.teacher.module.modules() if isinstance(m, LambdaReLU)]
    assert acts and all(a.lam.item() == 0 for a in acts)
    switch = next(e for e in record.events() if e["kind"] == "switch")
    assert switch["max_abs_output_change"] < 1e-4
    x = trainer.probe
    assert max_diff(out(trainer.model.deploy(), x), out(trainer.model, x)) < 1e-4


# ---- freezing (the blog design's stage 2) -----------------------------------------------------
def test_freeze_keeps_classifier_weight_and_bn_but_counts_them():
    model = create_model("reducenet", **SMALL, scaler=0, freeze=["bn", "linear"])
    free = create_model("reducenet", **SMALL, scaler=0)
    assert count_params(model) == count_params(free)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    w, b, g = model.fc.weight.clone(), model.fc.bias.clone(), model.stem[0].bn.weight.clone()
    model(_x()).sum().backward()
    opt.step()
    assert torch.equal(model.fc.weight, w) and torch.equal(model.stem[0].bn.weight, g)
    assert not torch.equal(model.fc.bias, b)


# ---- config -----------------------------------------------------------------------------------
@pytest.mark.parametrize("over,key", [
    ({"model.design": "bogus"}, "model.design"),
    ({"model.depth": 21, "model.arch": "null"}, "model.depth"),
    ({"model.scaler": 0.5}, "model.scaler"),
    ({"model.act": "lambda", "model.design": "blog"}, "model.act"),
    ({"method.alpha": 2}, "method.alpha"),
    ({"method.freeze": "[fc]"}, "method.freeze"),
    ({"method.variant": "original"}, "method.variant"),
    ({"model.scaler": 0}, "model.scaler"),
    ({"trainer.epochs": 1}, "trainer.epochs"),
    ({"model": "resnet_basic", "method": "reducenet"}, "model"),
])
def test_bad_config_is_one_config_error(tmp_path, over, key):
    with pytest.raises(ConfigError) as e:
        prepare(tiny_cfg(**{"model": "reducenet", **over}), tmp_path)
    assert e.value.key == key


def test_phase_epochs():
    assert phase_epochs(10, True, 0.5) == (5, 5)
    assert phase_epochs(3, True, 0.9) == (2, 1)
    assert phase_epochs(7, False, 0.5) == (7, 7)


# ---- runs -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_digits_cli_runs_teacher_then_student(cli, tmp_path):
    run = tmp_path / "run"
    r = cli(["model=reducenet", *TINY, "trainer.epochs=2", "trainer.batch_size=256", "trainer.device=cpu",
             f"hydra.run.dir={run}"])
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["method"] == "reducenet" and s["model"] == "reducenet"
    for key in ("teacher_val_acc", "teacher_test_acc", "student_val_acc", "student_test_acc"):
        assert 0 <= s[key] <= 1
    assert s["student_test_acc"] == s["test_acc"]
    assert f"teacher: val acc {s['teacher_val_acc']:.4f}" in r.stdout  # the end-of-run report shows both
    assert f"student: val acc {s['student_val_acc']:.4f}" in r.stdout
    assert s["student_deploy_params"] == s["deploy_params"] < s["student_params"] < s["teacher_params"]
    assert 0 < s["student_macs"] == s["macs"] < s["teacher_macs"]
    assert s["fused_speedup"] > 0 and s["deploy_max_abs_diff"] < 1e-4
    assert s["variants"] == {"variant": "fixed", "kd_reduction": "fixed", "same_budget": True}
    kinds = [e["kind"] for e in RunRecord(run).events()]
    assert kinds == ["phase_start", "switch", "phase_start", "fuse"]
    assert [m["phase"] for m in RunRecord(run).metrics()] == ["teacher", "student"]
    deployed = from_file(torch.load(run / "checkpoints" / "deploy.pt", weights_only=True))
    assert not any(isinstance(m, (nn.BatchNorm2d, ReduceBlock)) for m in deployed.modules())


class StopInStudent(ReduceNetMethod):
    stop_after = None

    def on_epoch_end(self, ctx, epoch):
        if epoch == self.stop_after:
            ctx._trainer.stop_requested = "test stop"  # a signal, as SLURM sends
        return super().on_epoch_end(ctx, epoch)


@pytest.mark.slow
def test_resume_in_student_phase_equals_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "reducenet", StopInStudent)
    cfg = lambda: tiny_cfg(model="reducenet", **{"trainer.epochs": 4, "trainer.batch_size": 256,
                                                  "trainer.device": "cpu"})
    full = run_job(cfg(), tmp_path / "full")
    StopInStudent.stop_after = 3
    try:
        assert run_job(cfg(), tmp_path / "part")["status"] == "interrupted"
    finally:
        StopInStudent.stop_after = None
    resumed = run_job(cfg(), tmp_path / "part")
    assert resumed["status"] == "completed"
    a, b = RunRecord(tmp_path / "full").metrics(), RunRecord(tmp_path / "part").metrics()
    assert [r["phase"] for r in b] == ["teacher", "teacher", "student", "student"]
    assert [r["val_acc"] for r in a] == [r["val_acc"] for r in b]
    for key in ("test_acc", "teacher_test_acc", "teacher_val_acc", "student_deploy_params", "macs"):
        assert full[key] == resumed[key], key
