"""Reverse-engineer the Trojan attack's trigger from a clean model (TrojanNN, Liu et al. 2018).

    python make_trojan_trigger.py            # against weight/clean/WRN-16-1-clean.pth.tar

Picks the penultimate neuron most strongly connected to the last fully connected layer, optimises the
3x3 patch at rows/cols 25..27 to drive it high on clean training images, and saves the patch with how
it was made to triggers/trojan_WRN-16-1.pt, where the trigger 'trojanNNTrigger' (attack 'trojan') reads it.
"""
import sys

import torch

import attacks
import config
from data_loader import DATA_ROOT, load_dataset
from models import select_model
from utils.checkpoint import atomic_write
from utils.cli import run
from utils.runtime import generator, seed_everything


def main():
    parser = config.get_trojan_arguments()
    args = config.check_finite(parser, parser.parse_args())
    config.output_file(args.output, '--output', args)
    seed_everything(args.seed)
    model, ckpt = select_model(args.s_name, args.num_classes, args.model, args.trust_checkpoint)
    x, _ = load_dataset(args.dataset, args.data_root or DATA_ROOT)[0]['train']
    pick = torch.randperm(len(x), generator=generator(args.seed, 'trojan'))[:args.images]
    patch, info = attacks.reverse_engineer_trojan(model, x[pick], args.steps, args.lr, args.neuron)
    print(f"neuron {info['neuron']}: mean activation {info['activation_clean']:.3f} on clean images, "
          f"{info['activation_with_patch']:.3f} with the patch (all neurons' mean {info['mean_activation_of_all_neurons']:.3f})")
    print('patch (int16, added at rows/cols 25..27, then clipped):', patch.tolist())
    record = {'patch': patch, **info, 'source_model': args.model, 'source_acc': ckpt.get('acc'),
              'config': vars(args), 'command': 'python ' + ' '.join(sys.argv)}
    atomic_write(args.output, lambda f: torch.save(record, f))
    print(f'saved {args.output}')


if __name__ == '__main__':
    run(main)
