"""Model zoo: WRN-d-k by name, optionally loaded from a checkpoint."""
import re

from models.wresnet import WideResNet
from utils import UserError
from utils.checkpoint import load_checkpoint

ARCHS = ('WRN-10-2', 'WRN-16-1', 'WRN-16-2', 'WRN-40-1', 'WRN-40-2')


def build_model(name, num_classes=10):
    match = re.fullmatch(r'WRN-(\d+)-(\d+)', name)
    if not match or (int(match[1]) - 4) % 6:
        raise UserError(f"unknown model '{name}' (use WRN-<depth>-<width> with depth 6n+4, e.g. {', '.join(ARCHS)})")
    return WideResNet(depth=int(match[1]), num_classes=num_classes, widen_factor=int(match[2]))


def select_model(name, num_classes=10, checkpoint=None, trust=None):
    """Build WRN `name`; with `checkpoint`, load its weights, refusing another architecture or class count,
    non-finite weights, and (unless `trust`) a file that would run code as it loads (`trust` None: the
    calling script has no --trust_checkpoint, which the refusal then does not suggest).

    Returns (model, checkpoint dict or None)."""
    model = build_model(name, num_classes)
    if checkpoint is None:
        return model, None
    ckpt = load_checkpoint(checkpoint, trust)
    arch, classes = ckpt.get('arch', name), ckpt.get('num_classes', num_classes)
    if arch != name or classes != num_classes:
        raise UserError(f'checkpoint {checkpoint} holds a {arch} with {classes} classes, '
                        f'but a {name} with {num_classes} classes was asked for')
    state = {k.removeprefix('module.'): v for k, v in ckpt['state_dict'].items()}  # DataParallel saves
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f'checkpoint {checkpoint} does not fit a {name} with {num_classes} classes '
                        f'(another architecture or class count)') from e
    return model, ckpt
