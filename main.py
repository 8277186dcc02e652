"""Neural Attention Distillation (Li et al., ICLR 2021): erase a backdoor with a small clean set.

    python main.py                     # NAD on the shipped backdoored WRN-16-1 (gridTrigger, target 5)
    python main.py --beta1 0 --beta2 0 --beta3 0   # the same run as plain fine-tuning
    python main.py --make_teacher      # fine-tune the student into the teacher, saved as --t_model

The student (backdoored) is fine-tuned on `--ratio` of the clean training data with
    loss = CE(student(x), y) + sum_l beta_l * AT(student_l(x), teacher_l(x))
over the three residual groups, the teacher frozen in eval mode. ACC and ASR are measured before
training and after every epoch; the table goes to results/<run>.csv, a summary to results/<run>.json,
and the erased model to weight/erasing_net/<s_name>.tar.
"""
import os

import torch
import torch.nn.functional as F

import config
from at import at_loss
from data_loader import BatchLoader, clean_subset
from models import select_model
from utils.checkpoint import save_checkpoint, write_csv, write_json
from utils.cli import Timer, epoch_line, run, setup, test_loaders
from utils.engine import evaluate, set_lr, train_epoch


def nad_loss(teacher, betas, p, kind, form):
    """CE plus the weighted attention distillation terms; with all betas 0, plain fine-tuning."""
    def loss_fn(student, x, y):
        *student_groups, logits = student(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None and any(betas):
            with torch.no_grad():
                teacher_groups = teacher(x)[:-1]
            for beta, fs, ft in zip(betas, student_groups, teacher_groups):
                if beta:  # the student side is NOT detached: these terms must reach its weights
                    loss = loss + beta * at_loss(fs, ft, p, kind, form)
        return loss
    return loss_fn


def lr_for_epoch(args, epoch):
    """Step schedule: args.lr times gamma for every milestone reached (epochs counted from 0)."""
    return args.lr * args.gamma ** sum(epoch >= m for m in args.schedule)


def main():
    args = config.parse(config.get_arguments())
    if args.make_teacher:
        args.beta1 = args.beta2 = args.beta3 = 0.0
    betas = (args.beta1, args.beta2, args.beta3)
    method = 'teacher' if args.make_teacher else ('nad' if any(betas) else 'finetune')
    # Checkpoints first: a bad one fails in a second, before any data is loaded.
    student, s_ckpt = select_model(args.s_name, args.num_classes, args.s_model)
    teacher = select_model(args.t_name, args.num_classes, args.t_model)[0] if method == 'nad' else None
    device, amp_dtype, data = setup(args)
    student = student.to(device, memory_format=torch.channels_last)
    if teacher is not None:
        teacher = teacher.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)

    x, y = clean_subset(*data['train'], args.ratio, seed=args.seed)
    train_loader = BatchLoader(x, y, args.batch_size, device, shuffle=True, crop=4, flip=True,
                               cutout_length=args.cutout_length, seed=args.seed)
    clean_loader, backdoor_loader = test_loaders(args, data, device)
    optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay, nesterov=args.nesterov)
    loss_fn = nad_loss(teacher, betas, args.p, args.attention, args.at_form)
    print(f'{method}: {len(y)} clean images ({args.ratio:.0%}), {args.epochs} epochs, betas {betas}, '
          f'attention {args.attention} p={args.p}, loss form {args.at_form}', flush=True)

    total = Timer()
    before = evaluate(student, clean_loader, backdoor_loader, device, amp_dtype)
    rows = [{'epoch': 0, 'lr': 0.0, 'loss': None, 'acc': before['acc'], 'asr': before['asr'], 'seconds': total()}]
    print(epoch_line(0, 0.0, None, before, total()), flush=True)
    kept, kept_state = None, None
    for epoch in range(1, args.epochs + 1):
        timer = Timer()
        lr = lr_for_epoch(args, epoch - 1)
        set_lr(optimizer, lr)
        loss = train_epoch(student, train_loader, loss_fn, optimizer, device, amp_dtype, desc=f'epoch {epoch}')
        metrics = evaluate(student, clean_loader, backdoor_loader, device, amp_dtype)
        row = {'epoch': epoch, 'lr': lr, 'loss': loss, 'acc': metrics['acc'], 'asr': metrics['asr'], 'seconds': timer()}
        rows.append(row)
        print(epoch_line(epoch, lr, loss, metrics, timer()), flush=True)
        # Keep rule: 'last' keeps the final epoch (all a defender without the trigger can do);
        # 'oracle' keeps the epoch with the highest ACC - ASR, which peeks at the trigger.
        if args.keep == 'last' or kept is None or row['acc'] - row['asr'] > kept['acc'] - kept['asr']:
            kept = row
            kept_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    seconds = total()

    student.load_state_dict(kept_state)
    path = args.t_model if method == 'teacher' else os.path.join(args.checkpoint_root, f'{args.s_name}.tar')
    save_checkpoint(path, student, args.s_name, args.num_classes, epoch=kept['epoch'], acc=kept['acc'],
                    asr=kept['asr'], method=method, keep_rule=args.keep, config=vars(args),
                    source_checkpoint=args.s_model)
    run_name = args.run_name or f"{method}_{os.path.basename(args.s_model).split('.')[0]}_seed{args.seed}"
    write_csv(os.path.join(args.log_root, f'{run_name}.csv'), rows)
    write_json(os.path.join(args.log_root, f'{run_name}.json'), {
        'method': method, 'before': rows[0], 'after': kept, 'keep_rule': args.keep,
        'acc_note': f'ACC over all {len(clean_loader.y)} test images; ASR over the {len(backdoor_loader.y)} '
                    'triggered test images whose true class is not the target',
        'at_form': args.at_form, 'seconds': seconds, 'checkpoint': path,
        'student_checkpoint': {'path': args.s_model, 'epoch': s_ckpt.get('epoch'), 'acc': s_ckpt.get('acc'),
                               'asr': s_ckpt.get('asr')},
        'config': vars(args), 'epochs': rows})
    print(f"{method} done in {seconds:.0f}s | before: ACC {before['acc']:.2f} ASR {before['asr']:.2f} | "
          f"after (epoch {kept['epoch']}, keep={args.keep}): ACC {kept['acc']:.2f} ASR {kept['asr']:.2f} | "
          f'saved {path}', flush=True)


if __name__ == '__main__':
    run(main)
