"""`trainer.export=onnx`: the deployed (fused) model as an ONNX graph with a dynamic batch, checked with
onnxruntime.

torch's exporter (`torch.onnx.export(..., dynamo=True)`, the torch.export-based one; the TorchScript one
is deprecated) writes `checkpoints/model.onnx`. The file is then loaded by onnxruntime, run on a batch of
another size than the traced one (the batch dimension really is dynamic) and compared with the deploy
model; the largest difference goes into summary.json, and one of TOLERANCE or more is a warning.

onnx, onnxscript and onnxruntime are imported here only, and this module only when an export or a
quantisation is asked for: a plain run never pays for them.
"""
import copy
import logging
import warnings

import numpy as np
import torch
from torch.export import Dim

from growth.engine.io import atomic_write_bytes

log = logging.getLogger("growth")
TOLERANCE = 1e-4  # fp32 graphs of the same function: larger means the export changed the function
OPSET = 18  # the exporter's own default in torch 2.9+ (its torchlib is written for it)


def session(model_bytes_or_path, threads: int | None = None):
    """An onnxruntime CPU session; `threads` intra-op threads (default: torch's), so it shares the CPU as
    the run does (trainer.threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    src = model_bytes_or_path if isinstance(model_bytes_or_path, bytes) else str(model_bytes_or_path)
    return ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])


def run_session(sess, x: torch.Tensor) -> torch.Tensor:
    """The graph's first output for `x` (its one input: images, or BERT's int64 token ids)."""
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x.detach().cpu().numpy())}
    return torch.from_numpy(sess.run(None, feed)[0])


@torch.no_grad()
def to_onnx(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """The ONNX bytes of `model` (eval mode) traced on `example`, its batch dimension dynamic."""
    model = model.eval()
    batch = Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings():  # the exporter's notes on its own internals are not the user's business
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=["input"], output_names=["logits"],
                                    dynamo=True, dynamic_shapes=({0: batch},), opset_version=OPSET,
                                    verbose=False, report=False)
    return program.model_proto.SerializeToString()


@torch.no_grad()
def export_onnx(model: torch.nn.Module, example: torch.Tensor, path) -> dict:
    """Export `model` to `path` atomically, reload it in onnxruntime and compare it with the model on a
    batch one larger than `example`. Returns the summary keys (as export_program's, format "onnx")."""
    model, example = on_cpu(model).eval(), example.cpu()  # onnxruntime runs on the CPU: compare there
    atomic_write_bytes(path, to_onnx(model, example))
    other = torch.cat([example, example[:1]])  # another batch size than the traced one
    got = run_session(session(path), other)
    want = model(other).float()
    diff = (got - want).abs().max().item()
    if not diff < TOLERANCE:  # NaN too
        log.warning("export: ONNX %s differs from the deploy model by %.2e (>= %.0e)", path, diff, TOLERANCE)
    else:
        log.info("export: %s (ONNX opset %d, dynamic batch), onnxruntime vs deployed max |diff| %.2e",
                 path, OPSET, diff)
    return {"export_format": "onnx", "export_path": str(path), "export_max_abs_diff": diff,
            "export_within_tolerance": bool(diff < TOLERANCE), "export_versions": versions()}


def versions() -> dict:
    """The exporter's and the runtime's versions: an ONNX number is theirs as much as torch's."""
    import onnx
    import onnxruntime
    import onnxscript
    return {"onnx": onnx.__version__, "onnxscript": onnxscript.__version__, "onnxruntime": onnxruntime.__version__,
            "opset": OPSET}


def on_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """`model` itself when it lives on the CPU, else a CPU copy (the trained model stays where it is)."""
    if all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()]):
        return model
    return copy.deepcopy(model).cpu()
