"""Neural Cleanse (Wang et al., S&P 2019): is the model backdoored, which class is the target, and
unlearning.

1. Reverse-engineering: for every class c, the smallest mask m_c (H x W, in [0, 1]) and pattern p_c
   (3 x H x W) such that (1 - m_c) x + m_c p_c is classified as c, by Adam on the clean subset:
   CE(f(stamped), c) + cost_c * |m_c|_1. The cost is multiplied by 1.5 after `--nc_patience` epochs in a
   row in which the stamped images reached class c at least 99% of the time, and divided by 1.5 ** 1.5
   after as many epochs below, as in Neural Cleanse's code; it starts at `--nc_init_cost`, as
   BackdoorBench's does (Neural Cleanse's own starts at 0 and sets it once 99% is reached). The smallest
   mask that reached 99% is kept. All classes are optimised together, in one batch of
   C x B images: the model is frozen and each class has its own parameters, cost and (element-wise) Adam
   state, so this is the same optimisation as C separate ones, at one model call per step.
2. Detection: the anomaly index of the smallest L1 norm, |norm - median| / (1.4826 MAD) over the classes
   (medians as numpy's: the mean of the middle two); a class whose norm is below the median with an
   index above 2 is flagged (the paper's rule), if its trigger reached 99% (else it is no trigger).
3. Mitigation by unlearning: fine-tuning on the clean subset under the run's protocol, with the reversed
   trigger of a flagged class stamped on `--nc_unlearn_ratio` (20%) of every batch under the images' true
   labels. When no class is flagged the model is left as it is.
"""
import torch
import torch.nn.functional as F
from tqdm import tqdm

from data_loader import BatchLoader
from defenses.finetuning import fine_tune
from utils.files import write_csv
from utils.cli import Timer
from utils.figures import pyplot, save_figure
from utils.runtime import autocast, generator

SUCCESS = 0.99           # the attack success that counts as reaching a class (the paper's threshold)
COST_FACTOR = 1.5        # the cost goes up by this, down by its 1.5th power
MAD_CONSISTENCY = 1.4826  # MAD -> standard deviation of a normal distribution


def reverse_engineer(model, loader, num_classes, device, amp_dtype, epochs, lr=0.1, init_cost=1e-3, patience=5, seed=0):
    """The smallest trigger of every class (see the module's docstring). Returns masks (C, 1, H, W) and
    patterns (C, 3, H, W) in [0, 1], their L1 norms and the success rate each reached (C,)."""
    model.eval().requires_grad_(False)
    _, channels, h, w = loader.x.shape
    g = generator(seed, 'neural_cleanse')
    mask_param = (torch.rand(num_classes, 1, h, w, generator=g) * 2 - 1).to(device).requires_grad_(True)
    pattern_param = (torch.rand(num_classes, channels, h, w, generator=g) * 2 - 1).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([mask_param, pattern_param], lr=lr, betas=(0.5, 0.9))

    def current():  # tanh keeps both in [0, 1] without clipping away the gradient
        return torch.tanh(mask_param) / 2 + 0.5, torch.tanh(pattern_param) / 2 + 0.5

    cost = torch.full((num_classes,), init_cost, device=device)
    above, below = torch.zeros(num_classes, device=device), torch.zeros(num_classes, device=device)
    best_norm = torch.full((num_classes,), float('inf'), device=device)
    best_success = torch.zeros(num_classes, device=device)
    best_mask, best_pattern = [t.detach().clone() for t in current()]
    classes = torch.arange(num_classes, device=device)
    for _ in tqdm(range(epochs), desc='neural cleanse', leave=False):
        hits, seen = torch.zeros(num_classes, device=device), 0
        for x, _ in loader:
            mask, pattern = current()
            stamped = (1 - mask[:, None]) * x[None] + (mask * pattern)[:, None]       # (C, B, 3, H, W)
            with autocast(device, amp_dtype):
                logits = model(stamped.flatten(0, 1).contiguous(memory_format=torch.channels_last))[-1]
            logits = logits.float().view(num_classes, len(x), -1)
            target = classes[:, None].expand(-1, len(x))
            ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction='none').view(num_classes, -1).mean(1)
            loss = (ce + cost * mask.flatten(1).sum(1)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            hits += (logits.argmax(-1) == target).sum(1).detach()
            seen += len(x)
        success = hits / seen
        mask, pattern = [t.detach() for t in current()]
        norm = mask.flatten(1).sum(1)
        better = (success >= SUCCESS) & (norm < best_norm)
        best_mask[better], best_pattern[better] = mask[better], pattern[better]
        best_norm[better], best_success[better] = norm[better], success[better]
        reached = success >= SUCCESS
        above, below = torch.where(reached, above + 1, 0), torch.where(reached, 0, below + 1)
        cost = torch.where(above >= patience, cost * COST_FACTOR, cost)
        cost = torch.where(below >= patience, cost / COST_FACTOR ** 1.5, cost)
        above, below = torch.where(above >= patience, 0, above), torch.where(below >= patience, 0, below)
    never = torch.isinf(best_norm)  # a class never reached: its last mask stands, with the success it had
    best_mask[never], best_pattern[never] = mask[never], pattern[never]
    best_norm[never], best_success[never] = norm[never], success[never]
    return best_mask.cpu(), best_pattern.cpu(), best_norm.cpu(), best_success.cpu()


def anomaly(norms, success=None, threshold=2.0):
    """Each class's anomaly index (median - norm) / (1.4826 MAD), positive below the median, and the classes
    flagged (index above `threshold` and, given `success`, a trigger that reached 99%), smallest norm first."""
    median = norms.quantile(0.5)                     # an even count: the mean of the middle two, as np.median
    mad = MAD_CONSISTENCY * (norms - median).abs().quantile(0.5)
    index = (median - norms) / mad.clamp(min=1e-12)
    reached = torch.ones_like(norms, dtype=torch.bool) if success is None else success >= SUCCESS
    flagged = [int(c) for c in torch.argsort(norms) if index[c] > threshold and reached[c]]
    return index, flagged


def unlearning_loss(masks, patterns, ratio):
    """CE on batches whose first `ratio` images (the batches are shuffled) carry a reversed trigger, each in
    turn of the given ones, under their true labels."""
    moved = {}

    def loss_fn(model, x, y):
        if not moved:  # onto the batches' device, once
            moved.update(masks=masks.to(x.device), patterns=patterns.to(x.device))
        k = int(round(len(x) * ratio))
        which = torch.arange(k, device=x.device) % len(masks)
        m, p = moved['masks'][which], moved['patterns'][which]
        x = torch.cat([(1 - m) * x[:k] + m * p, x[k:]]).contiguous(memory_format=torch.channels_last)
        return F.cross_entropy(model(x)[-1], y)
    return loss_fn


def procedure(args, student, loaders, device, amp_dtype):
    """Reverse-engineer every class's trigger, detect, and unlearn the flagged ones. Returns (rows, kept row or
    None when the model is left as it is, fields for the summary; those starting with '_' only for the files)."""
    timer = Timer()
    subset = BatchLoader(loaders.subset.x, loaders.subset.y, args.batch_size, device, shuffle=True, seed=args.seed)
    masks, patterns, norms, success = reverse_engineer(student, subset, args.num_classes, device, amp_dtype,
                                                       args.nc_epochs, args.nc_lr, args.nc_init_cost,
                                                       args.nc_patience, args.seed)
    index, flagged = anomaly(norms, success)
    smallest = int(norms.argmin())
    print(f'neural cleanse: L1 norms {", ".join(f"{c}: {n:.1f}" for c, n in enumerate(norms.tolist()))}; '
          f'anomaly index {index[smallest]:.2f} (class {smallest}); flagged {flagged or "none"} '
          f'(target {args.target_label}) | {timer():.0f}s', flush=True)
    fields = {'neural_cleanse': {
        'l1_norms': norms.tolist(), 'success': success.tolist(), 'anomaly_index': float(index[smallest]),
        'anomaly_index_per_class': index.tolist(), 'smallest_class': smallest, 'flagged': flagged,
        'target_label': args.target_label, 'target_flagged': args.target_label in flagged,
        'smallest_is_target': smallest == args.target_label, 'reverse_seconds': timer(), 'unlearned': bool(flagged)},
        '_masks': masks, '_patterns': patterns,
        '_real_trigger': loaders.trigger(torch.zeros(1, 3, *masks.shape[2:], dtype=torch.uint8))}
    student.requires_grad_(True)
    if not flagged:
        print('neural cleanse: no class flagged, the model is left as it is', flush=True)
        return [], None, fields
    loss_fn = unlearning_loss(masks[flagged], patterns[flagged], args.nc_unlearn_ratio)
    rows, kept, state = fine_tune(args, loss_fn, [], student, loaders, device, amp_dtype)
    student.load_state_dict(state)
    return rows, kept, fields


def write_files(args, stem, fields):
    """<stem>_nc.csv (per class: L1 norm, success, anomaly index, flagged) and <stem>_nc.png (each class's
    reversed trigger, mask x pattern, beside the real trigger on a black image)."""
    nc = fields['neural_cleanse']
    write_csv(stem + '_nc.csv', [{'class': c, 'l1_norm': n, 'success': s, 'anomaly_index': a, 'flagged': c in nc['flagged']}
                                 for c, (n, s, a) in enumerate(zip(nc['l1_norms'], nc['success'],
                                                                   nc['anomaly_index_per_class']))])
    triggers = fields['_masks'] * fields['_patterns']
    plt = pyplot()
    fig, axes = plt.subplots(1, len(triggers) + 1, figsize=(1.2 * (len(triggers) + 1), 1.6))
    panels = [('real trigger', fields['_real_trigger'][0].float() / 255)] + \
             [(f"class {c}{' (flagged)' if c in nc['flagged'] else ''}\nL1 {nc['l1_norms'][c]:.1f}", t)
              for c, t in enumerate(triggers)]
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation='nearest')
        ax.set_title(title, fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Neural Cleanse: anomaly index {nc['anomaly_index']:.2f}, flagged {nc['flagged'] or 'none'}, "
                 f"target {nc['target_label']}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, stem + '_nc.png', dpi=120)
