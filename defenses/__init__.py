"""The defenses, one entry each: what `main.py --defense NAME` runs, and what reproduce.py and the
analyses read (a defense's name in tables, whether it needs a teacher, the paper's Table 1 values).

Most defenses fine-tune the backdoored model on the clean subset in the one shared loop
(defenses.finetuning.fine_tune, on utils.engine.fit) and differ only in their loss (`loss`), sometimes after a model surgery
(`prepare`); a defense that does something else (MCR, Neural Cleanse, STRIP) brings its own `procedure`.

    nad        CE + sum_l beta_l * AT(student_l, teacher_l)                       (Li et al., ICLR 2021)
    finetune   CE on the clean subset (NAD with all betas 0)
    mixup      CE on mixed pairs, alpha 1                                          (NAD paper, Appendix B)
    cutout     fine-tuning with a 3x3 Cutout hole                                  (NAD paper, Appendix B)
    fineprune  mask the least active channels of the last layer, then fine-tune    (Liu et al., RAID 2018)
    argd       NAD's vertex terms + attention-relation edges + cross-layer embeddings (Xia et al., IJCAI 2022)
    kd         (1 - alpha) CE + alpha T^2 KL(teacher / T || student / T): logits, not attention (Hinton et al. 2015)
    twostage   the teacher itself fine-tuned again with CE under the student's protocol (no distillation)
    mcr        a Bezier curve between two models, its bend trained; the model at t   (Zhao et al., ICLR 2020)
    nc         Neural Cleanse: reverse-engineer each class's trigger, flag outliers, unlearn (Wang et al., S&P 2019)
    strip      STRIP: flag inputs whose predictions stay confident when superimposed (Gao et al., ACSAC 2019)

Adding a defense: a module here with its loss (signature of nad.loss) or its procedure (mcr.procedure),
and one entry in DEFENSES.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

from defenses import argd, fineprune, kd, mcr, mixup, nad, neural_cleanse, strip, twostage
from utils import UserError


@dataclass(frozen=True)
class Defense:
    title: str                            # its name in tables and figures
    loss: Optional[Callable] = None       # loss(args, teacher, device) -> (loss_fn(model, x, y), own parameters)
    prepare: Optional[Callable] = None    # prepare(args, student, loaders, device, amp_dtype) -> summary fields
    procedure: Optional[Callable] = None  # instead of fine-tuning: (args, student, loaders, ...) -> rows, kept, fields
    write_files: Optional[Callable] = None  # write_files(args, result stem, fields): files beside the run's results
    needs_teacher: bool = False           # distils from --t_model
    cutout_length: Optional[int] = None   # its own Cutout default (None: the protocol's); an explicit flag wins
    capturable: bool = False              # its loss may run from a CUDA graph (--cuda_graphs): a pure function of
                                          # the model's and the teacher's outputs, no parameters of its own
    table1: bool = False                  # a column of reproduce.py's Table 1
    paper: dict = field(default_factory=dict)  # the paper's Table 1: attack -> (ASR, ACC)


DEFENSES = {  # Table 1's columns in the paper's order, then the other defenses of its appendix
    'finetune': Defense('Fine-tuning', loss=nad.plain_loss, capturable=True, table1=True, paper={
        'badnets': (17.18, 81.22), 'trojan': (71.76, 77.88), 'blend': (36.60, 81.22), 'cl': (75.08, 81.73),
        'sig': (9.18, 81.28), 'refool': (14.38, 80.34), 'average': (37.36, 80.61)}),
    'fineprune': Defense('Fine-pruning', loss=nad.plain_loss, prepare=fineprune.prepare, table1=True, paper={
        'badnets': (99.73, 81.14), 'trojan': (41.00, 78.17), 'blend': (93.62, 81.13), 'cl': (29.88, 79.32),
        'sig': (74.26, 81.60), 'refool': (63.49, 80.64), 'average': (67.00, 80.50)}),
    'mcr': Defense('MCR (t=0.3)', procedure=mcr.procedure, write_files=mcr.write_files, table1=True, paper={
        'badnets': (4.65, 80.94), 'trojan': (41.25, 78.76), 'blend': (64.33, 80.34), 'cl': (32.95, 79.04),
        'sig': (1.62, 80.94), 'refool': (8.76, 78.84), 'average': (25.59, 79.81)}),
    'nad': Defense('NAD', loss=nad.loss, capturable=True, needs_teacher=True, table1=True, paper={
        'badnets': (4.77, 81.17), 'trojan': (19.63, 79.16), 'blend': (4.04, 81.68), 'cl': (9.18, 80.34),
        'sig': (2.52, 81.95), 'refool': (3.18, 80.73), 'average': (7.22, 80.83)}),
    'argd': Defense('ARGD', loss=argd.loss, needs_teacher=True, table1=True),  # not in the paper
    # NAD's controls (the `teacher` analysis): the same teacher, without the attention term
    'kd': Defense('KD', loss=kd.loss, capturable=True, needs_teacher=True),
    'twostage': Defense('Two-stage FT', loss=nad.plain_loss, capturable=True, prepare=twostage.prepare,
                        needs_teacher=True),
    'mixup': Defense('Mixup', loss=mixup.loss, cutout_length=0),
    'cutout': Defense('Cutout', loss=nad.plain_loss, capturable=True, cutout_length=3),
    'nc': Defense('Neural Cleanse', procedure=neural_cleanse.procedure, write_files=neural_cleanse.write_files),
    'strip': Defense('STRIP', procedure=strip.procedure, write_files=strip.write_files),  # detects; the model stays
}


def settle_defense_flags(args, protocol_cutout):
    """The flags that follow from the chosen defense (config.py calls this while validating main.py's flags):
    its Cutout default unless --cutout_length was given, and all betas 0 for fine-tuning and for
    --make_teacher, which is fine-tuning (NAD's teacher is the student fine-tuned)."""
    if args.cutout_length is None:
        own = DEFENSES[args.defense].cutout_length
        args.cutout_length = protocol_cutout if own is None else own
    if args.make_teacher and args.defense not in ('nad', 'finetune'):  # nad: the default of --defense
        raise UserError('--make_teacher fine-tunes the student; it cannot be combined with --defense ' + args.defense)
    if args.make_teacher or args.defense == 'finetune':
        args.beta1 = args.beta2 = args.beta3 = 0.0


def method_of(args):
    """The name a main.py run's results are filed under: 'teacher' for --make_teacher, and NAD with every
    beta 0 is fine-tuning, so named."""
    if args.make_teacher:
        return 'teacher'
    if args.defense == 'nad' and not any((args.beta1, args.beta2, args.beta3)):
        return 'finetune'
    return args.defense


def defense_of(method):
    """The entry that runs `method` (making the teacher is fine-tuning)."""
    return DEFENSES['finetune' if method == 'teacher' else method]
