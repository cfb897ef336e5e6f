"""Datasets by name: `build_data(data_cfg, loader_args)` returns a DataBundle."""
from growth.data.bundle import DataBundle
from growth.data.tensor_sets import build_digits, build_synthetic
from growth.data.text import build_synthetic_text, build_text
from growth.data.vision import SETS, build_imagefolder, build_torchvision
from growth.errors import ConfigError

BUILDERS = {"digits": build_digits, "synthetic": build_synthetic, "imagefolder": build_imagefolder,
            "text": build_text, "synthetic_text": build_synthetic_text,
            **{name: build_torchvision for name in SETS}}


def _check_on_device(value, name) -> None:
    """trainer.data_on_device: which sets live whole on the device. auto: the tensor sets (digits,
    synthetic, text); true: the CIFAR-style file sets too (device_images.py); false: none."""
    if not (value is True or value is False or value == "auto"):
        raise ConfigError("trainer.data_on_device", value, "allowed: auto (tensor sets on the device), true "
                          f"(also {', '.join(SETS)}, augmented on the device), false (nothing on the device)")
    if value is True and name == "imagefolder":  # decoded file by file: nothing to hold
        raise ConfigError("trainer.data_on_device", value, "imagefolder images are decoded from their files "
                          "batch by batch and cannot be held on the device; allowed: auto or false")


def build_data(cfg: dict, loader_args: dict) -> DataBundle:
    """loader_args: batch_size, eval_batch_size, seed, device, num_workers, pin_memory, and optionally
    data_on_device (auto | true | false; default auto)."""
    name = cfg.get("name")
    if name not in BUILDERS:
        raise ConfigError("data.name", name, f"allowed: {', '.join(sorted(BUILDERS))}")
    _check_on_device(loader_args.get("data_on_device", "auto"), name)
    return BUILDERS[name](cfg, loader_args)


__all__ = ["DataBundle", "build_data", "BUILDERS"]
