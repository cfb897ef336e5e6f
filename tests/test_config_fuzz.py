"""Every leaf key of the default config, and of each model and method option, set to a wrong-typed value:
the job either trains or stops with one ConfigError line, never another exception (a traceback for a user).

Each base config is composed once (Hydra, as run.py does) with tiny settings; each case edits one key of
the plain dict and runs the whole job in-process. A rejected value costs almost nothing (validate() stops
it before anything is built); an accepted one trains 2 tiny epochs (one growth event), so that keys read
only during training (grow.*, method settings used in finish()) are really used.
"""
import copy

import pytest
import torch

from benchmarks.common import compose
from growth.engine.job import run_job
from growth.errors import ConfigError

SMALL = {"trainer.epochs": 2, "trainer.progress": "false", "trainer.device": "cpu", "trainer.batch_size": 32,
         "trainer.eval_batch_size": 64, "grow.interval": 1}
SYNTH = {"data": "synthetic", "data.num_samples": 96}
CONV = {"model.widths": "[8,12,16]"}
# One base per option: the composed default config, each model option, each method option (tiny settings).
BASES = {
    "default": {**CONV},
    "model=bert": {"model": "bert", "data": "synthetic_text", "data.num_samples": 96, "model.head_dim": 8},
    "model=mobilenet": {"model": "mobilenet", **SYNTH, "model.widths": "[8,12,16]", "model.expand": 2},
    "model=reducenet": {"model": "reducenet", **SYNTH, "model.depth": 8},
    "model=resnet_bottleneck": {"model": "resnet_bottleneck", **SYNTH, "model.widths": "[8,16,16]"},
    "model=sws_aux": {"model": "sws_aux", **SYNTH, "model.embed_dim": 16, "model.stage_repeats": "[1,2]"},
    "model=sws_descendant": {"model": "sws_descendant", **SYNTH, "method.phase": "scratch", "model.depth": 2,
                             "model.embed_dim": 16},
    "model=timm": {"model": "timm", **SYNTH, "model.name": "resnet10t"},
    "model=vgg": {"model": "vgg", **SYNTH, **CONV},
    "model=vit": {"model": "vit", **SYNTH, "model.head_dim": 8},
    "method=adn": {"method": "adn", **SYNTH, **CONV, "method.latency_batch": 4},
    "method=fixed": {"method": "fixed", **SYNTH, **CONV},
    "method=randgrow": {"method": "randgrow", **SYNTH, **CONV},
    "model=gromo_mlp": {"model": "gromo_mlp", **SYNTH},  # selects method=tiny
    "method=gradmax": {"model": "gromo_mlp", "method": "gradmax", **SYNTH},
}
TRIED = {"keys": 0, "cases": 0, "one_line": 0, "trained": 0}  # printed at the end (pytest -s)


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def wrong_values(default) -> list:
    """What a user mistypes: a word or a list for a number or a flag, a number or a list for a string, a fraction
    for a count, a word or a number for a list. A null default says no type: a word and a list probe it."""
    if isinstance(default, bool):
        return ["abc", 5]
    if isinstance(default, int):
        return ["abc", 2.5]
    if isinstance(default, float):
        return ["abc", [1, 2]]
    if isinstance(default, str):
        return [5, [1, 2]]
    if isinstance(default, list):
        return ["abc", 5]
    return ["abc", [1, 2]]  # null, {}


def _set(cfg: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        cfg = cfg[key]
    cfg[last] = value


def _cases():
    """(base, config, key, value): each section's keys once, under the first base whose section differs."""
    seen, cases = [], []
    for base, overrides in BASES.items():
        cfg = compose(**{**SMALL, **overrides})
        for section, content in cfg.items():
            if (section, content) in seen:
                continue
            seen.append((section, content))
            node = {section: content}
            for path, default in _leaves(node):
                cases += [(base, cfg, path, v) for v in wrong_values(default)]
    return cases


@pytest.mark.slow
def test_every_key_with_a_wrong_type_trains_or_stops_with_one_line(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of tiny jobs: a second thread only waits (5x slower on a busy machine)
    try:
        failures = _fuzz(tmp_path)
    finally:
        torch.set_num_threads(threads)
    print(f"\nconfig fuzz: {TRIED['keys']} keys, {TRIED['cases']} wrong values: {TRIED['one_line']} stopped "
          f"with one line, {TRIED['trained']} trained")
    assert not failures, "\n".join(failures)


def _fuzz(tmp_path) -> list:
    failures, keys = [], set()
    for i, (base, cfg, path, value) in enumerate(_cases()):
        keys.add((base, path))
        bad = copy.deepcopy(cfg)
        _set(bad, path, value)
        run_dir = tmp_path / str(i)
        TRIED["cases"] += 1
        try:
            summary = run_job(bad, run_dir)
        except ConfigError as e:
            TRIED["one_line"] += 1
            # the key itself, its group (initializer=5) or, for an interpolated key (model.learngene:
            # ${method.learngene}), the key the user sets, with the value
            if "\n" in str(e) or not (path.startswith(e.key) or e.value == value):
                failures.append(f"{base} {path}={value!r}: not one line naming the key: {e}")
            metrics = run_dir / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().strip():
                failures.append(f"{base} {path}={value!r}: stopped only after training: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test: anything else is a traceback
            failures.append(f"{base} {path}={value!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        TRIED["trained"] += 1
        if summary["status"] not in ("completed", "failed"):
            failures.append(f"{base} {path}={value!r}: status {summary['status']}")
    TRIED["keys"] = len(keys)
    return failures


@pytest.mark.parametrize("key,value", [
    ("optim.lr", 1),                     # an int where the default is a float
    ("trainer.grad_clip", 1.5),          # a float where the default is 0
    ("model.stem_stride", 2),            # auto or a stride
    ("model.widths", [8, 12, 16]),       # null default: a list ...
    ("model.widths", "8-12-16"),         # ... or a string
    ("trainer.resume", "some/last.pt"),  # a path where the default is null
    ("grow.max_params", 1e6),
    ("model.arch", "2-2-2"),
    ("model.extra", 3),                  # +model.extra=3: no default, not checked
])
def test_values_that_change_type_on_purpose_pass(key, value):
    from growth.engine.config_check import check_types
    cfg = compose()
    _set(cfg, key, value)
    check_types(cfg)


@pytest.mark.parametrize("key,value,allowed", [
    ("optim.lr", "abc", "allowed: a number (default: 0.001)"),
    ("trainer.num_workers", 1.5, "allowed: an integer (default: 0)"),
    ("grow.max_params", "abc", "allowed: a number or null"),
    ("optim.betas", [0.9, "x"], "allowed: a list, each item a number, e.g. [0.9, 0.999]"),
    ("method.name", [1, 2], "allowed: a string (default: adagrow)"),  # names no option: checked against every method's
])
def test_a_wrong_type_names_key_value_and_what_is_allowed(key, value, allowed):
    from growth.engine.config_check import check_types
    cfg = compose(optim="adamw")
    _set(cfg, key, value)
    with pytest.raises(ConfigError) as e:
        check_types(cfg)
    assert str(e.value) == f"{key}={value!r}: {allowed}"


def test_the_smallest_synthetic_set_that_splits_is_the_one_the_error_names():
    import numpy as np
    from growth.data.tensor_sets import _split
    cfg = {"num_samples": 23, "val_fraction": 0.15, "test_fraction": 0.15}
    with pytest.raises(ConfigError, match=r"^data.num_samples=23: too few .* allowed: at least 24$"):
        _split(np.zeros((23, 1)), np.arange(23) % 4, cfg, 0)
    (_, y_tr), (_, y_va), (_, y_te) = _split(np.zeros((24, 1)), np.arange(24) % 4, {**cfg, "num_samples": 24}, 0)
    assert all(set(y) == {0, 1, 2, 3} for y in (y_tr, y_va, y_te))
