"""Dataset builders (growth/data): splits, normalisation, shuffle order, on-disk formats, errors.

Every file-backed set is faked in tmp_path in its real on-disk layout (no downloads). torchvision
md5-checks the CIFAR and SVHN files against the published archives, which no fake file can pass, so
the `no_md5` fixture narrows that one check to "the file exists"; the reading code is torchvision's own.
"""
import json
import os
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from growth.data import BUILDERS, build_data
from growth.data.loaders import DatasetLoader
from growth.errors import ConfigError
from tests.conftest import ROOT, TINY, run_cli

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def largs(**over) -> dict:
    args = {"batch_size": 16, "eval_batch_size": 32, "seed": 0, "device": torch.device("cpu"),
            "num_workers": 0, "pin_memory": False}
    return {**args, **over}


def everything(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def to_uint8_hwc(x: torch.Tensor, mean, std) -> np.ndarray:
    """Undo Normalize + ToTensor: (N, C, H, W) floats back to (N, H, W, C) uint8."""
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return (x * s + m).mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def check_one_line(e: ConfigError, prefix: str, *fragments: str) -> str:
    msg = str(e)
    assert "\n" not in msg, msg
    assert msg.startswith(prefix), msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


@pytest.fixture
def no_md5(monkeypatch):
    """Keep torchvision's existence check for the CIFAR/SVHN files, drop only the md5 comparison."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.svhn as svhn

    exists = lambda fpath, md5=None: os.path.isfile(fpath)  # noqa: E731
    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(svhn, "check_integrity", exists)


# ---- fake datasets in their real layouts ----------------------------------------------------------

def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch=20, n_test=20, seed=0) -> dict:
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled dicts whose b"data" is
    uint8 N x 3072 (1024 R, then 1024 G, then 1024 B, each row-major 32x32). The keys are str here:
    the real archive was pickled by Python 2, and torchvision loads it with encoding="latin1", so its
    keys arrive as str and torchvision indexes entry["data"]."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    out = {}
    for split, files in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        imgs, labels = [], []
        for fname in files:
            n = per_batch if split == "train" else n_test
            img = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)  # HWC, what you'd see
            lab = [int(v) for v in rng.integers(0, 10, size=n)]
            rows = img.transpose(0, 3, 1, 2).reshape(n, 3072)  # channel planes, row-major
            _dump(d / fname, {"batch_label": f"{fname} of 5", "labels": lab, "data": rows,
                              "filenames": [f"img_{fname}_{i}.png" for i in range(n)]})
            imgs.append(img)
            labels += lab
        out[split] = (np.concatenate(imgs), np.array(labels))
    _dump(d / "batches.meta", {"num_cases_per_batch": per_batch, "num_vis": 3072,
                               "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                               "frog", "horse", "ship", "truck"]})
    return out


def write_cifar100(root: Path, n_train=40, n_test=20, seed=0) -> dict:
    """cifar-100-python/{train, test, meta}: like CIFAR-10, with fine_labels and coarse_labels."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        img = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n)
        _dump(d / split, {"filenames": [f"{i}.png" for i in range(n)], "batch_label": f"{split} batch 1 of 1",
                          "fine_labels": [int(v) for v in fine],
                          "coarse_labels": [int(v) // 5 for v in fine],  # differs: must not be read
                          "data": img.transpose(0, 3, 1, 2).reshape(n, 3072)})
        out[split] = (img, fine)
    _dump(d / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                       "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return out


def write_mnist(root: Path, n_train=30, n_test=10, seed=0) -> dict:
    """MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte: big-endian IDX (magic 0x803 / 0x801)."""
    rng = np.random.default_rng(seed)
    d = root / "MNIST" / "raw"
    d.mkdir(parents=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, size=n).astype(np.uint8)
        (d / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + img.tobytes())
        (d / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + lab.tobytes())
        out[split] = (img, lab.astype(np.int64))
    return out


def write_svhn(root: Path, n_train=30, n_test=10, seed=0) -> dict:
    """{train,test}_32x32.mat: X is (32, 32, 3, N) uint8 (X[..., i] is one HWC image), y is (N, 1) with
    1..10, where 10 means the digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        img = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        digit = np.arange(n) % 10  # every digit, 0 included
        y = np.where(digit == 0, 10, digit).astype(np.uint8).reshape(n, 1)
        savemat(root / f"{split}_32x32.mat", {"X": img.transpose(1, 2, 3, 0), "y": y})
        out[split] = (img, digit)
    return out


def write_folder(d: Path, counts: dict, size=8, seed=0) -> None:
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        (d / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(d / cls / f"{i}.png")


# ---- digits ---------------------------------------------------------------------------------------

def _rows(x: torch.Tensor, y: torch.Tensor) -> Counter:
    """Each sample as (pixel bytes, label), pixels back on digits' integer 0..16 scale."""
    return Counter((row.tobytes(), int(lab)) for row, lab in zip(x.reshape(len(x), -1).numpy(), y.numpy()))


def test_digits_split_is_a_stratified_partition_with_train_stats():
    b = build_data({"name": "digits", "val_fraction": 0.15, "test_fraction": 0.15, "split_seed": 0}, largs())
    assert (b.in_chans, b.num_classes, b.image_size) == (1, 10, 8)
    (xtr, ytr), (xva, yva), (xte, yte) = (b.train.x, b.train.y), everything(b.val), everything(b.test)
    assert xtr.shape[1:] == xva.shape[1:] == xte.shape[1:] == (1, 8, 8)
    assert len(ytr) + len(yva) + len(yte) == 1797
    assert (len(yva), len(yte)) == (270, 270)
    for y in (ytr, yva, yte):
        assert set(y.tolist()) == set(range(10))
    # stratified: class proportions in val follow the whole set's
    whole = np.bincount(load_digits().target, minlength=10) / 1797
    assert np.abs(np.bincount(yva.numpy(), minlength=10) / len(yva) - whole).max() < 0.01
    # normalised with the train split's own statistics
    assert abs(xtr.mean().item()) < 1e-5 and abs(xtr.std(correction=0).item() - 1) < 1e-4
    assert abs(xva.mean().item()) > 1e-4  # val is normalised with train's stats, not its own
    # one affine map for all splits: recover it from pixel 0 (min) and 16/16 (max) of the train split
    lo, hi = xtr.min().item(), xtr.max().item()
    back = lambda x: ((x - lo) / (hi - lo) * 16).round().to(torch.uint8)  # noqa: E731
    for x in (xtr, xva, xte):
        assert torch.allclose((x - lo) / (hi - lo) * 16, back(x).float(), atol=1e-3)
    # train + val + test is exactly the dataset, each sample once: no overlap, nothing lost
    d = load_digits()
    original = _rows(torch.as_tensor(d.images).to(torch.uint8), torch.as_tensor(d.target))
    assert _rows(back(xtr), ytr) + _rows(back(xva), yva) + _rows(back(xte), yte) == original


def test_digits_resize():
    b = build_data({"name": "digits", "resize": 16}, largs())
    assert b.image_size == 16
    x, _ = next(iter(b.train))
    assert x.shape == (16, 1, 16, 16)
    assert next(iter(b.test))[0].shape[1:] == (1, 16, 16)


@pytest.mark.parametrize("fractions", [(0.0, 0.15), (0.15, 1.0), (0.5, 0.5), (-0.1, 0.2)])
def test_digits_bad_fractions(fractions):
    with pytest.raises(ConfigError) as e:
        build_data({"name": "digits", "val_fraction": fractions[0], "test_fraction": fractions[1]}, largs())
    check_one_line(e.value, "data.val_fraction=")


def test_digits_split_fixed_across_run_seeds_order_is_per_seed_and_epoch():
    cfg = {"name": "digits", "split_seed": 0}
    a, b = build_data(cfg, largs(seed=0)), build_data(cfg, largs(seed=1))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert torch.equal(everything(a.val)[0], everything(b.val)[0])
    assert torch.equal(everything(a.test)[1], everything(b.test)[1])
    assert not torch.equal(build_data({**cfg, "split_seed": 1}, largs()).train.x, a.train.x)

    def epoch(loader, e):
        loader.set_epoch(e)
        return everything(loader)

    a0 = epoch(a.train, 0)
    assert not torch.equal(a0[0], epoch(b.train, 0)[0])  # run seed changes the order
    assert not torch.equal(a0[0], epoch(a.train, 1)[0])  # so does the epoch
    torch.manual_seed(1234)
    torch.rand(100)  # global RNG moved on, as it does during training
    fresh = build_data(cfg, largs(seed=0)).train
    again = epoch(fresh, 0)
    assert torch.equal(a0[0], again[0]) and torch.equal(a0[1], again[1])  # resume sees the same batches
    # drop_last: full batches only, every one of them the same size
    n = len(a.train.y)
    assert len(a.train) == n // 16 and all(len(y) == 16 for _, y in a.train)
    assert a.val.num_samples == sum(len(y) for _, y in a.val) == 270


def test_synthetic_respects_config():
    cfg = {"name": "synthetic", "num_samples": 90, "num_classes": 3, "channels": 2, "image_size": 6,
           "split_seed": 0}
    b = build_data(cfg, largs(batch_size=8))
    assert (b.in_chans, b.num_classes, b.image_size) == (2, 3, 6)
    assert b.train.x.shape[1:] == (2, 6, 6)
    assert b.info["n_train"] + b.info["n_val"] + b.info["n_test"] == 90
    for y in (b.train.y, everything(b.val)[1], everything(b.test)[1]):
        assert set(y.tolist()) == {0, 1, 2}
    assert torch.equal(build_data(cfg, largs()).train.x, b.train.x)  # generated from split_seed
    assert build_data({**cfg, "resize": 12}, largs()).image_size == 12


# ---- torchvision sets on disk ---------------------------------------------------------------------

def test_cifar10_from_disk(tmp_path, no_md5):
    written = write_cifar10(tmp_path)
    torch.manual_seed(0)  # the train augmentation draws from the global RNG
    b = build_data({"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.2, "split_seed": 0,
                    "augment": True}, largs(batch_size=8))
    assert (b.name, b.in_chans, b.num_classes, b.image_size) == ("cifar10", 3, 10, 32)
    assert (b.info["n_train"], b.info["n_val"], b.info["n_test"]) == (80, 20, 20)
    x, y = next(iter(b.train))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.long
    # test split: labels in file order, pixels map back through Normalize to the bytes written
    tx, ty = everything(b.test)
    assert ty.tolist() == written["test"][1].tolist()
    assert np.array_equal(to_uint8_hwc(tx, CIFAR10_MEAN, CIFAR10_STD), written["test"][0])
    # holdout: disjoint, covers the training files, and val is not augmented
    tr_idx, va_idx = b.train.dataset.indices, b.val.dataset.indices
    assert sorted(tr_idx + va_idx) == list(range(100))
    vx, vy = everything(b.val)
    assert vy.tolist() == written["train"][1][va_idx].tolist()
    assert np.array_equal(to_uint8_hwc(vx, CIFAR10_MEAN, CIFAR10_STD), written["train"][0][va_idx])
    # ...while train is (random crop with padding 4 + flip): some images differ from their files
    b.train.set_epoch(0)
    order = [tr_idx[i] for i in b.train.sampler]
    ax, ay = everything(b.train)
    assert ay.tolist() == written["train"][1][order].tolist()
    assert not np.array_equal(to_uint8_hwc(ax, CIFAR10_MEAN, CIFAR10_STD), written["train"][0][order])
    # the holdout follows split_seed only
    other = build_data({"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.2}, largs(seed=7))
    assert other.val.dataset.indices == va_idx
    # val_fraction 0: all training files train, the test split validates
    nov = build_data({"name": "cifar10", "root": str(tmp_path), "val_fraction": 0}, largs())
    assert (nov.info["n_train"], nov.info["n_val"]) == (100, 20)


def test_cifar10_without_augment_train_is_the_files(tmp_path, no_md5):
    written = write_cifar10(tmp_path, per_batch=4, n_test=4)
    b = build_data({"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.2, "augment": False},
                   largs(batch_size=4))
    b.train.set_epoch(3)
    order = [b.train.dataset.indices[i] for i in b.train.sampler]
    x, _ = everything(b.train)
    assert np.array_equal(to_uint8_hwc(x, CIFAR10_MEAN, CIFAR10_STD), written["train"][0][order])


def test_cifar100_from_disk_reads_fine_labels(tmp_path, no_md5):
    written = write_cifar100(tmp_path)
    b = build_data({"name": "cifar100", "root": str(tmp_path), "val_fraction": 0.25}, largs(batch_size=8))
    assert (b.in_chans, b.num_classes, b.image_size) == (3, 100, 32)
    assert (b.info["n_train"], b.info["n_val"], b.info["n_test"]) == (30, 10, 20)
    tx, ty = everything(b.test)
    assert ty.tolist() == written["test"][1].tolist()
    assert np.array_equal(to_uint8_hwc(tx, CIFAR100_MEAN, CIFAR100_STD), written["test"][0])


def test_mnist_from_raw_idx_files(tmp_path):
    written = write_mnist(tmp_path)  # torchvision checks only that the raw files exist: no md5 to skip
    b = build_data({"name": "mnist", "root": str(tmp_path), "val_fraction": 0.2, "augment": False},
                   largs(batch_size=8))
    assert (b.in_chans, b.num_classes, b.image_size) == (1, 10, 28)
    assert (b.info["n_train"], b.info["n_val"], b.info["n_test"]) == (24, 6, 10)
    assert next(iter(b.train))[0].shape == (8, 1, 28, 28)
    tx, ty = everything(b.test)
    assert ty.tolist() == written["test"][1].tolist()
    assert np.array_equal(to_uint8_hwc(tx, MNIST_MEAN, MNIST_STD)[..., 0], written["test"][0])


def test_svhn_from_mat_files(tmp_path, no_md5):
    written = write_svhn(tmp_path)
    b = build_data({"name": "svhn", "root": str(tmp_path), "val_fraction": 0.2}, largs(batch_size=8))
    assert (b.in_chans, b.num_classes, b.image_size) == (3, 10, 32)
    assert (b.info["n_train"], b.info["n_test"]) == (24, 10)
    assert next(iter(b.train))[0].shape == (8, 3, 32, 32)
    tx, ty = everything(b.test)
    assert ty.tolist() == written["test"][1].tolist()  # label 10 became 0
    assert 0 in ty.tolist() and ty.max().item() == 9
    assert np.array_equal(to_uint8_hwc(tx, SVHN_MEAN, SVHN_STD), written["test"][0])


def test_dataset_loader_order_depends_only_on_seed_and_epoch(tmp_path, no_md5):
    write_cifar10(tmp_path, per_batch=10, n_test=4)
    cfg = {"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.2}
    a, b = build_data(cfg, largs(seed=0)).train, build_data(cfg, largs(seed=1)).train

    def order(loader, epoch):
        loader.set_epoch(epoch)
        return list(loader.sampler)

    assert sorted(order(a, 0)) == list(range(40))
    assert order(a, 0) != order(b, 0) and order(a, 0) != order(a, 1)
    torch.manual_seed(99)
    assert order(build_data(cfg, largs(seed=0)).train, 0) == order(a, 0)
    assert list(build_data(cfg, largs()).val.sampler) == list(range(10))  # eval: sequential


def test_dataset_loader_smaller_than_one_batch_still_trains():
    """A training set smaller than batch_size gives one (partial) batch, as TensorLoader does; with
    drop_last alone it would give zero steps per epoch and a 'completed' run that never trained."""
    ds = torch.utils.data.TensorDataset(torch.arange(5.0), torch.arange(5))
    loader = DatasetLoader(ds, batch_size=8, shuffle=True, drop_last=True)
    assert len(loader) == 1 and [len(y) for _, y in loader] == [5]
    big = DatasetLoader(torch.utils.data.TensorDataset(torch.arange(20.0), torch.arange(20)), 8,
                        shuffle=True, drop_last=True)
    assert len(big) == 2 and [len(y) for _, y in big] == [8, 8]


# ---- ImageFolder ----------------------------------------------------------------------------------

def test_imagefolder_train_and_val(tmp_path):
    write_folder(tmp_path / "train", {"cat": 4, "dog": 3, "emu": 5})
    write_folder(tmp_path / "val", {"cat": 2, "dog": 2, "emu": 1}, seed=1)
    b = build_data({"name": "imagefolder", "root": str(tmp_path), "image_size": 16}, largs(batch_size=4))
    assert (b.in_chans, b.num_classes, b.image_size) == (3, 3, 16)
    assert b.info["classes"] == ["cat", "dog", "emu"]
    assert (b.info["n_train"], b.info["n_val"], b.info["n_test"]) == (12, 5, 5)  # no test/: val tests
    assert next(iter(b.train))[0].shape == (4, 3, 16, 16)
    vx, vy = everything(b.val)
    assert vx.shape == (5, 3, 16, 16) and vy.tolist() == [0, 0, 1, 1, 2]
    assert len(b.train) == 3  # 12 images, batches of 4


def test_imagefolder_without_val_makes_a_holdout(tmp_path):
    write_folder(tmp_path / "train", {"a": 6, "b": 6})
    write_folder(tmp_path / "test", {"a": 1, "b": 2}, seed=2)
    cfg = {"name": "imagefolder", "root": str(tmp_path), "image_size": 8, "val_fraction": 0.25}
    b = build_data(cfg, largs(batch_size=4))
    assert (b.info["n_train"], b.info["n_val"], b.info["n_test"]) == (9, 3, 3)
    tr, va = b.train.dataset.indices, b.val.dataset.indices
    assert sorted(tr + va) == list(range(12))
    assert everything(b.test)[1].tolist() == [0, 1, 1]
    assert build_data(cfg, largs(seed=5)).val.dataset.indices == va  # split_seed, not the run seed


def test_imagefolder_val_classes_must_match_train(tmp_path):
    """ImageFolder numbers classes per folder: a val/ without 'dog' would label emu 1, which is dog's
    index in train/. That must stop, not score emu images against the dog output."""
    write_folder(tmp_path / "train", {"cat": 1, "dog": 1, "emu": 1})
    write_folder(tmp_path / "val", {"cat": 1, "emu": 1})
    with pytest.raises(ConfigError) as e:
        build_data({"name": "imagefolder", "root": str(tmp_path)}, largs())
    check_one_line(e.value, "data.root=", str(tmp_path), "val/", "dog")


def test_imagefolder_without_images_is_a_config_error(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)  # a class folder, but no images
    with pytest.raises(ConfigError) as e:
        build_data({"name": "imagefolder", "root": str(tmp_path)}, largs())
    check_one_line(e.value, "data.root=", str(tmp_path), "ROOT/train/<class>")


# ---- errors ---------------------------------------------------------------------------------------

HOW = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "svhn": "train_32x32.mat",
       "mnist": "MNIST/raw", "imagefolder": "ROOT/train/<class>"}


@pytest.mark.parametrize("name", sorted(HOW))
def test_missing_root_says_where_and_how(tmp_path, name):
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(ConfigError) as e:
        build_data({"name": name, "root": str(missing)}, largs())
    check_one_line(e.value, "data.root=", str(missing), HOW[name], "does not exist")


def test_imagefolder_root_unset(tmp_path):
    with pytest.raises(ConfigError) as e:
        build_data({"name": "imagefolder", "root": None}, largs())
    check_one_line(e.value, "data.root=None", HOW["imagefolder"])


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "mnist"])
def test_root_without_files(tmp_path, name):
    with pytest.raises(ConfigError) as e:
        build_data({"name": name, "root": str(tmp_path)}, largs())
    check_one_line(e.value, "data.root=", str(tmp_path), "files not found", HOW[name])


def test_fake_cifar_fails_torchvisions_md5_check(tmp_path):
    """Without `no_md5` the fake files are 'corrupted' to torchvision: a ConfigError, not a traceback."""
    write_cifar10(tmp_path, per_batch=2, n_test=2)
    with pytest.raises(ConfigError) as e:
        build_data({"name": "cifar10", "root": str(tmp_path)}, largs())
    check_one_line(e.value, "data.root=", "corrupted", HOW["cifar10"])


def test_imagefolder_root_without_train(tmp_path):
    write_folder(tmp_path / "val", {"a": 1})
    with pytest.raises(ConfigError) as e:
        build_data({"name": "imagefolder", "root": str(tmp_path)}, largs())
    check_one_line(e.value, "data.root=", str(tmp_path), "no train/")


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ConfigError) as e:
        build_data({"name": "imagenet"}, largs())
    msg = check_one_line(e.value, "data.name='imagenet'", *BUILDERS)
    assert set(BUILDERS) == {"digits", "synthetic", "imagefolder", "cifar10", "cifar100", "svhn", "mnist", "text",
                             "synthetic_text"}
    assert msg.count(",") == len(BUILDERS) - 1


# ---- end to end -----------------------------------------------------------------------------------

WRAPPER = """\
import os, runpy, sys
import torchvision.datasets.cifar as cifar
cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)  # fake files: existence only
sys.argv[0] = {run!r}
runpy.run_path({run!r}, run_name="__main__")
"""


@pytest.mark.slow  # ~10 s: a subprocess importing torch, hydra and torchvision
def test_cli_one_epoch_on_fake_cifar10(tmp_path):
    """run.py on fake CIFAR-10 files, through a wrapper that only drops torchvision's md5 check."""
    root, run = tmp_path / "cifar", tmp_path / "run"
    write_cifar10(root)  # 100 train files: 80 train (one batch of 64), 20 val, 20 test
    wrapper = tmp_path / "run_fake_md5.py"
    wrapper.write_text(WRAPPER.format(run=str(ROOT / "run.py")))
    r = run_cli(["data=cifar10", f"data.root={root}", "trainer.epochs=1", "trainer.device=cpu", *TINY,
                 f"hydra.run.dir={run}"], script=str(wrapper))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["data"]) == ("completed", "cifar10")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    assert rows[0]["samples_seen"] == 64  # one full batch of the 80 training images
    assert 0.0 <= summary["test_acc"] <= 1.0
