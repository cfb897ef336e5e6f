"""Hydra plugin: the `joblist` sweeper (discovered through the hydra_plugins namespace package)."""
