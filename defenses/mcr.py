"""Mode Connectivity Repair (Zhao et al., ICLR 2020): connect two endpoint models by a quadratic Bezier
curve in weight space, train the curve's bend on the clean subset, and take a model part-way along it.

    w(t) = (1 - t)^2 w0 + 2 t (1 - t) theta + t^2 w1,   t in [0, 1]

w0 and w1 are fixed (by default both are the backdoored model, as in the NAD paper; `--mcr_end` gives
another model for t = 1, e.g. the fine-tuned one); theta starts at (w0 + w1) / 2 and is trained with a
fresh t ~ U(0, 1) for every batch. BatchNorm statistics belong to one set of weights, so for every
interior t they are recomputed on the clean subset; at t = 0 and t = 1 the weights are exactly an
endpoint's, and its own statistics are used, so the curve reproduces its endpoints exactly.

Run through main.py:  python main.py --defense mcr  [--mcr_epochs 100 --mcr_t 0.3 --mcr_end PATH]
It writes the whole curve beside the run's results as <run>_curve.csv and <run>_curve.png.
"""
import copy

import torch
from torch.func import functional_call

from models import select_model
from utils.files import write_csv
from utils.cli import Timer, plural
from utils.engine import cosine_per_epoch, evaluate, fit
from utils.figures import pyplot, save_figure
from utils.runtime import autocast, generator


class BezierCurve:
    """A quadratic Bezier curve between two models of the same architecture."""

    def __init__(self, model0, model1):
        self.net = copy.deepcopy(model0)  # the module the curve's weights are plugged into
        self.endpoints = (model0, model1)
        p0, p1 = dict(model0.named_parameters()), dict(model1.named_parameters())
        self.names = list(p0)
        self.w0 = {n: p0[n].detach().clone() for n in self.names}
        self.w1 = {n: p1[n].detach().clone() for n in self.names}
        self.theta = [torch.nn.Parameter((self.w0[n] + self.w1[n]) / 2) for n in self.names]

    def weights_at(self, t):
        a, b, c = (1 - t) ** 2, 2 * t * (1 - t), t ** 2
        return {n: a * self.w0[n] + b * th + c * self.w1[n] for n, th in zip(self.names, self.theta)}

    def loss(self, t_generator):
        """Training loss for the shared loop: CE of the curve's model at a fresh random t."""
        def loss_fn(net, x, y):
            t = torch.rand((), generator=t_generator).item()
            logits = functional_call(net, self.weights_at(t), (x,))[-1]
            return torch.nn.functional.cross_entropy(logits, y)
        return loss_fn

    @torch.no_grad()
    def model_at(self, t, bn_loader, device, amp_dtype=None):
        """A plain model with the curve's weights at t (and BatchNorm statistics that fit them)."""
        if t in (0.0, 1.0):
            return copy.deepcopy(self.endpoints[int(t)])
        model = copy.deepcopy(self.net)
        for name, value in self.weights_at(t).items():
            model.get_parameter(name).copy_(value)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the whole pass
        model.train()
        for x, _ in bn_loader:
            with autocast(device, amp_dtype):
                model(x)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1
        return model.eval()


def run(args, student, train_loader, bn_loader, clean_loader, backdoor_loader, device, amp_dtype):
    """Train the curve on `train_loader` (augmented clean subset), recompute BatchNorm statistics on
    `bn_loader` (the same images, plain), evaluate along t.
    Returns (rows, row at --mcr_t, model at --mcr_t, seconds)."""
    end = student if args.mcr_end is None else select_model(args.s_name, args.num_classes, args.mcr_end, args.trust_checkpoint)[0]
    curve = BezierCurve(student, end.to(device, memory_format=torch.channels_last))
    optimizer = torch.optim.SGD(curve.theta, lr=args.mcr_lr, momentum=args.momentum, weight_decay=args.weight_decay)
    loss_fn = curve.loss(generator(args.seed, 'mcr_t'))
    print(f'mcr: {len(train_loader.y)} clean images, {plural(args.mcr_epochs, "epoch")} of curve training, lr {args.mcr_lr} (cosine), '
          f"end t=1: {args.mcr_end or 'the backdoored model'}", flush=True)
    total = Timer()
    fit(curve.net, train_loader, loss_fn, optimizer, args.mcr_epochs, cosine_per_epoch(args.mcr_lr, args.mcr_epochs),
        device, amp_dtype, desc='curve epoch')
    rows, kept, kept_model = [], None, None
    for t in sorted(set(args.mcr_points) | {args.mcr_t}):
        timer = Timer()
        model = curve.model_at(t, bn_loader, device, amp_dtype)
        # the reported point is measured in float32, like every recorded result; the rest of the curve under autocast
        metrics = evaluate(model, clean_loader, backdoor_loader, device, None if t == args.mcr_t else amp_dtype)
        row = {'t': t, 'acc': metrics['acc'], 'asr': metrics['asr'], 'ra': metrics['ra'], 'seconds': timer()}
        rows.append(row)
        print(f"t {t:.2f} | ACC {row['acc']:6.2f} | ASR {row['asr']:6.2f} | RA {row['ra']:6.2f} | {row['seconds']:5.1f}s",
              flush=True)
        if t == args.mcr_t:
            kept, kept_model = row, model
    return rows, kept, kept_model, total()


def plot(rows, path, report_t):
    """ACC and ASR along the curve, as a PNG."""
    fig, ax = pyplot().subplots(figsize=(5, 3.2))
    ts = [r['t'] for r in rows]
    ax.plot(ts, [r['acc'] for r in rows], 'o-', label='ACC')
    ax.plot(ts, [r['asr'] for r in rows], 's-', label='ASR')
    ax.axvline(report_t, color='grey', linestyle=':', label=f't = {report_t}')
    ax.set_xlabel('t along the curve')
    ax.set_ylabel('%')
    ax.set_ylim(-2, 102)
    ax.legend(loc='center right')
    save_figure(fig, path)


def procedure(args, student, loaders, device, amp_dtype):
    """MCR in place of the fine-tuning loop: the student becomes the curve's model at --mcr_t.
    Returns (rows, the kept row, the summary's extra fields)."""
    curve, at_t, model, seconds = run(args, student, loaders.train, loaders.subset, loaders.clean, loaders.backdoor,
                                      device, amp_dtype)
    student.load_state_dict(model.state_dict())
    kept = {'epoch': args.mcr_epochs, 'lr': None, 'loss': None, 'acc': at_t['acc'], 'asr': at_t['asr'],
            'ra': at_t.get('ra'), 'seconds': seconds}
    return [kept], kept, {'mcr_t': args.mcr_t, 'curve': curve}


def write_files(args, stem, extra):
    """The curve's CSV and PNG (written just before the run's model, CSV and JSON)."""
    write_csv(f'{stem}_curve.csv', extra['curve'])
    plot(extra['curve'], f'{stem}_curve.png', args.mcr_t)
