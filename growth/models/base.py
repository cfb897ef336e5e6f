"""What every model of the suite provides: an Arch spec it can be rebuilt from, and a deploy form."""
import copy

from torch import nn

from growth.blocks import ConvBN, RepUnit, fuse_convbn


def _swap_fused(module: nn.Module) -> None:
    """Replace every ConvBN and RepUnit below `module` by its fused conv, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, RepUnit):
            setattr(module, name, child.fuse())
        elif isinstance(child, ConvBN):
            setattr(module, name, fuse_convbn(child))
        else:
            _swap_fused(child)


class SpecModel(nn.Module):
    """Base class: `family` names the registry entry; `spec_kwargs()` the constructor arguments now."""

    family = ""
    grown_keys = ("depths",)  # spec kwargs that growth changes; every other kwarg must match on resume

    def spec_kwargs(self) -> dict:
        raise NotImplementedError

    def arch_string(self) -> str:
        raise NotImplementedError

    def arch_spec(self) -> dict:
        """JSON-serialisable description from which `from_spec` rebuilds this exact structure."""
        units = {name: [list(k) for k in m.kernels] for name, m in self.named_modules()
                 if isinstance(m, RepUnit) and len(m.kernels) > 1}
        return {"family": self.family, "arch": self.arch_string(), "kwargs": self.spec_kwargs(),
                "units": units}

    @classmethod
    def from_spec(cls, spec: dict) -> "SpecModel":
        model = cls(**spec["kwargs"])
        modules = dict(model.named_modules())
        for name, kernels in spec.get("units", {}).items():
            unit = modules[name]
            for k in kernels[len(unit.kernels):]:
                unit.add_branch(k)
        return model

    def deploy(self) -> nn.Module:
        """A fused copy for inference: every RepUnit and conv+BN pair folded into one conv."""
        fused = copy.deepcopy(self).eval()
        _swap_fused(fused)
        return fused
