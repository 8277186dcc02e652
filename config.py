"""Every knob of the scripts, with the paper's defaults (NAD, ICLR 2021, Sec. 4.1 and Appendix A).

`get_arguments()` is NAD's parser (main.py); `get_badnet_arguments()` is train_badnet.py's. Both share
the data, attack and runtime options. `parse(parser, argv)` parses and validates once, so bad input
ends with one clear line (and exit code 2) before any work starts.
"""
import argparse
import copy
import os

from at import ATTENTIONS
from attacks import ATTACKS, TRIGGER_NAMES, check_trigger_name
from attacks.cl import PGD_MODEL, PGD_STEPS, pgd_step_size
from data_loader import TARGET_TYPES, TRAIN_SIZES, holdout_size, subset_size
from defenses import DEFENSES, defense_of, method_of, settle_defense_flags
from models import build_model
from utils import UserError
from utils.checkpoint import add_trust_checkpoint
from utils.cli import HelpFormatter, check_finite
from utils.paths import ROOT, add_replace_shipped, input_file, output_file, writable_dir


# Erasing protocols: the schedule and optimiser a defense fine-tunes with. `--protocol NAME` sets these
# defaults (any flag given explicitly wins) and is recorded in every result file.
PROTOCOLS = {
    # The authors' code (bboylyg/NAD main.py + utils/util.py adjust_learning_rate, since 6907ea2):
    # 20 epochs, lr 0.1 for epochs 0-1 then 0.01, SGD Nesterov, weight decay 1e-4, batch 64, Cutout 3.
    'code': {'epochs': 20, 'lr': 0.1, 'schedule': [2], 'gamma': 0.1, 'nesterov': True, 'momentum': 0.9,
             'weight_decay': 1e-4, 'batch_size': 64, 'cutout_length': 3},
    # The paper's text (Sec. 4.1, Appendix A): 10 epochs, lr 0.1 divided by 10 every 2 epochs, Cutout 9.
    'paper': {'epochs': 10, 'lr': 0.1, 'schedule': [2, 4, 6, 8], 'gamma': 0.1, 'nesterov': False, 'momentum': 0.9,
              'weight_decay': 1e-4, 'batch_size': 64, 'cutout_length': 9},
    # This project's earlier default: the paper's text at lr 0.01 (lr 0.1 wrecked the shipped student's ACC).
    'paper-lr0.01': {'epochs': 10, 'lr': 0.01, 'schedule': [2, 4, 6, 8], 'gamma': 0.1, 'nesterov': False,
                     'momentum': 0.9, 'weight_decay': 1e-4, 'batch_size': 64, 'cutout_length': 9},
}
DEFAULT_PROTOCOL = 'paper-lr0.01'

# Backdoor training recipes for train_badnet.py (`--recipe NAME` sets these defaults; explicit flags win).
# 'zoo' is train_badnet.py's own defaults; 'authors' is the original repository's train_badnet.py: SGD
# Nesterov lr 0.1 held constant (its schedule drops only after epoch 20), weight decay 1e-4, batch 64, no
# augmentation, no shuffling, `range(1, 20)`: 19 epochs. Its maintainer says those backdoors are why plain
# fine-tuning already removes them (bboylyg/NAD issue 17).
RECIPES = {
    'zoo': {},
    'authors': {'epochs': 19, 'lr': 0.1, 'lr_schedule': 'constant', 'warmup_epochs': 0.0, 'nesterov': True,
                'weight_decay': 1e-4, 'batch_size': 64, 'augment': False, 'shuffle': False},
}


def _add_common(p, zoo=False, clean=False):
    g = p.add_argument_group('data and attack')
    g.add_argument('--attack', default=None, choices=list(ATTACKS) + (['clean'] if clean else []),
                   help='a named attack of the paper (target label 0; see attacks/__init__.py): sets the trigger, '
                        'target type, target label and inject rate' + (', and picks its zoo models' if zoo else '')
                        + '; any of those flags given explicitly wins' + ('. clean: no poisoning' if clean else ''))
    g.add_argument('--dataset', default='CIFAR10', choices=['CIFAR10', 'GTSRB'])
    g.add_argument('--data_root', default=None, help='dataset cache folder (default: ./data)')
    g.add_argument('--trigger_type', default='gridTrigger', help=f"one of: {', '.join(TRIGGER_NAMES)}")
    g.add_argument('--target_type', default='all2one', help=f"one of: {', '.join(TARGET_TYPES)}")
    g.add_argument('--target_label', type=int, default=5)
    g.add_argument('--inject_portion', type=float, default=0.1, help='fraction of training images poisoned')
    g.add_argument('--trigger_alpha', type=float, default=None,
                   help='blend ratio of the blending triggers (randomPixelTrigger 0.2, signalTrigger 0.2, '
                        'centerTrigger 1.0 by default); the adaptive attack sweeps it')
    g.add_argument('--trig_w', type=int, default=3, help='trigger width (kept for the original interface)')
    g.add_argument('--trig_h', type=int, default=3, help='trigger height (kept for the original interface)')
    g = p.add_argument_group('runtime')
    g.add_argument('--device', default='auto', help='auto (CUDA if present), cpu, cuda, cuda:N')
    g.add_argument('--amp', default='auto', choices=['auto', 'on', 'off'],
                   help='autocast: auto = bfloat16 on CPUs with AMX/AVX512-BF16, float32 elsewhere (on CUDA too: '
                        'measured faster for WRN-16-1 on an H200); on = bfloat16 (CUDA without it: float16)')
    g.add_argument('--seed', type=int, default=0, help='seeds data selection, poisoning, init, shuffling, augmentation')
    g.add_argument('--cuda_graphs', default='off', choices=['off', 'on'],
                   help='on: replay each training step (forward and backward) from a CUDA graph captured once: '
                        'float32 on CUDA, for the fine-tuning, NAD, KD, two-stage and Cutout defenses and plain '
                        'backdoor training (elsewhere it says why not and runs as usual); off until measured on a '
                        'GPU (issue 35)')
    g.add_argument('--eval_batch_size', type=int, default=500, help='500 measured faster than 1000 on 2-core CPUs')
    g.add_argument('--test_limit', type=int, default=None,
                   help='measure ACC, ASR and RA on the first N test images only (default: all): for quick '
                        'checks, recorded with the result like every flag')
    g.add_argument('--num_classes', type=int, default=None, help='default: from the dataset')
    add_trust_checkpoint(g)
    return p


def _add_outputs(g, log_root_help):
    g.add_argument('--log_root', default='./runs', help=log_root_help + ' (default ./runs, git-ignored: the shipped '
                                                          'results/ are written only by the commands that make them)')
    add_replace_shipped(g)


def _add_optim(p, epochs, lr, batch_size, weight_decay, nesterov_preset):
    g = p.add_argument_group('optimisation')
    g.add_argument('--epochs', type=int, default=epochs)
    g.add_argument('--batch_size', type=int, default=batch_size)
    g.add_argument('--lr', type=float, default=lr)
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--weight_decay', type=float, default=weight_decay)
    g.add_argument('--nesterov', action=argparse.BooleanOptionalAction, default=False,
                   help=f'Nesterov momentum, as the original code used (default: off; {nesterov_preset} turns it on)')
    return g


def get_arguments():
    """main.py: NAD with the paper's settings. All betas 0 is plain fine-tuning."""
    p = argparse.ArgumentParser(description='Neural Attention Distillation: erase a backdoor from a model',
                                formatter_class=HelpFormatter)
    g = p.add_argument_group('models')
    g.add_argument('--s_model', default='./weight/s_net/WRN-16-1-S-model_best.pth.tar', help='backdoored student')
    g.add_argument('--t_model', default='./weight/t_net/WRN-16-1-T-model_best.pth.tar',
                   help='fine-tuned teacher (with --make_teacher: where the teacher is saved; if not given, '
                        './runs/weights/<student>-T.pth.tar)')
    g.add_argument('--s_name', default='WRN-16-1')
    g.add_argument('--t_name', default='WRN-16-1')
    g.add_argument('--checkpoint_root', default='./weight/erasing_net', help='where the erased model is saved')
    _add_outputs(g, 'where the per-epoch CSV and JSON summary go')
    g.add_argument('--run_name', default=None, help='name of the result files (default: derived from the run)')
    g.add_argument('--make_teacher', action='store_true',
                   help='fine-tune the student on the clean data (all betas 0) and save it as --t_model')
    g.add_argument('--defense', default='nad', choices=DEFENSES,
                   help='nad; finetune (= all betas 0); fineprune; mixup; cutout; argd; kd (logit distillation); twostage '
                        "(the teacher fine-tuned again); mcr; nc (Neural Cleanse); strip (see defenses/)")
    g.add_argument('--teacher_from_scratch', action='store_true',
                   help='with --make_teacher: train a fresh --t_name model on the clean subset instead of '
                        'fine-tuning the student (paper Table 2, Fig. 4); give it more --epochs and a larger --lr')
    g.add_argument('--keep', default='last', choices=['last', 'oracle', 'holdout'],
                   help="which epoch's model is saved: last (a defender's choice: ASR needs the trigger), "
                        'oracle (highest ACC - ASR, uses the trigger; for analysis only), or holdout '
                        '(best accuracy on --holdout images; set automatically by --holdout)')
    g.add_argument('--holdout', type=float, default=0.0,
                   help='early stopping (Appendix J): hold out this fraction of the clean subset, keep the epoch '
                        'with the best accuracy on it, stop after --patience epochs without improvement (0: off)')
    g.add_argument('--patience', type=int, default=2)
    g.add_argument('--eval_every', type=int, default=1,
                   help='measure ACC and ASR after every N-th epoch and after the last; 0: only after the last, '
                        "and take 'before' from the student checkpoint's recorded ACC/ASR when it was made with "
                        'the same trigger (what reproduce.py does: the test set is most of a short run\'s time)')
    g.add_argument('--iterations', type=int, default=1,
                   help="iterative NAD (Appendix G): rounds; each later round restarts from the backdoored model "
                        "with the previous round's erased model as the teacher")
    # lr 0.01, not the paper's 0.1: measured on the shipped student, lr 0.1 (and 0.03) wrecks it in the
    # first epoch (ACC 88 -> 16, ending near 56 after 10 epochs), while 0.01 keeps ACC at 85 and still
    # erases the backdoor (docs/REPRODUCING.md, "The shipped model, in more detail"). `--lr 0.1` gives the
    # paper's value.
    p.add_argument('--protocol', default=DEFAULT_PROTOCOL, choices=list(PROTOCOLS),
                   help="erasing schedule preset (config.PROTOCOLS): code = the authors' code (20 epochs, lr 0.1 "
                        'then 0.01 from epoch 2, Nesterov, Cutout 3); paper = the paper\'s text (10 epochs, lr 0.1 '
                        '/10 every 2 epochs, Cutout 9); paper-lr0.01 = the same at lr 0.01. Explicit flags win')
    preset = PROTOCOLS[DEFAULT_PROTOCOL]
    _add_optim(p, epochs=preset['epochs'], lr=preset['lr'], batch_size=preset['batch_size'],
               weight_decay=preset['weight_decay'], nesterov_preset='--protocol code')
    p.add_argument('--schedule', type=int, nargs='*', default=preset['schedule'],
                   help='epochs where lr is multiplied by --gamma')
    p.add_argument('--gamma', type=float, default=preset['gamma'])
    p.add_argument('--ratio', type=float, default=0.05, help='fraction of the training set given to the defender')
    p.add_argument('--cutout_length', type=int, default=None,
                   help="Cutout hole size (0: off). Default: the protocol's (paper 9, code 3), 3 for --defense "
                        'cutout (Appendix B), 0 for --defense mixup')
    g = p.add_argument_group('attention distillation')
    g.add_argument('--beta1', type=float, default=500.0, help='weight of the group-1 attention loss')
    g.add_argument('--beta2', type=float, default=1000.0, help='weight of the group-2 attention loss')
    g.add_argument('--beta3', type=float, default=1000.0, help='weight of the group-3 attention loss')
    g.add_argument('--p', type=float, default=2.0, help='power of the attention operator')
    g.add_argument('--attention', default='sum_p', choices=ATTENTIONS,
                   help='A_sum, A^p_sum (default), A^p_mean, or activation: the raw feature maps (Table 8)')
    g.add_argument('--at_form', default='code', choices=['code', 'paper'],
                   help='code: MSE of normalised maps (the original code; betas tuned for it); paper: L2 norm')
    g = p.add_argument_group('baseline defenses')
    g.add_argument('--mixup_alpha', type=float, default=1.0, help='Mixup Beta(alpha, alpha) (Appendix B: 1)')
    g.add_argument('--prune_ratio', type=float, default=None,
                   help='fine-pruning: fraction of last-layer channels to mask; default: searched, see --prune_max_drop')
    g.add_argument('--prune_max_drop', type=float, default=4.0,
                   help='fine-pruning search (Liu et al.): prune in steps of 5%% while the clean-subset accuracy '
                        'stays within this many points of the unpruned model')
    g.add_argument('--prune_target_acc', type=float, default=None,
                   help='fine-pruning search: instead, prune while the clean-subset accuracy stays at or above this '
                        '(e.g. to match another defense, as the paper matched NAD)')
    g.add_argument('--argd_edge', type=float, default=20.0,
                   help='ARGD: weight of the attention-relation edge term (20 and 100 make each extra term start at '
                        'about a third of the vertex terms on the shipped model)')
    g.add_argument('--argd_embed', type=float, default=100.0, help='ARGD: weight of the cross-layer embedding term')
    g.add_argument('--kd_t', type=float, default=4.0,
                   help="KD (--defense kd, Hinton et al. 2015): softmax temperature T (4: RepDistiller's CIFAR default)")
    g.add_argument('--kd_alpha', type=float, default=0.9,
                   help='KD: loss = (1 - alpha) CE + alpha T^2 KL(teacher || student); 0.9 as RepDistiller '
                        '(Tian et al. 2020) runs KD on CIFAR (CE weight 0.1)')
    g.add_argument('--mcr_epochs', type=int, default=100, help='MCR: epochs of curve training')
    g.add_argument('--mcr_lr', type=float, default=0.01, help='MCR: initial lr of the curve (cosine decay)')
    g.add_argument('--mcr_t', type=float, default=0.3, help='MCR: the point on the curve that is reported and saved')
    g.add_argument('--mcr_points', type=float, nargs='*', default=[i / 10 for i in range(11)],
                   help='MCR: points t evaluated along the curve (written to <run>_curve.csv/.png)')
    g.add_argument('--mcr_end', default=None, help='MCR: checkpoint at t = 1 (default: the backdoored model)')
    g.add_argument('--nc_epochs', type=int, default=20, help='Neural Cleanse: epochs of trigger reverse-engineering '
                   'over the clean subset (all classes at once)')
    g.add_argument('--nc_lr', type=float, default=0.1, help='Neural Cleanse: Adam lr of the masks and patterns')
    g.add_argument('--nc_init_cost', type=float, default=1e-3, help='Neural Cleanse: initial weight of the mask L1 norm')
    g.add_argument('--nc_patience', type=int, default=5, help='Neural Cleanse: epochs before the cost moves up or down')
    g.add_argument('--nc_unlearn_ratio', type=float, default=0.2,
                   help='Neural Cleanse: fraction of each unlearning batch stamped with the reversed trigger')
    g.add_argument('--strip_n', type=int, default=100, help='STRIP: clean images each input is superimposed on')
    g.add_argument('--strip_inputs', type=int, default=2000, help='STRIP: clean and triggered test inputs measured')
    g.add_argument('--strip_frr', type=float, default=0.01, help='STRIP: false rejection rate that sets the threshold')
    return _add_common(p, zoo=True)


def get_badnet_arguments():
    """train_badnet.py: train a backdoored model from scratch."""
    p = argparse.ArgumentParser(description='Train a backdoored WRN on a poisoned training set',
                                formatter_class=HelpFormatter)
    p.add_argument('--s_name', default='WRN-16-1', help='architecture, WRN-<depth>-<width>')
    p.add_argument('--output', default=None,
                   help='checkpoint path (default: runs/weights/<s_name>-<attack>.pth.tar, or '
                        '<s_name>-<trigger>-<target_type>-<target>.pth.tar without --attack)')
    _add_outputs(p, 'where the per-epoch CSV and JSON summary go')
    _add_optim(p, epochs=30, lr=0.1, batch_size=128, weight_decay=5e-4, nesterov_preset='--recipe authors')
    p.add_argument('--recipe', default='zoo', choices=list(RECIPES),
                   help="training preset (config.RECIPES): zoo = these defaults; authors = the original repository's "
                        'train_badnet.py (19 epochs at a constant lr 0.1, Nesterov, wd 1e-4, batch 64, no augmentation, '
                        'no shuffling). Explicit flags win')
    p.add_argument('--lr_schedule', default='linear', choices=['linear', 'constant'],
                   help='linear: warm-up for --warmup_epochs, then linear decay to 0; constant: --lr throughout')
    p.add_argument('--warmup_epochs', type=float, default=1.0, help='linear lr warm-up, then linear decay to 0')
    p.add_argument('--no-augment', dest='augment', action='store_false',
                   help='train without random crop and flip (as the original did; makes backdoors brittle)')
    p.add_argument('--no-shuffle', dest='shuffle', action='store_false',
                   help='serve the training set in its order every epoch, the last partial batch included (as the '
                        'original did)')
    p.add_argument('--cutout_length', type=int, default=0, help='Cutout hole size during training (0: off)')
    p.add_argument('--train_limit', type=int, default=None,
                   help='train on the first N training images only (default: all): a smoke test, recorded with '
                        'the model like every flag')
    p.add_argument('--init', default=None,
                   help='start from this checkpoint instead of random weights (e.g. the clean model)')
    g = p.add_argument_group('clean-label attack (cl): PGD on the poisoned target-class images')
    p.add_argument('--adv_eps', type=float, default=0.0,
                   help='adversarial training (FGSM with random start) at this L-inf eps on [0, 1] pixels, e.g. '
                        '8/255 = 0.0314, to make a robust model for --pgd_model, as Turner et al. do (0: off)')
    g.add_argument('--pgd_model', default=PGD_MODEL,
                   help='the model the PGD perturbations are computed against: a robust one, made with --adv_eps, as '
                        'Turner et al. do (docs/ZOO.md; against the clean model the backdoor stays weak)')
    g.add_argument('--pgd_eps', type=float, default=0.0,
                   help="L-inf bound on [0, 1] pixels of the PGD on the poisoned images (0: none; the 'cl' preset: 0.15, "
                        'the paper\'s value)')
    g.add_argument('--pgd_steps', type=int, default=PGD_STEPS)
    g.add_argument('--pgd_step_size', type=float, default=None, help='default: 2.5 * eps / steps (Madry et al.)')
    return _add_common(p, clean=True)


RUN_NAME_MAX = 200  # a run's name, leaving room for the suffixes of its files (_curve.csv, _strip.png, .tar)


def check_name(name, flag):
    """A run name is a file name stem: no folder separators, no '..', not empty, short enough."""
    seps = [s for s in (os.sep, os.altsep) if s]
    if not name or name in ('.', '..') or any(s in name for s in seps) or '\0' in name:
        raise UserError(f"{flag} '{name}' must be a plain name: no '/', not '.' or '..' (runs are filed under --log_root)")
    if len(name.encode()) > RUN_NAME_MAX:
        raise UserError(f'{flag} is {len(name.encode())} bytes long: at most {RUN_NAME_MAX}')


def check_paths(args, outputs):
    """Every path flag, checked before any work: inputs exist, outputs can be written and do not replace a
    shipped file by accident. `outputs`: (flag, path) of each file this run will write."""
    data_root = args.data_root or os.path.join(ROOT, 'data')
    if os.path.exists(data_root) and not os.path.isdir(data_root):
        raise UserError(f'--data_root {data_root} is a file, not a directory')
    if not (os.path.isdir(data_root) and os.listdir(data_root)):  # a filled cache may be read-only
        writable_dir(data_root, '--data_root')
    for flag in ('s_model', 'init', 'mcr_end'):
        input_file(getattr(args, flag, None), f'--{flag}')
    if hasattr(args, 'defense') and defense_of(method_of(args)).needs_teacher:  # the runs that load a teacher
        input_file(args.t_model, '--t_model')
    if getattr(args, 'pgd_eps', 0) > 0:  # the clean-label attack's PGD loads its model
        input_file(args.pgd_model, '--pgd_model')
    for flag in ('log_root', 'checkpoint_root'):
        if hasattr(args, flag):
            writable_dir(getattr(args, flag), f'--{flag}')
    for flag, path in outputs:
        output_file(path, f'--{flag}', args)


def explicit_flags(parser, argv=None):
    """The dests of the flags given on the command line (not defaults or presets)."""
    bare = copy.deepcopy(parser)
    for action in bare._actions:
        action.default = argparse.SUPPRESS
    bare._defaults = {}  # presets (set_defaults) are not flags either
    return set(vars(bare.parse_known_args(argv)[0]))


def zoo_paths(attack, arch='WRN-16-1'):
    """Where the zoo keeps an attack's backdoored model (student) and its fine-tuned teacher."""
    if attack == 'clean':
        return f'./weight/clean/{arch}-clean.pth.tar', None
    return f'./weight/s_net/{arch}-{attack}.pth.tar', f'./weight/t_net/{arch}-{attack}-T.pth.tar'


def attack_defaults(attack, parser):
    """The defaults a named attack sets: its trigger, target type, inject rate, target 0, zoo models."""
    dests = {a.dest for a in parser._actions}
    preset = {k: v for k, v in ATTACKS.get(attack, ATTACKS['badnets']).preset().items() if k in dests}
    if 's_model' in dests:
        preset['s_model'], preset['t_model'] = zoo_paths(attack)
    return preset


def validate(args):
    """Raise UserError on the first bad value, naming it."""
    check_trigger_name(args.trigger_type)
    if getattr(args, 'run_name', None) is not None:
        check_name(args.run_name, '--run_name')
    if args.target_type not in TARGET_TYPES:
        raise UserError(f"unknown target type '{args.target_type}' (choose from {', '.join(TARGET_TYPES)})")
    if args.num_classes is None:
        args.num_classes = {'CIFAR10': 10, 'GTSRB': 43}[args.dataset]
    if args.num_classes < 2:
        raise UserError(f'--num_classes {args.num_classes}: a classifier needs at least 2 classes')
    if not 0 <= args.target_label < args.num_classes:
        raise UserError(f'--target_label {args.target_label} is outside 0..{args.num_classes - 1}')
    for name in ('inject_portion', 'ratio'):
        value = getattr(args, name, None)
        if value is not None and not 0 < value <= 1:
            raise UserError(f'--{name} {value} must be in (0, 1]')
    for name in ('beta1', 'beta2', 'beta3', 'weight_decay'):
        if getattr(args, name, 0) < 0:
            raise UserError(f'--{name} {getattr(args, name)} must not be negative')
    if not 0 <= args.momentum < 1:
        raise UserError(f'--momentum {args.momentum} must be in [0, 1)')
    if args.nesterov and args.momentum == 0:
        raise UserError('--nesterov needs a positive --momentum (or pass --no-nesterov)')
    if args.trigger_alpha is not None and not 0 < args.trigger_alpha <= 1:
        raise UserError(f'--trigger_alpha {args.trigger_alpha} must be in (0, 1]')
    if min(args.trig_w, args.trig_h) < 1:
        raise UserError('--trig_w and --trig_h must be at least 1')
    for name in ('epochs', 'batch_size', 'eval_batch_size'):
        if getattr(args, name) < 1:
            raise UserError(f'--{name} must be at least 1')
    for name in ('test_limit', 'train_limit'):
        limit = getattr(args, name, None)
        if limit is not None and limit < 1:
            raise UserError(f'--{name} {limit} must be at least 1')
    if args.lr <= 0:
        raise UserError(f'--lr {args.lr} must be positive')
    if not 0 <= getattr(args, 'adv_eps', 0) < 1:
        raise UserError('--adv_eps must be in [0, 1)')
    if not 0 <= getattr(args, 'warmup_epochs', 0) <= args.epochs:
        raise UserError(f'--warmup_epochs {args.warmup_epochs} must be in [0, --epochs]')
    if not 0 <= getattr(args, 'pgd_eps', 0) <= 1:
        raise UserError(f'--pgd_eps {args.pgd_eps} must be in [0, 1] (pixels are in [0, 1])')
    if getattr(args, 'pgd_steps', 1) < 1:
        raise UserError('--pgd_steps must be at least 1')
    if getattr(args, 'pgd_step_size', None) is not None and args.pgd_step_size <= 0:
        raise UserError(f'--pgd_step_size {args.pgd_step_size} must be positive')
    if (getattr(args, 'cutout_length', 0) or 0) < 0:
        raise UserError('--cutout_length must not be negative')
    if hasattr(args, 'defense'):
        _validate_defense(args)
    check_counts(args)
    for name in ('s_name', 't_name'):
        if hasattr(args, name):
            build_model(getattr(args, name), args.num_classes)  # raises UserError on an unknown architecture
    return args


def check_counts(args):
    """The image counts the fractions give, checked before any work: a run on no images would end 'done'."""
    total = TRAIN_SIZES[args.dataset]
    if getattr(args, 'train_limit', None):  # train_badnet.py trains on the first --train_limit images
        total = min(total, args.train_limit)
    if hasattr(args, 'ratio'):
        clean = subset_size(total, args.ratio)
        held = holdout_size(clean, args.holdout)
        if clean - held < 1:
            raise UserError(f'--ratio {args.ratio:g} gives {clean} of the {total} training images'
                            + (f', {clean - held} left after --holdout {args.holdout:g}' if held else '')
                            + ': nothing to fine-tune on')
        if args.holdout and held < 1:
            raise UserError(f'--holdout {args.holdout:g} of {clean} clean images holds out none')
    if getattr(args, 'attack', None) != 'clean' and hasattr(args, 'inject_portion') and subset_size(total, args.inject_portion) < 1:
        raise UserError(f'--inject_portion {args.inject_portion:g} poisons none of the {total} training images')


def _validate_defense(args):
    settle_defense_flags(args, PROTOCOLS[args.protocol]['cutout_length'])
    if args.teacher_from_scratch and not args.make_teacher:
        raise UserError('--teacher_from_scratch only goes with --make_teacher')
    if not 0 <= args.holdout < 1:
        raise UserError(f'--holdout {args.holdout} must be in [0, 1)')
    if args.holdout:
        args.keep = 'holdout'
    elif args.keep == 'holdout':
        raise UserError('--keep holdout needs --holdout, the fraction of the clean subset to hold out')
    if args.eval_every < 0:
        raise UserError('--eval_every must not be negative')
    if args.keep == 'oracle' and args.eval_every != 1:
        raise UserError('--keep oracle compares every epoch by ACC and ASR, so it needs --eval_every 1')
    if args.prune_ratio is not None and not 0 <= args.prune_ratio < 1:
        raise UserError(f'--prune_ratio {args.prune_ratio} must be in [0, 1)')
    for name in ('patience', 'iterations', 'mcr_epochs', 'nc_epochs', 'nc_patience', 'strip_n', 'strip_inputs'):
        if getattr(args, name) < 1:
            raise UserError(f'--{name} must be at least 1')
    for name in ('mixup_alpha', 'argd_edge', 'argd_embed', 'prune_max_drop'):
        if getattr(args, name) < 0:
            raise UserError(f'--{name} {getattr(args, name)} must not be negative')
    if args.nc_lr <= 0 or args.nc_init_cost <= 0:
        raise UserError('--nc_lr and --nc_init_cost must be positive')
    for name in ('nc_unlearn_ratio', 'strip_frr'):
        if not 0 < getattr(args, name) < 1:
            raise UserError(f'--{name} {getattr(args, name)} must be in (0, 1)')
    if args.mcr_lr <= 0:
        raise UserError(f'--mcr_lr {args.mcr_lr} must be positive')
    if args.p <= 0:
        raise UserError(f'--p {args.p} must be positive (the power of the attention operator)')
    if args.gamma <= 0:
        raise UserError(f'--gamma {args.gamma} must be positive')
    if any(m < 0 for m in args.schedule):
        raise UserError('--schedule epochs must not be negative')
    if args.prune_target_acc is not None and not 0 <= args.prune_target_acc <= 100:
        raise UserError(f'--prune_target_acc {args.prune_target_acc} must be a percentage in [0, 100]')
    if not all(0 <= t <= 1 for t in args.mcr_points + [args.mcr_t]):
        raise UserError('--mcr_t and --mcr_points must lie in [0, 1]')
    if args.kd_t <= 0:
        raise UserError(f'--kd_t {args.kd_t} must be positive (the softmax temperature of KD)')
    if not 0 <= args.kd_alpha <= 1:
        raise UserError(f'--kd_alpha {args.kd_alpha} must be in [0, 1] (the weight of KD\'s soft term)')
    if args.defense == 'twostage' and (args.t_name != args.s_name or args.iterations > 1):
        raise UserError('--defense twostage fine-tunes the teacher in the student\'s place: it needs --t_name equal to '
                        '--s_name, and one --iterations round')
    if args.iterations > 1 and not DEFENSES[args.defense].needs_teacher:
        raise UserError('--iterations applies to the distillation defenses (nad, argd, kd)')


def parse(parser, argv=None):
    """Parse and validate. A --protocol, a --recipe and a named --attack first set their defaults, so explicit
    flags still win."""
    known = parser.parse_known_args(argv)[0]
    if getattr(known, 'protocol', None):  # the erasing schedule; cutout is settled per defense in validate
        parser.set_defaults(**{k: v for k, v in PROTOCOLS[known.protocol].items() if k != 'cutout_length'})
    if getattr(known, 'recipe', None):  # train_badnet.py's backdoor training preset
        parser.set_defaults(**RECIPES[known.recipe])
    if known.attack:
        parser.set_defaults(**attack_defaults(known.attack, parser))
    args = validate(check_finite(parser, parser.parse_args(argv)))
    if getattr(args, 'make_teacher', False) and 't_model' not in explicit_flags(parser, argv):
        # a new teacher goes to the git-ignored runs/, never over the shipped one (--t_model says where)
        stem = os.path.basename(args.s_model).split('.')[0]
        args.t_model = os.path.join('.', 'runs', 'weights', f'{stem}-T.pth.tar')
    if getattr(args, 'pgd_step_size', 1) is None:
        args.pgd_step_size = pgd_step_size(args.pgd_eps, args.pgd_steps)
    return args
