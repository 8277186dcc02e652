"""The fine-tuning run that most defenses are (and Neural Cleanse's unlearning; not MCR or STRIP): a loss
in the shared loop (utils.engine.fit) on the clean subset, under the protocol's optimiser and schedule,
one epoch kept by --keep."""
import torch

from utils.engine import evaluate, fit, step_schedule


def fine_tune(args, loss_fn, own_params, student, loaders, device, amp_dtype, first_epoch=1, cuda_graphs=False):
    """Fine-tune `student` with `loss_fn` (and the loss's own parameters, not decayed); `cuda_graphs`: its steps
    replayed from a CUDA graph (utils.engine.fit). Returns (rows, kept row, kept state)."""
    optimizer = torch.optim.SGD([{'params': student.parameters()}, {'params': own_params, 'weight_decay': 0.0}],
                                lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                                nesterov=args.nesterov)
    return fit(student, loaders.train, loss_fn, optimizer, args.epochs, step_schedule(args.lr, args.schedule, args.gamma),
               device, amp_dtype, measure=lambda dtype: evaluate(student, loaders.clean, loaders.backdoor, device, dtype),
               every=args.eval_every, keep=args.keep, holdout=loaders.holdout, patience=args.patience,
               first_epoch=first_epoch, cuda_graphs=cuda_graphs)
