"""Mixup fine-tuning (NAD paper, Appendix B; Zhang et al., ICLR 2018)."""
import torch
import torch.nn.functional as F

from utils.runtime import generator


def mixup_loss(alpha, pairing):
    """Mixup (Zhang et al. 2018): train on lam*x_i + (1-lam)*x_j with the same mix of the two labels."""
    # lam comes from torch's global generator (seeded by --seed); the pairing from `pairing`.
    beta = torch.distributions.Beta(float(alpha), float(alpha)) if alpha > 0 else None

    def loss_fn(model, x, y):
        lam = beta.sample().item() if beta is not None else 1.0
        perm = torch.randperm(len(y), device=x.device, generator=pairing)
        logits = model(lam * x + (1 - lam) * x[perm])[-1]
        return lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    return loss_fn


def loss(args, teacher, device):
    return mixup_loss(args.mixup_alpha, generator(args.seed, 'mixup', device)), []
