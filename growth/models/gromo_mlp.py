"""An MLP built from GroMo's growing layers (`gromo` 0.1, BSD-3), for TINY and GradMax width growth.

`gromo_mlp` flattens the image (in_features = C*H*W, digits: 1x8x8 = 64) and runs hidden layers of
the widths in the arch string ("4-4": two hidden layers of 4 neurons), then a linear head. Each layer
is a GroMo `LinearGrowingModule` (the nn.Linear is `layer`, the activation follows it), chained as in
GroMo's `GrowingMLP`, whose forward, extended_forward and growth API the container inherits. GroMo's
`GrowingMLP` gives every hidden layer one size; a grown net has different widths per layer, so the
container here builds the same chain from a list of widths (`hidden`), which is what the spec stores.

Hidden layer j is grown by GroMo's layer j+1 (its input is the hidden layer): new rows in layer j's
weight and bias (fan-in of the new neurons), new columns in layer j+1's weight (their fan-out).
growth/grow/gromo_step.py runs one such step; `width_sites()` lists the hidden layers.

Notes on GroMo that shape this file:
- GroMo modules keep a `device` attribute and a few plain tensors (the scaling factors) that
  `Module.to()` does not move; `_apply` below moves them with the parameters, so a model built on the
  CPU and moved to a GPU grows on the GPU.
- Each GroMo module reads the project's pyproject.toml at construction (its `[tool.gromo]` config; ours
  has none), so building a model does a little file I/O.
- The default activation is SELU, as in GroMo: GradMax's new neurons start at pre-activation 0, where
  torch's ReLU has derivative 0, so with ReLU they would never receive a gradient.
- `deploy()` is a plain torch `nn.Sequential` copy (no GroMo objects), for export and inference.
"""
import torch
from gromo.containers.growing_container import GrowingContainer
from gromo.containers.growing_mlp import GrowingMLP
from gromo.containers.sequential_growing_container import SequentialGrowingModel
from gromo.modules.growing_module import GrowingModule
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo.utils.tensor_statistic import TensorStatistic
from torch import nn

from growth.arch import arch_string, parse_arch
from growth.errors import ConfigError
from growth.models import register
from growth.models.base import SpecModel
from growth.models.growable import Site

ACTIVATIONS = {"selu": nn.SELU, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
# GroMo's scaling factors: plain tensors on each module (not buffers), so .to() skips them.
_SCALING = ("scaling_factor", "optimal_delta_scaling", "input_extension_scaling", "output_extension_scaling")


class WidthsMLP(GrowingMLP):
    """GroMo's GrowingMLP with one width per hidden layer. Only the constructor differs: GrowingMLP's own
    builds every hidden layer at one size, so it is skipped and the same chain is built here."""

    def __init__(self, in_features: int, out_features: int, hidden, activation: nn.Module,
                 use_bias: bool = True, device=None):
        SequentialGrowingModel.__init__(self, in_features, out_features, device)
        self.flatten = nn.Flatten(start_dim=1)
        self.layers = nn.ModuleList()
        sizes = [in_features, *hidden, out_features]
        for i, (cin, cout) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            self.layers.append(LinearGrowingModule(
                cin, cout, use_bias=use_bias, name=f"Layer {i}", device=self.device,
                post_layer_function=nn.Identity() if last else activation,
                previous_module=self.layers[-1] if i else None))
        self._growable_layers = list(self.layers[1:])  # layer j+1 grows hidden layer j
        self.set_growing_layers(scheduling_method="all")


@register("gromo_mlp")
class GromoMLP(SpecModel):
    grown_keys = ("hidden",)

    def __init__(self, in_shape=(1, 8, 8), num_classes=10, hidden=(4, 4), activation="selu", bias=True):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ConfigError("model.arch", arch_string(hidden), "one or more hidden layers of >= 1 neurons")
        if activation not in ACTIVATIONS:
            raise ConfigError("model.activation", activation, f"allowed: {', '.join(ACTIVATIONS)}")
        self.in_shape, self.num_classes = [int(s) for s in in_shape], int(num_classes)
        self.activation, self.bias = activation, bool(bias)
        in_features = 1
        for s in self.in_shape:
            in_features *= s
        self.net = WidthsMLP(in_features, self.num_classes, hidden, ACTIVATIONS[activation](),
                             use_bias=self.bias, device=torch.device("cpu"))

    @property
    def hidden(self) -> list[int]:
        """Hidden widths now (read from the layers, so growth needs no bookkeeping)."""
        return [layer.out_features for layer in self.net.layers[:-1]]

    def spec_kwargs(self) -> dict:
        return {"in_shape": list(self.in_shape), "num_classes": self.num_classes, "hidden": self.hidden,
                "activation": self.activation, "bias": self.bias}

    def arch_string(self) -> str:
        return arch_string(self.hidden)

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "GromoMLP":
        size = int(data["image_size"])
        return cls([int(data["in_chans"]), size, size], int(data["num_classes"]),
                   parse_arch(cfg.get("arch", "4-4")), cfg.get("activation", "selu"), cfg.get("bias", True))

    def width_sites(self) -> list[Site]:
        return [Site("width", j, f"hidden {j}") for j in range(len(self.hidden))]

    def forward(self, x):
        return self.net(x)

    def deploy(self) -> nn.Module:
        """Plain torch: Flatten, then Linear + activation per hidden layer, then the head (eval mode)."""
        mods: list[nn.Module] = [nn.Flatten(1)]
        for layer in self.net.layers:
            lin = layer.layer
            plain = nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)
            plain.load_state_dict(lin.state_dict())
            mods.append(plain.to(lin.weight.device, lin.weight.dtype))
            if not isinstance(layer.post_layer_function, nn.Identity):
                mods.append(ACTIVATIONS[self.activation]())
        return nn.Sequential(*mods).eval()

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._sync_gromo_device()
        return self

    def _sync_gromo_device(self) -> None:
        """Point GroMo's own device attributes and scaling tensors at the parameters' device."""
        ref = self.net.layers[0].weight
        for m in self.net.modules():
            if not isinstance(m, (GrowingModule, GrowingContainer)):
                continue
            m.device = ref.device
            for key in _SCALING:
                t = m.__dict__.get(key)
                if isinstance(t, torch.Tensor) and t.device != ref.device:
                    m.__dict__[key] = t.detach().to(ref.device).requires_grad_(t.requires_grad)
            if isinstance(m, GrowingModule):
                m._activation_gradient_previous_module = None  # a cached tensor on the old device
            for v in vars(m).values():
                if isinstance(v, TensorStatistic):
                    v.device = ref.device
