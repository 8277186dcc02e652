"""The one training loop and the one evaluator, shared by every script."""
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from utils.runtime import autocast


def cross_entropy_loss(model, x, y):
    """Plain supervised loss: the backdoor training and fine-tuning objective."""
    return F.cross_entropy(model(x)[-1], y)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group['lr'] = lr


def train_epoch(model, loader, loss_fn, optimizer, device, amp_dtype=None, desc='train', lr_at=None):
    """One pass over `loader`, minimising loss_fn(model, x, y). Returns the mean loss.

    `lr_at(fraction)` optionally sets a per-step learning rate, fraction in [0, 1) of the epoch."""
    model.train()
    # float16 (CUDA without bfloat16) needs loss scaling; bfloat16 and float32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    # The running loss stays on the device and is read back only every 50 steps: a read per step would
    # make the host wait for the GPU after every batch instead of queueing the next one.
    total, count = torch.zeros((), device=device), 0
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0)
    for step, (x, y) in enumerate(bar):
        if lr_at is not None:
            set_lr(optimizer, lr_at(step / len(loader)))
        with autocast(device, amp_dtype):
            loss = loss_fn(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.detach().float() * len(y)
        count += len(y)
        if step % 50 == 0:
            bar.set_postfix(loss=f'{total.item() / count:.4f}', refresh=False)
    return total.item() / max(count, 1)


@torch.inference_mode()
def accuracy(model, loader, device, amp_dtype=None):
    """Top-1 accuracy in percent of `model` on `loader`."""
    model.eval()
    correct, count = 0, 0
    for x, y in loader:
        with autocast(device, amp_dtype):
            logits = model(x)[-1]
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    return 100.0 * correct / max(count, 1)


def evaluate(model, clean_loader, backdoor_loader, device, amp_dtype=None):
    """ACC on the clean test set and ASR on the triggered non-target test set, both in percent."""
    start = time.perf_counter()
    acc = accuracy(model, clean_loader, device, amp_dtype)
    asr = accuracy(model, backdoor_loader, device, amp_dtype)
    return {'acc': acc, 'asr': asr, 'eval_seconds': time.perf_counter() - start}
