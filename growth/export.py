"""Export the deployed (fused) model as a standalone graph: `trainer.export=pt2` or `trainer.export=onnx`.

`torch.export` traces the deploy model into an ExportedProgram with a dynamic batch dimension, saved as
`checkpoints/model.pt2`. Loading it needs only torch (`torch.export.load(path).module()`), not this
package, so it is what a grown, fused network ships as (AOTInductor and ExecuTorch start from it).
The export is checked, not hoped for: the reloaded program is run on a batch of another size and its
largest difference from the deploy model goes into summary.json.

`trainer.export=onnx` writes `checkpoints/model.onnx` instead, checked with onnxruntime the same way
(growth/export_onnx.py; onnx, onnxscript and onnxruntime are imported only then).
"""
import io
import logging

import torch
from torch.export import Dim

from growth.engine.io import atomic_write_bytes
from growth.errors import ConfigError

log = logging.getLogger("growth")
FORMATS = ("pt2", "onnx")
SUFFIX = {"pt2": ".pt2", "onnx": ".onnx"}  # checkpoints/model.pt2, model.onnx


def check_format(value) -> str | None:
    """`trainer.export`: null (no export) or one of FORMATS; checked before training."""
    if value in (None, False, "null", "none"):
        return None
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


def export_model(fmt: str, model: torch.nn.Module, example: torch.Tensor, path) -> dict:
    """Export in `fmt` (one of FORMATS) to `path`, checked; returns the summary keys."""
    if fmt == "onnx":
        from growth.export_onnx import export_onnx  # lazy: onnx and onnxruntime only when asked for
        return export_onnx(model, example, path)
    return export_program(model, example, path)


def export_or_warn(fmt: str, model: torch.nn.Module, example: torch.Tensor, path) -> dict:
    """export_model, but the trained model is safe in its .pt file already: a model the exporter cannot
    trace is reported (a warning and `export_error`), it does not fail the run."""
    try:
        return export_model(fmt, model, example, path)
    except Exception as e:  # noqa: BLE001 - any tracing or conversion failure; the message says which
        log.warning("export: %s export failed, no %s: %s: %s", fmt, path, type(e).__name__, str(e)[:300])
        return {"export_format": fmt, "export_error": f"{type(e).__name__}: {str(e)[:300]}"}
