"""A frozen teacher for the methods that distil (ReduceNet's teacher, SWS's aux teacher).

It is a copy of a model with gradients off, always in eval mode, and it is saved in a method's state as
spec + state (growth/models/saved.py), never as a pickled module, so checkpoints load with weights_only
and a resume rebuilds exactly the teacher the run distilled from.
"""
import copy

import torch

from growth.models.saved import from_file, to_file


class FrozenTeacher:
    def __init__(self, module, file: dict | None = None):
        self.module = module.eval().requires_grad_(False)
        self._file = file  # as read from disk (a deploy.pt stays what it was); else made when first saved

    @classmethod
    def copy_of(cls, model) -> "FrozenTeacher":
        return cls(copy.deepcopy(model))

    def eval(self) -> "FrozenTeacher":
        return self  # always in eval mode

    @classmethod
    def from_state(cls, state) -> "FrozenTeacher":
        """From `state()`'s output, or an older checkpoint's module (read only with trainer.trust_pickles)."""
        if isinstance(state, torch.nn.Module):
            return cls(state)
        return cls(from_file(state), state)

    def state(self) -> dict:
        if self._file is None:
            self._file = to_file(self.module, deployed=False)
        return self._file

    def to(self, device) -> "FrozenTeacher":
        self.module.to(device)
        return self

    @torch.no_grad()
    def __call__(self, x):
        return self.module(x)
