"""The paper's analyses, run by `python reproduce.py --analysis NAME ...`. Each writes a CSV and a PNG
into results/ (named after the analysis and the attack) and prints its table. All runs go through the
resumable runner of reproduce.py (one main.py or train_badnet.py process each, results/grid/<run>.json).

    curves        ACC and ASR after every epoch of fine-tuning and NAD                 (Fig. 13)
    attention     attention maps of each residual group, one triggered image, before
                  and after every defense; similarity to the clean image's maps        (Fig. 3)
    ratio         fine-tuning and NAD with 1/5/10/15/20% clean data                     (Fig. 2)
    beta          NAD with growing beta; picks the largest beta whose ACC stays at or
                  above --acc_threshold (the paper's selection rule)                   (Fig. 8)
    attention_fns NAD with each attention function, and with raw activations           (Tables 7, 8)
    teachers      NAD with teachers of five architectures trained from scratch
                  on the clean subset                                                  (Table 2)
    all2all       an all-to-all BadNets model (trained here), fine-tuning and NAD      (Fig. 10)
    adaptive      the centre-square attack at alpha 0.2/0.5/0.8/1.0 (trained here),
                  fine-tuning and NAD with beta 10,000 (20,000 at alpha 1.0)           (Table 9)
    paper_lr      fine-tuning and NAD on every --attacks model at the paper's lr 0.1 instead of our
                  0.01, the teacher being that lr-0.1 fine-tuned model           (Table 1's setting)
    nad_beta      NAD on every --attacks model with --nad_beta (the beta that `beta` picked)
    tradeoff      fine-tuning and NAD on every --attacks model under the `code` protocol at first-phase
                  lr 0.003 / 0.01 / 0.03 / 0.1: ASR against ACC, NAD minus fine-tuning at matched ACC
    tradeoff_harsh  the same, plus NAD and KD at every lr taught by the seed's `code` (lr 0.1) teacher
    teacher       NAD, KD and two-stage fine-tuning under each --student_protocols with the teacher of each
                  --teacher_protocols, beside fine-tuning: does a stronger teacher make NAD beat fine-tuning,
                  and is the attention term what helps (NAD - KD, NAD - two-stage, paired by seed)
    protocols     fine-tuning and NAD on the quick-start model under every protocol, every --seeds:
                  which protocol meets the paper's claim (picks main.py's default)
    detection     Neural Cleanse and STRIP on every --attacks zoo model and after NAD, every --seeds
    attribution   BadNets, Trojan and SIG backdoored with the authors' recipe (train_badnet.py --recipe
                  authors) beside the zoo's, fine-tuning and NAD on both under every protocol: which
                  factor, backdoor recipe or erasing protocol, moves the ASR
"""
import argparse
import os

import torch

from at import attention as attention_map
from config import PROTOCOLS, get_arguments, zoo_paths
from attacks import ATTACKS, TABLE1, TABLE3, build_trigger
from defenses import DEFENSES
from data_loader import DATA_ROOT, DatasetBD, load_dataset
from models import ARCHS, select_model
from utils.cli import HelpFormatter, run
from utils.files import atomic_write, write_csv
from utils.figures import pyplot, save_figure

SEEDS = [0, 1, 2]  # every table's mean and sd are over these
RATIOS = (0.01, 0.05, 0.10, 0.15, 0.20)
BETAS = (500, 1000, 2000, 5000, 10000, 20000, 50000)  # beta2 = beta3 = B, beta1 = B / 2 (the default's shape)
ATTENTION_FNS = (('sum', 1.0), ('sum_p', 2.0), ('sum_p', 4.0), ('mean_p', 2.0), ('activation', 2.0))
ADAPTIVE_ALPHAS = (0.2, 0.5, 0.8, 1.0)
# A teacher trained from scratch on the 2,500 clean images: 10 epochs, lr 0.1 divided by 10 at epochs 6 and 8.
# Short, so that the five architectures (WRN-40-2 costs 12x WRN-16-1) fit in about half an hour on a 2-core CPU.
TEACHER_EPOCHS, TEACHER_SCHEDULE = 10, (6, 8)


def method_name(method):
    """A method's name in figures: the defense's title, 'backdoored' before any defense, and for the harsh
    trade-off's runs the title and their teacher."""
    if method.endswith(HARSH_SUFFIX):
        return f'{method_name(method.removesuffix(HARSH_SUFFIX))}, {HARSH_TEACHER} teacher'
    return 'backdoored' if method == 'before' else DEFENSES[method].title if method in DEFENSES else method


def finetune_then_nad(runner, ft_name, nad_name, common, teacher_at=None, need_model=False):
    """Fine-tuning with the `common` flags, then NAD with the same flags taught by that fine-tuned model.
    Fine-tuning is `--defense finetune`, or with `teacher_at` a `--make_teacher` run saving there, as Table
    1's teachers are. Returns both summaries (None where not made); need_model: NAD's erased model must be on
    disk too. A stored NAD run needs its teacher's record, not its model file (a grid copied from another
    machine brings JSON files only); the runner makes the teacher again when a NAD run still to make reads it."""
    made_by = ['--make_teacher', '--t_model', teacher_at] if teacher_at else ['--defense', 'finetune']
    ft = runner(ft_name, [*common, *made_by])
    return ft, ft and runner(nad_name, [*common, '--t_model', ft['checkpoint']], need_model)


def report(args, name, rows):
    """Write rows to results/<name>.csv and print them as a small table (--dry_run: neither)."""
    if args.dry_run:  # the rows hold only the runs already stored: writing them would clobber a full result
        return
    write_csv(os.path.join(args.results, f'{name}.csv'), rows)
    print(f'{name}:')
    for r in rows:
        print('  ' + ' | '.join(f'{k} {v:.2f}' if isinstance(v, float) else f'{k} {v}' for k, v in r.items()))


def after(summary):
    return {'acc': summary['after']['acc'], 'asr': summary['after']['asr']}


# --- Fig. 13: learning curves ------------------------------------------------------------------------

def curves(args, runner):
    attack, seed = args.analysis_attack, args.seeds[0]
    rows = []
    for method in ('finetune', 'nad'):
        summary = runner(f'curves_{attack}_{method}_seed{seed}',
                         ['--attack', attack, '--seed', seed, '--defense', method, '--eval_every', 1])
        if summary:
            rows += [{'method': method, 'epoch': r['epoch'], 'acc': r['acc'], 'asr': r['asr']} for r in summary['epochs']]
    if not rows:
        return
    line_plot(args, f'curves_{attack}', rows, 'epoch', 'epoch',
              title=f'{attack}: test ACC and ASR per epoch (seed {seed})')


# --- Fig. 3: attention maps ------------------------------------------------------------------------------

@torch.no_grad()
def attention(args, runner):
    """Per group, A^2_sum of one triggered test image (the first of class 1, say) before and after each defense,
    and over 500 triggered images the cosine similarity between a model's map of the triggered image and
    of the same image clean (1.0: the trigger no longer changes where the model looks)."""
    attack, seed = args.analysis_attack, args.seeds[0]
    models = {'before': zoo_paths(attack)[0]}
    for defense in args.defenses:
        summary = runner.defense(attack, defense, seed, need_model=True)
        if summary:
            models[defense] = summary['checkpoint']
    if args.dry_run:
        return
    preset = ATTACKS[attack]
    data, num_classes = load_dataset('CIFAR10', DATA_ROOT)
    x, y = data['test']
    keep = y != 0
    clean = x[keep][:500]
    triggered = DatasetBD(x, y, build_trigger(preset.trigger_type), preset.target_type, 0, mode='test',
                          num_classes=num_classes).x[:500]
    to_float = lambda u: u.float() / 255  # noqa: E731
    rows, maps = [], {}
    for name, path in models.items():
        model = select_model('WRN-16-1', num_classes, path)[0].eval()
        groups_t = model(to_float(triggered))[:-1]
        groups_c = model(to_float(clean))[:-1]
        maps[name] = [attention_map(g[:1], 2.0, 'sum_p')[0] for g in groups_t]
        row = {'model': name}
        for i, (gt, gc) in enumerate(zip(groups_t, groups_c), 1):
            at, ac = attention_map(gt, 2.0, 'sum_p').flatten(1), attention_map(gc, 2.0, 'sum_p').flatten(1)
            row[f'group{i}_similarity'] = torch.nn.functional.cosine_similarity(at, ac).mean().item()
        rows.append(row)
    name = f'attention_maps_{attack}'
    report(args, name, rows)
    plt = pyplot()
    fig, axes = plt.subplots(len(maps), 4, figsize=(6.4, 1.7 * len(maps)))
    for r, (model, group_maps) in enumerate(maps.items()):
        axes[r, 0].imshow(triggered[0].permute(1, 2, 0).numpy())
        axes[r, 0].set_ylabel(method_name(model), fontsize=8)
        for g, am in enumerate(group_maps, 1):
            axes[r, g].imshow(am.numpy(), cmap='jet')
            if r == 0:
                axes[r, g].set_title(f'group {g}', fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f'{attack}: attention maps (A$^2_{{sum}}$) of a triggered test image', fontsize=9)
    save_figure(fig, os.path.join(args.results, f'{name}.png'))


# --- Fig. 2: clean-data ratio ------------------------------------------------------------------------------

def ratio(args, runner):
    """Fine-tuning and NAD on each fraction of clean data. NAD's teacher is the model fine-tuned on that same
    fraction (at 5%: the zoo's teacher, which is exactly that), as in the paper where the teacher is
    fine-tuned on the defender's data."""
    attack, rows = args.analysis_attack, []
    for r in RATIOS:
        for seed in args.seeds:
            if r == 0.05:
                ft, nad = runner.defense(attack, 'finetune', seed), runner.defense(attack, 'nad', seed)
            else:
                common = ['--attack', attack, '--seed', seed, '--eval_every', 0, '--ratio', r]
                ft, nad = finetune_then_nad(runner, f'ratio_{attack}_finetune_r{r}_seed{seed}',
                                            f'ratio_{attack}_nad_r{r}_seed{seed}', common)
            rows += [{'method': method, 'ratio': r, 'seed': seed, **after(s)}
                     for method, s in (('finetune', ft), ('nad', nad)) if s]
    if rows:
        line_plot(args, f'ratio_{attack}', rows, 'ratio', 'clean data (fraction of the training set)')


def line_plot(args, name, rows, x_key, x_label, log_x=False, title=None):
    """CSV of rows, and ACC / ASR against x_key, one line per method (seeds averaged)."""
    report(args, name, rows)
    if args.dry_run:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), layout='constrained')
    for ax, metric in zip(axes, ('acc', 'asr')):
        for method in dict.fromkeys(r['method'] for r in rows):
            xs = sorted({r[x_key] for r in rows if r['method'] == method})
            ys = [sum(r[metric] for r in rows if r['method'] == method and r[x_key] == v) /
                  sum(1 for r in rows if r['method'] == method and r[x_key] == v) for v in xs]
            ax.plot(xs, ys, 'o-', ms=4, label=method_name(method))
        ax.set_xlabel(x_label)
        ax.set_ylabel(f'{metric.upper()} (%)')
        if log_x:
            ax.set_xscale('log')
        ax.legend()
    if title:
        fig.suptitle(title)
    save_figure(fig, os.path.join(args.results, f'{name}.png'))


# --- Fig. 8: beta sweep and selection ----------------------------------------------------------------------

def beta(args, runner):
    """Raise beta until ACC falls below --acc_threshold; the pick is the last beta that stayed at or above."""
    attack, seed, rows, picked = args.analysis_attack, args.seeds[0], [], None
    for b in BETAS:
        summary = nad_with_beta(runner, attack, seed, b)
        if not summary:  # the next beta only once this one is known (the rule may stop here)
            break
        rows.append({'method': 'nad', 'beta': b, **after(summary)})
        if rows[-1]['acc'] < args.acc_threshold:
            break
        picked = b
    if not rows or args.dry_run:
        return
    line_plot(args, f'beta_{attack}', rows, 'beta', 'beta (beta1 = beta / 2)', log_x=True)
    print(f'beta: picked {picked} (the largest tried whose ACC stays >= {args.acc_threshold}; '
          f'beta1 = {picked and picked / 2})' if picked else
          f'beta: even beta {BETAS[0]} drops ACC below {args.acc_threshold}')


def nad_with_beta(runner, attack, seed, b):
    """NAD with beta2 = beta3 = b and beta1 = b / 2, the default's shape (b = 1000 is Table 1's run)."""
    return runner.defense(attack, 'nad', seed) if b == 1000 else runner(
        f'beta_{attack}_b{b}_seed{seed}',
        ['--attack', attack, '--seed', seed, '--eval_every', 0, '--beta1', b / 2, '--beta2', b, '--beta3', b])


# --- Tables 7 and 8: attention functions and raw activations -----------------------------------------------

def attention_fns(args, runner):
    attack, rows = args.analysis_attack, []
    for kind, p in ATTENTION_FNS:
        for seed in args.seeds:
            summary = runner.defense(attack, 'nad', seed) if (kind, p) == ('sum_p', 2.0) else runner(
                f'attention_{attack}_{kind}_p{p:g}_seed{seed}',
                ['--attack', attack, '--seed', seed, '--eval_every', 0, '--attention', kind, '--p', p])
            if summary:
                rows.append({'attention': kind, 'p': p, 'seed': seed, **after(summary)})
    if rows:
        report(args, f'attention_functions_{attack}', rows)


# --- Table 2: teacher architectures ---------------------------------------------------------------------------

def teachers(args, runner):
    attack, seed, rows = args.analysis_attack, args.seeds[0], []
    for arch in ARCHS:
        teacher_path = os.path.join(args.models, 'teachers', f'{arch}_seed{seed}.pth.tar')
        made = runner(f'teacher_scratch_{arch}_seed{seed}',
                      ['--attack', attack, '--seed', seed, '--make_teacher', '--teacher_from_scratch',
                       '--t_name', arch, '--t_model', teacher_path, '--epochs', TEACHER_EPOCHS, '--lr', 0.1,
                       '--schedule', *TEACHER_SCHEDULE, '--eval_every', 0])
        summary = runner(f'teachers_{attack}_{arch}_seed{seed}',
                         ['--attack', attack, '--seed', seed, '--eval_every', 0, '--t_name', arch,
                          '--t_model', teacher_path])
        if made and summary:
            rows.append({'teacher': arch, 'teacher_acc': made['after']['acc'], 'teacher_asr': made['after']['asr'],
                         **after(summary)})
    if rows:
        report(args, f'teachers_{attack}', rows)


# --- Fig. 10 and Table 9: all-to-all and adaptive attacks ---------------------------------------------------

BACKDOOR_EPOCHS = 15  # as long as the zoo's BadNets model


def backdoored_model(runner, name, attack_flags, args):
    """Train (once) a backdoored WRN-16-1 the zoo's way: from scratch, train_badnet.py's defaults, 15 epochs."""
    path = os.path.join(args.models, 'backdoored', f'{name}.pth.tar')
    runner.train(name, ['--epochs', BACKDOOR_EPOCHS, '--seed', 0, '--output', path, *attack_flags])
    return path


def defend(runner, name, attack_flags, s_model, args, nad_flags=()):
    """Teacher, fine-tuning and NAD for one backdoored model; rows of ACC / ASR."""
    seed = args.seeds[0]
    t_model = os.path.join(args.models, 'backdoored', f'{name}-T_seed{seed}.pth.tar')
    common = [*attack_flags, '--s_model', s_model, '--seed', seed]
    name = f'{name}_seed{seed}'
    runner(f'{name}_teacher', [*common, '--make_teacher', '--t_model', t_model, '--eval_every', 0])
    rows = []
    for method, extra in (('finetune', ['--defense', 'finetune']), ('nad', ['--t_model', t_model, *nad_flags])):
        summary = runner(f'{name}_{method}', [*common, '--eval_every', 0, *extra])
        if summary:
            rows.append({'model': name, 'method': method, 'before_acc': summary['before']['acc'],
                         'before_asr': summary['before']['asr'], **after(summary)})
    return rows


def all2all(args, runner):
    flags = ['--attack', 'all2all']
    rows = defend(runner, 'all2all', flags, backdoored_model(runner, 'all2all', flags, args), args)
    if rows:
        report(args, 'all2all', rows)


def adaptive(args, runner):
    rows = []
    for alpha in ADAPTIVE_ALPHAS:
        flags = ['--attack', 'adaptive', '--trigger_alpha', alpha]
        b = 20000 if alpha == 1.0 else 10000  # Table 9's betas
        rows += [{'alpha': alpha, **r} for r in defend(
            runner, f'adaptive_a{alpha}', flags, backdoored_model(runner, f'adaptive_a{alpha}', flags, args), args,
            nad_flags=['--beta1', b, '--beta2', b, '--beta3', b])]
    if rows:
        report(args, 'adaptive', rows)


# --- Table 1 at the paper's learning rate --------------------------------------------------------------------

def paper_lr(args, runner):
    """Fine-tuning and NAD at lr 0.1. The teacher is that fine-tuned model, as the zoo's teachers are the
    lr-0.01 fine-tuned models: the two runs share the clean subset, schedule and seed."""
    rows = []
    for attack in args.attacks:
        for seed in args.seeds:
            common = ['--attack', attack, '--seed', seed, '--eval_every', 0, '--lr', 0.1]
            ft, nad = finetune_then_nad(runner, f'lr0.1_{attack}_finetune_seed{seed}', f'lr0.1_{attack}_nad_seed{seed}',
                                        common)
            if nad:
                rows.append({'attack': attack, 'seed': seed, 'before_acc': ft['before']['acc'],
                             'before_asr': ft['before']['asr'], 'finetune_acc': ft['after']['acc'],
                             'finetune_asr': ft['after']['asr'], 'nad_acc': nad['after']['acc'],
                             'nad_asr': nad['after']['asr']})
    if rows:
        report(args, 'paper_lr', rows)


# --- Table 1 with the beta the selection rule picked ----------------------------------------------------------

def nad_beta(args, runner):
    """NAD with --nad_beta (beta2 = beta3 = B, beta1 = B / 2; by default 5000, what `beta` picks on BadNets)
    on every --attacks model, beside Table 1's fine-tuning and NAD at the default beta 1000."""
    rows, b = [], args.nad_beta
    for attack in args.attacks:
        for seed in args.seeds:
            ft, nad = runner.defense(attack, 'finetune', seed), runner.defense(attack, 'nad', seed)
            big = nad_with_beta(runner, attack, seed, b)
            if ft and nad and big:
                rows.append({'attack': attack, 'seed': seed, 'finetune_acc': ft['after']['acc'],
                             'finetune_asr': ft['after']['asr'], 'nad_acc': nad['after']['acc'],
                             'nad_asr': nad['after']['asr'], f'nad_beta{b}_acc': big['after']['acc'],
                             f'nad_beta{b}_asr': big['after']['asr']})
    if rows:
        report(args, f'nad_beta{b}', rows)


# --- The ACC-ASR trade-off: fine-tuning and NAD at several fine-tuning strengths -----------------------------

TRADEOFF_LRS = (0.003, 0.01, 0.03, 0.1)  # first-phase lr of the `code` schedule (x0.1 from epoch 2)


def tradeoff(args, runner):
    """Fine-tuning and NAD on every --attacks model under the `code` protocol at each first-phase lr of
    TRADEOFF_LRS, every --seeds; NAD's teacher is the fine-tuned model of the same lr and seed (at lr 0.1,
    Table 1's runs). Writes tradeoff.csv (one row per run), tradeoff.png (ASR against ACC per attack, one
    curve per defense, mean and sd over seeds) and tradeoff_summary.csv: NAD's ASR minus fine-tuning's at
    NAD's ACC (fine-tuning's curve of the same seed interpolated), mean and sd per attack."""
    rows = tradeoff_runs(args, runner)
    if not rows or args.dry_run:
        return
    summary = [{'attack': attack, **matched_difference([r for r in rows if r['attack'] == attack])}
               for attack in args.attacks]
    report(args, 'tradeoff', rows)
    report(args, 'tradeoff_summary', summary)
    tradeoff_plot(args, rows)


def tradeoff_runs(args, runner):
    """The trade-off's rows: fine-tuning and NAD taught by the fine-tuned model of its own lr, per attack,
    seed and lr (the stored runs; those still to make are planned)."""
    rows = []
    for attack in args.attacks:
        for seed in args.seeds:
            for lr in TRADEOFF_LRS:
                if lr == PROTOCOLS['code']['lr']:
                    ft = runner.defense(attack, 'finetune', seed, protocol='code')
                    nad = runner.defense(attack, 'nad', seed, protocol='code')
                else:
                    common = ['--attack', attack, '--seed', seed, '--eval_every', 0, '--protocol', 'code', '--lr', lr]
                    ft, nad = finetune_then_nad(runner, f'tradeoff_{attack}_finetune_lr{lr:g}_seed{seed}',
                                                f'tradeoff_{attack}_nad_lr{lr:g}_seed{seed}', common)
                rows += [{'attack': attack, 'method': method, 'lr': lr, 'seed': seed, **after(s),
                          'ra': s['after'].get('ra')} for method, s in (('finetune', ft), ('nad', nad)) if s]
    return rows


# The trade-off with a harsh teacher: NAD and KD at every student lr taught by the seed's `code` teacher (lr 0.1,
# then 0.01). 'nad' and 'finetune' stay the trade-off's own runs (NAD taught by the fine-tuned model of its lr).
HARSH_TEACHER = 'code'
HARSH_SUFFIX = f'_{HARSH_TEACHER}_teacher'
HARSH_METHODS = ('nad', 'nad' + HARSH_SUFFIX, 'kd' + HARSH_SUFFIX)  # compared with fine-tuning at matched ACC


def tradeoff_harsh(args, runner):
    """The trade-off of `tradeoff` (its runs, reused), plus NAD and KD at each first-phase lr of TRADEOFF_LRS
    taught by the seed's `code` teacher, Table 1's lr-0.1 fine-tuned model, whatever the student's lr: does a
    teacher stronger than the student's own schedule move NAD's curve off fine-tuning's, and does logit
    distillation from it do as well? Writes tradeoff_harsh.csv (one row per run), tradeoff_harsh.png (the
    curves of fine-tuning, NAD with the teacher of its lr, and NAD and KD with the code teacher) and
    tradeoff_harsh_summary.csv (each of HARSH_METHODS minus fine-tuning in ASR at its ACC, as tradeoff_summary;
    and NAD minus KD taught by the same teacher at the same lr and seed, the attention term against logit
    distillation); tradeoff's own files are left as they are."""
    rows = tradeoff_runs(args, runner)
    for attack in args.attacks:
        for seed in args.seeds:
            for lr in TRADEOFF_LRS:
                for method in ('nad', 'kd'):
                    s = harsh_run(runner, attack, method, seed, lr)
                    if s:
                        rows.append({'attack': attack, 'method': method + HARSH_SUFFIX, 'lr': lr, 'seed': seed,
                                     **after(s), 'ra': s['after'].get('ra')})
    if not rows or args.dry_run:
        return
    summary = []
    for attack in args.attacks:
        cell, runs = {'attack': attack}, [r for r in rows if r['attack'] == attack]
        for method in HARSH_METHODS:
            matched = matched_difference(runs, method)
            cell.update({f'{method}_minus_ft_asr': matched[f'{method}_minus_ft_asr'], f'{method}_sd': matched['sd'],
                         f'{method}_matched_runs': matched['matched_runs']})
        cell.update(paired_difference(runs, 'nad' + HARSH_SUFFIX, 'kd' + HARSH_SUFFIX, 'nad_minus_kd'))
        summary.append(cell)
    report(args, 'tradeoff_harsh', rows)
    report(args, 'tradeoff_harsh_summary', summary)
    tradeoff_plot(args, rows, 'tradeoff_harsh', ('finetune', *HARSH_METHODS),
                  f"; NAD: taught by the fine-tuned model of its lr; {HARSH_TEACHER} teacher: the lr-0.1 one")


def harsh_run(runner, attack, method, seed, lr):
    """`method` (nad, kd) under the `code` schedule at first-phase `lr`, taught by the seed's code teacher. The
    run names no --t_model: the runner hands every distillation run the teacher of its --protocol (code) and
    seed, whatever its --lr. At lr 0.1 it is Table 1's run (NAD) or the teacher analysis's (KD)."""
    if lr == PROTOCOLS[HARSH_TEACHER]['lr']:
        return runner.defense(attack, method, seed, protocol=HARSH_TEACHER)
    return runner(f'tradeoff_{attack}_{method}_lr{lr:g}_teacher-{HARSH_TEACHER}_seed{seed}',
                  ['--attack', attack, '--seed', seed, '--eval_every', 0, '--protocol', HARSH_TEACHER, '--lr', lr,
                   '--defense', method])


def matched_difference(rows, method='nad'):
    """`method`'s ASR minus fine-tuning's at the same ACC: for every run of `method`, fine-tuning's ASR at that
    ACC is read off the same seed's fine-tuning curve (linear in ACC between its runs; runs outside its ACC
    range are left out). Mean and sd over those runs, and how many there were."""
    diffs = []
    for seed in sorted({r['seed'] for r in rows}):
        ft = sorted((r['acc'], r['asr']) for r in rows if r['seed'] == seed and r['method'] == 'finetune')
        for r in (r for r in rows if r['seed'] == seed and r['method'] == method):
            for (a0, s0), (a1, s1) in zip(ft, ft[1:]):
                if a0 <= r['acc'] <= a1:
                    at = s0 if a1 == a0 else s0 + (s1 - s0) * (r['acc'] - a0) / (a1 - a0)
                    diffs.append(r['asr'] - at)
                    break
    if not diffs:
        return {f'{method}_minus_ft_asr': None, 'sd': None, 'matched_runs': 0}
    mean = sum(diffs) / len(diffs)
    sd = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 if len(diffs) > 1 else 0.0
    return {f'{method}_minus_ft_asr': mean, 'sd': sd, 'matched_runs': len(diffs)}


def paired_difference(rows, method, other, name):
    """`method`'s ACC and ASR minus `other`'s in the runs of the same seed and lr: mean and sd over those pairs
    ({name}_acc, {name}_acc_sd, {name}_asr, {name}_asr_sd) and how many there were ({name}_pairs)."""
    runs = {(r['method'], r['seed'], r['lr']): r for r in rows}
    pairs = [(r, runs[(other, r['seed'], r['lr'])]) for key, r in runs.items()
             if key[0] == method and (other, *key[1:]) in runs]
    cell = {f'{name}_pairs': len(pairs)}
    for metric in ('acc', 'asr'):
        mean, sd = mean_sd([a[metric] - b[metric] for a, b in pairs]) if pairs else (None, None)
        cell.update({f'{name}_{metric}': mean, f'{name}_{metric}_sd': sd})
    return cell


def tradeoff_plot(args, rows, name='tradeoff', methods=('finetune', 'nad'), note=''):
    """ASR against ACC per attack, a curve per method over TRADEOFF_LRS (mean and sd over seeds): results/<name>.png."""
    plt = pyplot()
    attacks = list(dict.fromkeys(r['attack'] for r in rows))
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.2 * len(attacks), 3.2), layout='constrained', squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for method in methods:
            points = []
            for lr in TRADEOFF_LRS:
                runs = [r for r in rows if r['attack'] == attack and r['method'] == method and r['lr'] == lr]
                if runs:
                    points.append([mean_sd([r[k] for r in runs]) for k in ('acc', 'asr')])
            if points:
                (acc, acc_sd), (asr, asr_sd) = [zip(*column) for column in zip(*points)]
                ax.errorbar(acc, asr, xerr=acc_sd, yerr=asr_sd, fmt='o-', ms=4, capsize=2, label=method_name(method))
        ax.set_title(attack)
        ax.set_xlabel('ACC (%)')
        ax.set_ylabel('ASR (%)')
        ax.legend()
    fig.suptitle(f"code protocol, first-phase lr {', '.join(map(str, TRADEOFF_LRS))}; mean and sd over seeds{note}")
    save_figure(fig, os.path.join(args.results, f'{name}.png'))


def mean_sd(values):
    """Mean and sample sd; (None, None) where a value is missing (RA of runs made before it was recorded)."""
    if any(v is None for v in values):
        return None, None
    mean = sum(values) / len(values)
    return mean, ((sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0)


def grouped(rows, fields):
    """The rows by their values of `fields`, as {key tuple: rows}, in the order the keys first appear."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[f] for f in fields), []).append(r)
    return groups


# --- Which protocol is main.py's default: the quick-start model under each ------------------------------------

QUICKSTART = './weight/s_net/WRN-16-1-S-model_best.pth.tar'  # main.py's default student (BadNets, target 5)


def protocols(args, runner):
    """Fine-tuning (= NAD's teacher) and NAD on the quick-start model under every protocol and --seeds.
    A protocol reproduces the paper's claim when NAD's mean ASR is below 5%, its mean ACC at least 80% and
    its ASR below fine-tuning's under that protocol. Writes protocols.csv (one row per run) and
    protocols_summary.csv (mean and sd per protocol and method, and whether the claim holds)."""
    rows = []
    for protocol in PROTOCOLS:
        for seed in args.seeds:
            common = ['--s_model', QUICKSTART, '--seed', seed, '--protocol', protocol, '--eval_every', 0]
            name = f'quickstart_teacher_{protocol}_seed{seed}'  # fine-tuning: the same run, as in Table 1
            ft, nad = finetune_then_nad(runner, name, f'quickstart_nad_{protocol}_seed{seed}', common,
                                        teacher_at=os.path.join(args.models, name, 'teacher.pth.tar'))
            rows += [{'protocol': protocol, 'method': method, 'seed': seed, **after(s), 'ra': s['after'].get('ra')}
                     for method, s in (('finetune', ft), ('nad', nad)) if s]
    if not rows or args.dry_run:
        return
    summary = []
    for protocol in dict.fromkeys(r['protocol'] for r in rows):
        cell = {'protocol': protocol}
        for method in ('finetune', 'nad'):
            runs = [r for r in rows if r['protocol'] == protocol and r['method'] == method]
            for m in ('acc', 'asr', 'ra'):
                cell[f'{method}_{m}'], cell[f'{method}_{m}_sd'] = mean_sd([r[m] for r in runs])
        cell['seeds'] = len(runs)
        cell['claim_holds'] = cell['nad_asr'] < 5 and cell['nad_acc'] >= 80 and cell['nad_asr'] < cell['finetune_asr']
        summary.append(cell)
    report(args, 'protocols', rows)
    report(args, 'protocols_summary', summary)


# --- Why the paper differs: the backdoor's training recipe against the erasing protocol -----------------------

ATTRIBUTION_ATTACKS = ('badnets', 'trojan', 'sig')


def authors_model(attack, arch='WRN-16-1'):
    """Where the zoo keeps the attack's model backdoored with the authors' recipe."""
    return f'./weight/s_net/{arch}-{attack}-authors.pth.tar'


def attribution(args, runner):
    """For each attack of ATTRIBUTION_ATTACKS (and --attacks), the zoo's model and one trained with the original
    repository's recipe (made once, seed 0, shipped under its own name); fine-tuning (= NAD's teacher) and
    NAD on both under every protocol and --seeds. The zoo model's runs are Table 1's. Writes
    attribution.csv (one row per run) and attribution_summary.csv (mean and sd per attack, recipe,
    protocol and method)."""
    rows = []
    for attack in [a for a in ATTRIBUTION_ATTACKS if a in args.attacks]:  # --attacks: a slice, to run side by side
        path = authors_model(attack)
        made = runner.train(os.path.basename(path).split('.')[0],
                            ['--attack', attack, '--recipe', 'authors', '--seed', 0, '--output', path])
        if made:
            rows.append({'attack': attack, 'recipe': 'authors', 'protocol': None, 'method': 'before', 'seed': 0,
                         'acc': made['final']['acc'], 'asr': made['final']['asr'], 'ra': made['final'].get('ra')})
        for protocol in PROTOCOLS:
            for seed in args.seeds:
                name = f'{attack}-authors_teacher_{protocol}_seed{seed}'
                common = ['--attack', attack, '--s_model', path, '--seed', seed, '--protocol', protocol, '--eval_every', 0]
                ft, nad = finetune_then_nad(runner, name, f'{attack}-authors_nad_{protocol}_seed{seed}', common,
                                            teacher_at=os.path.join(args.models, name, 'teacher.pth.tar'))
                runs = {('authors', 'finetune'): ft, ('authors', 'nad'): nad,
                        ('zoo', 'finetune'): runner.defense(attack, 'finetune', seed, protocol=protocol),
                        ('zoo', 'nad'): runner.defense(attack, 'nad', seed, protocol=protocol)}
                rows += [{'attack': attack, 'recipe': recipe, 'protocol': protocol, 'method': method, 'seed': seed,
                          **after(s), 'ra': s['after'].get('ra')} for (recipe, method), s in runs.items() if s]
    if not rows or args.dry_run:
        return
    for attack in dict.fromkeys(r['attack'] for r in rows):  # the zoo model as Table 1 measured it
        before = runner.before(attack)
        rows.append({'attack': attack, 'recipe': 'zoo', 'protocol': None, 'method': 'before', 'seed': 0,
                     **{m: before[m] for m in ('acc', 'asr', 'ra')}})
    summary, fields = [], ('attack', 'recipe', 'protocol', 'method')
    groups = grouped(rows, fields)
    for key, runs in groups.items():
        cell = dict(zip(fields, key), seeds=len(runs))
        for m in ('asr', 'acc', 'ra'):
            cell[m], cell[f'{m}_sd'] = mean_sd([r[m] for r in runs])
        if key[3] == 'nad':  # paired by seed: the fine-tuned model of the same seed is this NAD run's teacher
            ft = {r['seed']: r['asr'] for r in groups[(*key[:3], 'finetune')]}
            cell['nad_minus_ft_asr'], cell['nad_minus_ft_asr_sd'] = mean_sd([r['asr'] - ft[r['seed']] for r in runs])
        summary.append(cell)
    report(args, 'attribution', rows)
    report(args, 'attribution_summary', summary)
    markdown = attribution_markdown(summary, args.seeds)
    atomic_write(os.path.join(args.results, 'attribution.md'), lambda f: f.write(markdown.encode()))
    print(markdown)


def attribution_markdown(summary, seeds):
    """One row per attack, backdoor recipe and protocol: the backdoored model, fine-tuning, NAD (ASR / ACC) and
    NAD's ASR minus fine-tuning's, paired by seed."""
    cells = {(c['attack'], c['recipe'], c['protocol'], c['method']): c for c in summary}

    def number(c, m, form='.2f'):
        return f"{c[m]:{form}}" if c['seeds'] == 1 else f"{c[m]:{form}}+-{c[f'{m}_sd']:.2f}"

    lines = [f"ASR / ACC in %, mean +- sd over seeds {' '.join(map(str, seeds))} (the seed draws the clean subset, "
             "the augmentation and the teacher); NAD - FT: NAD's ASR minus fine-tuning's, paired by seed. Backdoor "
             "recipe: zoo = train_badnet.py's defaults, authors = the original repository's (`--recipe authors`).",
             '', '| attack | backdoor recipe | before | protocol | fine-tuning | NAD | NAD - FT ASR |',
             '|---|---|---|---|---|---|---|']
    for attack, recipe in dict.fromkeys(k[:2] for k in cells):
        before = cells.get((attack, recipe, None, 'before'))
        for protocol in PROTOCOLS:
            ft, nad = cells.get((attack, recipe, protocol, 'finetune')), cells.get((attack, recipe, protocol, 'nad'))
            if not (ft and nad):
                continue
            lines.append(f"| {attack} | {recipe} | " +
                         (f"{before['asr']:.2f} / {before['acc']:.2f}" if before else '-') +
                         f" | {protocol} | {number(ft, 'asr')} / {number(ft, 'acc')} | {number(nad, 'asr')} / "
                         f"{number(nad, 'acc')} | {number(nad, 'nad_minus_ft_asr', '+.2f')} |")
    return '\n'.join(lines) + '\n'


# --- Detection: Neural Cleanse and STRIP on the zoo, before and after NAD ------------------------------------

def detection(args, runner):
    """Neural Cleanse and STRIP on every --attacks zoo model and on its NAD-erased model (NAD as in Table 1,
    same protocol and seed, but runs of its own: Table 1's models are not kept in git, and re-making them
    here would replace its stored runs), every --seeds (the seed draws NC's clean subset and initial masks,
    STRIP's calibration and overlay images). Writes detection.csv (one row per run) and detection_summary.csv
    (per attack and model, NC's anomaly index, how many seeds flag the true target and anything else, ACC/ASR
    after unlearning; STRIP's FRR, FAR and AUROC; mean and sd over the seeds), a subset's named by
    detection_name. Compute on a 2-core CPU: an NC run takes about 5 minutes with AVX512-BF16, a STRIP run
    2.5, the teacher and NAD 2.5 together; about four times as long on an AVX2-only one."""
    rows = []
    for attack in args.attacks:
        for seed in args.seeds:
            name, common = f'detection_{attack}_teacher_seed{seed}', ['--attack', attack, '--seed', seed,
                                                                       '--eval_every', 0]

            def nad(need_model):  # the erased model is needed to make a run on it, not to count a stored one
                return finetune_then_nad(runner, name, f'detection_{attack}_nad_seed{seed}', common,
                                         os.path.join(args.models, name, 'teacher.pth.tar'), need_model)[1]
            erased = nad(False)
            for model, student in (('backdoored', None), ('after NAD', erased and (erased, lambda: nad(True)))):
                if model == 'after NAD' and not student:
                    continue
                for method in ('nc', 'strip'):
                    tag = 'nad' if student else 'zoo'
                    summary = runner(f'detection_{attack}_{tag}_{method}_seed{seed}',
                                     ['--attack', attack, '--seed', seed, '--defense', method, '--eval_every', 0],
                                     student=student)
                    if summary:
                        rows.append({'attack': attack, 'model': model, 'method': method, 'seed': seed,
                                     **detection_result(method, summary)})
    if not rows or args.dry_run:
        return
    summary, fields = [], ('attack', 'model', 'method')
    for key, runs in grouped(rows, fields).items():
        cell = dict(zip(fields, key), seeds=len(runs))
        if key[2] == 'nc':
            cell['target_flagged'] = sum(r['target_flagged'] for r in runs)
            cell['other_flagged'] = sum(bool(r['other_flagged']) for r in runs)
        for m in (('asr_before', 'anomaly_index', 'acc', 'asr') if key[2] == 'nc' else ('frr', 'far', 'auroc')):
            cell[m], cell[f'{m}_sd'] = mean_sd([r[m] for r in runs])
        summary.append(cell)
    name = detection_name(args)
    report(args, name, rows)
    report(args, f'{name}_summary', summary)
    markdown = detection_markdown(summary, args.seeds)
    atomic_write(os.path.join(args.results, f'{name}.md'), lambda f: f.write(markdown.encode()))
    print(markdown)


def detection_name(args):
    """'detection' for every Table 1 attack and seeds 0 1 2; a subset is named for what it holds (e.g.
    detection_seeds0), so that a slice of this long grid never overwrites the whole."""
    return '_'.join(subset_parts('detection', args))


def subset_parts(name, args):
    """The parts of an analysis's file name over --attacks and --seeds: the name alone for every Table 1 attack
    and seeds 0 1 2, else also the attacks and seeds it holds."""
    parts = [name]
    if sorted(args.attacks) != sorted(TABLE1):
        parts.append('-'.join(args.attacks))
    if sorted(args.seeds) != SEEDS:
        parts.append('seeds' + '-'.join(map(str, args.seeds)))
    return parts


def detection_markdown(summary, seeds):
    """Two tables: Neural Cleanse (does it flag the target, its anomaly index, the model after
    unlearning) and STRIP (FRR, FAR, AUROC), per attack, on the backdoored model and after NAD."""
    def number(c, m, form='.2f'):
        return f"{c[m]:{form}}" + (f"+-{c[f'{m}_sd']:{form}}" if c['seeds'] > 1 else '')

    head = (f"Mean +- sd over seeds {' '.join(map(str, seeds))} (the seed draws NC's clean subset and initial masks, "
            "STRIP's calibration and overlay images, and NAD's run). Flagged: in how many of the seeds.")
    nc = ['| attack | model | ASR | flags the target | flags another class | anomaly index | ACC / ASR after NC |',
          '|---|---|---|---|---|---|---|']
    strip = ['| attack | model | FRR % | FAR % | AUROC |', '|---|---|---|---|---|']
    for c in summary:
        where = f"| {c['attack']} | {c['model']} | "
        if c['method'] == 'nc':
            nc.append(where + f"{number(c, 'asr_before')} | {c['target_flagged']} / {c['seeds']} | "
                      f"{c['other_flagged']} / {c['seeds']} | {number(c, 'anomaly_index')} | "
                      f"{number(c, 'acc')} / {number(c, 'asr')} |")
        else:
            strip.append(where + f"{number(c, 'frr')} | {number(c, 'far')} | {number(c, 'auroc', '.3f')} |")
    return '\n'.join([head, '', 'Neural Cleanse (a class is flagged when its anomaly index exceeds 2; unlearning only '
                      'when one is):', '', *nc, '', 'STRIP (threshold at 1% FRR on held-out clean images):', '',
                      *strip]) + '\n'


def detection_result(method, summary):
    """The numbers of one NC or STRIP run (main.py's summary): what the table reports."""
    if method == 'strip':
        return {k: summary['strip'][k] for k in ('frr', 'far', 'auroc')}
    nc = summary['neural_cleanse']
    others = [c for c in nc['flagged'] if c != nc['target_label']]
    return {'anomaly_index': nc['anomaly_index'], 'target': nc['target_label'],
            'flagged': ' '.join(map(str, nc['flagged'])), 'target_flagged': nc['target_flagged'],
            'other_flagged': ' '.join(map(str, others)), 'asr_before': summary['before']['asr'], **after(summary)}


# --- When does NAD beat fine-tuning? A teacher of another protocol, and NAD's controls -------------------------

TEACHER_PROTOCOLS = ('code', 'paper-lr0.01')   # the teacher analysis: the teachers' protocols (lr 0.1 first) ...
STUDENT_PROTOCOLS = ('paper-lr0.01', 'code')   # ... and the students': code -> paper-lr0.01 is the key cell
TAUGHT = ('nad', 'kd', 'twostage')             # the runs that take the teacher (two-stage starts from it)
VERSUS = ('finetune', 'kd', 'twostage')        # NAD minus each, paired by seed
METRICS = ('asr', 'acc', 'ra')
CELL = ('attack', 'teacher_protocol', 'student_protocol')


def teacher(args, runner):
    """For every --attacks zoo model, --seeds, teacher protocol (--teacher_protocols) and student protocol
    (--student_protocols): the teacher (the zoo model fine-tuned under the teacher's protocol: Table 1's
    fine-tuning run of that protocol), fine-tuning under the student's protocol (its Table 1 run), and under
    the student's protocol NAD, KD (logits only) taught by that teacher and two-stage fine-tuning (the
    teacher fine-tuned again). When the two protocols are one, NAD is Table 1's run. Does NAD beat
    fine-tuning when its teacher is stronger than the student's own schedule, and is the attention term
    what helps (NAD - KD, NAD - two-stage), or only the teacher's having erased more? Writes <name>_runs.csv
    (one row per cell, method and seed; a teacher or fine-tuning run is in every cell it belongs to),
    <name>.csv (mean and sd over the seeds per cell and method, and NAD minus each of VERSUS paired by seed;
    an 'average' attack over the attacks run, per seed) and <name>.md; <name> is teacher_name's."""
    rows = []
    for attack in args.attacks:
        for seed in args.seeds:
            for tp in args.teacher_protocols:
                for sp in args.student_protocols:
                    runs = {'teacher': runner.defense(attack, 'finetune', seed, protocol=tp),
                            'finetune': runner.defense(attack, 'finetune', seed, protocol=sp),
                            **{m: runner.defense(attack, m, seed, protocol=sp, teacher_protocol=tp) for m in TAUGHT}}
                    rows += [{'attack': attack, 'teacher_protocol': tp, 'student_protocol': sp, 'method': method,
                              'seed': seed, **after(s), 'ra': s['after'].get('ra')} for method, s in runs.items() if s]
    if not rows or args.dry_run:
        return
    summary = teacher_summary(rows + (attack_average(rows) if len(set(args.attacks) & set(TABLE3)) > 1 else []))
    name = teacher_name(args)
    report(args, f'{name}_runs', rows)
    report(args, name, summary)
    markdown = teacher_markdown(summary, args)
    atomic_write(os.path.join(args.results, f'{name}.md'), lambda f: f.write(markdown.encode()))
    print(markdown)


def attack_average(rows):
    """Per cell of protocols, method and seed, the mean of each metric over the paper's six attacks (those of
    them run; poison-label Refool is not one), as Table 1's average row: attack 'average'."""
    six = [r for r in rows if r['attack'] in TABLE3]
    return [{'attack': 'average', 'teacher_protocol': tp, 'student_protocol': sp, 'method': method, 'seed': seed,
             **{m: mean_sd([r[m] for r in runs])[0] for m in METRICS}}
            for (tp, sp, method, seed), runs in grouped(six, CELL[1:] + ('method', 'seed')).items()]


def teacher_summary(rows):
    """Per cell and method, mean and sd over the seeds; then per cell NAD minus each of VERSUS, paired by seed
    (method 'nad-<versus>'). A metric a run lacks (RA of old runs) is None."""
    def minus(a, b):
        return None if a is None or b is None else a - b
    summary = []
    for key, runs in grouped(rows, CELL).items():
        by_method = {method: {r['seed']: r for r in cells} for (method,), cells in grouped(runs, ('method',)).items()}
        paired = {f'nad-{v}': {seed: {m: minus(nad[m], by_method[v][seed][m]) for m in METRICS}
                               for seed, nad in by_method['nad'].items()} for v in VERSUS}
        for method, by_seed in {**by_method, **paired}.items():
            cell = {**dict(zip(CELL, key)), 'method': method, 'seeds': len(by_seed)}
            for m in METRICS:
                cell[m], cell[f'{m}_sd'] = mean_sd([r[m] for r in by_seed.values()])
            summary.append(cell)
    return summary


def teacher_name(args):
    """'teacher' for the whole analysis; a slice is named for what it holds (e.g. teacher_from-code_to-paper-lr0.01
    for the key cell), so that it never overwrites the whole."""
    parts = subset_parts('teacher', args)
    if sorted(args.teacher_protocols) != sorted(TEACHER_PROTOCOLS):
        parts.append('from-' + '+'.join(args.teacher_protocols))
    if sorted(args.student_protocols) != sorted(STUDENT_PROTOCOLS):
        parts.append('to-' + '+'.join(args.student_protocols))
    return '_'.join(parts)


def teacher_markdown(summary, args):
    """A table per (teacher protocol, student protocol): per attack the teacher, fine-tuning, NAD, KD and two-stage
    (ASR +- sd / ACC / RA) and NAD's ASR and ACC minus each of VERSUS, paired by seed."""
    defaults = get_arguments()  # main.py's: the KD settings the runs were made with
    cells = {(c['attack'], c['teacher_protocol'], c['student_protocol'], c['method']): c for c in summary}
    seeds = ' '.join(map(str, args.seeds))

    def number(c, m, form='.2f'):
        return '-' if c[m] is None else f"{c[m]:{form}}" + (f"+-{c[f'{m}_sd']:.2f}" if c['seeds'] > 1 else '')

    def run(c):
        return ' / '.join([number(c, 'asr'), '-' if c['acc'] is None else f"{c['acc']:.2f}",
                           '-' if c['ra'] is None else f"{c['ra']:.2f}"])

    lines = [f"ASR +- sd / ACC / RA in %, mean over seeds {seeds}. Teacher: the zoo model fine-tuned under the "
             "teacher's protocol; FT: fine-tuning under the student's protocol (both the runs Table 1 makes); "
             f"NAD, KD (T {defaults.get_default('kd_t'):g}, alpha {defaults.get_default('kd_alpha'):g}) "
             "and two-stage (the teacher fine-tuned again with CE) under the student's protocol, from the teacher. "
             "NAD - X: NAD's ASR (+- sd) / ACC minus X's, paired by seed; negative ASR = NAD leaves less backdoor. "
             "Average: over the paper's six attacks (those run; not poison-label Refool), per seed."]
    columns = ['teacher', 'finetune', *TAUGHT]
    titles = ['teacher', 'FT', 'NAD', 'KD', 'two-stage', *(f'NAD - {t}' for t in ('FT', 'KD', 'two-stage'))]
    for tp in args.teacher_protocols:
        for sp in args.student_protocols:
            same = " (NAD: the run Table 1 makes)" if tp == sp else ''
            lines += ['', f'Teacher `{tp}`, student `{sp}`{same}:', '',
                      '| attack | ' + ' | '.join(titles) + ' |', '|---' * (len(titles) + 1) + '|']
            for attack in dict.fromkeys(c[0] for c in cells):
                if (attack, tp, sp, 'nad') not in cells:
                    continue
                row = [run(cells[attack, tp, sp, m]) for m in columns]
                row += [f"{number(d, 'asr', '+.2f')} / " + ('-' if d['acc'] is None else f"{d['acc']:+.2f}")
                        for d in (cells[attack, tp, sp, f'nad-{v}'] for v in VERSUS)]
                lines.append(f'| {attack} | ' + ' | '.join(row) + ' |')
    return '\n'.join(lines) + '\n'


ANALYSES = {'tradeoff': tradeoff, 'protocols': protocols, 'attribution': attribution, 'curves': curves, 'attention': attention, 'ratio': ratio, 'beta': beta, 'attention_fns': attention_fns,
            'teachers': teachers, 'all2all': all2all, 'adaptive': adaptive, 'paper_lr': paper_lr, 'nad_beta': nad_beta,
            'detection': detection, 'teacher': teacher, 'tradeoff_harsh': tradeoff_harsh}


def main():
    """The list above: the analyses are not run from here but by reproduce.py, which owns their flags."""
    parser = argparse.ArgumentParser(prog='python -m experiments.analyses', description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.parse_args()
    parser.print_help()


if __name__ == '__main__':
    run(main)
