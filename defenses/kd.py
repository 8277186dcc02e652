"""Logit distillation, KD (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015): a
control for NAD. The same teacher, clean subset and schedule as NAD, but the student matches the teacher's
softened class probabilities instead of its attention maps, so a NAD - KD difference is what the attention
term adds over distilling from that teacher at all:

    loss = (1 - alpha) * CE(student(x), y) + alpha * T^2 * KL(softmax(teacher(x) / T) || softmax(student(x) / T))

KL is summed over the classes and averaged over the batch; T^2 keeps the soft term's gradients at the hard
term's scale whatever T (Hinton et al., Sec. 2). The convex form and the defaults T = 4, alpha = 0.9 are
RepDistiller's CIFAR KD setting (Tian, Krishnan and Isola, "Contrastive Representation Distillation", ICLR
2020; its scripts/run_cifar_distill.sh runs KD with `-r 0.1 -a 0.9`, weight 0.1 on CE and 0.9 on the KL
term, and train_student.py's `--kd_T` defaults to 4; its DistillKL is this KL times T^2). NAD keeps weight 1
on CE; --kd_alpha 0.5 puts KD's two terms on an equal footing instead.
"""
import torch
import torch.nn.functional as F


def kd_loss(teacher, temperature, alpha):
    """The KD loss of a student against a frozen teacher. The soft term is computed in float32 (under
    bfloat16 autocast the softmax of logits / T would lose most of the small probabilities it exists for)."""
    def loss_fn(student, x, y):
        logits = student(x)[-1]
        with torch.no_grad():
            soft_targets = F.softmax(teacher(x)[-1].float() / temperature, dim=1)
        kl = F.kl_div(F.log_softmax(logits.float() / temperature, dim=1), soft_targets, reduction='batchmean')
        return (1 - alpha) * F.cross_entropy(logits, y) + alpha * temperature ** 2 * kl
    return loss_fn


def loss(args, teacher, device):
    return kd_loss(teacher, args.kd_t, args.kd_alpha), []
