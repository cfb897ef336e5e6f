"""growth: variable-size neural networks (grow, shrink, share, skip) in plain PyTorch.

Importable without Hydra: the Hydra apps (run.py, sweep.py) turn configs into plain dicts first.
"""
from growth.errors import ConfigError

__version__ = "0.1.0"
__all__ = ["ConfigError", "__version__"]
