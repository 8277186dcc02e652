"""Neural Attention Distillation (Li et al., ICLR 2021): erase a backdoor with a small clean set,
and the defenses the paper compares it with, all on the same data, evaluator and result files.

    python main.py                        # NAD on the shipped backdoored WRN-16-1 (gridTrigger, target 5)
    python main.py --defense finetune     # plain fine-tuning (= NAD with --beta1 0 --beta2 0 --beta3 0)
    python main.py --make_teacher         # fine-tune the student into the teacher, saved as --t_model
    python main.py --defense fineprune | mixup | cutout | argd | mcr | nc | strip
    python main.py --defense kd | twostage   # NAD's controls: logit distillation; the teacher fine-tuned again
    python main.py --attack blend         # a zoo model (badnets trojan blend cl sig refool) and its teacher

NAD fine-tunes the student (backdoored) on `--ratio` of the clean training data with
    loss = CE(student(x), y) + sum_l beta_l * AT(student_l(x), teacher_l(x))
over the three residual groups, the teacher frozen in eval mode. ACC and ASR are measured before
training and after every epoch; the table goes to runs/<run>.csv, a summary to runs/<run>.json, and
the erased model to weight/erasing_net/<run>.tar, the three written together at the end (--log_root,
--checkpoint_root; both git-ignored by default). <run> is --run_name, or <defense>_<student>_seed<seed>:
the quick start's is nad_WRN-16-1-S-model_best_seed0.
"""
import copy
import os
from types import SimpleNamespace

import torch

import config
from attacks import trigger_for
from data_loader import BatchLoader, clean_subset, dataset_for, holdout_size, test_loaders
from defenses import defense_of, method_of
from defenses.finetuning import fine_tune
from models import build_model, select_model
from utils import UserError
from utils.checkpoint import checkpoint_bytes
from utils.files import file_sha256, write_run
from utils.cli import Timer, epoch_line, run
from utils.engine import evaluate
from utils.runtime import generator, setup


def split_holdout(x, y, fraction, seed):
    """Hold out a seeded `fraction` of the clean subset for early stopping (Appendix J)."""
    order = torch.randperm(len(y), generator=generator(seed, 'holdout'))
    n = holdout_size(len(y), fraction)
    return (x[order[n:]], y[order[n:]]), (x[order[:n]], y[order[:n]])


ATTACK_KEYS = ('trigger_type', 'target_type', 'target_label', 'trigger_alpha')


def made_with_other_attack(args, s_ckpt):
    """True when the student's checkpoint records a trigger other than the one ASR is measured with here."""
    made = (s_ckpt or {}).get('config')
    return isinstance(made, dict) and any(k in made and made[k] != getattr(args, k) for k in ATTACK_KEYS)


def warn_if_other_attack(args, s_ckpt):
    """The ASR is measured with the trigger flags given here; say so when the student was made with others."""
    if made_with_other_attack(args, s_ckpt):
        made = s_ckpt['config']
        print(f"warning: {args.s_model} was backdoored with {', '.join(f'{k} {made.get(k)}' for k in ATTACK_KEYS)}, "
              f"but ASR is measured here with {', '.join(f'{k} {getattr(args, k)}' for k in ATTACK_KEYS)} "
              f"(pass --attack {made.get('attack') or '...'} or those flags)", flush=True)


def known_before(args, method, s_ckpt):
    """The 'before' row when it needs no test pass, and where it comes from; (None, 'measured') means:
    measure it. With --eval_every 0 it is the student checkpoint's own record (same test set, same
    trigger), when it has one and neither this run nor the record was measured on part of the test set
    (--test_limit); a teacher trained from scratch starts from a fresh initialisation."""
    if method == 'teacher' and args.teacher_from_scratch:
        return {'acc': None, 'asr': None, 'ra': None}, 'not measured (fresh initialisation)'
    made = s_ckpt.get('config')
    partial = args.test_limit or (made.get('test_limit') if isinstance(made, dict) else None)
    if args.eval_every or partial or made_with_other_attack(args, s_ckpt):
        return None, 'measured'
    ra = s_ckpt.get('ra')  # zoo checkpoints made before RA was recorded have none
    if not (isinstance(made, (dict, type(None))) and all(percentage(s_ckpt.get(k)) for k in ('acc', 'asr'))
            and (ra is None or percentage(ra))):
        return None, "measured: the student checkpoint's record (ACC, ASR, RA, config) is missing or malformed"
    return {'acc': float(s_ckpt['acc']), 'asr': float(s_ckpt['asr']), 'ra': None if ra is None else float(ra)}, \
        'student checkpoint record'


def percentage(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 100


def result_name(args, method):
    """The run's name (--run_name, or its defense, student and seed), which its files are named for."""
    return args.run_name or f"{method}_{os.path.basename(args.s_model).split('.')[0]}_seed{args.seed}"


def model_path(args, method):
    """Where the run's model is saved: the teacher at --t_model, the others under --checkpoint_root, named
    like the run's result files, so that no run replaces another's model."""
    return args.t_model if method == 'teacher' else os.path.join(args.checkpoint_root, f'{result_name(args, method)}.tar')


def source_checkpoint(args, method):
    """The checkpoint the saved weights were fine-tuned from: none for a teacher trained from scratch, the
    teacher for two-stage fine-tuning, else the student."""
    if method == 'teacher' and args.teacher_from_scratch:
        return None
    return args.t_model if method == 'twostage' else args.s_model


def save_run(args, method, student, s_ckpt, rows, kept, extra, summary):
    """Write the erased model, the per-epoch CSV and the JSON summary as one unit, the JSON last: it marks
    the run as done and records the sha256 of the other two. Returns the model's path."""
    path, run_name = model_path(args, method), result_name(args, method)
    arch = args.t_name if method == 'teacher' and args.teacher_from_scratch else args.s_name
    model = checkpoint_bytes(student, arch, args.num_classes, epoch=kept['epoch'], acc=kept['acc'], asr=kept['asr'],
                             ra=kept['ra'], method=method, protocol=args.protocol, keep_rule=args.keep,
                             config=vars(args), eval_precision='float32',
                             source_checkpoint=source_checkpoint(args, method))
    if defense_of(method).write_files:
        defense_of(method).write_files(args, os.path.join(args.log_root, run_name), extra)
    summary = {**summary, 'student_checkpoint': {'path': args.s_model, 'sha256': file_sha256(args.s_model),
                                      'epoch': s_ckpt.get('epoch'), 'acc': s_ckpt.get('acc'), 'asr': s_ckpt.get('asr')},
               'teacher_checkpoint': {'path': args.t_model, 'sha256': file_sha256(args.t_model)}
               if defense_of(method).needs_teacher else None,
               **{k: v for k, v in extra.items() if not k.startswith('_')},  # '_...': for write_files only
               'config': vars(args), 'epochs': rows}
    write_run(path, model, os.path.join(args.log_root, run_name), rows, summary)
    return path


def main():
    args = config.parse(config.get_arguments())
    method = method_of(args)
    defense = defense_of(method)
    name = os.path.join(args.log_root, result_name(args, method))
    config.check_paths(args, [('t_model' if method == 'teacher' else 'checkpoint_root', model_path(args, method)),
                              ('log_root', name + '.csv'), ('log_root', name + '.json')])
    # Checkpoints first: a bad one fails in a second, before any data is loaded.
    student, s_ckpt = select_model(args.s_name, args.num_classes, args.s_model, args.trust_checkpoint)
    teacher = None
    if defense.needs_teacher:
        teacher = select_model(args.t_name, args.num_classes, args.t_model, args.trust_checkpoint)[0]
    if getattr(args, 'mcr_end', None) and method == 'mcr':  # read again by MCR; checked here, before the data
        select_model(args.s_name, args.num_classes, args.mcr_end, args.trust_checkpoint)
    if method == 'teacher' and args.teacher_from_scratch:
        student = build_model(args.t_name, args.num_classes)  # Table 2 / Fig. 4: a teacher that never saw poison
    warn_if_other_attack(args, s_ckpt)
    device, amp_dtype = setup(args)
    data = dataset_for(args)
    backdoored = copy.deepcopy(student.state_dict())
    student = student.to(device, memory_format=torch.channels_last)
    if teacher is not None:
        teacher = teacher.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)

    x, y = clean_subset(*data['train'], args.ratio, seed=args.seed)
    holdout = None
    if args.holdout:
        (x, y), (hx, hy) = split_holdout(x, y, args.holdout, args.seed)
        holdout = BatchLoader(hx, hy, args.eval_batch_size, device)
    if len(y) == 0:  # config checked the counts against the dataset's usual size; this cache may be smaller
        raise UserError(f'--ratio {args.ratio:g} leaves no clean image of the {len(data["train"][1])} in this dataset')
    trigger = trigger_for(args)
    clean, backdoor = test_loaders(args, data, device, trigger)
    loaders = SimpleNamespace(trigger=trigger,
        train=BatchLoader(x, y, args.batch_size, device, shuffle=True, crop=4, flip=True,
                          cutout_length=args.cutout_length, seed=args.seed),
        subset=BatchLoader(x, y, args.eval_batch_size, device),  # the clean subset, no augmentation
        holdout=holdout, clean=clean, backdoor=backdoor)
    attention = f', betas {(args.beta1, args.beta2, args.beta3)}, attention {args.attention} p={args.p}, ' \
                f'loss form {args.at_form}'
    distills = {'nad': attention, 'argd': attention + f', edge {args.argd_edge:g} embed {args.argd_embed:g}',
                'kd': f', KD T {args.kd_t:g} alpha {args.kd_alpha:g}',
                'twostage': f', starting from the teacher {args.t_model}'}.get(method, '')
    print(f'{method}: {len(y)} clean images ({args.ratio:.0%} of the training set'
          f"{f', {len(holdout.y)} held out' if holdout else ''}), protocol {args.protocol}: "
          f"{args.epochs} epochs, lr {args.lr:g} x{args.gamma:g} at {args.schedule}"
          f"{', Nesterov' if args.nesterov else ''}{distills}, cutout {args.cutout_length}", flush=True)

    total = Timer()
    before, before_source = known_before(args, method, s_ckpt)
    if before is None:  # float32, like every recorded result
        before = evaluate(student, loaders.clean, loaders.backdoor, device)
    before_row = {'epoch': 0, 'lr': 0.0, 'loss': None, 'acc': before['acc'], 'asr': before['asr'], 'ra': before['ra'],
                  'seconds': total()}
    print(epoch_line(0, 0.0, None, before, total()) + ('' if before_source == 'measured' else f' ({before_source})'),
          flush=True)
    if defense.procedure:  # a defense with a procedure of its own (MCR, Neural Cleanse, STRIP)
        rows, kept, extra = defense.procedure(args, student, loaders, device, amp_dtype)
        kept = kept or before_row  # None: the model is left as it was
    else:
        extra = defense.prepare(args, student, loaders, device, amp_dtype) if defense.prepare else {}
        rows, kept, kept_state = [], None, None
        for round_ in range(1, args.iterations + 1):
            if round_ > 1:  # iterative NAD (Appendix G): the last round's erased model teaches the next
                teacher = copy.deepcopy(student).eval().requires_grad_(False)
                student.load_state_dict(backdoored)
                print(f'round {round_}: the erased model of round {round_ - 1} is the teacher', flush=True)
            round_rows, kept, kept_state = fine_tune(args, *defense.loss(args, teacher, device), student, loaders,
                                                     device, amp_dtype, first_epoch=len(rows) + 1)
            rows += round_rows
            student.load_state_dict(kept_state)
    seconds = total()
    rows = [before_row] + rows

    path = save_run(args, method, student, s_ckpt, rows, kept, extra, {
        'method': method, 'protocol': args.protocol, 'before': before_row, 'before_source': before_source,
        'after': kept, 'keep_rule': args.keep,
        'acc_note': f'ACC over the {len(loaders.clean.y)} test images; ASR over the {len(loaders.backdoor.y)} '
                    'triggered test images whose true class is not the target; RA: the same images classified '
                    'as their true class',
        'at_form': args.at_form, 'seconds': seconds,
        'eval_precision': f"float32 (before, after and the last epoch; other epochs' rows: {amp_dtype or 'float32'})"})
    where = f"t {args.mcr_t}" if method == 'mcr' else f"epoch {kept['epoch']}, keep={args.keep}"
    was = '' if before['acc'] is None else f"before: ACC {before['acc']:.2f} ASR {before['asr']:.2f} | "
    print(f"{method} done in {seconds:.0f}s | {was}after ({where}): ACC {kept['acc']:.2f} ASR {kept['asr']:.2f} | "
          f"saved {path}", flush=True)


if __name__ == '__main__':
    run(main)
