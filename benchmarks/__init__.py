"""Benchmarks, each a ratio measured side by side in one process: `python -m benchmarks [names] [--quick]`.

One module per benchmark; each has `run(quick) -> dict` with `ratio`, `measured` (what the ratio is
of) and `details`. The runner (__main__.py) adds the machine and the command and writes the results.
"""
NAMES = ("trainer_overhead", "fused_speedup", "onnx_latency", "growth_event_cost", "adagrow_vs_fixed",
         "data_on_device")
