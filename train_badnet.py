"""Train a backdoored WRN from scratch on a poisoned training set (BadNets-style data poisoning).

    python train_badnet.py                      # WRN-16-1, gridTrigger, all2one, target 5, 10% poisoned
    python train_badnet.py --attack blend           # a named attack of the paper (target 0), saved in the zoo
    python train_badnet.py --attack clean           # no poisoning: the clean model (Trojan and Table 2 need it)
    python train_badnet.py --attack clean --adv_eps 0.0314 --epochs 5 --output robust.pth.tar
                                                    # a robust clean model (for --attack cl --pgd_model robust.pth.tar)
    python train_badnet.py --trigger_type signalTrigger --target_type cleanLabel --target_label 0

    python train_badnet.py --attack badnets --recipe authors   # the original repository's recipe

Standard augmentation (random crop with padding 4, horizontal flip) is on by default; --no-augment
trains as the original code did. The schedule is SGD with a linear warm-up and linear decay to 0
(--lr_schedule constant: the original's constant lr).
Prints one line per epoch; at the end saves the model with its ACC, ASR, RA and full config, and the
per-epoch CSV and JSON summary, as one unit.
"""
import os

import torch

import config
from attacks import trigger_for
from data_loader import BatchLoader, DatasetBD, dataset_for, test_loaders
from models import build_model, select_model
from utils.checkpoint import checkpoint_bytes
from utils.files import write_run
from utils.cli import Timer, plural, run
from utils.engine import cross_entropy_loss, evaluate, fit, warmup_linear
from utils.runtime import cuda_graphs, generator, setup


def default_output(args):
    """Under the git-ignored runs/weights/: the zoo's files are replaced only by the commands of `python -m zoo.make`."""
    name = args.attack if args.attack else f'{args.trigger_type}-{args.target_type}-{args.target_label}'
    part = f'-train{args.train_limit}' if args.train_limit else ''  # a smoke run keeps off the full run's files
    return os.path.join('runs', 'weights', f'{args.s_name}-{name}{part}.pth.tar')


def run_name(args):
    return os.path.splitext(os.path.basename(args.output))[0].removesuffix('.pth')


def poisoned_training_set(args, x, y, trigger, device, amp_dtype):
    """(images, labels, poisoned indices) to train on: the named attack's or the flags' poisoning."""
    if args.attack == 'clean':
        print('clean model: no poisoning', flush=True)
        return x, y, torch.zeros(0, dtype=torch.long)
    perturb = None
    if args.pgd_eps > 0:  # clean-label (the 'cl' preset): make the poisoned images hard to learn without the trigger
        from attacks.cl import pgd_perturbation
        perturb = pgd_perturbation(args, device, amp_dtype)
    poisoned = DatasetBD(x, y, trigger, args.target_type, args.target_label, args.inject_portion,
                         mode='train', seed=args.seed, num_classes=args.num_classes, perturb=perturb)
    print(f'poisoned {len(poisoned.poison_idx)} of {len(poisoned)} training images '
          f'({args.trigger_type}, {args.target_type}, target {args.target_label})', flush=True)
    return poisoned.x, poisoned.y, poisoned.poison_idx


def main():
    args = config.parse(config.get_badnet_arguments())
    args.output = args.output or default_output(args)
    log = os.path.join(args.log_root, f'badnet_{run_name(args)}')
    config.check_paths(args, [('output', args.output), ('log_root', log + '.csv'), ('log_root', log + '.json')])
    # A bad --init checkpoint fails here, before the data are loaded.
    model = select_model(args.s_name, args.num_classes, args.init, args.trust_checkpoint)[0] if args.init else None
    device, amp_dtype = setup(args)
    data = dataset_for(args)
    if model is None:  # random weights, drawn after setup() has seeded everything
        model = build_model(args.s_name, args.num_classes)
    model = model.to(device, memory_format=torch.channels_last)
    trigger = trigger_for(args)
    x, y = (t[:args.train_limit] for t in data['train'])  # [:None] is all of it
    x, y, poison_idx = poisoned_training_set(args, x, y, trigger, device, amp_dtype)
    # Shuffled batches drop the last partial one; served in order (--no-shuffle), every image is seen.
    train_loader = BatchLoader(x, y, args.batch_size, device, shuffle=args.shuffle, drop_last=args.shuffle,
                               crop=4 if args.augment else 0, flip=args.augment,
                               cutout_length=args.cutout_length, seed=args.seed)
    clean_loader, backdoor_loader = test_loaders(args, data, device, trigger)

    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay, nesterov=args.nesterov)

    lr_at = warmup_linear(args.lr, args.warmup_epochs, args.epochs)
    if args.lr_schedule == 'constant':  # the original's: --lr throughout
        lr_at = lambda t: args.lr  # noqa: E731
    loss_fn = cross_entropy_loss
    if args.adv_eps:  # a robust model (the clean-label attack's PGD model), by fast adversarial training
        from attacks.cl import fgsm_adversarial_loss
        loss_fn = fgsm_adversarial_loss(args.adv_eps, generator(args.seed, 'adversarial', device))
        print(f'adversarial training: FGSM with random start, eps {args.adv_eps:.4f}', flush=True)
    total = Timer()
    graphs = cuda_graphs(args, device, amp_dtype, capturable=not args.adv_eps)  # FGSM draws on its own generator
    rows = fit(model, train_loader, loss_fn, optimizer, args.epochs, lr_at, device, amp_dtype, cuda_graphs=graphs,
               measure=lambda dtype: evaluate(model, clean_loader, backdoor_loader, device, dtype))[0]

    # The model, its per-epoch CSV and JSON summary are written once, at the end, as one unit: an
    # interrupted or diverged run leaves nothing that could pass for a finished model.
    name = run_name(args)
    model_bytes = checkpoint_bytes(model, args.s_name, args.num_classes, epoch=args.epochs, acc=rows[-1]['acc'],
                                   asr=rows[-1]['asr'], ra=rows[-1]['ra'], config=vars(args),
                                   poison_idx=poison_idx.tolist(), train_seconds=total(), device=str(device),
                                   eval_precision='float32')
    write_run(args.output, model_bytes, os.path.join(args.log_root, f'badnet_{name}'), rows,
              {'config': vars(args), 'final': rows[-1], 'seconds': total()})
    part = '' if args.test_limit is None else f' (on the first {args.test_limit} test images)'
    print(f"saved {args.output}: ACC {rows[-1]['acc']:.2f} ASR {rows[-1]['asr']:.2f}{part} "
          f'after {plural(args.epochs, "epoch")} in {total():.0f}s', flush=True)


if __name__ == '__main__':
    run(main)
