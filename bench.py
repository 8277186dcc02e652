"""Speed on the current device: the model's own compute rate on synthetic tensors, the real pipeline
(uint8 data on the device, batch augmentation, the shared training loop and evaluator) beside it, and
the wall time of the default `python main.py`. Figures are medians of --repeats runs, side by side.

    python bench.py                  # everything (the main.py run takes a few minutes on a 2-core CPU)
    python bench.py --skip-main      # throughput only
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from data_loader import BatchLoader, clean_subset, load_cifar10
from models import build_model
from utils.cli import run
from utils.engine import accuracy, cross_entropy_loss, train_epoch
from utils.runtime import autocast_dtype, resolve_device


def median_rate(fn, images, repeats):
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='auto')
    p.add_argument('--amp', default='auto', choices=['auto', 'on', 'off'])
    p.add_argument('--model', default='WRN-16-1')
    p.add_argument('--batch_size', type=int, default=64, help='training batch (main.py uses 64)')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--skip-main', action='store_true')
    args = p.parse_args()
    device = resolve_device(args.device)
    dtype = autocast_dtype(device, args.amp)
    torch.manual_seed(0)
    print(f'device {device} ({torch.get_num_threads()} threads), precision {dtype or "float32"}, {args.model}')

    model = build_model(args.model).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n_train = 2560                                  # about one epoch of NAD's 5% clean subset
    steps = n_train // args.batch_size
    synthetic = [(torch.rand(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last),
                  torch.randint(0, 10, (args.batch_size,), device=device)) for _ in range(steps)]
    data = load_cifar10()
    x, y = clean_subset(*data['train'], n_train / 50000)
    real = BatchLoader(x, y, args.batch_size, device, shuffle=True, crop=4, flip=True, cutout_length=9)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    def run_epoch(batches):
        train_epoch(model, batches, cross_entropy_loss, optimizer, device, dtype, desc='bench')
        sync()

    run_epoch(synthetic[:4])                        # warm-up
    compute = median_rate(lambda: run_epoch(synthetic), n_train, args.repeats)
    pipeline = median_rate(lambda: run_epoch(real), n_train, args.repeats)
    print(f'training   model compute (synthetic tensors): {compute:8.0f} img/s')
    print(f'training   real pipeline (CIFAR-10, crop+flip+cutout on device): {pipeline:8.0f} img/s '
          f'-> pipeline overhead x{compute / pipeline:.2f}')

    xt, yt = data['test']
    test = BatchLoader(xt, yt, 1000, device)
    synthetic_test = [(torch.rand(1000, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last),
                       torch.zeros(1000, dtype=torch.long, device=device)) for _ in range(10)]
    accuracy(model, synthetic_test[:1], device, dtype)
    inf_compute = median_rate(lambda: (accuracy(model, synthetic_test, device, dtype), sync()), 10000, args.repeats)
    inf_real = median_rate(lambda: (accuracy(model, test, device, dtype), sync()), 10000, args.repeats)
    print(f'inference  model compute (synthetic tensors): {inf_compute:8.0f} img/s')
    print(f'inference  real evaluator (CIFAR-10 test set): {inf_real:8.0f} img/s -> overhead x{inf_compute / inf_real:.2f}')

    if not args.skip_main:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, 'main.py', '--device', args.device, '--amp', args.amp,
                            '--checkpoint_root', tmp, '--log_root', tmp], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f'python main.py (defaults: 10 epochs, 5% data, evaluation every epoch): '
                  f'{time.perf_counter() - start:.1f} s wall')


if __name__ == '__main__':
    run(main)
