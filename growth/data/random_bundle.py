"""A DataBundle of random tensors with the shape of a real dataset (growth/data/info.py): what a dry run
trains one step on, so the real Trainer is built unchanged and no dataset file is read."""
import torch

from growth.data.bundle import DataBundle
from growth.data.loaders import TensorLoader

SHAPE_KEYS = ("name", "in_chans", "num_classes", "image_size")


def _random(info: dict, n: int, gen: torch.Generator):
    if "vocab_size" in info:  # token ids: anything but padding, so no sequence is all padding
        vocab, pad = int(info["vocab_size"]), int(info["pad_id"])
        x = torch.randint(0, vocab, (n, int(info["max_len"])), generator=gen)
        x[x == pad] = (pad + 1) % vocab
    else:
        size = int(info["image_size"])
        x = torch.randn(n, int(info["in_chans"]), size, size, generator=gen)
    return x, torch.randint(0, int(info["num_classes"]), (n,), generator=gen)


def random_bundle(info: dict, batch: int, device, seed: int = 0, batches: int = 2) -> DataBundle:
    """`batches` training batches of `batch` samples, one val (= test) batch; labels uniform over the
    classes. Its own generator: drawing the data leaves the global RNG (model init) as a real run has it."""
    gen = torch.Generator().manual_seed(seed)
    x, y = _random(info, batch * batches, gen)
    train = TensorLoader(x.to(device), y.to(device), batch, shuffle=True, drop_last=True, seed=seed)
    xv, yv = _random(info, batch, gen)
    val = TensorLoader(xv.to(device), yv.to(device), batch)
    extra = {k: v for k, v in info.items() if k not in SHAPE_KEYS}
    return DataBundle(train, val, val, info["name"], int(info["in_chans"]), int(info["num_classes"]),
                      int(info["image_size"]), extra)
