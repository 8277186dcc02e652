"""Checkpoints: every one carries its architecture, metrics and config, is written atomically
(utils.files) and is read without running code (safe_load)."""
import io
import os
import pickle
import re

import torch

from utils import UserError
from utils.files import atomic_write


def checkpoint_bytes(model, arch, num_classes, **info):
    """A checkpoint: the model's weights with `arch`, `num_classes` and any metrics/config in `info`."""
    buffer = io.BytesIO()
    torch.save({'state_dict': model.state_dict(), 'arch': arch, 'num_classes': num_classes, **info}, buffer)
    return buffer.getvalue()


def save_checkpoint(path, model, arch, num_classes, **info):
    atomic_write(path, checkpoint_bytes(model, arch, num_classes, **info))


def safe_load(path, what='checkpoint', trust=None, remedy=None):
    """torch.load for every checkpoint and artefact file: weights_only=True, so a file can hold tensors
    and plain containers but never run code while it loads (a pickle can call any function, and
    backdoored models come from strangers). `trust` (--trust_checkpoint) lifts that, for files the user
    vouches for; None: the calling script has no such flag. A missing, unreadable or refused file is one
    clear UserError, ending with `remedy` (default: what the calling script's flags allow)."""
    if os.path.isdir(path):
        raise UserError(f'{what} {path} is a directory, not a file')
    if not os.path.isfile(path):
        raise UserError(f'{what} not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=not trust)
    except pickle.UnpicklingError as e:
        if not trust and 'Weights only load failed' in str(e):
            wants = re.search(r'GLOBAL ([\w.]+)', str(e))
            remedy = remedy or ('Pass --trust_checkpoint only for a file you vouch for' if trust is False else
                                'This script has no --trust_checkpoint: keep only the weights of a file you vouch '
                                "for (torch.save({'state_dict': ...})), or use main.py or train_badnet.py, which have it")
            raise UserError(f'{what} {path} holds more than tensors and plain values (its pickle asks for '
                            f"{wants[1] if wants else 'an arbitrary object'}), so loading it could run code: refused. "
                            + remedy) from None
        raise UserError(f'{what} {path} is corrupt or not a PyTorch file (UnpicklingError)') from None
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is not a checkpoint
        raise UserError(f'{what} {path} is corrupt or not a PyTorch file ({type(e).__name__})') from None


def add_trust_checkpoint(group):
    """The flag that lifts safe_load's refusal, for the scripts that load checkpoints a user brings."""
    group.add_argument('--trust_checkpoint', action='store_true',
                       help='load checkpoints that hold more than tensors and plain values (weights_only=False), '
                            'which lets their pickle run code: only for files you vouch for. Off by default')


def load_checkpoint(path, trust=None):
    """Read a checkpoint dict (through safe_load), turning a missing or unreadable file into one clear error."""
    ckpt = safe_load(path, 'checkpoint', trust)
    if isinstance(ckpt, dict) and 'state_dict' not in ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        ckpt = {'state_dict': ckpt}  # a bare state dict
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('state_dict'), dict):
        raise UserError(f'checkpoint {path} holds no state_dict')
    bad = [k for k, v in ckpt['state_dict'].items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = f' and {len(bad) - 1} more' if len(bad) > 1 else ''
        raise UserError(f'checkpoint {path} has non-finite weights (NaN or inf in {bad[0]}{more}): refused')
    return ckpt
