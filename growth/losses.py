"""The label loss every method trains with: hard labels or the soft targets of mixup/cutmix."""
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy

_SOFT = SoftTargetCrossEntropy()


def label_ce(logits, y, label_smoothing: float = 0.0):
    """Cross-entropy with class indices `y` (smoothed by `label_smoothing`), or with soft targets `y`
    (one row per sample, from timm's Mixup: already smoothed there, so `label_smoothing` is not applied
    again), as timm's SoftTargetCrossEntropy: mean over the batch of -sum(y * log_softmax(logits))."""
    if y.ndim == logits.ndim and y.is_floating_point():
        return _SOFT(logits, y)
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing)


def hard_labels(y):
    """Class indices of a batch's labels: argmax of soft targets (train accuracy under mixup)."""
    return y.argmax(-1) if y.is_floating_point() and y.ndim > 1 else y
