"""Speed on the current device, each figure beside the one it is compared with, medians of --repeats:
training (the model alone on synthetic tensors, then the real pipeline: uint8 CIFAR-10 on the device, crop +
flip + Cutout on whole batches, the shared loop); evaluation (the plain model, then the evaluator, which
in float32 evaluates a copy with batch norm folded into the convolutions); and the wall time of the default
`python main.py`, beside the original repository's main.py on the same machine when --original names a clone of it.

    python -m benchmarks.speed                       # everything (main.py: minutes on a 2-core CPU)
    python -m benchmarks.speed --skip-main           # throughput only (about a minute)
    git clone https://github.com/bboylyg/NAD /tmp/NAD-original
    python -m benchmarks.speed --original /tmp/NAD-original   # main.py against the original, alternating
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from data_loader import BatchLoader, clean_subset, load_cifar10
from models import build_model
from utils.cli import HelpFormatter, run
from utils.engine import accuracy, cross_entropy_loss, train_epoch
from utils.paths import ROOT
from utils.runtime import autocast_dtype, resolve_device


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def side_by_side(what, name_a, a, name_b, b, unit='img/s'):
    """One line: two rates (or times) and how many times faster the second is."""
    faster = b / a if unit == 'img/s' else a / b
    print(f'{what:10s} {name_a}: {a:8.1f} {unit} | {name_b}: {b:8.1f} {unit} | x{faster:.2f}', flush=True)


def main_wall(command, device):
    """Seconds one run of `command` takes, its output discarded (it fails loudly if the run does)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(prog='python -m benchmarks.speed', description=__doc__, formatter_class=HelpFormatter)
    p.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    p.add_argument('--amp', default='auto', choices=['auto', 'on', 'off'])
    p.add_argument('--model', default='WRN-16-1')
    p.add_argument('--batch_size', type=int, default=64, help="training batch (main.py's)")
    p.add_argument('--repeats', type=int, default=3, help='repeats of each throughput figure')
    p.add_argument('--main_repeats', type=int, default=1, help='runs of each main.py (alternating with --original)')
    p.add_argument('--skip-main', action='store_true', help='throughput only')
    p.add_argument('--original', metavar='DIR', help='a clone of github.com/bboylyg/NAD to time beside main.py')
    args = p.parse_args()
    device = resolve_device(args.device)
    dtype = autocast_dtype(device, args.amp)
    torch.manual_seed(0)
    print(f'device {device} ({torch.get_num_threads()} threads), precision {dtype or "float32"}, {args.model}, '
          f'medians of {args.repeats}')

    model = build_model(args.model).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n_train = 2560                                  # about one epoch of NAD's 5% clean subset
    synthetic = [(torch.rand(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last),
                  torch.randint(0, 10, (args.batch_size,), device=device)) for _ in range(n_train // args.batch_size)]
    data = load_cifar10()
    x, y = clean_subset(*data['train'], n_train / 50000)
    real = BatchLoader(x, y, args.batch_size, device, shuffle=True, crop=4, flip=True, cutout_length=9)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    def epoch(batches):
        train_epoch(model, batches, cross_entropy_loss, optimizer, device, dtype, desc='bench')
        sync()

    epoch(synthetic[:4])                            # warm-up
    side_by_side('training', 'model on synthetic tensors', n_train / median_seconds(lambda: epoch(synthetic), args.repeats),
                 'real pipeline', n_train / median_seconds(lambda: epoch(real), args.repeats))

    test = BatchLoader(*data['test'], 500, device)  # main.py's --eval_batch_size
    for fold in (False, True):                      # warm-up
        accuracy(model, test, device, dtype, fold=fold)
    plain, folded = (median_seconds(lambda: (accuracy(model, test, device, dtype, fold=fold), sync()), args.repeats)
                     for fold in (False, True))
    side_by_side('evaluation', 'plain model', 10000 / plain, 'evaluator (BN folded in float32)', 10000 / folded)

    if args.skip_main:
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours = [sys.executable, 'main.py', '--device', args.device, '--amp', args.amp,
                '--checkpoint_root', tmp, '--log_root', tmp]
        original = [sys.executable, '-m', 'benchmarks.original', os.path.abspath(args.original or '.'), '--epochs', '10']
        walls = {'ours': [], 'original': []}
        for _ in range(args.main_repeats):          # alternating, so both see the same machine
            walls['ours'].append(main_wall(ours, device))
            if args.original:
                walls['original'].append(main_wall(original, device))
    label = 'python main.py (10 epochs, 5% data, evaluation every epoch)'
    if args.original:
        side_by_side('wall', "the original's main.py (--epochs 10)", statistics.median(walls['original']),
                     label, statistics.median(walls['ours']), unit='s')
    else:
        print(f'wall       {label}: {statistics.median(walls["ours"]):.1f} s', flush=True)


if __name__ == '__main__':
    run(main)
