"""NAD (Li et al., ICLR 2021) and plain fine-tuning: CE on the clean subset plus, for NAD, the weighted
attention distillation terms of the three residual groups, the teacher frozen in eval mode:

    loss = CE(student(x), y) + sum_l beta_l * AT(student_l(x), teacher_l(x))

Fine-tuning is the same loss with every beta 0 (and NAD's teacher is the student fine-tuned so).
"""
import torch
import torch.nn.functional as F

from at import at_loss


def distillation_loss(teacher, betas, p, kind, form):
    """CE plus the weighted attention distillation terms; with all betas 0 (or no teacher), fine-tuning."""
    def loss_fn(student, x, y):
        *student_groups, logits = student(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None and any(betas):
            with torch.no_grad():
                teacher_groups = teacher(x)[:-1]
            for beta, fs, ft in zip(betas, student_groups, teacher_groups):
                if beta:  # the student side is NOT detached: these terms must reach its weights
                    loss = loss + beta * at_loss(fs, ft, p, kind, form)
        return loss
    return loss_fn


def loss(args, teacher, device):
    return distillation_loss(teacher, (args.beta1, args.beta2, args.beta3), args.p, args.attention, args.at_form), []


def plain_loss(args, teacher, device):
    """Fine-tuning: CE only (the distillation loss with no teacher)."""
    return distillation_loss(None, (0, 0, 0), args.p, args.attention, args.at_form), []
