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

import torch

import config
from attacks import trigger_for
from data_loader import dataset_for, defense_loaders
from defenses import defense_of, method_of
from defenses.finetuning import fine_tune
from models import build_model, select_model
from utils.cli import Timer, epoch_line, plural, run
from utils.engine import evaluate
from utils.records import known_before, model_path, result_name, save_run, warn_if_other_attack
from utils.runtime import cuda_graphs, setup


def settings(args, method, loaders):
    """The run's settings in one line: its data, schedule and the distillation's weights."""
    attention = f', betas {(args.beta1, args.beta2, args.beta3)}, attention {args.attention} p={args.p}, ' \
                f'loss form {args.at_form}'
    distills = {'nad': attention, 'argd': attention + f', edge {args.argd_edge:g} embed {args.argd_embed:g}',
                'kd': f', KD T {args.kd_t:g} alpha {args.kd_alpha:g}',
                'twostage': f', starting from the teacher {args.t_model}'}.get(method, '')
    held = f', {len(loaders.holdout.y)} held out' if loaders.holdout else ''
    return (f'{method}: {len(loaders.train.y)} clean images ({args.ratio:.0%} of the training set{held}), protocol '
            f"{args.protocol}: {plural(args.epochs, 'epoch')}, lr {args.lr:g} x{args.gamma:g} at {args.schedule}"
            f"{', Nesterov' if args.nesterov else ''}{distills}, cutout {args.cutout_length}")


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
    warn_if_other_attack(args, s_ckpt)
    device, amp_dtype = setup(args)
    if method == 'teacher' and args.teacher_from_scratch:  # Table 2 / Fig. 4: a teacher that never saw poison,
        student = build_model(args.t_name, args.num_classes)  # its initial weights drawn from --seed
    data = dataset_for(args)
    backdoored = copy.deepcopy(student.state_dict())
    student = student.to(device, memory_format=torch.channels_last)
    if teacher is not None:
        teacher = teacher.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
    loaders = defense_loaders(args, data, device, trigger_for(args))
    print(settings(args, method, loaders), flush=True)

    total = Timer()
    before, before_source = known_before(args, method, s_ckpt)
    if before is None:  # float32, like every recorded result
        before = evaluate(student, loaders.clean, loaders.backdoor, device)
    before_row = {'epoch': 0, 'lr': 0.0, 'loss': None, 'acc': before['acc'], 'asr': before['asr'], 'ra': before['ra'],
                  'seconds': total()}
    print(epoch_line(0, None, None, before, total()) + ('' if before_source == 'measured' else f' ({before_source})'),
          flush=True)
    graphs = cuda_graphs(args, device, amp_dtype, defense.capturable)
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
                                                     device, amp_dtype, first_epoch=len(rows) + 1, cuda_graphs=graphs)
            rows += round_rows
            student.load_state_dict(kept_state)
    seconds = total()
    rows = [before_row] + rows

    path = save_run(args, method, defense, student, s_ckpt, rows, kept, extra, {
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
