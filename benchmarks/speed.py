"""Speed on the current device, each figure beside the one it is compared with, medians of --repeats:
training (the model alone on synthetic tensors, then the real pipeline: uint8 CIFAR-10 on the device, crop +
flip + Cutout on whole batches, the shared loop); evaluation (the plain model, then the evaluator, which
in float32 evaluates a copy with batch norm folded into the convolutions); and the wall time of the default
`python main.py`, beside the original repository's main.py on the same machine when --original names a clone of it.
On CUDA in float32, training and main.py once more with each step replayed from a CUDA graph (--cuda_graphs on).
The `ceiling` lines say how near the device's own limit that is: the model's floating-point work per image (its
convolutions and linear layer, counted by torch.utils.flop_counter) at the measured rates, against a large matrix
product in the same precision, and the least time the default main.py's work could take at that rate. On the
CPU, Refool's trigger: the window means of its SSIM tests (avg_pool2d, then the code's), and the whole trigger.
And a grid's start-up per run: a new interpreter importing main.py's modules, then a run forked by the runner.

    python -m benchmarks.speed                       # everything (main.py: minutes on a 2-core CPU)
    python -m benchmarks.speed --skip-main           # throughput only (about a minute)
    git clone https://github.com/bboylyg/NAD /tmp/NAD-original
    python -m benchmarks.speed --original /tmp/NAD-original   # main.py against the original, alternating
"""
import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import config
from attacks import refool
from data_loader import BatchLoader, clean_subset, load_cifar10, subset_size
from models import build_model
from utils.cli import HelpFormatter, run
from utils.engine import CapturedStep, accuracy, cross_entropy_loss, train_epoch
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
    digits = 1 if min(a, b) >= 1 else 3
    print(f'{what:10s} {name_a}: {a:8.{digits}f} {unit} | {name_b}: {b:8.{digits}f} {unit} | x{faster:.2f}', flush=True)


def flops_per_image(model, device, train):
    """Floating-point operations per image of one forward pass (train=False) or forward and backward (True)."""
    x = torch.rand(8, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter:
        out = model(x)[-1]
        if train:
            out.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def matmul_flops(device, dtype, repeats, n=2048):
    """Operations a second of an n x n matrix product in `dtype` (float32 when None): near the device's peak."""
    a, b = (torch.rand(n, n, device=device, dtype=dtype or torch.float32) for _ in range(2))

    def product():
        a @ b
        if device.type == 'cuda':
            torch.cuda.synchronize()
    product()                                       # warm-up
    return 2 * n ** 3 / median_seconds(product, repeats)


def main_flops(test_labels, device):
    """The floating-point work of the default `python main.py` (NAD) on a test set with these labels: every
    epoch each subset image through the student forward and backward and the teacher forward; before training
    and after each measured epoch, the clean test set and its triggered non-target part forward."""
    defaults = config.parse(config.get_arguments(), [])
    student, teacher = (build_model(name).to(device, memory_format=torch.channels_last)
                        for name in (defaults.s_name, defaults.t_name))
    step = flops_per_image(student, device, True) + flops_per_image(teacher, device, False)   # an image trained
    measured = sum(1 for epoch in range(1, defaults.epochs + 1)          # as utils.engine.fit measures
                   if epoch == defaults.epochs or (defaults.eval_every and epoch % defaults.eval_every == 0))
    evaluated = len(test_labels) + int((test_labels != defaults.target_label).sum())
    trained = defaults.epochs * subset_size(50000, defaults.ratio)
    return trained * step + (1 + measured) * evaluated * flops_per_image(student, device, False)


def main_wall(command, device):
    """Seconds one run of `command` takes, its output discarded (it fails loudly if the run does)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def forked_start(repeats):
    """Median seconds of a run of `python -c 'import main'` through the runner's local launcher, from the call to
    the run's end, once its forkserver is up."""
    from experiments.runner import Run, local
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # its "$ python" lines
        run_ = Run('start-up', ['-c', 'import main'], '', os.path.join(tmp, 'start-up.log'))
        local([run_], 1, None)                      # starts the server
        return median_seconds(lambda: local([run_], 1, None), repeats)


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

    def epoch(batches, captured=None):
        train_epoch(model, batches, cross_entropy_loss, optimizer, device, dtype, desc='bench', captured=captured)
        sync()

    epoch(synthetic[:4])                            # warm-up
    synthetic_rate = n_train / median_seconds(lambda: epoch(synthetic), args.repeats)
    trained = n_train / median_seconds(lambda: epoch(real), args.repeats)      # images a second
    side_by_side('training', 'model on synthetic tensors', synthetic_rate, 'real pipeline', trained)
    graphs = device.type == 'cuda' and dtype is None  # main.py --cuda_graphs on: the same loop, steps replayed
    if graphs:                                      # last: a captured step owns the gradients from then on
        captured = CapturedStep(model, cross_entropy_loss)
        epoch(real, captured)                       # the capture, and its warm-up
        replayed = n_train / median_seconds(lambda: epoch(real, captured), args.repeats)
        side_by_side('training', 'real pipeline', trained, 'steps replayed from a CUDA graph', replayed)

    test = BatchLoader(*data['test'], 500, device)  # main.py's --eval_batch_size
    for fold in (False, True):                      # warm-up
        accuracy(model, test, device, dtype, fold=fold)
    plain, folded = (median_seconds(lambda: (accuracy(model, test, device, dtype, fold=fold), sync()), args.repeats)
                     for fold in (False, True))
    side_by_side('evaluation', 'plain model', 10000 / plain, 'evaluator (BN folded in float32)', 10000 / folded)

    train, forward = flops_per_image(model, device, True), flops_per_image(model, device, False)
    peak, work = matmul_flops(device, dtype, args.repeats), main_flops(data['test'][1], device)
    training, evaluation = train * trained, forward * 10000 / folded          # operations a second
    print(f'ceiling    {dtype or "float32"} matrix product: {peak / 1e9:.0f} GFLOP/s | training '
          f'({train / 1e6:.0f} MFLOP an image) {training / 1e9:.0f} GFLOP/s, {training / peak:.0%} of it | evaluator '
          f'({forward / 1e6:.0f} MFLOP) {evaluation / 1e9:.0f} GFLOP/s, {evaluation / peak:.0%}', flush=True)
    print(f'ceiling    python main.py: {work / 1e12:.1f} TFLOP, at least {work / peak:.0f} s at the matrix '
          f'product\'s rate', flush=True)

    # Refool's trigger (on the CPU, made once a run): its SSIM tests' window means, then the whole trigger
    images = data['test'][0][:1000]
    t = images.float() / 255
    moments = torch.cat([t, t.flip(3), t * t, t.flip(3) ** 2, t * t.flip(3)], 1)     # as refool.ssim stacks them
    means = (lambda m: F.avg_pool2d(m, 7, stride=1), lambda m: refool.window_mean(m, 7))
    for f in means:                                 # warm-up
        f(moments[:16])
    pooled, shifted = (median_seconds(lambda: f(moments), args.repeats) for f in means)
    side_by_side('ssim', 'avg_pool2d window means', 1000 / pooled, 'refool.window_mean (the same bits)', 1000 / shifted)
    pool = refool.candidates()
    print(f'trigger    Refool, reflections and SSIM tests: '
          f'{1000 / median_seconds(lambda: refool.refool_trigger(images, pool), args.repeats):.1f} img/s', flush=True)

    # A grid's cost per run before its first line: a new interpreter importing main.py's modules (each Slurm task),
    # against the runner's local launcher, which forks each run from a server that imported them once
    fresh = median_seconds(lambda: subprocess.run([sys.executable, '-c', 'import main'], cwd=ROOT, check=True),
                           args.repeats)
    side_by_side('start-up', 'a new interpreter (import main)', fresh, 'a run forked by the runner',
                 forked_start(args.repeats), unit='s')

    if args.skip_main:
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours = [sys.executable, 'main.py', '--device', args.device, '--amp', args.amp,
                '--checkpoint_root', tmp, '--log_root', tmp]
        original = [sys.executable, '-m', 'benchmarks.original', os.path.abspath(args.original or '.'), '--epochs', '10']
        walls = {'ours': [], 'original': [], 'graphs': []}
        for _ in range(args.main_repeats):          # alternating, so both see the same machine
            walls['ours'].append(main_wall(ours, device))
            if args.original:
                walls['original'].append(main_wall(original, device))
            if graphs:
                walls['graphs'].append(main_wall(ours + ['--cuda_graphs', 'on'], device))
    label = 'python main.py (10 epochs, 5% data, evaluation every epoch)'
    if args.original:
        side_by_side('wall', "the original's main.py (--epochs 10)", statistics.median(walls['original']),
                     label, statistics.median(walls['ours']), unit='s')
    else:
        print(f'wall       {label}: {statistics.median(walls["ours"]):.1f} s', flush=True)
    if graphs:
        side_by_side('wall', 'python main.py', statistics.median(walls['ours']), 'python main.py --cuda_graphs on',
                     statistics.median(walls['graphs']), unit='s')


if __name__ == '__main__':
    run(main)
