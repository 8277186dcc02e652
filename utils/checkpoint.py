"""Checkpoints and result files: written atomically (temp file, then rename), so an interrupted run
never leaves a half-written file; every checkpoint carries its architecture, metrics and config."""
import csv
import json
import os
import tempfile

import torch

from utils import UserError


def atomic_write(path, write):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.tmp-')
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_checkpoint(path, model, arch, num_classes, **info):
    """Save the model's weights with `arch`, `num_classes` and any metrics/config passed in `info`."""
    state = {'state_dict': model.state_dict(), 'arch': arch, 'num_classes': num_classes, **info}
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path):
    """Read a checkpoint dict, turning a missing or unreadable file into one clear error."""
    if not os.path.isfile(path):
        raise UserError(f'checkpoint not found: {path}')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is not a checkpoint
        raise UserError(f'checkpoint {path} is corrupt or not a PyTorch checkpoint ({type(e).__name__})') from e
    if isinstance(ckpt, dict) and 'state_dict' not in ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        ckpt = {'state_dict': ckpt}  # a bare state dict
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('state_dict'), dict):
        raise UserError(f'checkpoint {path} holds no state_dict')
    return ckpt


def write_json(path, obj):
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2, default=str) + '\n').encode()))


def write_csv(path, rows):
    """Write a list of dicts as CSV; the columns are every key met, in order (missing cells empty)."""
    fields = list(dict.fromkeys(key for row in rows for key in row))

    def write(f):
        import io
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        f.write(text.getvalue().encode())
    atomic_write(path, write)
