"""The Trojan attack's trigger (TrojanNN, Liu et al. 2018), reverse-engineered from a clean model:

    python -m attacks.trojan            # against weight/clean/WRN-16-1-clean.pth.tar -> triggers/trojan_WRN-16-1.pt

Picks the penultimate neuron most strongly connected to the last fully connected layer (the largest total
|weight| into the logits), optimises the additive 3x3 RGB patch at rows/cols 25..27 to drive it high on
clean training images, and saves the patch with how it was made, where the trigger 'trojanNNTrigger'
(attack 'trojan') reads it: `nn_trigger()`, which attacks.build_trigger calls.
"""
import argparse
import functools
import os

import torch

from attacks import add_generator_arguments
from data_loader import DATA_ROOT, TROJAN_AT, load_dataset, trojan_trigger
from models import select_model
from utils import UserError
from utils.checkpoint import safe_load
from utils.cli import HelpFormatter, check_finite, command_line, run
from utils.files import atomic_write
from utils.paths import output_file
from utils.runtime import generator, seed_everything

REMAKE = 'A trigger file holds only tensors: make it again with `python -m attacks.trojan`'
TROJAN_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'triggers', 'trojan_WRN-16-1.pt')


def nn_trigger(path=TROJAN_FILE):
    """The trigger 'trojanNNTrigger': the patch saved at `path`, read now, once, added at rows/cols 25..27."""
    if not os.path.isfile(path):
        raise UserError(f'the Trojan trigger {path} is missing: make it with `python -m attacks.trojan`')
    return functools.partial(trojan_trigger, patch=safe_load(path, 'the Trojan trigger', remedy=REMAKE)['patch'])


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


def get_arguments():
    p = argparse.ArgumentParser(prog='python -m attacks.trojan', formatter_class=HelpFormatter,
                                description='TrojanNN: optimise the 3x3 trigger patch against a clean model')
    p.add_argument('--model', default='./weight/clean/WRN-16-1-clean.pth.tar', help='the clean model')
    p.add_argument('--s_name', default='WRN-16-1')
    p.add_argument('--output', default='./triggers/trojan_WRN-16-1.pt')
    p.add_argument('--images', type=int, default=256, help='clean training images the activation is averaged over')
    p.add_argument('--steps', type=int, default=200, help='Adam steps on the patch')
    p.add_argument('--lr', type=float, default=0.1)
    p.add_argument('--neuron', type=int, default=None, help='default: the one with the largest |weight| into the logits')
    return add_generator_arguments(p)


def main():
    parser = get_arguments()
    args = check_finite(parser, parser.parse_args())
    output_file(args.output, '--output', args)
    seed_everything(args.seed)
    model, ckpt = select_model(args.s_name, args.num_classes, args.model, args.trust_checkpoint)
    x, _ = load_dataset(args.dataset, args.data_root or DATA_ROOT)[0]['train']
    pick = torch.randperm(len(x), generator=generator(args.seed, 'trojan'))[:args.images]
    patch, info = reverse_engineer_trojan(model, x[pick], args.steps, args.lr, args.neuron)
    print(f"neuron {info['neuron']}: mean activation {info['activation_clean']:.3f} on clean images, "
          f"{info['activation_with_patch']:.3f} with the patch (all neurons' mean {info['mean_activation_of_all_neurons']:.3f})")
    print('patch (int16, added at rows/cols 25..27, then clipped):', patch.tolist())
    record = {'patch': patch, **info, 'source_model': args.model, 'source_acc': ckpt.get('acc'),
              'config': vars(args), 'command': command_line('attacks.trojan')}
    atomic_write(args.output, lambda f: torch.save(record, f))
    print(f'saved {args.output}')


if __name__ == '__main__':
    run(main)
