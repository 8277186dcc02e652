"""Device, precision and seeding: one place decides where and how fast things run."""
import contextlib
import os
import random
import zlib

import numpy as np
import torch

from utils import UserError


def resolve_device(name='auto'):
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from e
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was asked for but CUDA is not available (use --device cpu)")
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True     # fixed input shapes: let cuDNN pick its fastest kernels
        torch.backends.cudnn.allow_tf32 = False   # float32 means float32 (training runs under autocast anyway),
        torch.backends.cuda.matmul.allow_tf32 = False  # so float32 evaluations match the CPU's
    return device


def cpu_has_fast_bf16():
    # bfloat16 autocast pays on CPUs with AMX or AVX512-BF16 (about 2x training, 3x inference);
    # on AVX2-only CPUs it is emulated and over ten times slower than float32.
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def autocast_dtype(device, amp='auto'):
    """The autocast dtype for this device, or None for plain float32. On CUDA, auto is float32: for these
    small WRNs a GPU is launch-bound, not compute-bound, and the default run measured 14.2 s wall in float32
    against 15.6-16.4 s under bfloat16 autocast on an H200 (issue 35); --amp on gives autocast there."""
    if amp == 'off' or (device.type == 'cuda' and amp == 'auto'):
        return None
    if device.type == 'cuda':
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == 'cpu' and (amp == 'on' or cpu_has_fast_bf16()):
        return torch.bfloat16
    return None


def cuda_graphs(args, device, amp_dtype, capturable):
    """Whether the training steps run from a CUDA graph (utils.engine.CapturedStep): only if asked
    (--cuda_graphs on), on CUDA, in float32 and for a loss that may be captured; otherwise, if asked, one
    line says why not. args.cuda_graphs is set to what runs, so the run's record says that, not what was asked."""
    if args.cuda_graphs != 'on':
        return False
    why = ('not on CUDA' if device.type != 'cuda' else 'autocast is on' if amp_dtype is not None
           else 'this loss cannot be captured' if not capturable else None)
    if why:
        print(f'cuda graphs: off ({why})', flush=True)
        args.cuda_graphs = 'off'
    return why is None


def autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ['PYTHONHASHSEED'] = str(seed)


def generator(seed, purpose, device='cpu'):
    """A torch.Generator for one purpose. Mixing the purpose into the seed keeps streams independent:
    with one seed for everything, the loader's first shuffle equals the poisoning permutation, and
    every poisoned image lands in the first batches."""
    return torch.Generator(device=device).manual_seed(zlib.crc32(f'{purpose}:{seed}'.encode()))


def setup(args):
    """Seed everything (--seed), pick the device and the autocast precision, and say so. Returns
    (device, amp_dtype)."""
    seed_everything(args.seed)
    device = resolve_device(args.device)
    amp_dtype = autocast_dtype(device, args.amp)
    print(f'device {device}, precision {amp_dtype or "float32"}, seed {args.seed}', flush=True)
    return device, amp_dtype
