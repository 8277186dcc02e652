"""Fine-pruning (Liu et al., RAID 2018): mask the least active channels of the last layer, then fine-tune.
The features the classifier reads are relu(bn1(block3 output)), 64 channels for WRN-16-1. Pruning a
channel of the last layer = zeroing its scale and shift in that final BatchNorm, so relu gives 0 for
every input. The pruned model stays a plain WRN state dict (it loads anywhere), and masking the
gradients of those two entries keeps the channels dead through fine-tuning (momentum and weight decay
of a zero stay zero).
"""
import torch
import torch.nn.functional as F

from utils.engine import accuracy, evaluate
from utils.runtime import autocast


@torch.inference_mode()
def last_layer_activation(model, loader, device, amp_dtype=None):
    """Mean activation of each channel of the last layer (after the final BN-ReLU) over `loader`."""
    model.eval()
    total, count = 0.0, 0
    for x, _ in loader:
        with autocast(device, amp_dtype):
            last_group = model(x)[-2]
        total = total + F.relu(model.bn1(last_group.float())).mean(dim=(2, 3)).sum(0)
        count += len(x)
    return total / count


def prune_order(model, loader, device, amp_dtype=None):
    """Channels of the last layer from least to most active on clean data (the order Liu et al. prune in)."""
    return torch.argsort(last_layer_activation(model, loader, device, amp_dtype), stable=True)


def prune_channels(model, channels):
    """Zero the final BatchNorm's scale and shift of `channels` and keep them zero while training."""
    mask = torch.ones_like(model.bn1.weight)
    mask[channels] = 0
    with torch.no_grad():
        model.bn1.weight.mul_(mask)
        model.bn1.bias.mul_(mask)
    for param in (model.bn1.weight, model.bn1.bias):
        param.register_hook(lambda grad, mask=mask: grad * mask)
    return mask


def search_prune_ratio(model, order, loader, device, amp_dtype, max_drop, step=0.05, target_acc=None):
    """Liu et al.'s rule: prune more of the last layer while accuracy on the defender's clean data stays
    within `max_drop` points of the unpruned model's (or, given `target_acc`, at or above it, to match
    another defense's accuracy). Returns (ratio, accuracy before, accuracy at ratio)."""
    state = {k: v.clone() for k, v in model.bn1.state_dict().items()}
    base = accuracy(model, loader, device, amp_dtype)
    floor = base - max_drop if target_acc is None else target_acc
    chosen, chosen_acc = 0.0, base
    for k in range(1, int(round(1 / step))):
        ratio = round(k * step, 4)
        n = int(round(ratio * len(order)))
        with torch.no_grad():
            model.bn1.weight[order[:n]] = 0
            model.bn1.bias[order[:n]] = 0
        acc = accuracy(model, loader, device, amp_dtype)
        model.bn1.load_state_dict(state)
        if acc < floor:
            break
        chosen, chosen_acc = ratio, acc
    return chosen, base, chosen_acc


def prepare(args, student, loaders, device, amp_dtype):
    """Mask the channels (ratio --prune_ratio, or searched) before fine-tuning; the summary's extra fields."""
    order = prune_order(student, loaders.subset, device, amp_dtype)
    ratio, acc0, acc1 = args.prune_ratio, None, None
    if ratio is None:
        ratio, acc0, acc1 = search_prune_ratio(student, order, loaders.subset, device, amp_dtype,
                                               args.prune_max_drop, target_acc=args.prune_target_acc)
    pruned = order[:int(round(ratio * len(order)))]
    prune_channels(student, pruned)
    pruned_metrics = evaluate(student, loaders.clean, loaders.backdoor, device, amp_dtype)
    print(f'fine-pruning: {len(pruned)} of {len(order)} last-layer channels masked (ratio {ratio:.2f}) | '
          f"before fine-tuning: ACC {pruned_metrics['acc']:.2f} ASR {pruned_metrics['asr']:.2f}", flush=True)
    return {'prune_ratio': ratio, 'pruned_channels': pruned.tolist(), 'after_pruning': pruned_metrics,
            'clean_subset_acc_unpruned': acc0, 'clean_subset_acc_pruned': acc1}
