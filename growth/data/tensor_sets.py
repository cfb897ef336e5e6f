"""Datasets small enough to live as tensors, whole, on the training device: digits and synthetic."""
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from growth.data.bundle import DataBundle
from growth.data.loaders import TensorLoader
from growth.errors import ConfigError


def _fractions(cfg) -> tuple[float, float]:
    val, test = float(cfg.get("val_fraction", 0.15)), float(cfg.get("test_fraction", 0.15))
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError("data.val_fraction", (val, test),
                          "val and test fractions must each be in (0, 1) and sum below 1")
    return val, test


def _split(x, y, cfg, seed):
    """Stratified train/val/test split, seeded by data.split_seed (not the run seed: splits stay fixed)."""
    from sklearn.model_selection import train_test_split  # here: scikit-learn takes seconds to import
    val, test = _fractions(cfg)
    try:
        x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=val + test, stratify=y, random_state=seed)
        x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=test / (val + test),
                                                  stratify=y_rest, random_state=seed)
    except ValueError as e:  # scikit-learn: some split cannot hold every class (too few samples)
        raise _too_few(cfg, len(y), len(np.unique(y)), val, test) from e
    return (x_tr, y_tr), (x_va, y_va), (x_te, y_te)


def _splits_fit(n: int, k: int, val: float, test: float) -> bool:
    """scikit-learn's arithmetic for our two stratified splits of n balanced samples of k classes."""
    rest = math.ceil((val + test) * n)
    n_test = math.ceil(test / (val + test) * rest)
    return n // k >= 3 and min(n - rest, rest - n_test, n_test) >= k


def _too_few(cfg, n: int, k: int, val: float, test: float) -> ConfigError:
    where = (f"train/val/test stratified over {k} classes (val_fraction {val}, test_fraction {test}: "
             "each split needs every class)")
    if "num_samples" in cfg:  # a generated set: the user chose its size
        least = next(m for m in itertools.count(n) if _splits_fit(m, k, val, test))  # every split grows with m
        return ConfigError("data.num_samples", n, f"too few to split into {where}; allowed: at least {least}")
    return ConfigError("data.val_fraction", val, f"{n} samples cannot be split into {where}; allowed: "
                                                 f"fractions that give each split at least {k} samples")


def _bundle(splits, cfg, loader_args, name, num_classes, resize):
    (x_tr, y_tr), val, test = splits
    mean, std = float(x_tr.mean()), float(x_tr.std())  # normalise with train statistics only

    def tensors(x, y):
        t = torch.as_tensor((x - mean) / std, dtype=torch.float32)
        if resize:
            t = F.interpolate(t, size=(resize, resize), mode="bilinear", align_corners=False)
        return t.to(loader_args["device"]), torch.as_tensor(y, dtype=torch.long).to(loader_args["device"])

    bs, ebs, seed = loader_args["batch_size"], loader_args["eval_batch_size"], loader_args["seed"]
    train = TensorLoader(*tensors(x_tr, y_tr), bs, shuffle=True, drop_last=True, seed=seed)
    val_l = TensorLoader(*tensors(*val), ebs)
    test_l = TensorLoader(*tensors(*test), ebs)
    return DataBundle(train, val_l, test_l, name, train.x.shape[1], num_classes, train.x.shape[-1])


def build_digits(cfg: dict, loader_args: dict) -> DataBundle:
    """scikit-learn's 1,797 8x8 digits, shipped with the package: nothing to download."""
    from sklearn.datasets import load_digits  # here: a job that stops at a config check never pays it
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    splits = _split(x, d.target, cfg, int(cfg.get("split_seed", 0)))
    return _bundle(splits, cfg, loader_args, "digits", 10, cfg.get("resize"))


def build_synthetic(cfg: dict, loader_args: dict) -> DataBundle:
    """Class prototypes plus noise: tiny, learnable, and generated from data.split_seed."""
    n, k = int(cfg.get("num_samples", 384)), int(cfg.get("num_classes", 4))
    c, s = int(cfg.get("channels", 1)), int(cfg.get("image_size", 8))
    rng = np.random.default_rng(int(cfg.get("split_seed", 0)))
    protos = rng.normal(size=(k, c, s, s)).astype(np.float32)
    y = np.arange(n) % k
    x = protos[y] + float(cfg.get("noise", 1.0)) * rng.normal(size=(n, c, s, s)).astype(np.float32)
    splits = _split(x, y, cfg, int(cfg.get("split_seed", 0)))
    return _bundle(splits, cfg, loader_args, "synthetic", k, cfg.get("resize"))
