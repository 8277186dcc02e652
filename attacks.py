"""The attacks' one-off generators, computed against a clean model and then reused:

- `pgd_perturbation`: the clean-label attack (Turner et al. 2019). The poisoned target-class images are
  first pushed away from their class by PGD within an L-inf ball, so the model cannot fit them by
  their content and learns the (four-corner) grid trigger instead; their labels stay correct.
- `reverse_engineer_trojan`: the Trojan attack (TrojanNN, Liu et al. 2018). Pick the penultimate
  neuron most strongly connected to the last fully connected layer and optimise the 3x3 patch at rows
  and cols 25..27 to drive that neuron high. `make_trojan_trigger.py` saves the patch for the
  trigger registry (data_loader.trojan_nn_trigger).

- `fgsm_adversarial_loss`: fast adversarial training (Wong et al. 2020), for a robust model to run the
  clean-label attack's PGD against (`train_badnet.py --adv_eps`, then `--pgd_model`): against a robust
  model PGD changes what an image looks like, not only features a freshly trained model learns anyway,
  which is why Turner et al. use one.
- `score_reflections`: Refool's adversarial selection of reflection images (Liu et al. 2020), one round:
  each candidate reflection's success rate on a model poisoned with all candidates.
  `make_refool_pool.py` keeps the best for the trigger registry (data_loader.refool_trigger).

The trigger functions themselves are in data_loader.py (TRIGGERS); the named attacks in ATTACKS there.
"""
import torch
import torch.nn.functional as F

from data_loader import TROJAN_AT, BatchLoader, refool_trigger, trojan_trigger
from models import select_model
from utils.engine import accuracy
from utils.runtime import autocast


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


def penultimate(model, x):
    """The pooled features feeding the last fully connected layer."""
    features = {}
    handle = model.fc.register_forward_hook(lambda m, inputs, output: features.setdefault('x', inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return features['x']


def reverse_engineer_trojan(model, images, steps=500, lr=0.1, neuron=None):
    """TrojanNN on `model`: choose the neuron and optimise an additive 3x3 RGB patch on [0, 1] images.

    Returns (patch as int16 (3, 3, 3) in -255..255 for data_loader.trojan_trigger, info dict)."""
    model.eval().requires_grad_(False)
    if neuron is None:  # the penultimate neuron with the largest total |weight| into the logits
        neuron = int(model.fc.weight.abs().sum(0).argmax())
    x = images.float() / 255
    # Optimise in tanh space, so the patch stays in [-1, 1] without clipping away the gradient.
    w = torch.zeros(3, 3, 3, requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=lr)

    def stamped(patch):  # trojan_trigger on float images, so the gradient reaches the patch
        out = x.clone()
        out[:, :, TROJAN_AT, TROJAN_AT] = (out[:, :, TROJAN_AT, TROJAN_AT] + patch).clamp(0, 1)
        return out

    clean = penultimate(model, x)
    for _ in range(steps):
        activation = penultimate(model, stamped(torch.tanh(w)))[:, neuron].mean()
        optimizer.zero_grad()
        (-activation).backward()
        optimizer.step()
    patch = (torch.tanh(w.detach()) * 255).round().to(torch.int16)
    after = float(penultimate(model, trojan_trigger(images, patch).float() / 255)[:, neuron].mean())  # as shipped
    return patch, {'neuron': neuron, 'activation_clean': float(clean[:, neuron].mean()), 'activation_with_patch': after,
                   'mean_activation_of_all_neurons': float(clean.mean()), 'steps': steps, 'lr': lr,
                   'images': len(x)}


def score_reflections(model, images, candidates, target_label, device, amp_dtype=None):
    """For each candidate reflection, the percentage of `images` (uint8, none of the target class) that
    `model` assigns to `target_label` once that candidate alone is reflected into them: the ASR of that
    reflection, measured by the shared evaluator."""
    target = torch.full((len(images),), target_label)
    return torch.tensor([accuracy(model, BatchLoader(refool_trigger(images, candidates[c:c + 1], seed=c), target,
                                                     len(images), device), device, amp_dtype)
                         for c in range(len(candidates))])
