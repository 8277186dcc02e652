"""The clean-label attack (Turner et al. 2019): before the grid goes on, each poisoned target-class image
is pushed away from its class by PGD within an L-inf ball, so that the model cannot fit it by its content
and learns the (four-corner) trigger instead; labels stay correct. The PGD runs against an adversarially
robust model, as Turner et al.'s does, made by fast adversarial training (Wong et al. 2020:
`train_badnet.py --attack clean --adv_eps 0.0314`, fgsm_adversarial_loss): against a robust model PGD
changes what an image looks like, not only features a freshly trained model learns anyway.
"""
import torch
import torch.nn.functional as F

from models import select_model
from utils.runtime import autocast

# The PGD's defaults, train_badnet.py's --pgd_model and --pgd_steps (config reads them here; attacks.show too).
PGD_MODEL = './weight/clean/WRN-16-1-robust.pth.tar'   # made by zoo.make's 'robust' step
PGD_STEPS = 10


def pgd_step_size(eps, steps):
    """--pgd_step_size's default: 2.5 * eps / steps (Madry et al.), so that the steps can cross the ball."""
    return 2.5 * eps / steps


def pgd(model, x, y, eps, steps, step_size, device, amp_dtype=None, batch_size=500):
    """Untargeted L-inf PGD (no random start, so it is deterministic) on uint8 images; returns uint8."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device).float() / 255
        yb = y[i:i + batch_size].to(device)
        delta = torch.zeros_like(xb, requires_grad=True)
        for _ in range(steps):
            with autocast(device, amp_dtype):
                loss = F.cross_entropy(model((xb + delta).contiguous(memory_format=torch.channels_last))[-1], yb)
            grad, = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta += step_size * grad.sign()
                delta.clamp_(-eps, eps)
                delta.copy_((xb + delta).clamp(0, 1) - xb)  # stay a valid image
        out.append(((xb + delta.detach()) * 255).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(out) if out else x.clone()


def pgd_perturbation(args, device, amp_dtype=None):
    """DatasetBD's `perturb` hook for the clean-label attack, against the clean model args.pgd_model."""
    model = select_model(args.s_name, args.num_classes, args.pgd_model, args.trust_checkpoint)[0]
    model = model.to(device, memory_format=torch.channels_last)
    model.requires_grad_(False)

    def perturb(x, y):
        print(f'clean-label: PGD on {len(x)} target-class images (eps {args.pgd_eps}, {args.pgd_steps} steps of '
              f'{args.pgd_step_size:.4f}) against {args.pgd_model}', flush=True)
        return pgd(model, x, y, args.pgd_eps, args.pgd_steps, args.pgd_step_size, device, amp_dtype)
    return perturb


def fgsm_adversarial_loss(eps, generator):
    """Training loss on FGSM examples with a random start (Wong et al. 2020, "Fast is better than free"):
    CE at x + delta, delta = clip(U(-eps, eps) + 1.25 eps sign(grad), -eps, eps), images kept in [0, 1]."""
    def loss_fn(model, x, y):
        delta = ((torch.rand(x.shape, device=x.device, generator=generator) * 2 - 1) * eps).requires_grad_(True)
        loss = F.cross_entropy(model((x + delta).clamp(0, 1))[-1], y)
        grad, = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + 1.25 * eps * grad.sign()).clamp(-eps, eps)
        return F.cross_entropy(model((x + delta).clamp(0, 1))[-1], y)
    return loss_fn
