"""Export the deployed (fused) model as a standalone graph: `trainer.export=pt2`.

`torch.export` traces the deploy model into an ExportedProgram with a dynamic batch dimension, saved as
`checkpoints/model.pt2`. Loading it needs only torch (`torch.export.load(path).module()`), not this
package, so it is what a grown, fused network ships as (AOTInductor and ExecuTorch start from it).
The export is checked, not hoped for: the reloaded program is run on a batch of another size and its
largest difference from the deploy model goes into summary.json.

ONNX is not offered: torch's ONNX exporters need the `onnx` and `onnxscript` packages, which are outside
this project's dependencies.
"""
import io
import logging

import torch
from torch.export import Dim

from growth.engine.io import atomic_write_bytes
from growth.errors import ConfigError

log = logging.getLogger("growth")
FORMATS = ("pt2",)


def check_format(value) -> str | None:
    """`trainer.export`: null (no export) or one of FORMATS; checked before training."""
    if value in (None, False, "null", "none"):
        return None
    if value == "onnx":
        raise ConfigError("trainer.export", value, "needs the onnx and onnxscript packages, which this project "
                                                   "does not depend on; allowed: null, pt2 (torch.export)")
    if value not in FORMATS:
        raise ConfigError("trainer.export", value, f"allowed: null, {', '.join(FORMATS)}")
    return value


@torch.no_grad()
def export_program(model: torch.nn.Module, example: torch.Tensor, path) -> dict:
    """Trace `model` (eval mode) on `example` with a dynamic batch, save it atomically to `path`, reload
    it and compare on a batch one larger. Returns the summary keys."""
    model = model.eval()
    batch = Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    buffer.seek(0)
    reloaded = torch.export.load(buffer).module()
    other = torch.cat([example, example[:1]])  # another batch size: the dimension really is dynamic
    diff = (reloaded(other) - model(other)).abs().max().item()
    log.info("export: %s (torch.export, dynamic batch), max |exported - deployed| %.2e", path, diff)
    return {"export_format": "pt2", "export_path": str(path), "export_max_abs_diff": diff}
