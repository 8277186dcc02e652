"""Run the original NAD repository's main.py (github.com/bboylyg/NAD) on this machine, unchanged, for a
side-by-side timing: its CUDA calls become no-ops on a CPU, its torchvision CIFAR-10 is served from this
repository's cached copy (the same pixels, no download), and its checkpoints load as they did under the
torch of 2020. Its own defaults (lr 0.1, Nesterov, Cutout 3, evaluation before and after every epoch on
9,000 clean and 9,000 triggered images) but --epochs, which the caller sets (10 to match main.py).

    git clone https://github.com/bboylyg/NAD /tmp/NAD-original
    python -m benchmarks.original /tmp/NAD-original --epochs 10
"""
import csv
import os
import runpy
import sys
import types

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cached_cifar10():
    """This repository's CIFAR-10 as NHWC numpy arrays (as torchvision keeps it); then this repository's
    modules are forgotten, since the original has modules of the same names (models, utils, config, at)."""
    from data_loader import load_cifar10
    data = {split: (x.permute(0, 2, 3, 1).numpy(), y.tolist()) for split, (x, y) in load_cifar10().items()}
    for name, module in list(sys.modules.items()):
        if (getattr(module, '__file__', None) or '').startswith(REPO + os.sep):
            del sys.modules[name]
    return data


class CachedCIFAR10(Dataset):
    """torchvision.datasets.CIFAR10's interface (PIL images, int labels) over data/cifar10_uint8.npz."""
    DATA = None

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False):
        self.data, self.targets = self.DATA['train' if train else 'test']
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        image, label = Image.fromarray(self.data[i]), self.targets[i]
        image = self.transform(image) if self.transform else image
        return image, self.target_transform(label) if self.target_transform else label


class DataFrame:
    """The one pandas call the original makes (DataFrame(rows, columns).to_csv(path, mode='a')): pandas
    is not among this repository's requirements, so it is stood in for when it is not installed."""

    def __init__(self, rows, columns):
        self.rows, self.columns = rows, columns

    def to_csv(self, path, mode='w', index=False, encoding='utf-8'):
        with open(path, mode, encoding=encoding, newline='') as f:
            csv.writer(f).writerows([self.columns, *self.rows])


def accuracy(output, target, topk=(1,)):
    """The original's utils.util.accuracy with .reshape for .view, which torch >= 1.13 refuses there."""
    _, pred = output.topk(max(topk), 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0).mul_(100.0 / target.size(0)) for k in topk]


def main():
    if len(sys.argv) < 2 or not os.path.isfile(os.path.join(sys.argv[1], 'main.py')):
        sys.exit(__doc__.strip().splitlines()[-2].strip() + '\nerror: give the folder of a clone of the original repository')
    folder, flags = os.path.abspath(sys.argv[1]), sys.argv[2:]
    CachedCIFAR10.DATA = cached_cifar10()
    try:
        import pandas  # noqa: F401
    except ImportError:
        sys.modules['pandas'] = types.SimpleNamespace(DataFrame=DataFrame)
    torchvision.datasets.CIFAR10 = CachedCIFAR10
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self
        torch.nn.Module.cuda = lambda self, *a, **k: self
        flags = ['--cuda', '0', '--device', 'cpu', *flags]
    load = torch.load
    torch.load = lambda *a, **k: load(*a, **{**k, 'weights_only': False})  # its 2020 checkpoints hold numpy scalars
    np.random.seed(0)
    os.chdir(folder)
    sys.path[:] = [folder] + [p for p in sys.path if os.path.abspath(p or '.') != REPO]
    import utils.util  # the original's, from its folder
    utils.util.accuracy = accuracy
    sys.argv = [os.path.join(folder, 'main.py'), *flags]
    runpy.run_path('main.py', run_name='__main__')


if __name__ == '__main__':
    main()
