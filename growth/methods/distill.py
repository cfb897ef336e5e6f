"""Knowledge distillation losses shared by the methods that distil (ReduceNet, SWS, ADN)."""
import torch.nn.functional as F

from growth.losses import label_ce


def soft_kl(student, teacher, temperature: float, per_class: bool = False):
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over classes and divided by the batch.
    per_class also divides by the number of classes: what nn.KLDivLoss's default 'mean' computes, which
    several originals use (its effective weight is then T^2/C). `teacher` is a target: pass it detached."""
    kl = F.kl_div(F.log_softmax(student.float() / temperature, 1), F.log_softmax(teacher.float() / temperature, 1),
                  reduction="sum", log_target=True)
    return kl * temperature ** 2 / (student.numel() if per_class else student.shape[0])


def kd_loss(student, teacher, y, alpha: float, temperature: float, per_class: bool = False,
            label_smoothing: float = 0.0):
    """alpha * soft_kl + (1 - alpha) * CE(student, y). alpha 0 is plain CE (the teacher is not read, may
    be None); alpha 1 is the KL term alone."""
    ce = None if alpha == 1 else label_ce(student, y, label_smoothing)  # y: labels or soft targets
    if alpha == 0:
        return ce
    kd = soft_kl(student, teacher, temperature, per_class)
    return kd if alpha == 1 else alpha * kd + (1 - alpha) * ce
