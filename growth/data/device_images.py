"""CIFAR-style image sets (CIFAR-10/100, SVHN, MNIST) held whole on the training device as uint8, with the
training augmentation done there in batches (`trainer.data_on_device=true`).

The PIL pipeline decodes, crops, flips and converts one image at a time on the CPU; at 32 px that, not
the model, can bound a GPU job. Here each split is read once from the torchvision dataset's own arrays,
and a batch is gathered, zero-padded by 4 and cropped at random offsets, flipped where the set is
flipped (as T.RandomCrop(size, padding=4) + T.RandomHorizontalFlip), converted and normalised with one
tensor op each. Every offset and flip of an epoch is drawn up front from a generator seeded by
(seed, epoch), indexed by sample: the batches of an epoch depend on (seed, epoch) alone, so a mid-epoch
resume sees the batches an uninterrupted run would, and the ranks of a sharded run share one draw.
The stream differs from the PIL pipeline's (another RNG), not its distribution.
"""
import numpy as np
import torch
import torch.nn.functional as F

from growth.data.bundle import DataBundle
from growth.data.loaders import TensorLoader

PAD = 4  # as the PIL pipeline's T.RandomCrop(size, padding=4)


def augment_generator(seed: int, epoch: int, device) -> torch.Generator:
    # Offset from the shuffle's (seed, epoch) stream (loaders.epoch_generator), so order and crops do not
    # come from the same numbers; on the device, so the draws need no host copy.
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + int(epoch) + 13)


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """Each image of the uint8 batch x (B, C, H, W) zero-padded by `pad`, cropped back to H x W at row
    offset dy and column offset dx (0..2*pad, in padded coordinates), then mirrored where `flip`."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).flatten(2)  # (B, C, (H+2p)(W+2p)), zeros around
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    ar = torch.arange(w, device=x.device)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - ar, ar)  # a mirrored crop reads its columns backwards
    where = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).flatten(1)  # (B, H*W) into the padded image
    return padded.gather(2, where[:, None, :].expand(b, c, h * w)).view(b, c, h, w)


class DeviceImageLoader(TensorLoader):
    """uint8 images (N, C, H, W) and labels held on one device; batches come out as normalised floats,
    cropped and flipped when training. Order, sharding, resume and batch counts are TensorLoader's."""

    def __init__(self, x, y, mean, std, batch_size, shuffle=False, drop_last=False, seed=0, crop=False,
                 flip=False):
        super().__init__(x, y, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        self.crop, self.flip = crop, flip

    def augmentation(self, epoch: int):
        """(dy, dx, flip) for every sample of the set in `epoch`, indexed by sample; None when unaugmented."""
        if not (self.crop or self.flip):
            return None
        n, dev = len(self.y), self.x.device
        g = augment_generator(self.seed, epoch, dev)
        span = 2 * PAD + 1 if self.crop else 1
        dy = torch.randint(0, span, (n,), generator=g, device=dev) + (0 if self.crop else PAD)
        dx = torch.randint(0, span, (n,), generator=g, device=dev) + (0 if self.crop else PAD)
        flip = (torch.randint(0, 2, (n,), generator=g, device=dev) == 1) if self.flip \
            else torch.zeros(n, dtype=torch.bool, device=dev)
        return dy, dx, flip

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - self.mean) / self.std  # the arithmetic of T.ToTensor + T.Normalize

    def __iter__(self):
        aug = self.augmentation(self.epoch)
        for idx in self.batch_indices():
            x = self.x[idx]
            if aug is not None:
                x = crop_flip(x, aug[0][idx], aug[1][idx], aug[2][idx], PAD)
            yield self.normalize(x), self.y[idx]


def raw_arrays(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision CIFAR/SVHN/MNIST dataset (or a Subset of one) as uint8 (N, C, H, W) and int64 labels,
    from the arrays its __getitem__ reads: CIFAR .data is NHWC, SVHN .data NCHW, MNIST .data NHW."""
    if isinstance(ds, torch.utils.data.Subset):
        x, y = raw_arrays(ds.dataset)
        idx = torch.as_tensor(ds.indices, dtype=torch.long)
        return x[idx], y[idx]
    data = torch.as_tensor(np.asarray(ds.data))
    if data.ndim == 3:  # MNIST: one channel
        data = data[:, None]
    elif data.shape[-1] in (1, 3) and data.shape[1] not in (1, 3):  # CIFAR: channels last
        data = data.permute(0, 3, 1, 2)
    labels = ds.labels if hasattr(ds, "labels") else ds.targets  # SVHN: labels (10 already mapped to 0)
    return data.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.long)


def device_bundle(train, val, test, name: str, spec: tuple, augment: bool, args: dict) -> DataBundle:
    """The three splits (torchvision datasets or holdout Subsets of one) as DeviceImageLoaders on
    args["device"]; same batch sizes, shuffle and drop_last as vision._loaders."""
    _, chans, classes, size, mean, std, flip, _ = spec
    dev = args["device"]

    def mk(ds, bs, train_split):
        x, y = raw_arrays(ds)
        return DeviceImageLoader(x.to(dev), y.to(dev), mean, std, bs, shuffle=train_split, drop_last=train_split,
                                 seed=args["seed"], crop=train_split and augment,
                                 flip=train_split and augment and flip)

    return DataBundle(mk(train, args["batch_size"], True), mk(val, args["eval_batch_size"], False),
                      mk(test, args["eval_batch_size"], False), name, chans, classes, size)
