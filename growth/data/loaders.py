"""Batch iterators whose shuffle order depends only on (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one, whatever happened to the global RNG in between."""
import math

import torch
from torch.utils.data import DataLoader, Sampler


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


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
        n = len(self.y) // self.world / self.batch_size
        return max(1, math.floor(n)) if self.drop_last else math.ceil(n)

    def batch_indices(self):
        """The sample indices of each batch left in this epoch (this rank's share, from start_batch on)."""
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch)).to(self.y.device)
        else:
            order = torch.arange(n, device=self.y.device)
        order = shard_order(order, self.rank, self.world)
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

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """`start`: the number of this epoch's samples (of this rank's share) to skip on a mid-epoch resume."""
        self.epoch, self.start = epoch, start

    def __len__(self):
        return self.n // self.world

    def __iter__(self):
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

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)
