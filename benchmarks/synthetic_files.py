"""Data sets written to disk in their real layouts, so a data benchmark runs anywhere without downloads:
CIFAR-10's pickled batches, and an ImageFolder tree of JPEGs.

Pixels are smooth random blobs plus a little noise rather than pure noise: JPEG then compresses (and
decodes) them about as it does photographs, not as the worst case noise is.
"""
import contextlib
import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10


def _images(rng, n: int, size: int) -> np.ndarray:
    """n smooth-ish RGB images (n, size, size, 3) uint8: 4x4 random colours upsampled, plus noise."""
    coarse = rng.integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        up = np.asarray(Image.fromarray(coarse[i]).resize((size, size), Image.BILINEAR), dtype=np.int16)
        out[i] = np.clip(up + rng.integers(-12, 13, size=up.shape), 0, 255)
    return out


def write_cifar10(root, n_train: int, n_test: int = 100, seed: int = 0) -> Path:
    """ROOT/cifar-10-batches-py as the published archive lays it out: data_batch_1..5 (n_train split
    over them), test_batch, batches.meta; each batch a pickled dict with uint8 N x 3072 channel planes."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    sizes = [len(part) for part in np.array_split(np.arange(n_train), 5)]
    for fname, n in [*((f"data_batch_{i + 1}", s) for i, s in enumerate(sizes)), ("test_batch", n_test)]:
        img = _images(rng, n, 32)
        entry = {"batch_label": fname, "labels": [int(v) for v in rng.integers(0, CLASSES, size=n)],
                 "data": img.transpose(0, 3, 1, 2).reshape(n, 3072), "filenames": [f"{i}.png" for i in range(n)]}
        with open(d / fname, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": max(sizes), "num_vis": 3072,
                     "label_names": [f"class{i}" for i in range(CLASSES)]}, f, protocol=2)
    return Path(root)


@contextlib.contextmanager
def generated_cifar_files():
    """torchvision checks CIFAR files against the published archive's md5 sums, which generated files
    cannot match: inside this block the check is only that the file exists (torchvision still reads it)."""
    import torchvision.datasets.cifar as cifar

    saved = cifar.check_integrity
    cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)
    try:
        yield
    finally:
        cifar.check_integrity = saved


def write_imagefolder(root, n: int, size: int = 256, classes: int = CLASSES, seed: int = 0) -> Path:
    """ROOT/train/class<k>/<i>.jpg: n JPEGs of size x size over `classes` folders (no val/: the builder
    holds data.val_fraction of train out)."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        (Path(root) / "train" / f"class{k}").mkdir(parents=True, exist_ok=True)
    done = 0
    while done < n:  # in chunks: a large tree is never held in memory at once
        img = _images(rng, min(256, n - done), size)
        for j, a in enumerate(img):
            i = done + j
            Image.fromarray(a).save(Path(root) / "train" / f"class{i % classes}" / f"{i}.jpg", quality=90)
        done += len(img)
    return Path(root)
