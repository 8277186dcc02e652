"""STRIP (Gao et al., ACSAC 2019): is this input triggered? An input is superimposed on N clean images
(pixel values added and saturated, as STRIP's code does); a trigger keeps forcing the target class
whatever it is laid over, so a triggered input's predictions have low entropy, a clean one's high.

The defender's clean subset is split in two halves (seeded): the images laid over the inputs, and clean
inputs that set the threshold, the entropy below which an input is rejected, at a false rejection rate
of `--strip_frr` (1%): their empirical quantile (STRIP's code fits a normal distribution instead).
Reported on `--strip_inputs` clean and as many triggered test images, in %: the false rejection rate
(clean test images rejected), the false acceptance rate (triggered ones accepted; also among only those
the model sends to the target), and the AUROC of the entropy (a fraction: how well it separates clean
from triggered at any threshold). The model is not changed; it is saved as it came, so the run's files
have the usual shape.
"""
import math

import torch
from tqdm import tqdm

from data_loader import BatchLoader
from utils.cli import Timer
from utils.engine import predictions
from utils.figures import pyplot, save_figure
from utils.runtime import autocast, generator


@torch.inference_mode()
def entropies(model, inputs, overlays, n, device, amp_dtype=None, seed=0, chunk=8):
    """Mean prediction entropy (bits) of each uint8 input superimposed on `n` images drawn from the uint8
    `overlays` (a seeded draw per input)."""
    model.eval()
    g = generator(seed, 'strip')
    picks = torch.randint(len(overlays), (len(inputs), n), generator=g)
    out = []
    for i in tqdm(range(0, len(inputs), chunk), desc='strip', leave=False):
        x = inputs[i:i + chunk].to(device)
        laid = overlays[picks[i:i + chunk].flatten()].to(device).view(len(x), n, *x.shape[1:])
        mixed = (x[:, None].float() + laid.float()).clamp(0, 255).div_(255).flatten(0, 1)
        with autocast(device, amp_dtype):
            logits = model(mixed.contiguous(memory_format=torch.channels_last))[-1]
        p = logits.float().softmax(-1)
        h = -(p * torch.log2(p.clamp(min=1e-12))).sum(-1)
        out.append(h.view(len(x), n).mean(1).cpu())
    return torch.cat(out)


def threshold_at(clean_entropies, frr):
    """The entropy below which inputs are rejected: the `frr` quantile of clean inputs' entropies (the
    lowest ceil(frr * n) - 1 are below it, so at most that fraction is rejected)."""
    k = max(math.ceil(frr * len(clean_entropies)), 1)
    return clean_entropies.sort().values[k - 1].item()


def auroc(clean_h, triggered_h):
    """The probability that a clean input's entropy exceeds a triggered one's (ties count half): how well the
    entropy separates the two, whatever the threshold."""
    diff = clean_h[:, None] - triggered_h[None, :]
    return ((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()).item()


def procedure(args, student, loaders, device, amp_dtype):
    """Calibrate on the clean subset, measure FRR on clean and FAR on triggered test images. Returns (no rows,
    None: the model is left as it is, fields for the summary; '_entropies' only for the histogram)."""
    timer = Timer()
    x = loaders.subset.x
    half = torch.randperm(len(x), generator=generator(args.seed, 'strip_split'))
    overlays, calibration = x[half[:len(x) // 2]], x[half[len(x) // 2:]]
    n_inputs = min(args.strip_inputs, len(loaders.clean.x), len(loaders.backdoor.x))
    order = lambda loader: torch.randperm(len(loader.y), generator=generator(args.seed, 'strip_inputs'))[:n_inputs]  # noqa: E731
    measure = lambda inputs: entropies(student, inputs, overlays, args.strip_n, device, amp_dtype, args.seed)  # noqa: E731
    calibration_h = measure(calibration)
    threshold = threshold_at(calibration_h, args.strip_frr)
    clean_h = measure(loaders.clean.x[order(loaders.clean)])
    triggered_idx = order(loaders.backdoor)
    triggered_h = measure(loaders.backdoor.x[triggered_idx])
    preds, targets = predictions(student, BatchLoader(loaders.backdoor.x[triggered_idx], loaders.backdoor.y[triggered_idx],
                                                      args.eval_batch_size, device), device, amp_dtype)
    fooled = (preds == targets).cpu()  # the triggered inputs the model sends to the target
    strip = {'n': args.strip_n, 'threshold': threshold, 'frr_target': args.strip_frr * 100,
             'frr_calibration': (calibration_h < threshold).float().mean().item() * 100,
             'frr': (clean_h < threshold).float().mean().item() * 100,
             'far': (triggered_h >= threshold).float().mean().item() * 100,
             'far_fooled': (triggered_h[fooled] >= threshold).float().mean().item() * 100 if fooled.any() else None,
             'auroc': auroc(clean_h, triggered_h),
             'inputs': n_inputs, 'calibration_inputs': len(calibration), 'overlay_images': len(overlays),
             'seconds': timer()}
    print(f"strip: threshold {threshold:.3f} bits (FRR {strip['frr_calibration']:.2f}% on {len(calibration)} clean "
          f"subset images); on {n_inputs} test images each: FRR {strip['frr']:.2f}%, FAR {strip['far']:.2f}% (among inputs that "
          f"reach the target: {strip['far_fooled'] or 0:.2f}%), AUROC {strip['auroc']:.3f} | {strip['seconds']:.0f}s", flush=True)
    return [], None, {'strip': strip, '_entropies': {'clean': clean_h, 'triggered': triggered_h}}


def write_files(args, stem, fields):
    """<stem>_strip.png: the entropy histograms of clean and triggered test inputs, and the threshold."""
    h, strip = fields['_entropies'], fields['strip']
    fig, ax = pyplot().subplots(figsize=(5, 3.2))
    bins = torch.linspace(0, math.log2(args.num_classes), 41).tolist()
    ax.hist(h['clean'].numpy(), bins=bins, alpha=0.6, label='clean test inputs')
    ax.hist(h['triggered'].numpy(), bins=bins, alpha=0.6, label='triggered test inputs')
    ax.axvline(strip['threshold'], color='black', linestyle=':', label=f"threshold (FRR {strip['frr_target']:g}%)")
    ax.set_xlabel(f"mean entropy over {strip['n']} superimpositions (bits)")
    ax.set_ylabel('inputs')
    ax.set_title(f"STRIP: FRR {strip['frr']:.2f}%, FAR {strip['far']:.2f}%, AUROC {strip['auroc']:.3f}", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, stem + '_strip.png')
