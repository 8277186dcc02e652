"""Draw every attack's trigger on the same CIFAR-10 test images (paper Fig. 6): one PNG grid.

    python -m attacks.show                   # -> results/triggers.png

Column 1 is the clean image; each further column is an attack's test-time trigger (the clean-label attack's
training images also carry its PGD perturbation, shown in its own column when the clean model is present).
"""
import argparse
import os

import torch

from attacks import ATTACKS, TABLE3, build_trigger
from attacks.cl import PGD_MODEL, PGD_STEPS, pgd, pgd_step_size
from data_loader import load_cifar10
from models import select_model
from utils.cli import HelpFormatter, run
from utils.figures import pyplot, save_figure

# Table 3's attacks (CL at test time: the grids alone), then the adaptive attack at two of Table 9's alphas.
ROWS = [(attack, None) for attack in TABLE3] + [('adaptive', 0.2), ('adaptive', 1.0)]


def column_title(attack, alpha):
    name = ATTACKS[attack].title
    if alpha is not None:  # the adaptive attack: its short name and the alpha
        return f"{name.split(' (')[0]} a={alpha}"
    return name + (' (test trigger)' if attack == 'cl' else '')


def get_arguments():
    p = argparse.ArgumentParser(prog='python -m attacks.show', description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--output', default='results/triggers.png')
    p.add_argument('--classes', type=int, nargs='*', default=[1, 2, 3, 7, 8],
                   help='show the first test image of each of these classes (not 0, the target)')
    p.add_argument('--pgd_model', default=PGD_MODEL, help="the cl attack's PGD model (as train_badnet.py's)")
    return p


def main():
    args = get_arguments().parse_args()
    cl = ATTACKS['cl']  # its PGD as train_badnet.py --attack cl runs it: the preset's eps, the default steps
    eps = cl.flags['pgd_eps']
    x, y = load_cifar10()['test']
    args.images = [int(torch.nonzero(y == c)[0]) for c in args.classes]
    clean = x[args.images]
    rows = [('clean', clean)]
    for attack, alpha in ROWS:
        rows.append((column_title(attack, alpha), build_trigger(ATTACKS[attack].trigger_type, alpha)(clean)))
    if os.path.isfile(args.pgd_model):  # what a CL poisoned training image looks like, with the cl attack's PGD
        model = select_model('WRN-16-1', 10, args.pgd_model)[0]
        adv = pgd(model, clean, y[args.images], eps, PGD_STEPS, pgd_step_size(eps, PGD_STEPS), torch.device('cpu'))
        after_cl = ROWS.index(('cl', None)) + 2  # after the clean column and CL's test trigger
        rows.insert(after_cl, (f"{ATTACKS['cl'].title} (poisoned train)", build_trigger(cl.trigger_type)(adv)))

    # One column per attack, one row per image.
    fig, axes = pyplot().subplots(len(args.images), len(rows), figsize=(1.05 * len(rows), 1.15 * len(args.images) + 0.5))
    for c, (title, batch) in enumerate(rows):
        for r in range(len(args.images)):
            ax = axes[r, c]
            ax.imshow(batch[r].permute(1, 2, 0).numpy(), interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title.replace(' (', '\n('), fontsize=7)
    fig.suptitle('CIFAR-10 test images and each attack\'s trigger', fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.output, dpi=110)
    print(f'wrote {args.output}')


if __name__ == '__main__':
    run(main)
