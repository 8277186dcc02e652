"""The one training loop and the one evaluator, shared by every script."""
import copy
import math
import time
import warnings

import torch
import torch.nn.functional as F
from tqdm import tqdm

from utils import UserError
from utils.cli import Timer, epoch_line, plural
from utils.runtime import autocast


def cross_entropy_loss(model, x, y):
    """Plain supervised loss: the backdoor training and fine-tuning objective."""
    return F.cross_entropy(model(x)[-1], y)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group['lr'] = lr


# --- Learning-rate schedules: lr_at(t), t the epochs trained so far (a float; the lr is set every step) ---

def step_schedule(lr, milestones, gamma):
    """lr times gamma for every milestone epoch reached (NAD's schedules: the protocols)."""
    return lambda t: lr * gamma ** sum(math.floor(t) >= m for m in milestones)


def warmup_linear(lr, warmup, epochs):
    """Linear warm-up to lr over `warmup` epochs, then linear decay to 0 at the end (backdoor training)."""
    return lambda t: lr * t / warmup if t < warmup else lr * (epochs - t) / (epochs - warmup)


def cosine_per_epoch(lr, epochs):
    """Cosine decay from lr, stepped once per epoch (MCR's curve training)."""
    return lambda t: lr * 0.5 * (1 + math.cos(math.pi * math.floor(t) / epochs))


# --- The one loop: epochs of train_epoch, measured, one line each, one epoch kept ------------------------

def fit(model, loader, loss_fn, optimizer, epochs, lr_at, device, amp_dtype=None, measure=None, every=1,
        keep='last', holdout=None, patience=None, first_epoch=1, desc='epoch', cuda_graphs=False):
    """Train `model` for `epochs` passes over `loader`, the lr set every step to lr_at(epochs so far), and
    print one line per epoch. `measure(amp_dtype)` -> {'acc', 'asr', 'ra'} runs after every `every`-th
    epoch (0: none but the last) and after the last, the last in float32: it is what a run records, and
    bfloat16 inference moves a few test images across the decision boundary.
    Keep rules: 'last', the final epoch (all a defender without the trigger can do); 'holdout', the epoch
    with the best accuracy on the `holdout` loader, stopping after `patience` epochs without a better one;
    'oracle', the highest ACC - ASR, which peeks at the trigger (analysis only). A kept epoch other than
    the last is measured again in float32. `cuda_graphs`: each step's forward and backward replayed from a
    CUDA graph captured once for the run (CapturedStep; CUDA and float32 only, see utils.runtime.cuda_graphs).
    Returns (rows, the kept row, the kept state dict)."""
    assert not (cuda_graphs and amp_dtype is not None), 'a CUDA graph captures float32 steps only'
    rows, kept, kept_state, best_holdout, stale, last = [], None, None, -1.0, 0, False
    captured = CapturedStep(model, loss_fn) if cuda_graphs else None
    for i in range(epochs):
        timer, epoch, last = Timer(), first_epoch + i, i == epochs - 1
        loss = train_epoch(model, loader, loss_fn, optimizer, device, amp_dtype, desc=f'{desc} {epoch}',
                           lr_at=lambda f: lr_at(i + f), epoch=epoch, captured=captured)
        metrics = {'acc': None, 'asr': None, 'ra': None}
        if measure is not None and (last or (every and (i + 1) % every == 0)):
            metrics = measure(None if last else amp_dtype)
        lr = lr_at(i + 0.5)  # the lr of the epoch (its midpoint, where it changes every step)
        row = {'epoch': epoch, 'lr': lr, 'loss': loss, **{k: metrics[k] for k in ('acc', 'asr', 'ra')},
               'seconds': timer()}
        if holdout is not None:
            row['holdout_acc'] = accuracy(model, holdout, device, amp_dtype)
        rows.append(row)
        print(epoch_line(epoch, lr, loss, metrics, row['seconds']), flush=True)
        if keep == 'holdout':
            better = row['holdout_acc'] > best_holdout
            best_holdout, stale = (row['holdout_acc'], 0) if better else (best_holdout, stale + 1)
        else:
            better = keep == 'last' or kept is None or row['acc'] - row['asr'] > kept['acc'] - kept['asr']
        if better:
            kept, kept_state = row, copy.deepcopy(model.state_dict())
        if keep == 'holdout' and stale >= patience:
            print(f'early stop: no better held-out accuracy for {plural(patience, "epoch")}', flush=True)
            break
    if measure is not None and (kept is not rows[-1] or not last):  # an earlier epoch is kept: float32 too
        model.load_state_dict(kept_state)
        kept.update({k: v for k, v in measure(None).items() if k in ('acc', 'asr', 'ra')})
    return rows, kept, kept_state


def train_epoch(model, loader, loss_fn, optimizer, device, amp_dtype=None, desc='train', lr_at=None, epoch=None,
                captured=None):
    """One pass over `loader`, minimising loss_fn(model, x, y). Returns the mean loss. `captured`: a
    CapturedStep of this model and loss, which then runs each step's forward and backward.

    `lr_at(fraction)` optionally sets a per-step learning rate, fraction in [0, 1) of the epoch. A loss or
    weight that stops being finite ends the run with a UserError naming the epoch and step, before the
    caller saves anything: a diverged model is never written as a result."""
    model.train()
    # float16 (CUDA without bfloat16) needs loss scaling; bfloat16 and float32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    # The running loss and the first non-finite step stay on the device and are read back every
    # REPORT_EVERY steps: a read per step would make the host wait for the GPU after every batch.
    total, count = torch.zeros((), device=device), 0
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0)
    for step, (x, y) in enumerate(bar):
        if lr_at is not None:
            set_lr(optimizer, lr_at(step / len(loader)))
        if captured is not None:
            loss = captured(x, y)  # forward and backward; the gradients in the parameters' .grad
        else:
            with autocast(device, amp_dtype):
                loss = loss_fn(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss = loss.detach().float()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        total += loss * len(y)
        count += len(y)
        if step % REPORT_EVERY == 0 or step == len(loader) - 1:
            stop_if_not_finite(first_bad, epoch, len(loader))
            bar.set_postfix(loss=f'{total.item() / count:.4f}', refresh=False)
    if not all_finite(model):
        raise UserError(f'training diverged: a weight became NaN or infinite in epoch {epoch} (the loss stayed '
                        'finite); nothing was saved. Try a smaller --lr')
    return total.item() / max(count, 1)


REPORT_EVERY = 10


class CapturedStep:
    """A training step's forward and backward, loss_fn(model, x, y).backward(), captured once in a CUDA graph
    and replayed for every batch of the captured shape, the batch copied into the graph's inputs. WRN-16-1 at
    batch 64 is launch-bound on a GPU (about 8.5 ms a step on an H200, issue 35): a replay launches the step's
    hundreds of kernels as one. The optimizer step stays outside, eager, so the lr may change every step. A
    replay writes the gradients into the same tensors every time, so nothing else may set them to None; a
    batch of another shape (an epoch's last, partial batch) runs eagerly and copies its gradients into those
    tensors. The capture needs a few eager steps first (cuDNN picks its kernels on them): they run forward and
    backward for real on the first batch, but move no weight (no optimizer step), and batch norm's running
    statistics are put back after them. CUDA only, float32 only (no autocast or loss scaling inside)."""

    WARMUP_STEPS = 3

    def __init__(self, model, loss_fn):
        self.model, self.loss_fn, self.params = model, loss_fn, [p for p in model.parameters() if p.requires_grad]
        self.graph = self.x = self.y = self.loss = None  # made by capture(): the graph, its inputs and its loss

    def __call__(self, x, y):
        """The loss of the batch (x, y), its gradients left in the parameters' .grad."""
        with torch.cuda.device(x.device):  # streams and graphs belong to the current device: make it x's (cuda:N)
            if self.graph is None:
                self.capture(x, y)
            if x.shape != self.x.shape or y.shape != self.y.shape:
                return self.eager(x, y)
            self.x.copy_(x)
            self.y.copy_(y)
            self.graph.replay()
            return self.loss

    def capture(self, x, y):
        stream, saved = torch.cuda.Stream(), [b.clone() for b in self.model.buffers()]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up and capture on one stream, whose library handles then exist
            for _ in range(self.WARMUP_STEPS):
                self.model.zero_grad(set_to_none=True)
                self.loss_fn(self.model, x, y).backward()
        torch.cuda.current_stream().wait_stream(stream)
        with torch.no_grad():
            for buffer, value in zip(self.model.buffers(), saved):
                buffer.copy_(value)
        self.model.zero_grad(set_to_none=True)  # the capture makes the gradients anew, in the graph's own memory
        self.x, self.y, graph = x.clone(), y.clone(), torch.cuda.CUDAGraph()
        try:
            with warnings.catch_warnings():  # work sent to another stream leaves the graph empty: never replay that
                warnings.filterwarnings('error', message='.*CUDA Graph is empty')
                with torch.cuda.graph(graph, stream=stream):
                    self.loss = self.loss_fn(self.model, self.x, self.y)
                    self.loss.backward()
        except (RuntimeError, UserWarning) as e:  # an operation that cannot be captured (one that waits, say)
            while e.__context__ is not None:  # the capture's own end fails too: name the first failure
                e = e.__context__
            raise UserError(f'the training step could not be captured in a CUDA graph ({str(e).splitlines()[0]}); '
                            'run with --cuda_graphs off') from e
        self.graph = graph

    def eager(self, x, y):
        loss = self.loss_fn(self.model, x, y)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(self.params, grads):
                if p.grad is None:  # the captured step does not reach it either: the optimizer skips it
                    continue
                if g is None:
                    p.grad.zero_()
                else:
                    p.grad.copy_(g)
        return loss.detach()


def stop_if_not_finite(first_bad, epoch, steps):
    step = first_bad.item()
    if step >= 0:
        raise UserError(f'training diverged: the loss became NaN or infinite at epoch {epoch}, step {step + 1} of '
                        f'{steps}; nothing was saved. Try a smaller --lr (or check the model and data)')


def all_finite(model):
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([t.isfinite().all() for t in tensors]).all()) if tensors else True


def evaluation_model(model, amp_dtype=None):
    """What the evaluator runs, in eval mode: in float32, a WideResNet's copy with batch norm folded into its
    convolutions (the same outputs to 1e-6, faster). Not under autocast, where folding moves bfloat16 outputs
    by up to 4e-3, and what is picked on such measurements (an epoch, a pruning ratio) must not move; nor on a
    model with forward hooks, which the folded modules would lose: those run as they are."""
    model.eval()
    if amp_dtype is not None or not hasattr(model, 'inference_copy'):
        return model
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return model
    return model.inference_copy()


@torch.inference_mode()
def predictions(model, loader, device, amp_dtype=None, desc='eval', fold=True):
    """(top-1 predictions, labels) for every image of `loader`, in the order served, each as one tensor;
    through evaluation_model (`fold`) or the model itself (fold=False: the caller has made that choice)."""
    model = evaluation_model(model, amp_dtype) if fold else model.eval()
    preds, labels = [], []
    for x, y in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0):
        with autocast(device, amp_dtype):
            preds.append(model(x)[-1].argmax(1))
        labels.append(y)
    if not preds:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(preds), torch.cat(labels)


def percent(hits):
    return 100.0 * hits.sum().item() / max(len(hits), 1)


def accuracy(model, loader, device, amp_dtype=None, desc='eval', fold=True):
    """Top-1 accuracy in percent of `model` on `loader` (any iterable of (images, labels) batches)."""
    preds, labels = predictions(model, loader, device, amp_dtype, desc, fold)
    return percent(preds == labels)


def evaluate(model, clean_loader, backdoor_loader, device, amp_dtype=None):
    """ACC on the clean test set; ASR (classified as the attack's label) and RA (robust accuracy:
    classified as the true label, BackdoorBench's third metric) on the triggered non-target test set.
    All in percent; one pass over each set, each with a progress bar."""
    start = time.perf_counter()
    model = evaluation_model(model, amp_dtype)  # folded once for both sets
    acc = accuracy(model, clean_loader, device, amp_dtype, desc='eval clean', fold=False)
    preds, targets = predictions(model, backdoor_loader, device, amp_dtype, desc='eval triggered', fold=False)
    asr = percent(preds == targets)
    # RA lines the predictions up with the set's labels before poisoning: the set must be served in order
    assert backdoor_loader.true_y is None or not (backdoor_loader.shuffle or backdoor_loader.drop_last)
    ra = None if backdoor_loader.true_y is None else percent(preds == backdoor_loader.true_y)
    return {'acc': acc, 'asr': asr, 'ra': ra, 'eval_seconds': time.perf_counter() - start}
