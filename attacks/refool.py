"""Refool (Liu et al., ECCV 2020): the reflection trigger and its adversarial selection of reflections.

The trigger ('refoolTrigger', attack 'refool'; 'refoolCandidatesTrigger' with every candidate) is made by
`selected_trigger()` / `candidates_trigger()`, which attacks.build_trigger calls: they read the
candidates and the selection once, from the data root and file they are given.

The selection (Sec. 3.3), one round:

    python train_badnet.py --attack refool --trigger_type refoolCandidatesTrigger --epochs 10 --seed 0 \
        --output weight/refool/WRN-16-1-refool-candidates.pth.tar    # poisoned with all 200 candidates
    python -m attacks.refool                                        # score each candidate on it, keep the best

Each candidate reflection is scored by that model's success rate on --images non-target *training* images
reflected with that candidate alone (the attacker's own data; the test set is not used). The --keep best
are saved with every score and how they were made to triggers/refool_WRN-16-1.pt (REFOOL_FILE).
Refool repeats selection and retraining for several rounds; one is done here.
"""
import argparse
import functools
import os

import torch
import torch.nn.functional as F

from attacks import add_generator_arguments
from data_loader import DATA_ROOT, BatchLoader, load_cifar10, load_dataset
from models import select_model
from utils import UserError
from utils.checkpoint import safe_load
from utils.cli import HelpFormatter, check_finite, command_line, run
from utils.engine import accuracy
from utils.files import atomic_write
from utils.paths import output_file
from utils.runtime import generator, setup

# Refool (Liu et al., ECCV 2020): a natural image reflected into the picture, by the two reflection
# models of Refool's code (`blend_images`), mixed in linear light (gamma 2.2):
#  - ghost: the reflection doubled at an offset, weighted 1 - alpha_t, over the image weighted alpha_t;
#  - focal blur: the reflection Gaussian-blurred, darkened where it would saturate, under a centred
#    Gaussian vignette, over the image weighted alpha_t;
# with alpha_t ~ 1 - U(0.05, 0.45). Refool's code first resizes every image to its working size of
# 560 px, so its ghost offsets (3..8 px) and blur sigmas (1..5 px) are in those pixels: here they are
# scaled to 32 px (sub-pixel offsets and blurs; the reflection stays sharp, as it does in Refool's
# output resized back to 32 px). As Refool's data generation does, a blend is kept only when the image
# stays the main layer and SSIM(blend, image layer) lies in [0.70, 0.85] (neither invisible nor
# dominant); an image tries reflections until one passes (the last try is kept if none does).
# Reflection sources, as Refool picks them: REFOOL_POOL_SIZE candidates (CIFAR-10 training images of
# classes other than 0, drawn with a fixed seed; GTSRB and the paper's PascalVOC reflections are not
# reachable here), of which Refool's adversarial selection keeps the ones that trigger best: a model is
# trained with all candidates ('refoolCandidatesTrigger'), each candidate is scored by its success rate
# on that model, and the top ones are kept (`python -m attacks.refool` below writes their indices to REFOOL_FILE;
# the 'refool' attack's 'refoolTrigger' reflects only those). Each triggered image draws its source, model
# and parameters from a generator seeded by `seed`: a given batch is always triggered the same way.
REFOOL_POOL_SIZE = 200
REFOOL_WORKING_SIZE = 560
REFOOL_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'triggers', 'refool_WRN-16-1.pt')


def candidates(data_root=DATA_ROOT):
    """Refool's candidate reflections, read from the CIFAR-10 under `data_root`: float [0, 1] NCHW
    (REFOOL_POOL_SIZE, 3, 32, 32), training images of classes other than 0 drawn with a fixed seed."""
    x, y = load_cifar10(data_root)['train']
    others = torch.nonzero(y != 0).flatten()
    pick = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(0))[:REFOOL_POOL_SIZE]]
    return x[pick].float() / 255


def candidates_trigger(data_root=DATA_ROOT):
    """'refoolCandidatesTrigger': Refool with every candidate, the model that the selection scores them on."""
    return functools.partial(refool_trigger, pool=candidates(data_root))


def selected_trigger(data_root=DATA_ROOT, path=REFOOL_FILE):
    """'refoolTrigger': Refool with the candidates that the selection kept (`path`, made by
    `python -m attacks.refool`)."""
    if not os.path.isfile(path):
        raise UserError(f'the Refool reflections {path} are missing: make them with `python -m attacks.refool`')
    remake = 'A trigger file holds only tensors: make it again with `python -m attacks.refool`'
    kept = torch.as_tensor(safe_load(path, 'the Refool reflections', remedy=remake)['indices'])
    return functools.partial(refool_trigger, pool=candidates(data_root)[kept])


def _shift_up_left(r, dy, dx):
    """r[i + dy, j + dx] for sub-pixel dy, dx >= 0 per image (bilinear, edge pixels repeated)."""
    def shift(r, d, dim):
        k = d.floor().long()
        f = (d - k)[:, None, None, None]
        n = r.shape[dim]
        idx = (torch.arange(n)[None] + k[:, None]).clamp(max=n - 1)                 # (b, n)
        nxt = (idx + 1).clamp(max=n - 1)
        shape = [len(r), 1, 1, 1]
        shape[dim] = n
        expand = list(r.shape)
        a = r.gather(dim, idx.reshape(shape).expand(expand))
        b = r.gather(dim, nxt.reshape(shape).expand(expand))
        return (1 - f) * a + f * b
    return shift(shift(r, dy, 2), dx, 3)


def _ghost(r, alpha_t, gen):
    """Refool's ghost effect: ghost_alpha * r(p + offset) + (1 - ghost_alpha) * r(p), weighted 1 - alpha_t."""
    n, _, h, _ = r.shape
    offsets = torch.randint(3, 9, (n, 2), generator=gen).float() * h / REFOOL_WORKING_SIZE
    ghost_alpha = (torch.randint(0, 2, (n,), generator=gen) - (0.15 + 0.35 * torch.rand(n, generator=gen))).abs()
    ghost_alpha = ghost_alpha[:, None, None, None]
    ghost = ghost_alpha * _shift_up_left(r, offsets[:, 0], offsets[:, 1]) + (1 - ghost_alpha) * r
    return ghost * (1 - alpha_t)


def _vignette(h, w, nsig=3.0):
    """Refool's gen_kernel(560, 3) mask sampled at h x w: a centred Gaussian, 1 at the centre."""
    def axis(n):
        x = -nsig + (2 * nsig) * (torch.arange(n, dtype=torch.float32) + 0.5) / n
        return torch.exp(-x ** 2 / 4)               # sqrt of a normal pdf: the mask is sqrt(outer(k, k))
    mask = axis(h)[:, None] * axis(w)[None, :]
    return mask / mask.max()


def _focal_blur(r, t, alpha_t, gen):
    """Refool's focal blur: r Gaussian-blurred (sigma 1..5 Refool px), darkened per channel where r + t
    saturates, times the vignette and (1 - alpha_t / 2)."""
    n, c, h, w = r.shape
    sigma = (1 + 4 * torch.rand(n, generator=gen)) * h / REFOOL_WORKING_SIZE
    k = torch.arange(3, dtype=torch.float32) - 1                     # 3 taps: sigma is at most 0.3 px here
    kernel = torch.exp(-k[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)        # (n*c, 3)
    flat = F.pad(r.reshape(1, n * c, h, w), (1, 1, 1, 1), mode='reflect')
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)
    r_blur = flat.reshape(n, c, h, w)
    att = 1.08 + torch.rand(n, generator=gen) / 10
    over = (r_blur + t) > 1
    mean_over = ((r_blur + t) * over).flatten(2).sum(2) / (over.flatten(2).sum(2) + 1e-6)   # (n, c)
    r_blur = (r_blur - ((mean_over.clamp(min=1) - 1) * att[:, None])[:, :, None, None]).clamp(0, 1)
    return r_blur * _vignette(h, w) * (1 - alpha_t / 2)


def window_mean(x, win):
    """F.avg_pool2d(x, win, stride=1) of a float32 NCHW batch on the CPU, bit for bit, about twice as fast.
    PyTorch's CPU kernel sums each window from zero, row by row, and divides by win * win; the same additions
    over shifted views of channels-last chunks, which stay in cache, give the same sums (up to the sign of a
    zero mean: these images are not negative). Bit for bit matters: a mean one rounding apart can flip one
    image's SSIM test (below) and with it the reflection of every image after it, and the trigger is the
    attack. Elsewhere (a GPU, half precision, whose kernels sum otherwise) it is avg_pool2d itself."""
    if x.device.type != 'cpu' or x.dtype not in (torch.float32, torch.float64):
        return F.avg_pool2d(x, win, stride=1)
    n, c, h, w = x.shape
    oh, ow = h - win + 1, w - win + 1
    x = x.permute(0, 2, 3, 1).contiguous()
    out = x.new_empty(n, oh, ow, c)
    for part, o in zip(x.split(16), out.split(16)):
        acc = part[:, :oh, :ow].clone()
        for k in range(1, win * win):
            i, j = divmod(k, win)
            acc += part[:, i:i + oh, j:j + ow]
        torch.div(acc, win * win, out=o)
    return out.permute(0, 3, 1, 2).contiguous()


def ssim(a, b, data_range=1.0, win=7):
    """Mean SSIM per image of two NCHW batches, as skimage's structural_similarity computes it by
    default (7 x 7 uniform window, sample covariance, border cropped, mean over channels)."""
    n, c = a.shape[:2]
    moments = window_mean(torch.cat([a, b, a * a, b * b, a * b], 1), win)
    mu_a, mu_b, aa, bb, ab = moments.split(c, 1)
    cov = win * win / (win * win - 1)
    var_a, var_b, cov_ab = cov * (aa - mu_a ** 2), cov * (bb - mu_b ** 2), cov * (ab - mu_a * mu_b)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.reshape(n, -1).mean(1)


def _refool_blend(t, pool, gen):
    """One Refool blend per image of t (linear light): (blend, reflection layer, image layer), gamma-encoded."""
    n = len(t)
    r = pool[torch.randint(len(pool), (n,), generator=gen)] ** 2.2
    ghost = (torch.randint(0, 101, (n,), generator=gen) < 49)[:, None, None, None]   # Refool's ghost_rate 0.49
    alpha_t = (1 - (0.05 + 0.4 * torch.rand(n, generator=gen)))[:, None, None, None]
    ghosted = _ghost(r, alpha_t, gen)
    blurred = _focal_blur(r, t, alpha_t, gen)
    reflection = torch.where(ghost, ghosted, blurred)
    # Refool's code reports the focal reflection layer scaled by min(1, 4 (1 - alpha_t)).
    shown = torch.where(ghost, reflection, reflection * (4 * (1 - alpha_t)).clamp(max=1))

    def encode(v):  # back from linear light
        return v.clamp(0, 1) ** (1 / 2.2)
    return encode(reflection + t * alpha_t), encode(shown), encode(t * alpha_t)


def refool_accepts(blend, reflection, image):
    """Refool's test of a blend: the image layer stays the main one, the blend is not black, and
    SSIM(blend, image layer) lies in [0.70, 0.85]: the reflection is neither invisible nor dominant."""
    s = ssim(blend, image)
    return ((reflection.flatten(1).mean(1) <= 0.8 * (blend - reflection).flatten(1).mean(1))
            & (blend.flatten(1).amax(1) >= 0.1) & (s >= 0.70) & (s <= 0.85))


def refool_trigger(x, pool, seed=0, tries=20):
    """Reflect an image of `pool` (float [0, 1] NCHW reflections) into every image of the uint8 batch x
    (see the comment above)."""
    gen = torch.Generator().manual_seed(seed)
    t = (x.cpu().float() / 255) ** 2.2
    out = torch.empty_like(t)
    todo = torch.arange(len(t))
    for attempt in range(tries):
        blend, reflection, image = _refool_blend(t[todo], pool, gen)
        ok = refool_accepts(blend, reflection, image)
        if attempt == tries - 1:  # as Refool's loop: when no reflection passes, the last one tried stays
            ok[:] = True
        out[todo[ok]] = blend[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            break
    return (out * 255).round().to(torch.uint8).to(x.device)


# --- the adversarial selection: python -m attacks.refool ---------------------------------------------

def score_reflections(model, images, pool, target_label, device, amp_dtype=None):
    """For each reflection of `pool`, the percentage of `images` (uint8, none of the target class) that
    `model` assigns to `target_label` once that reflection alone is reflected into them: the ASR of that
    reflection, measured by the shared evaluator."""
    target = torch.full((len(images),), target_label)
    return torch.tensor([accuracy(model, BatchLoader(refool_trigger(images, pool[c:c + 1], seed=c), target,
                                                     len(images), device), device, amp_dtype)
                         for c in range(len(pool))])


def get_arguments():
    p = argparse.ArgumentParser(prog='python -m attacks.refool', formatter_class=HelpFormatter,
                                description="Refool: keep the candidate reflections that trigger a model poisoned "
                                            "with all of them best")
    p.add_argument('--model', default='./weight/refool/WRN-16-1-refool-candidates.pth.tar',
                   help='Refool poisoned with every candidate reflection (refoolCandidatesTrigger; zoo/make.py makes it)')
    p.add_argument('--s_name', default='WRN-16-1')
    p.add_argument('--output', default='./triggers/refool_WRN-16-1.pt')
    p.add_argument('--keep', type=int, default=20, help=f'reflections kept, of the {REFOOL_POOL_SIZE} candidates')
    p.add_argument('--images', type=int, default=250,
                   help="non-target training images each candidate is scored on (the attacker's data, not the test set)")
    p.add_argument('--target_label', type=int, default=0)
    p.add_argument('--device', default='auto')
    p.add_argument('--amp', default='auto', choices=['auto', 'on', 'off'])
    return add_generator_arguments(p)


def main():
    parser = get_arguments()
    args = check_finite(parser, parser.parse_args())
    output_file(args.output, '--output', args)
    if not 0 < args.keep <= REFOOL_POOL_SIZE or args.images < 1:
        raise UserError(f'--keep must be in 1..{REFOOL_POOL_SIZE} and --images at least 1')
    device, amp_dtype = setup(args)
    model, ckpt = select_model(args.s_name, args.num_classes, args.model, args.trust_checkpoint)
    model = model.to(device, memory_format=torch.channels_last)
    x, y = load_dataset(args.dataset, args.data_root or DATA_ROOT)[0]['train']
    others = torch.nonzero(y != args.target_label).flatten()
    pick = others[torch.randperm(len(others), generator=generator(args.seed, 'refool_selection'))[:args.images]]
    print(f'scoring {REFOOL_POOL_SIZE} candidate reflections on {len(pick)} training images with {args.model} '
          f"(trigger {ckpt.get('config', {}).get('trigger_type')}, ASR {ckpt.get('asr')})", flush=True)
    scores = score_reflections(model, x[pick], candidates(args.data_root or DATA_ROOT), args.target_label, device,
                               amp_dtype)
    order = scores.argsort(descending=True)
    kept = order[:args.keep].sort().values
    print(f'candidate success rates: mean {scores.mean():.2f}%, median {scores.median():.2f}%; kept {args.keep} '
          f'with {scores[kept].min():.2f}..{scores[kept].max():.2f}% (mean {scores[kept].mean():.2f}%)')
    record = {'indices': kept.tolist(), 'scores': scores.tolist(), 'source_model': args.model,
              'source_config': ckpt.get('config'), 'source_acc': ckpt.get('acc'), 'source_asr': ckpt.get('asr'),
              'config': vars(args), 'command': command_line('attacks.refool')}
    atomic_write(args.output, lambda f: torch.save(record, f))
    print(f'saved {args.output}')


if __name__ == '__main__':
    run(main)
