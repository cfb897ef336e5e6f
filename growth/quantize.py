"""`trainer.quantize=int8`: post-training static quantisation of the exported (fused) ONNX model, and its
accuracy drop on the test split.

Re-parameterised nets are known to quantise badly (a fused RepVGG kernel sums branches of very different
ranges), and the drop is rarely reported beside the fused speed-up; this reports both numbers from one run.
The recipe is onnxruntime's standard one: pre-processing (shape inference, graph optimisation), then
`quantize_static` in QDQ format, int8 weights per output channel, int8 activations with MinMax ranges
calibrated on the first `trainer.quantize_calib_batches` training batches. Both the fp32 ONNX model and
the int8 one are then run by onnxruntime over the whole test split, so the drop compares two graphs
that differ only in quantisation.

Any family that exports to ONNX is quantised (the quantizer works on the graph, not on our families);
conv nets are what it is for and what the tests check. A graph it cannot quantise is a warning and a
`quantize_error` in summary.json, and the run still completes, as a failed export does.
"""
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from growth.engine.io import atomic_write_bytes
from growth.errors import ConfigError

log = logging.getLogger("growth")
MODES = ("int8",)
SETTINGS = "onnxruntime quantize_static, QDQ, per-channel int8 weights, int8 activations, MinMax calibration"


def check_mode(trainer_cfg: dict) -> str | None:
    """`trainer.quantize`: null or int8, and int8 needs the ONNX export it quantises; checked before
    training, with `trainer.quantize_calib_batches`."""
    value = trainer_cfg.get("quantize")
    if value in (None, False, "null", "none"):
        return None
    if value not in MODES:
        raise ConfigError("trainer.quantize", value, f"allowed: null, {', '.join(MODES)}")
    if trainer_cfg.get("export") != "onnx":
        raise ConfigError("trainer.quantize", value, f"quantises the ONNX export: needs trainer.export=onnx "
                                                     f"(got trainer.export={trainer_cfg.get('export')})")
    n = trainer_cfg.get("quantize_calib_batches", 8)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError("trainer.quantize_calib_batches", n, "must be a positive integer (training batches)")
    return value


def first_batches(loader, n: int) -> list[np.ndarray]:
    """The inputs of the first `n` batches of `loader`, as numpy (what the calibration reader feeds).
    The loader's shuffling must not move the run's RNG: it is drawn from a fork."""
    out = []
    with torch.random.fork_rng(devices=[]):
        for x, _ in loader:
            out.append(np.ascontiguousarray(x.detach().cpu().numpy()))
            if len(out) == n:
                break
    return out


def quantize_int8(fp32_path, int8_path, calib: list[np.ndarray]) -> None:
    """Write the int8 (QDQ) model of the ONNX file `fp32_path` to `int8_path` atomically."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from growth.export_onnx import session

    name = session(fp32_path).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calib)

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        atomic_write_bytes(int8_path, out.read_bytes())


def predictions(sess, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, label) of every sample of `loader`, the graph run by onnxruntime."""
    from growth.export_onnx import run_session

    preds, labels = [], []
    for x, y in loader:
        preds.append(run_session(sess, x).argmax(1))
        labels.append(y.detach().cpu())
    return torch.cat(preds), torch.cat(labels)


def quantize_and_test(fp32_path, int8_path, train_loader, test_loader, calib_batches: int) -> dict:
    """Quantise, then test fp32 and int8 graphs on the test split. Returns the summary keys: both test
    accuracies, the drop in points (fp32 - int8, x100), how often the two agree, the file and the recipe."""
    from growth.export_onnx import session

    calib = first_batches(train_loader, calib_batches)
    quantize_int8(fp32_path, int8_path, calib)
    fp32, labels = predictions(session(fp32_path), test_loader)
    int8, _ = predictions(session(int8_path), test_loader)
    n = len(labels)
    acc32, acc8 = (fp32 == labels).sum().item() / n, (int8 == labels).sum().item() / n  # as trainer.evaluate
    keys = {"quantize": "int8", "quantize_path": str(int8_path), "quantize_settings": SETTINGS,
            "quantize_calib_batches": len(calib), "quantize_calib_samples": int(sum(len(b) for b in calib)),
            "test_acc_onnx_fp32": acc32, "test_acc_int8": acc8, "int8_acc_drop_points": 100 * (acc32 - acc8),
            "int8_fp32_agreement": (fp32 == int8).sum().item() / n, "quantize_test_samples": n}
    log.info("quantize: %s (int8, %d calibration samples): test acc fp32 %.4f -> int8 %.4f (drop %.2f points)",
             int8_path, keys["quantize_calib_samples"], acc32, acc8, keys["int8_acc_drop_points"])
    return keys
