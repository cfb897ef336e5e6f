"""Datasets by name: `build_data(data_cfg, loader_args)` returns a DataBundle."""
from growth.data.bundle import DataBundle
from growth.data.tensor_sets import build_digits, build_synthetic
from growth.data.text import build_synthetic_text, build_text
from growth.data.vision import SETS, build_imagefolder, build_torchvision
from growth.errors import ConfigError

BUILDERS = {"digits": build_digits, "synthetic": build_synthetic, "imagefolder": build_imagefolder,
            "text": build_text, "synthetic_text": build_synthetic_text,
            **{name: build_torchvision for name in SETS}}


def build_data(cfg: dict, loader_args: dict) -> DataBundle:
    """loader_args: batch_size, eval_batch_size, seed, device, num_workers, pin_memory."""
    name = cfg.get("name")
    if name not in BUILDERS:
        raise ConfigError("data.name", name, f"allowed: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](cfg, loader_args)


__all__ = ["DataBundle", "build_data", "BUILDERS"]
