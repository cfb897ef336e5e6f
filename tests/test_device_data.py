"""Data at scale: CIFAR-style sets held whole on the device (`trainer.data_on_device=true`,
growth/data/device_images.py), and ImageFolder at 224 px through DataLoader workers.

The device loader is checked against the PIL DataLoader it replaces (unaugmented: the same batches
exactly) and against a hand computation of pad-4 crop + flip at the offsets it drew (augmented).
"""
import json

import numpy as np
import pytest
import torch

from growth.data import build_data
from growth.data.device_images import PAD, DeviceImageLoader
from growth.data.loaders import DatasetLoader
from growth.engine.job import prepare, run_job
from growth.errors import ConfigError
from tests.conftest import tiny_cfg
from tests.test_data import (CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, MNIST_STD, largs, no_md5,  # noqa: F401
                             to_uint8_hwc, write_cifar10, write_cifar100, write_folder, write_mnist, write_svhn)

WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn, "mnist": write_mnist}
STATS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "mnist": (MNIST_MEAN, MNIST_STD)}


def both(tmp_path, name, augment, bs=8, **cfg):
    """The PIL DataLoader bundle and the device-held bundle of one fake file set, and what was written."""
    written = WRITERS[name](tmp_path)
    cfg = {"name": name, "root": str(tmp_path), "val_fraction": 0.2, "augment": augment, **cfg}
    return build_data(cfg, largs(batch_size=bs)), build_data(cfg, largs(batch_size=bs, data_on_device=True)), written


def batches(loader, epoch=0, start=0):
    loader.set_epoch(epoch, start)
    return list(loader)


def hand_crop(img: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    """What T.RandomCrop(size, padding=4) + a flip give at offsets (dy, dx): HWC uint8 in, HWC out."""
    h, w = img.shape[:2]
    out = np.pad(img, ((PAD, PAD), (PAD, PAD), (0, 0)))[dy:dy + h, dx:dx + w]
    return out[:, ::-1] if flip else out


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "mnist"])
def test_unaugmented_device_batches_are_the_pil_loaders(tmp_path, no_md5, name):
    pil, dev, _ = both(tmp_path, name, augment=False)
    assert isinstance(dev.train, DeviceImageLoader) and isinstance(pil.train, DatasetLoader)
    assert dev.info == pil.info  # same holdout, same sizes
    for split in ("train", "val", "test"):
        for epoch in (0, 1):
            a, b = batches(getattr(pil, split), epoch), batches(getattr(dev, split), epoch)
            assert len(a) == len(b) == len(getattr(dev, split)) > 0
            for (xa, ya), (xb, yb) in zip(a, b):
                assert torch.equal(ya, yb)  # same samples in the same order
                assert xb.dtype == torch.float32 and xa.shape == xb.shape
                assert (xa - xb).abs().max().item() < 1e-6


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_augmented_batches_are_the_padded_crops_at_the_drawn_offsets(tmp_path, no_md5, name):
    pil, dev, written = both(tmp_path, name, augment=True)
    imgs = written["train"][0] if name == "cifar10" else written["train"][0][..., None]  # HWC
    files = np.asarray(pil.train.dataset.indices)  # the holdout's training files, in the held order
    mean, std = STATS[name]
    changed = 0
    for epoch in (0, 3):
        dy, dx, flip = (a.cpu().numpy() for a in dev.train.augmentation(epoch))
        assert dy.min() >= 0 and dy.max() <= 2 * PAD and dx.min() >= 0 and dx.max() <= 2 * PAD
        dev.train.set_epoch(epoch)
        for idx, (x, y) in zip(dev.train.batch_indices(), batches(dev.train, epoch)):
            idx = idx.cpu().numpy()
            assert y.tolist() == written["train"][1][files[idx]].tolist()
            got = to_uint8_hwc(x, mean, std)
            want = np.stack([hand_crop(imgs[files[i]], dy[i], dx[i], flip[i]) for i in idx])
            assert np.array_equal(got, want)
            changed += int((got != imgs[files[idx]]).any(axis=(1, 2, 3)).sum())
    assert changed > 0  # augmentation did something
    if name == "mnist":
        assert dev.in_chans == 1 and dev.image_size == 28 and not flip.any()  # digits are not mirrored
        assert next(iter(dev.train))[0].shape == (8, 1, 28, 28)


def test_flip_rate_and_offsets_cover_the_range(tmp_path, no_md5):
    _, dev, _ = both(tmp_path, "cifar10", augment=True)
    draws = [dev.train.augmentation(e) for e in range(5)]  # 80 samples x 5 epochs
    flips = torch.cat([d[2] for d in draws]).float()
    assert 0.4 < flips.mean().item() < 0.6
    assert set(torch.cat([d[1] for d in draws]).tolist()) == set(range(2 * PAD + 1))
    assert not torch.equal(draws[0][0], draws[1][0])  # a new draw each epoch
    again = build_data({"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.2},
                       largs(batch_size=8, data_on_device=True)).train.augmentation(1)
    assert all(torch.equal(a, b) for a, b in zip(again, draws[1]))  # from (seed, epoch) alone


def test_mid_epoch_resume_sees_the_uninterrupted_batches(tmp_path, no_md5):
    _, dev, _ = both(tmp_path, "cifar10", augment=True)
    whole = batches(dev.train, epoch=2)
    torch.manual_seed(123)
    torch.rand(10)  # the global RNG moved on, as it does in training
    fresh = build_data({"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.2},
                       largs(batch_size=8, data_on_device=True)).train
    tail = batches(fresh, epoch=2, start=3)
    assert len(tail) == len(whole) - 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(tail, whole[3:]))


def test_two_ranks_partition_the_epoch(tmp_path, no_md5):
    _, dev, _ = both(tmp_path, "cifar10", augment=True, bs=4)
    cfg = {"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.2}
    single = dev.train
    single.set_epoch(1)
    images = {int(i): x for idx, (x, _) in zip(single.batch_indices(), batches(single, 1)) for i, x in zip(idx, x)}
    seen = []
    for rank in (0, 1):
        loader = build_data(cfg, largs(batch_size=4, data_on_device=True)).train
        loader.shard(rank, 2)
        loader.set_epoch(1)
        assert len(loader) == 80 // 2 // 4
        for idx, (x, _) in zip(loader.batch_indices(), batches(loader, 1)):
            seen += idx.tolist()
            assert all(torch.equal(images[int(i)], xi) for i, xi in zip(idx, x))  # one draw for all ranks
    assert sorted(seen) == list(range(80))  # disjoint, and together the whole epoch


def test_data_on_device_values(tmp_path, no_md5):
    write_cifar10(tmp_path / "c")
    cfg = {"name": "cifar10", "root": str(tmp_path / "c")}
    assert isinstance(build_data(cfg, largs(data_on_device="auto")).train, DatasetLoader)  # today's default
    assert isinstance(build_data(cfg, largs(data_on_device=False)).train, DatasetLoader)
    assert isinstance(build_data(cfg, largs(data_on_device=True)).train, DeviceImageLoader)
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match="trainer.data_on_device=.*allowed: auto"):
            build_data(cfg, largs(data_on_device=bad))
    write_folder(tmp_path / "f" / "train", {"a": 2, "b": 2})
    with pytest.raises(ConfigError, match="trainer.data_on_device=True: imagefolder .* allowed: auto or false"):
        build_data({"name": "imagefolder", "root": str(tmp_path / "f")}, largs(data_on_device=True))
    assert tiny_cfg()["trainer"]["data_on_device"] == "auto"


def test_one_epoch_run_with_cifar10_on_the_device(tmp_path, no_md5):
    write_cifar10(tmp_path / "cifar")  # 100 train files: 90 train (one batch of 64), 10 val, 20 test
    cfg = tiny_cfg(**{"data": "cifar10", "data.root": str(tmp_path / "cifar"), "trainer.data_on_device": "true",
                      "trainer.epochs": 1, "trainer.device": "cpu", "trainer.batch_size": 64})
    trainer, _ = prepare(cfg, tmp_path / "probe")
    assert isinstance(trainer.data.train, DeviceImageLoader)
    summary = run_job(cfg, tmp_path / "run")
    assert (summary["status"], summary["data"], summary["epochs_done"]) == ("completed", "cifar10", 1)
    assert summary["samples_seen"] == 64 and 0.0 <= summary["test_acc"] <= 1.0


# ---- ImageFolder at 224 px through workers --------------------------------------------------------

def test_imagefolder_224_two_workers_same_order_as_none(tmp_path):
    write_folder(tmp_path / "train", {"a": 3, "b": 3, "c": 2}, size=256)
    write_folder(tmp_path / "val", {"a": 2, "b": 1, "c": 2}, size=256, seed=1)
    cfg = {"name": "imagefolder", "root": str(tmp_path), "image_size": 224}
    zero, two = (build_data(cfg, largs(batch_size=3, eval_batch_size=2, num_workers=w)) for w in (0, 2))
    assert two.train.loader.num_workers == 2 and two.image_size == 224
    for epoch in (0, 1):
        a, b = batches(zero.train, epoch), batches(two.train, epoch)
        assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b]  # same order and labels
        assert all(x.shape == (3, 3, 224, 224) for x, _ in b)
    assert [y.tolist() for _, y in batches(zero.train, 0)] != [y.tolist() for _, y in batches(zero.train, 1)]
    for (xa, ya), (xb, yb) in zip(batches(zero.val), batches(two.val)):  # eval transforms: equal values
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


@pytest.mark.slow  # three tiny 2-epoch runs
def test_run_stopped_inside_an_epoch_resumes_to_the_uninterrupted_run(tmp_path, no_md5, monkeypatch):
    """Augmented, on the device: a run stopped at step 16 (epoch 2, batch 6 of 11) and resumed from its step
    checkpoint trains on the very batches, crops and flips the uninterrupted run did, so it ends equal.
    (The PIL pipeline draws its crops from the global RNG and cannot promise this.)"""
    from growth.engine.trainer import Trainer

    write_cifar10(tmp_path / "cifar")  # 90 train files: 11 batches of 8 per epoch
    cfg = tiny_cfg(**{"method": "fixed", "data": "cifar10", "data.root": str(tmp_path / "cifar"),
                      "trainer.data_on_device": "true", "trainer.epochs": 2, "trainer.device": "cpu",
                      "trainer.batch_size": 8})
    full = run_job(cfg, tmp_path / "full")
    original = Trainer._step_flags

    def stop_at_16(self, batch):
        if self.step == 16:
            self.stop_requested = "test stop"  # as a signal handler sets it
        return original(self, batch)
    monkeypatch.setattr(Trainer, "_step_flags", stop_at_16)
    part = run_job(cfg, tmp_path / "part")
    assert (part["status"], part["steps_done"]) == ("interrupted", 16)
    monkeypatch.setattr(Trainer, "_step_flags", original)
    resumed = run_job(cfg, tmp_path / "part")
    assert resumed["status"] == "completed" and resumed["steps_done"] == full["steps_done"] == 22
    rows = lambda d: [json.loads(r) for r in (d / "metrics.jsonl").read_text().splitlines() if r.strip()]  # noqa: E731
    assert [r["train_loss"] for r in rows(tmp_path / "part")] == [r["train_loss"] for r in rows(tmp_path / "full")]
    assert (resumed["final_val_acc"], resumed["test_acc"]) == (full["final_val_acc"], full["test_acc"])
