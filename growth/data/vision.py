"""Image datasets read from disk in their standard layouts (torchvision), and ImageFolder trees.

Nothing downloads unless `data.download=true`. A missing root stops before training with one line
naming the path and how to obtain the data.
"""
from pathlib import Path

import torch
from torch.utils.data import Subset
from torchvision import datasets, transforms as T

from growth.data.bundle import DataBundle
from growth.data.device_images import device_bundle
from growth.data.loaders import DatasetLoader
from growth.data.recipe_transforms import recipe_transforms
from growth.errors import ConfigError

# name: (torchvision class, channels, classes, size, mean, std, flip, where the files come from)
SETS = {
    "cifar10": (datasets.CIFAR10, 3, 10, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
                "ROOT/cifar-10-batches-py: extract cifar-10-python.tar.gz from "
                "https://www.cs.toronto.edu/~kriz/cifar.html into ROOT"),
    "cifar100": (datasets.CIFAR100, 3, 100, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
                 "ROOT/cifar-100-python: extract cifar-100-python.tar.gz from "
                 "https://www.cs.toronto.edu/~kriz/cifar.html into ROOT"),
    "svhn": (datasets.SVHN, 3, 10, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False,
             "ROOT/train_32x32.mat and ROOT/test_32x32.mat from http://ufldl.stanford.edu/housenumbers/"),
    "mnist": (datasets.MNIST, 1, 10, 28, (0.1307,), (0.3081,), False,
              "ROOT/MNIST/raw/*-ubyte files (the four MNIST IDX files, unzipped)"),
}


def check_root(cfg: dict, how: str) -> Path:
    root = cfg.get("root")
    if not root or not Path(root).expanduser().is_dir():
        raise ConfigError("data.root", root, f"directory does not exist; expected {how}")
    return Path(root).expanduser()


def _transforms(size, mean, std, flip, train, augment):
    ops = []
    if train and augment:
        ops.append(T.RandomCrop(size, padding=4))
        if flip:
            ops.append(T.RandomHorizontalFlip())
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def _tv_dataset(cls, root, train, download, transform):
    if cls is datasets.SVHN:
        return cls(str(root), split="train" if train else "test", download=download, transform=transform)
    return cls(str(root), train=train, download=download, transform=transform)


def _holdout(train_set, eval_set, fraction, seed):
    """Split `fraction` of the training files off as validation (eval transforms), seeded."""
    if not 0 <= fraction < 1:
        raise ConfigError("data.val_fraction", fraction, "must be in [0, 1) (0 = validate on the test split)")
    if fraction == 0:
        return train_set, None
    n = len(train_set)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, int(round(n * fraction)))
    return Subset(train_set, perm[n_val:]), Subset(eval_set, perm[:n_val])


def _loaders(train, val, test, args):
    mk = lambda ds, bs, shuffle: DatasetLoader(ds, bs, shuffle=shuffle, drop_last=shuffle, seed=args["seed"],
                                               num_workers=args["num_workers"], pin_memory=args["pin_memory"])
    return mk(train, args["batch_size"], True), mk(val, args["eval_batch_size"], False), \
        mk(test, args["eval_batch_size"], False)


def build_torchvision(cfg: dict, args: dict) -> DataBundle:
    name = cfg["name"]
    cls, chans, classes, size, mean, std, flip, how = SETS[name]
    download = bool(cfg.get("download", False))
    root = Path(cfg.get("root") or ".") if download else check_root(cfg, how)
    aug = bool(cfg.get("augment", True))
    held = args.get("data_on_device") is True  # whole on the device, augmented there (device_images.py)
    tf = (lambda train: None) if held else (lambda train: _transforms(size, mean, std, flip, train, aug))
    try:
        train_set = _tv_dataset(cls, root, True, download, tf(True))
        eval_train = train_set if held else _tv_dataset(cls, root, True, False, tf(False))
        test = _tv_dataset(cls, root, False, download, tf(False))
    # Truncated files surface as assertion/type/value errors inside torchvision's readers.
    except (RuntimeError, OSError, AssertionError, TypeError, ValueError) as e:
        raise ConfigError("data.root", str(root),
                          f"{name} files not found or unreadable ({type(e).__name__}: {e}); expected {how}")
    train, val = _holdout(train_set, eval_train, float(cfg.get("val_fraction", 0.1)), int(cfg.get("split_seed", 0)))
    val = val if val is not None else test
    if held:
        return device_bundle(train, val, test, name, SETS[name], aug, args)
    return DataBundle(*_loaders(train, val, test, args), name, chans, classes, size)


def _same_classes(root: Path, split: str, transform, classes: list) -> datasets.ImageFolder:
    """ImageFolder numbers classes by the folders it finds, so a split with other class folders than
    train/ would label its images with other classes' indices: stop instead."""
    ds = datasets.ImageFolder(str(root / split), transform=transform)
    if ds.classes != classes:
        missing, extra = sorted(set(classes) - set(ds.classes)), sorted(set(ds.classes) - set(classes))
        raise ConfigError("data.root", str(root), f"{split}/ has other class folders than train/ (missing: "
                          f"{', '.join(missing) or '-'}; extra: {', '.join(extra) or '-'}); they must match")
    return ds


def build_imagefolder(cfg: dict, args: dict) -> DataBundle:
    """ROOT/train/<class>/*.png and ROOT/val/<class>/... (ROOT/test optional; else val is the test set)."""
    how = "ROOT/train/<class>/<image> and ROOT/val/<class>/<image> (torchvision ImageFolder layout)"
    root = check_root(cfg, how)
    if not (root / "train").is_dir():
        raise ConfigError("data.root", str(root), f"has no train/ folder; expected {how}")
    size = int(cfg.get("image_size", 32))
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    resize = T.Resize((size, size))
    train_tf = T.Compose([resize, T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip(),
                          T.ToTensor(), T.Normalize(mean, std)])
    eval_tf = T.Compose([resize, T.ToTensor(), T.Normalize(mean, std)])
    timm_tf = recipe_transforms(args.get("recipe"), size, mean, std)  # conf/recipe: timm's, or None
    if timm_tf is not None:
        train_tf, eval_tf, size = timm_tf
    try:  # no class folders, or a class folder without images
        train_set = datasets.ImageFolder(str(root / "train"), transform=train_tf)
        if (root / "val").is_dir():
            train, val = train_set, _same_classes(root, "val", eval_tf, train_set.classes)
        else:
            train, val = _holdout(train_set, datasets.ImageFolder(str(root / "train"), transform=eval_tf),
                                  float(cfg.get("val_fraction", 0.1)), int(cfg.get("split_seed", 0)))
        test = _same_classes(root, "test", eval_tf, train_set.classes) if (root / "test").is_dir() else val
    except FileNotFoundError as e:
        raise ConfigError("data.root", str(root), f"{e}; expected {how}")
    expected = cfg.get("num_classes")  # set, e.g. for a dry run's sake: the folders must agree with it
    if expected is not None and expected != len(train_set.classes):
        raise ConfigError("data.num_classes", expected, f"{root / 'train'} has {len(train_set.classes)} class "
                          "folders; allowed: that count, or null to take it from the folders")
    return DataBundle(*_loaders(train, val, test, args), "imagefolder", 3, len(train_set.classes), size,
                      {"classes": train_set.classes})
