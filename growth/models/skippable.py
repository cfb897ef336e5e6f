"""Skippable sub-paths (Adaptive Depth Networks): which blocks a skip config drops, and the plain export.

A model's blocks come in groups (conv nets: stages; ViT: pseudo-stages of consecutive blocks). In a group
of n >= 2 blocks the first min(ceil(n/2), n-1) are mandatory and the rest skippable (the original's rule
for ResNet, MobileNetV2 and ViT groups of 3); groups of fewer than 2 blocks have nothing to skip and get
no flag. A skip config is one boolean per flagged group, True = drop that group's skippable blocks.

With `skippable=True` every norm layer inside a mandatory block of a flagged group becomes a
SwitchableNorm (growth/blocks/switchable.py), whose active set follows its group's flag. Everything
else (stems, downsampling units, heads, the skippable blocks) keeps one norm shared by all sub-nets.
With `skippable=False` (the default) nothing changes: one group per stage, every block runs.

A family provides `group_blocks() -> list[list[nn.Module]]` (blocks per group, in forward order) and
`plain_kwargs(keep)` (constructor kwargs of the same family with `keep[g]` blocks in group g). It may
also give `switch_exclude` (child names inside mandatory blocks whose norms stay shared, e.g. a ResNet
block's downsample) and `tied_norms()`: switchable norms outside the flagged groups that follow one flag
(MobileNetV2's stem, last conv and 1-block stages, METHODS.md 4.1).
"""
import contextlib
import itertools
import math

import torch
from torch import nn

from growth.blocks.switchable import SwitchableNorm, make_switchable


def n_mandatory(n: int) -> int:
    """Blocks of a group of n that always run: min(ceil(n/2), n-1), and all of a group of one."""
    return n if n < 2 else min(math.ceil(n / 2), n - 1)


def all_configs(n_flags: int) -> list[tuple[bool, ...]]:
    """Every skip config, super-net (all False) first, base-net (all True) last; 2**n_flags of them."""
    return [tuple(bool(b) for b in bits) for bits in itertools.product((False, True), repeat=n_flags)]


def config_name(cfg) -> str:
    """(True, False, False) -> "TFF", as the paper's tables write them."""
    return "".join("T" if f else "F" for f in cfg)


class SkippableMixin:
    """Skip-config state and the export of one config as a plain model. State is kept as plain
    attributes (`skip`), never buffers, so a state_dict does not depend on the active config."""

    skippable = False
    skip: tuple = ()

    # ---- what a family gives ----------------------------------------------------------------------
    def group_blocks(self) -> list[list[nn.Module]]:
        raise NotImplementedError

    def plain_kwargs(self, keep: list[int]) -> dict:
        raise NotImplementedError

    switch_exclude: tuple = ()  # names of children of mandatory blocks whose norms are shared

    def tied_norms(self) -> list[tuple[int, SwitchableNorm]]:
        """(flag index, switchable norm) for norms outside the flagged groups' mandatory blocks that switch
        with one flag; made switchable by the family. None by default."""
        return []

    # ---- groups and flags -----------------------------------------------------------------------
    def flagged_groups(self) -> list[int]:
        """Indices of the groups that have a skip flag (those with at least 2 blocks)."""
        return [g for g, blocks in enumerate(self.group_blocks()) if len(blocks) >= 2]

    @property
    def num_skip_flags(self) -> int:
        return len(self.flagged_groups()) if self.skippable else 0

    def make_norms_switchable(self) -> None:
        for g in self.flagged_groups():
            blocks = self.group_blocks()[g]
            for block in blocks[:n_mandatory(len(blocks))]:
                make_switchable(block, self.switch_exclude)

    def check_skip(self, cfg) -> tuple[bool, ...]:
        cfg = tuple(bool(f) for f in cfg)
        if not self.skippable and any(cfg):
            raise ValueError("this model was built with skippable=False: it has no skip flags")
        if self.skippable and len(cfg) != self.num_skip_flags:
            raise ValueError(f"skip config {config_name(cfg)} has {len(cfg)} flags; the model has "
                             f"{self.num_skip_flags} (one per stage of >= 2 blocks)")
        return cfg

    def set_skip(self, cfg=None) -> None:
        """Activate a skip config (None: the super-net): which blocks run and which norm set is used."""
        cfg = self.check_skip(cfg if cfg is not None else [False] * self.num_skip_flags)
        self.skip = cfg
        if not self.skippable:
            return
        groups = self.group_blocks()
        for g, flag in zip(self.flagged_groups(), cfg):
            for block in groups[g]:
                for m in block.modules():
                    if isinstance(m, SwitchableNorm):
                        m.active = int(flag)
        for i, norm in self.tied_norms():
            norm.active = int(cfg[i])

    def kept_counts(self, cfg=None) -> list[int]:
        """Blocks that run per group under `cfg` (default: the active config)."""
        cfg = self.skip if cfg is None else self.check_skip(cfg)
        keep = [len(b) for b in self.group_blocks()]
        if self.skippable:
            for g, flag in zip(self.flagged_groups(), cfg):
                if flag:
                    keep[g] = n_mandatory(keep[g])
        return keep

    def active_blocks(self, group: int) -> list[nn.Module]:
        """The blocks of `group` that run under the active config, in order."""
        blocks = self.group_blocks()[group]
        return blocks[:self.kept_counts()[group]] if any(self.skip) else blocks

    def deploy(self) -> nn.Module:
        """A skippable model deploys as the plain export of its active config (then fused)."""
        if self.skippable:
            return self.export_plain().deploy()
        return super().deploy()

    # ---- export ---------------------------------------------------------------------------------
    def export_plain(self, cfg=None) -> nn.Module:
        """The sub-network of `cfg` (default: active) as a plain (non-skippable) model of the same family
        with the skipped blocks removed and the active norm set's weights; it deploys like any model."""
        previous = self.skip
        self.set_skip(cfg if cfg is not None else previous)
        try:
            keep = self.kept_counts()
            ref = next(self.parameters())
            # a model on the meta device (sizes only) exports without allocating or initialising anything
            where = torch.device("meta") if ref.is_meta else contextlib.nullcontext()
            with torch.random.fork_rng(devices=[]), where:  # building it must not move the training RNG
                plain = type(self)(**self.plain_kwargs(keep))
            plain.to(ref.device, ref.dtype)
            plain.load_state_dict(self._plain_state(plain, keep))
        finally:
            self.set_skip(previous)
        return plain.train(self.training)

    def _plain_state(self, plain: nn.Module, keep: list[int]) -> dict:
        """This model's state under the plain model's names: the active norm set renamed to the plain
        norm, kept blocks renamed to where they sit in `plain`, skipped blocks dropped."""
        names = {id(m): n for n, m in self.named_modules()}
        plain_names = {id(m): n for n, m in plain.named_modules()}
        kept, dropped = [], []
        for g, blocks in enumerate(self.group_blocks()):
            kept += blocks[:keep[g]]
            dropped += [names[id(b)] + "." for b in blocks[keep[g]:]]
        # the plain model's blocks in forward order match the kept ones (its groups may differ, e.g. ViT)
        pblocks = [b for group in plain.group_blocks() for b in group]
        renames = [(names[id(b)] + ".", plain_names[id(p)] + ".") for b, p in zip(kept, pblocks)]
        norms = [(n + ".", m.active) for n, m in self.named_modules() if isinstance(m, SwitchableNorm)]
        state = {}
        for key, value in self.state_dict().items():
            if any(key.startswith(d) for d in dropped):
                continue
            key = _pick_norm_set(key, norms)
            if key is None:
                continue
            for src, dst in renames:
                if key.startswith(src):
                    key = dst + key[len(src):]
                    break
            state[key] = value
        return state


def _pick_norm_set(key: str, norms) -> str | None:
    """`x.norms.<active>.weight` -> `x.weight`; the inactive set's keys -> None (not exported)."""
    for prefix, active in norms:
        if key.startswith(prefix + "norms."):
            rest = key[len(prefix) + len("norms."):]
            index, _, tail = rest.partition(".")
            return prefix + tail if int(index) == active else None
    return key

