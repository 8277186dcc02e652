"""A defense run's records (main.py): what it reads from its student checkpoint's record (the trigger that
model was made with, its 'before' numbers) and what it leaves, named for the run: the erased model, the
per-epoch CSV and the JSON summary, written together."""
import os

from utils.checkpoint import checkpoint_bytes
from utils.files import file_sha256, write_run


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


def save_run(args, method, defense, student, s_ckpt, rows, kept, extra, summary):
    """Write the erased model, the per-epoch CSV and the JSON summary as one unit, the JSON last: it marks
    the run as done and records the sha256 of the other two. `defense`: the method's defenses.Defense entry
    (files of its own, whether a teacher taught the run). Returns the model's path."""
    path, run_name = model_path(args, method), result_name(args, method)
    arch = args.t_name if method == 'teacher' and args.teacher_from_scratch else args.s_name
    model = checkpoint_bytes(student, arch, args.num_classes, epoch=kept['epoch'], acc=kept['acc'], asr=kept['asr'],
                             ra=kept['ra'], method=method, protocol=args.protocol, keep_rule=args.keep,
                             config=vars(args), eval_precision='float32',
                             source_checkpoint=source_checkpoint(args, method))
    if defense.write_files:
        defense.write_files(args, os.path.join(args.log_root, run_name), extra)
    summary = {**summary, 'student_checkpoint': {'path': args.s_model, 'sha256': file_sha256(args.s_model),
                                      'epoch': s_ckpt.get('epoch'), 'acc': s_ckpt.get('acc'), 'asr': s_ckpt.get('asr')},
               'teacher_checkpoint': {'path': args.t_model, 'sha256': file_sha256(args.t_model)}
               if defense.needs_teacher else None,
               **{k: v for k, v in extra.items() if not k.startswith('_')},  # '_...': for write_files only
               'config': vars(args), 'epochs': rows}
    write_run(path, model, os.path.join(args.log_root, run_name), rows, summary)
    return path
