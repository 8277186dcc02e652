"""Checkpoints and result files: written atomically (temp file, then rename), so an interrupted run
never leaves a half-written file; every checkpoint carries its architecture, metrics and config."""
import contextlib
import csv
import hashlib
import io
import json
import os
import pickle
import re
import socket
import tempfile

import torch

from utils import UserError


def atomic_write(path, write):
    """Write one file atomically; `write` is bytes or a function of the open binary file."""
    write_together([(path, write)])


def write_together(items):
    """Write several files as one unit: each to a temp file beside it, then all renamed into place in the
    given order (put the file that marks the unit as done, a run's JSON, last). An error, Ctrl-C or
    SIGTERM before the renames leaves none of them and no temp file; a kill between two renames leaves
    files whose recorded fingerprints disagree, which reproduce.py treats as a run not done. Temp files
    of killed processes are removed by the next write into the same folder."""
    temps = []
    try:
        for path, write in items:
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            remove_stale_temps(folder)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.tmp-{HOST}-{os.getpid()}-')
            temps.append(tmp)
            with os.fdopen(fd, 'wb') as f:
                f.write(write) if isinstance(write, bytes) else write(f)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        for tmp, (path, _) in zip(temps, items):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


# Temp files are named for their writer, so that a later write can tell a dead writer's from a live one's
# (only on this host: on a shared file system another node's process ids mean nothing here).
HOST = re.sub(r'[^A-Za-z0-9]', '', socket.gethostname()) or 'host'


def write_run(model_path, model, stem, rows, summary):
    """A finished run's files as one unit: the model (checkpoint bytes), <stem>.csv (rows) and <stem>.json
    (summary, with the sha256 of the other two), the JSON last: it marks the run as done."""
    table = csv_bytes(rows)
    summary = {**summary, 'checkpoint': model_path, 'checkpoint_sha256': sha256(model), 'csv_sha256': sha256(table)}
    write_together([(model_path, model), (stem + '.csv', table), (stem + '.json', json_bytes(summary))])


def remove_stale_temps(folder):
    """Delete `.tmp-<host>-<pid>-*` files of this host's processes that no longer run (a SIGKILL skips
    every cleanup)."""
    for name in os.listdir(folder):
        match = re.fullmatch(rf'\.tmp-{HOST}-(\d+)-.+', name)
        if match and not process_alive(int(match[1])):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def checkpoint_bytes(model, arch, num_classes, **info):
    """A checkpoint: the model's weights with `arch`, `num_classes` and any metrics/config in `info`."""
    buffer = io.BytesIO()
    torch.save({'state_dict': model.state_dict(), 'arch': arch, 'num_classes': num_classes, **info}, buffer)
    return buffer.getvalue()


def save_checkpoint(path, model, arch, num_classes, **info):
    atomic_write(path, checkpoint_bytes(model, arch, num_classes, **info))


def safe_load(path, what='checkpoint', trust=False):
    """torch.load for every checkpoint and artefact file: weights_only=True, so a file can hold tensors
    and plain containers but never run code while it loads (a pickle can call any function, and
    backdoored models come from strangers). `trust` (--trust_checkpoint) lifts that, for files the user
    vouches for. A missing, unreadable or refused file is one clear UserError."""
    if os.path.isdir(path):
        raise UserError(f'{what} {path} is a directory, not a file')
    if not os.path.isfile(path):
        raise UserError(f'{what} not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=not trust)
    except pickle.UnpicklingError as e:
        if not trust and 'Weights only load failed' in str(e):
            wants = re.search(r'GLOBAL ([\w.]+)', str(e))
            raise UserError(f'{what} {path} holds more than tensors and plain values (its pickle asks for '
                            f"{wants[1] if wants else 'an arbitrary object'}), so loading it could run code: refused. "
                            'Pass --trust_checkpoint only for a file you vouch for') from None
        raise UserError(f'{what} {path} is corrupt or not a PyTorch file (UnpicklingError)') from None
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is not a checkpoint
        raise UserError(f'{what} {path} is corrupt or not a PyTorch file ({type(e).__name__})') from None


def load_checkpoint(path, trust=False):
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


def json_bytes(obj):
    return (json.dumps(obj, indent=2, default=str) + '\n').encode()


def csv_bytes(rows):
    """A list of dicts as CSV; the columns are every key met, in order (missing cells empty)."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def write_json(path, obj):
    atomic_write(path, json_bytes(obj))


def write_csv(path, rows):
    atomic_write(path, csv_bytes(rows))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    """sha256 of a file's bytes (a checkpoint's or result's fingerprint), or None if it cannot be read."""
    try:
        with open(path, 'rb') as f:
            return hashlib.file_digest(f, 'sha256').hexdigest()
    except OSError:
        return None
