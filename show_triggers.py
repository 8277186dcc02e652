"""Draw every attack's trigger on the same CIFAR-10 test images (paper Fig. 6): one PNG grid.

    python show_triggers.py                  # -> results/triggers.png

Row 1 is the clean image; each further row is an attack's test-time trigger (the clean-label attack's
training images also carry its PGD perturbation, shown in its own row when the clean model is present).
"""
import argparse
import os

import matplotlib
import torch

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

import data_loader as dl  # noqa: E402
from utils.cli import run  # noqa: E402

ROWS = [('BadNets', 'badnets', None), ('Trojan', 'trojan', None), ('Blend', 'blend', None),
        ('CL (test trigger)', 'cl', None), ('SIG', 'sig', None), ('Refool', 'refool', None),
        ('adaptive a=0.2', 'adaptive', 0.2), ('adaptive a=1.0', 'adaptive', 1.0)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--output', default='results/triggers.png')
    p.add_argument('--images', type=int, nargs='*', default=[3, 10, 21, 30, 99], help='test-set indices (not class 0)')
    p.add_argument('--pgd_model', default='weight/clean/WRN-16-1-clean.pth.tar')
    args = p.parse_args()
    x, y = dl.load_cifar10()['test']
    clean = x[args.images]
    rows = [('clean', clean)]
    for title, attack, alpha in ROWS:
        rows.append((title, dl.get_trigger(dl.ATTACKS[attack]['trigger_type'], alpha)(clean)))
    if os.path.isfile(args.pgd_model):  # what a CL poisoned training image looks like (eps 0.15, 10 steps)
        import attacks
        from models import select_model
        model = select_model('WRN-16-1', 10, args.pgd_model)[0]
        adv = attacks.pgd(model, clean, y[args.images], 0.15, 10, 0.0375, torch.device('cpu'))
        rows.insert(5, ('CL (poisoned train)', dl.grid_trigger(adv)))

    fig, axes = plt.subplots(len(rows), len(args.images), figsize=(1.3 * len(args.images), 1.35 * len(rows)))
    for r, (title, batch) in enumerate(rows):
        for c in range(len(args.images)):
            ax = axes[r, c]
            ax.imshow(batch[c].permute(1, 2, 0).numpy(), interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=8, rotation=0, ha='right', va='center')
    fig.suptitle('CIFAR-10 test images and each attack\'s trigger', fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f'wrote {args.output}')


if __name__ == '__main__':
    run(main)
