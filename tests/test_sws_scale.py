"""Learngene SWS at the paper's sizes (conf/experiment/sws_*_imagenet.yaml): Aux-S/B and Des-S/B are only
built and counted (no training at 224 px but one Des-S step), the gene transfer at Des-S scale, the dry-run
sizes and planned ratios, and the teacher's weights file (a small timm model on the same code path)."""
import time
from types import SimpleNamespace

import pytest
import torch

from benchmarks.common import compose
from growth.errors import ConfigError
from growth.measure import count_params, train_step_macs
from growth.methods import sws_cost
from growth.methods.sws import SWS
from growth.methods.sws_teacher import timm_teacher
from growth.models import build_model, learngene
from growth.models.sws import SWSAux

IMAGENET = {"name": "imagefolder", "image_size": 224, "in_chans": 3, "num_classes": 1000}
IMAGENET_SHAPE = {"img_size": 224, "in_chans": 3, "num_classes": 1000}
README_12 = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]  # the original README's --layers-source
# MEASURED.md (eddiexia98/SWS at 2ad3b64, timm ViTs): one block of each width, the models' totals
SMALL_BLOCK, BASE_BLOCK = 1_774_464, 7_087_872
# ours: the learngene proper = the 5 blocks + patch embedding (3*16*16*D + D) + position embedding (196*D)
GENE_S = 5 * SMALL_BLOCK + 295_296 + 75_264


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def experiment(name: str, **over) -> dict:
    return compose(experiment=name, **over)


def build(name: str, meta: bool = True, **over):
    """The experiment's model for ImageNet, on the meta device unless asked (to count: shapes only, no
    memory and no init time; MACs count there too)."""
    torch.manual_seed(0)
    cfg = experiment(name, **over)
    with torch.device("meta" if meta else "cpu"):
        return build_model(cfg["model"], IMAGENET), cfg


def dry_method(cfg: dict) -> SWS:
    cfg["trainer"]["dry_run"] = True  # the key is the dry-run branch's; the method reads it as a plain value
    return SWS(cfg)


# ---- sizes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,total,blocks,rest,block", [
    ("sws_aux_s_imagenet", 9_628_648, 8_872_320, 756_328, SMALL_BLOCK),
    ("sws_aux_b_imagenet", 36_951_016, 35_439_360, 1_511_656, BASE_BLOCK)])
def test_aux_sizes_are_the_originals(name, total, blocks, rest, block):
    model, _ = build(name)
    assert model.arch_string() == "s3-3-4-3-3h12" and model.depth == 16
    assert count_params(model) == total
    gene = learngene.view(model)
    assert learngene.block_params(gene) == blocks == 5 * block
    assert count_params(model.stages[0]) == block
    assert total - blocks == rest  # patch and position embedding, final norm, head


@pytest.mark.parametrize("name,total,block,heads", [("sws_des_s_imagenet", 22_049_896, SMALL_BLOCK, 12),
                                                    ("sws_des_b_imagenet", 86_566_120, BASE_BLOCK, 12)])
def test_descendant_sizes_are_the_originals(name, total, block, heads):
    model, _ = build(name)
    assert count_params(model) == total and model.depth == 12
    assert count_params(model.net.blocks[0]) == block
    assert model.spec_kwargs()["heads"] == heads  # fixed: the learngene's 12 (Des-B: DeiT-B's 12 either way)
    assert model.net.global_pool == "avg" and model.net.cls_token is None


def test_faithful_des_s_has_the_originals_six_heads_and_des_b_keeps_twelve():
    s, _ = build("sws_des_s_imagenet", **{"method.variant": "faithful"})
    b, _ = build("sws_des_b_imagenet", **{"method.variant": "faithful"})
    assert s.spec_kwargs()["heads"] == 6 and b.spec_kwargs()["heads"] == 12
    assert count_params(s) == 22_049_896  # the heads re-partition qkv: same tensors, same count


# ---- gene transfer ------------------------------------------------------------------------------------
def test_even_rule_gives_the_readme_list_and_the_experiment_uses_it():
    assert learngene.even_source(12, 5) == README_12
    assert learngene.parse_source("even", 12, 5, [3, 3, 4, 3, 3]) == README_12
    assert learngene.auto_source(12, [3, 3, 4, 3, 3]) != README_12  # auto follows the aux's 4-layer stage 2
    assert learngene.even_source(8, 5) == [0, 0, 1, 1, 2, 2, 3, 4] and learngene.even_source(3, 5) == [0, 2, 4]
    for name in ("sws_des_s_imagenet", "sws_des_b_imagenet"):
        assert experiment(name)["method"]["layers_source"] == README_12


def test_gene_transfer_at_des_s_scale_copies_every_layer_from_its_stage():
    aux, _ = build("sws_aux_s_imagenet", meta=False)
    gene = learngene.extract(aux)
    des, cfg = build("sws_des_s_imagenet", meta=False)
    source = learngene.parse_source(cfg["method"]["layers_source"], 12, 5, aux.stage_repeats)
    learngene.init_descendant(des, gene, source, load_head=True)
    for i, (block, stage) in enumerate(zip(des.net.blocks, README_12)):
        mine, theirs = block.state_dict(), aux.stages[stage].state_dict()
        assert len(mine) == 12 and mine.keys() == theirs.keys(), i  # norm1, qkv, proj, norm2, fc1, fc2: w and b
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), (i, stage)
    assert torch.equal(des.net.pos_embed, aux.pos_embed)
    assert torch.equal(des.net.patch_embed.proj.weight, aux.patch_embed.proj.weight)
    assert torch.equal(des.net.fc_norm.weight, aux.norm.weight) and torch.equal(des.net.head.weight, aux.head.weight)
    # layers 0-2 start as one block, layer 3 from the next stage
    assert torch.equal(des.net.blocks[0].attn.qkv.weight, des.net.blocks[2].attn.qkv.weight)
    assert not torch.equal(des.net.blocks[2].attn.qkv.weight, des.net.blocks[3].attn.qkv.weight)


# ---- dry-run sizes and the plan's ratios ------------------------------------------------------------------
def test_descendant_sizes_are_affine_in_depth_exactly():
    kw = {"embed_dim": 32, "mlp_ratio": 4.0, "patch_size": 4, "img_size": 16, "in_chans": 3, "num_classes": 5,
          "heads": 2}
    sizes = sws_cost.descendant_sizes(kw, [1, 5])
    direct = build_model({"family": "sws_descendant", "depth": 5, **kw, "aux_heads": 2, "drop_path": 0.1},
                         {"name": "x", "image_size": 16, "in_chans": 3, "num_classes": 5})
    assert sizes[5] == (count_params(direct), train_step_macs(direct, (3, 16, 16)))


@pytest.mark.parametrize("name,sizes,epochs,gmacs", [
    # (aux, learngene blocks, rest, our learngene = blocks + patch + pos, Des 12 layers); aux epochs;
    # counted GMACs per image, about: aux training (16 blocks ~ 4/3 of DeiT), Des training (3 x DeiT's forward)
    ("sws_aux_s_imagenet", (9_628_648, 8_872_320, 756_328, GENE_S, 22_049_896), 150, (18.2, 13.7)),
    ("sws_aux_b_imagenet", (36_951_016, 35_439_360, 1_511_656, 36_180_480, 86_566_120), 100, (69.7, 52.3))])
def test_aux_dry_run_sizes_and_the_plans_ratios(name, sizes, epochs, gmacs):
    model, cfg = build(name)
    method = dry_method(cfg)  # no teacher_weights: a dry run may go without (random init)
    with torch.device("meta"):
        teacher = timm_teacher("levit_384", IMAGENET).eval()
    out = sws_cost.aux_dry_run(method, model, teacher)
    aux_n, blocks, rest, gene, des_n = sizes
    assert (out["aux_params"], out["learngene_block_params"], out["rest_params"]) == (aux_n, blocks, rest)
    assert out["learngene_params"] == gene
    assert out["descendant_params"] == {"12": des_n} and out["family_params"] == des_n
    assert out["family_storage_ratio"] == pytest.approx(des_n / gene)  # 2.386 (S), 2.393 (B)
    aux, kd, des = out["aux_train_macs_per_image"], out["teacher_forward_macs"], \
        out["descendant_train_macs_per_image"]["12"]
    assert out["aux_epochs"] == epochs and out["learngene_cost_macs_per_image"] == epochs * (aux + kd)
    assert out["family_cost_ratio"] == pytest.approx((epochs * (aux + kd) + 10 * des) / (300 * des))
    assert out["pretrain_cost_ratio"] == pytest.approx(epochs * (aux + kd) / (300 * des))
    assert out["cost_ratio_12"] == out["family_cost_ratio"]  # a family of one
    assert 2.3e9 < kd < 2.4e9  # LeViT-384's forward
    assert aux == pytest.approx(gmacs[0] * 1e9, rel=0.01) and des == pytest.approx(gmacs[1] * 1e9, rel=0.01)


def ctx_of(model):
    """What the hook reads of the run context: the model, the data's shapes, the engine's sizes."""
    train = train_step_macs(model, (3, 224, 224))
    return SimpleNamespace(model=model, data_info=IMAGENET, sizes=lambda: {"train_macs_per_sample": train})


def test_method_dry_run_sizes_hook_on_both_phases():
    """The Method hook on a context with just the model and data info, before setup: the aux (its teacher
    counted from its name, no weights needed) and a Des-S without a learngene file."""
    model, cfg = build("sws_aux_s_imagenet", **{"method.family_depths": "[6,12]"})
    out = dry_method(cfg).dry_run_sizes(ctx_of(model))
    assert out["descendant_params"] == {"6": 6 * SMALL_BLOCK + 756_328, "12": 22_049_896}
    assert 2.2e9 < out["teacher_forward_macs"] < 2.5e9  # LeViT-384, built on the meta device to count
    des, cfg = build("sws_des_s_imagenet")
    out = dry_method(cfg).dry_run_sizes(ctx_of(des))
    assert out["descendant_params"] == 22_049_896 and out["descendant_depth"] == 12
    assert out["learngene_params"] == GENE_S  # the shape's: 5 stages named by layers_source
    assert out["storage_ratio"] == pytest.approx(22_049_896 / GENE_S)


# ---- the teacher's weights file ---------------------------------------------------------------------------
def test_teacher_weights_file_is_checked_early_and_loaded_through_timms_filter(tmp_path):
    """levit_128s (7.8M params) on the levit_384 code path: a DeiT-style {'model': ...} .pth holding the
    attention_bias_idxs buffers older LeViT files carry (timm's filter drops them), and a .safetensors."""
    src = timm_teacher("levit_128s", IMAGENET)
    state = {**src.net.state_dict(), **{k: b for k, b in src.net.named_buffers() if "attention_bias_idxs" in k}}
    torch.save({"model": state}, tmp_path / "levit.pth")
    from safetensors.torch import save_file
    save_file(src.net.state_dict(), str(tmp_path / "levit.safetensors"))
    for file in ("levit.pth", "levit.safetensors"):
        got = timm_teacher("levit_128s", IMAGENET, tmp_path / file)
        assert all(torch.equal(a, b) for a, b in zip(got.net.state_dict().values(), src.net.state_dict().values()))
    with pytest.raises(ConfigError, match=r"^method.teacher_weights=.*levit.pth.*does not fit timm test_vit"):
        timm_teacher("test_vit", IMAGENET, tmp_path / "levit.pth")
    (tmp_path / "junk.safetensors").write_text("not a file of tensors")
    with pytest.raises(ConfigError, match=r"^method.teacher_weights=.*corrupt or unreadable"):
        timm_teacher("levit_128s", IMAGENET, tmp_path / "junk.safetensors")


@pytest.mark.parametrize("dry", [False, True])
def test_a_given_teacher_weights_path_must_exist_dry_run_or_not(dry):
    cfg = experiment("sws_aux_s_imagenet", **{"method.teacher_weights": "/nonexistent/levit_384.pth"})
    cfg["trainer"]["dry_run"] = dry
    with pytest.raises(ConfigError) as e:
        SWS(cfg)  # the method alone (no data, no model): a dry run stops here too
    assert str(e.value).startswith("method.teacher_weights='/nonexistent/levit_384.pth'")
    assert "does not exist" in str(e.value)


def test_a_real_run_needs_teacher_weights_and_a_dry_run_does_not():
    with pytest.raises(ConfigError, match=r"^method.teacher_weights=None.*levit_384 needs its weights file"):
        SWS(experiment("sws_aux_s_imagenet"))
    assert dry_method(experiment("sws_aux_s_imagenet")).teacher_weights is None


# ---- one Des-S training step at 224 px on CPU ---------------------------------------------------------------
def test_one_des_s_training_step_at_224_on_cpu():
    from growth.engine.optim import build_optimizer
    model, cfg = build("sws_des_s_imagenet", meta=False)
    method, opt = dry_method(cfg), build_optimizer(model, cfg["optim"])
    x, y = torch.randn(2, 3, 224, 224), torch.tensor([3, 999])
    before = model.net.blocks[5].mlp.fc1.weight.detach().clone()
    start = time.perf_counter()
    loss, logits = method.loss(model, x, y, SimpleNamespace(label_smoothing=0.0))
    opt.zero_grad()
    loss.backward()
    opt.step()
    seconds = time.perf_counter() - start
    print(f"Des-S one training step, batch 2, 224 px, CPU: {seconds:.2f} s")  # measured 0.7-1.0 s, 1 thread
    assert logits.shape == (2, 1000) and loss.isfinite()
    assert not torch.equal(model.net.blocks[5].mlp.fc1.weight, before)
    assert seconds < 30


# ---- the sweeps -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,scale", [("sws_aux_imagenet", None), ("sws_imagenet", None), ("sws_imagenet", "base")])
def test_every_sweep_job_composes_to_the_paper_setup(name, scale):
    """Each job's overrides compose (quoted learngene paths included) and give a layers_source that fits
    its depth; the descendants read the learngene the aux sweep writes for their width."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf
    from growth.sweeps import expand_jobs, load_experiment
    from tests.conftest import ROOT
    jobs = expand_jobs(load_experiment(ROOT / "experiments", name), scale=scale)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfgs = [OmegaConf.to_container(hydra_compose(config_name="config", overrides=j["overrides"]), resolve=True)
                for j in jobs]
    if name == "sws_aux_imagenet":
        assert [(c["model"]["embed_dim"], c["trainer"]["epochs"]) for c in cfgs] == [(384, 150), (768, 100)]
        assert all(c["method"]["family_depths"] == list(range(6, 13)) for c in cfgs)
        return
    size = "b" if scale == "base" else "s"
    assert sorted(c["model"]["depth"] for c in cfgs) == list(range(6, 13))
    for c in cfgs:
        assert c["model"]["embed_dim"] == (768 if size == "b" else 384) and c["seed"] == 123
        assert c["method"]["learngene"].endswith(f"experiment=sws_aux_{size}_imagenet/checkpoints/learngene.pt")
        source = learngene.parse_source(c["method"]["layers_source"], c["model"]["depth"], 5, [3, 3, 4, 3, 3])
        assert source == (README_12 if c["model"]["depth"] == 12 else learngene.even_source(c["model"]["depth"], 5))


# ---- the README's stage-1 and stage-2 settings, key by key (METHODS.md 3.3) ---------------------------------
@pytest.mark.parametrize("name,epochs,lr,min_lr,warmup,seed", [
    ("sws_aux_s_imagenet", 150, 5e-4, 1e-5, 5, 0), ("sws_aux_b_imagenet", 100, 5e-4, 1e-5, 5, 0),
    ("sws_des_s_imagenet", 10, 5e-5, 1e-6, 0, 123), ("sws_des_b_imagenet", 10, 1e-5, 1e-6, 0, 123)])
def test_experiments_hold_the_readme_settings(name, epochs, lr, min_lr, warmup, seed):
    c = experiment(name)
    o, t, m = c["optim"], c["trainer"], c["method"]
    assert (t["epochs"], o["lr"], o["min_lr"], o["warmup_epochs"], c["seed"]) == (epochs, lr, min_lr, warmup, seed)
    assert o["name"] == "adamw" and o["weight_decay"] == 0.05 and o["schedule"] == "cosine"
    assert t["batch_size"] == 128 and t["precision"] == "fp16"  # per rank (x 4 GPUs = 512); AMP
    assert c["data"]["name"] == "imagefolder" and c["data"]["image_size"] == 224
    assert c["model"]["patch_size"] == 16 and c["model"]["drop_path"] == 0.1
    if m["phase"] == "aux":
        assert (m["teacher"], m["teacher_weights"], m["alpha"], m["tau"]) == ("levit_384", None, 1.0, 1.0)
        assert c["model"]["stage_repeats"] == [3, 3, 4, 3, 3] and m["aux_heads"] == 12
    else:
        assert m["learngene"] is None and m["layers_source"] == README_12 and m["load_head"] == "auto"


def test_family_storage_ratios_against_the_papers_20x():
    """Storing one Des-S per depth vs the Aux-S learngene (ours: blocks + patch + position embedding).
    The sweep's depths 6-12 store 12.7x, every depth 1-12 16.0x; the paper says ~20x for its (unknown)
    set of sizes: exact arithmetic on the original's sizes, so a change of what we count shows here."""
    kw = sws_cost.family_kwargs({"config": {**experiment("sws_aux_s_imagenet")["model"], **IMAGENET_SHAPE,
                                            "heads": 12}}, "fixed")
    rest = 756_328  # patch, pos, fc_norm, head of a Des-S
    for depths, ratio in ((list(range(6, 13)), 12.67), (list(range(1, 13)), 15.96)):
        out = sws_cost.family(kw, depths, GENE_S)
        assert out["family_params"] == sum(depths) * SMALL_BLOCK + len(depths) * rest
        assert out["family_storage_ratio"] == pytest.approx(ratio, abs=0.005)


# ---- trainer.dry_run=true: the experiments as a researcher checks them, without ImageNet or weights ---------
def _dry(name: str, tmp_path, **over) -> dict:
    from growth.engine.job import run_job
    cfg = experiment(name, **{"trainer.dry_run": "true", "data.root": "/nonexistent", **over})
    return run_job(cfg, tmp_path / name)


def test_dry_runs_report_the_originals_sizes_in_method_sizes(tmp_path):
    aux = _dry("sws_aux_s_imagenet", tmp_path)
    assert (aux["status"], aux["params"], aux["input_size"], aux["num_classes"]) == \
        ("dry_run", 9_628_648, [3, 224, 224], 1000)
    m = aux["method_sizes"]
    assert (m["aux_params"], m["learngene_block_params"], m["rest_params"], m["learngene_params"]) == \
        (9_628_648, 8_872_320, 756_328, GENE_S)
    assert m["descendant_params"] == {"12": 22_049_896}
    assert m["family_storage_ratio"] == pytest.approx(22_049_896 / GENE_S)
    assert m["aux_train_macs_per_image"] == aux["train_macs_per_sample"]  # the engine's own count
    assert 2.3e9 < m["teacher_forward_macs"] < 2.4e9  # the random-init LeViT-384 the dry run distils from
    des = _dry("sws_des_s_imagenet", tmp_path)
    assert (des["status"], des["params"], des["arch"]) == ("dry_run", 22_049_896, "d12h12")
    assert des["method_sizes"]["descendant_params"] == 22_049_896
    assert des["method_sizes"]["learngene_params"] == GENE_S
    assert des["method_sizes"]["descendant_train_macs_per_image"] == m["descendant_train_macs_per_image"]["12"]


@pytest.mark.slow
def test_cli_dry_run_of_aux_s(cli, tmp_path):
    proc = cli(["experiment=sws_aux_s_imagenet", "trainer.dry_run=true", "data.root=/nonexistent",
                f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr
    import json
    sizes = json.loads((tmp_path / "summary.json").read_text())["method_sizes"]
    assert (sizes["aux_params"], sizes["learngene_block_params"]) == (9_628_648, 8_872_320)
    assert "params 9,628,648" in proc.stdout
