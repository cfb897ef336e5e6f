"""Batch iterators whose shuffle order depends only on (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one, whatever happened to the global RNG in between."""
import math

import torch
from torch.utils.data import DataLoader, Sampler


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def repeat_count(n: int, repeats: int, world: int, round_to: int = 256) -> int:
    """Samples per rank per epoch under repeated augmentation: DeiT's RASampler rule (timm's
    RepeatAugSampler with its defaults), the same number of samples as one pass without repeats, rounded
    down to a multiple of `round_to` over all ranks: floor(n // 256 * 256 / world) for n >= 256, else
    ceil(n / world); never more than the ceil(n * repeats / world) the repeated order holds."""
    selected = n // round_to * round_to // world if n >= round_to else math.ceil(n / world)
    return min(selected, math.ceil(n * repeats / world))


def repeated_order(n: int, seed: int, epoch: int, repeats: int, rank: int = 0, world: int = 1,
                   shuffle: bool = True) -> torch.Tensor:
    """This rank's indices for one epoch of repeated augmentation (DeiT's RASampler; timm's
    RepeatAugSampler computes the same from `epoch` alone): one permutation, each index repeated `repeats`
    times in a row, dealt round-robin over the ranks (so a sample's copies go to different ranks; one
    rank sees them in a row), padded by wrapping, cut to `repeat_count`.

    Why not timm's class: it seeds from the epoch only (every run seed would see the same order) and
    cannot start at a mid-epoch batch; here the order is a function of (seed, epoch) and callers slice it."""
    base = torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
    order = torch.repeat_interleave(base, int(repeats))
    total = math.ceil(n * repeats / world) * world
    picks = torch.arange(rank, total, world)[:repeat_count(n, repeats, world)]
    return order[picks % len(order)]


def shard_order(order, rank: int, world: int):
    """Rank `rank`'s share of one epoch's order: every world-th index, all shares the same length
    (the last n % world samples of the epoch are left out, as DistributedSampler(drop_last=True))."""
    if world <= 1:
        return order
    return order[rank::world][:len(order) // world]


class TensorLoader:
    """Batches from tensors held whole on one device (digits, synthetic): no workers, no copies."""

    def __init__(self, x, y, batch_size, shuffle=False, drop_last=False, seed=0):
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.epoch, self.rank, self.world, self.start_batch = 0, 0, 1, 0
        self.repeats = 1  # repeated augmentation (recipe.repeated_aug): each sample this many times

    def repeat(self, repeats: int) -> None:
        """Repeated augmentation: an epoch is `repeated_order` (DeiT's RASampler) instead of a permutation."""
        self.repeats = int(repeats)

    def shard(self, rank: int, world: int) -> None:
        """Data parallel: each rank iterates its share of the same (seed, epoch) permutation."""
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """`start_batch`: resume inside the epoch, skipping the batches a step checkpoint already saw."""
        self.epoch, self.start_batch = epoch, start_batch

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def __len__(self):
        if self.repeats > 1:
            n = repeat_count(len(self.y), self.repeats, self.world) / self.batch_size
        else:
            n = len(self.y) // self.world / self.batch_size
        return max(1, math.floor(n)) if self.drop_last else math.ceil(n)

    def batch_indices(self):
        """The sample indices of each batch left in this epoch (this rank's share, from start_batch on)."""
        n = len(self.y)
        if self.repeats > 1:
            order = repeated_order(n, self.seed, self.epoch, self.repeats, self.rank, self.world,
                                   self.shuffle).to(self.y.device)
        elif self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch)).to(self.y.device)
            order = shard_order(order, self.rank, self.world)
        else:
            order = shard_order(torch.arange(n, device=self.y.device), self.rank, self.world)
        for i in range(self.start_batch, len(self)):
            yield order[i * self.batch_size:(i + 1) * self.batch_size]

    def __iter__(self):
        for idx in self.batch_indices():
            yield self.x[idx], self.y[idx]


class EpochSampler(Sampler):
    """A random permutation per epoch drawn from (seed, epoch); sequential when not shuffling."""

    def __init__(self, n, seed=0, shuffle=True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.rank, self.world, self.start = 0, 1, 0
        self.repeats = 1  # > 1: repeated augmentation (repeated_order)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """`start`: the number of this epoch's samples (of this rank's share) to skip on a mid-epoch resume."""
        self.epoch, self.start = epoch, start

    def __len__(self):
        return repeat_count(self.n, self.repeats, self.world) if self.repeats > 1 else self.n // self.world

    def __iter__(self):
        if self.repeats > 1:
            order = repeated_order(self.n, self.seed, self.epoch, self.repeats, self.rank, self.world, self.shuffle)
            return iter(order.tolist()[self.start:])
        if not self.shuffle:
            order = list(range(self.n))
        else:
            order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)).tolist()
        return iter(shard_order(order, self.rank, self.world)[self.start:])


class DatasetLoader:
    """A torch DataLoader over a map-style dataset, with the same interface as TensorLoader."""

    def __init__(self, dataset, batch_size, shuffle=False, drop_last=False, seed=0, num_workers=0,
                 pin_memory=False):
        self.sampler = EpochSampler(len(dataset), seed, shuffle)
        drop_last = drop_last and len(dataset) >= batch_size  # as TensorLoader: at least one batch
        # Its own generator: a DataLoader iterator otherwise draws its workers' base seed from the global
        # RNG, one draw per epoch start, and a resume inside an epoch would start one more iterator.
        self.generator, self.seed = torch.Generator(), seed
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, drop_last=drop_last,
                                 num_workers=num_workers, pin_memory=pin_memory,
                                 persistent_workers=num_workers > 0, generator=self.generator)
        self.dataset = dataset

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        # Whole batches are skipped, so the batches that follow hold the same samples as uninterrupted.
        self.sampler.set_epoch(epoch, start_batch * self.loader.batch_size)
        self.generator.manual_seed(int(self.seed) * 1_000_003 + int(epoch) + 7)  # workers' seeds: (seed, epoch)

    def shard(self, rank: int, world: int) -> None:
        self.sampler.rank, self.sampler.world = rank, world

    def repeat(self, repeats: int) -> None:
        """Repeated augmentation: each sample `repeats` times per epoch (repeated_order)."""
        self.sampler.repeats = int(repeats)

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)
