"""Reproduce the paper's Table 1 and its analyses from the shipped model zoo, with one command.

    python reproduce.py                                        # Table 1: 6 attacks x 5 defenses, seed 0
    python reproduce.py --attacks badnets blend --defenses finetune nad --seeds 0 1 2
    python reproduce.py --analysis curves attention            # see ANALYSES below
    python reproduce.py --analysis all                         # every analysis (hours on a 2-core CPU)

Every run is one `python main.py ...` process (the command is printed first), filed as
results/grid/<name>.json and .csv with the config that made it. A run whose JSON exists with the same
settings and the same student checkpoint is skipped, so an interrupted grid resumes where it stopped;
change a setting or retrain a zoo model and the runs it touches are made again. Table 1 goes to
results/table1.csv and results/table1.md, our numbers next to the paper's, averaged over --seeds (mean
and standard deviation); a grid with other attacks, defenses, seeds or epochs is written under a name
that says so (table_name), never over the full table.

Compute: every run evaluates on the full test sets only after its last epoch (main.py --eval_every 0)
and takes its 'before' numbers from the zoo checkpoint's record; MCR trains its curve for --mcr_epochs
(20 here, the paper 100) and evaluates t = 0.3 only. On the 2-core CPU this repository is developed on
the whole grid takes about 50 minutes (README, "Table 1").
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

from analyses import ANALYSES
from config import get_arguments as main_arguments, zoo_paths
from data_loader import TABLE3
from utils import UserError
from utils.checkpoint import atomic_write, load_checkpoint, write_csv, write_json
from utils.cli import run

# main.py runs here, and the checkpoint paths its summaries record are relative to this folder.
ROOT = os.path.dirname(os.path.abspath(__file__))
DEFENSES = ('finetune', 'fineprune', 'mcr', 'nad', 'argd')
NAMES = {'before': 'Before', 'finetune': 'Fine-tuning', 'fineprune': 'Fine-pruning', 'mcr': 'MCR (t=0.3)',
         'nad': 'NAD', 'argd': 'ARGD'}
ATTACK_NAMES = {'badnets': 'BadNets', 'trojan': 'Trojan', 'blend': 'Blend', 'cl': 'CL', 'sig': 'SIG',
                'refool': 'Refool'}
# The paper's Table 1 (WRN-16-1, CIFAR-10, 5% clean data): (ASR, ACC). ARGD is not in the paper.
PAPER = {
    'badnets': {'before': (100, 85.65), 'finetune': (17.18, 81.22), 'fineprune': (99.73, 81.14),
                'mcr': (4.65, 80.94), 'nad': (4.77, 81.17)},
    'trojan': {'before': (100, 81.24), 'finetune': (71.76, 77.88), 'fineprune': (41.00, 78.17),
               'mcr': (41.25, 78.76), 'nad': (19.63, 79.16)},
    'blend': {'before': (99.97, 84.95), 'finetune': (36.60, 81.22), 'fineprune': (93.62, 81.13),
              'mcr': (64.33, 80.34), 'nad': (4.04, 81.68)},
    'cl': {'before': (99.21, 82.43), 'finetune': (75.08, 81.73), 'fineprune': (29.88, 79.32),
           'mcr': (32.95, 79.04), 'nad': (9.18, 80.34)},
    'sig': {'before': (99.91, 84.36), 'finetune': (9.18, 81.28), 'fineprune': (74.26, 81.60),
            'mcr': (1.62, 80.94), 'nad': (2.52, 81.95)},
    'refool': {'before': (95.16, 82.38), 'finetune': (14.38, 80.34), 'fineprune': (63.49, 80.64),
               'mcr': (8.76, 78.84), 'nad': (3.18, 80.73)},
}
PAPER_AVERAGE = {'before': (99.04, 83.50), 'finetune': (37.36, 80.61), 'fineprune': (67.00, 80.50),
                 'mcr': (25.59, 79.81), 'nad': (7.22, 80.83)}  # as printed (all six attacks)


def get_arguments():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--attacks', nargs='+', default=list(TABLE3), choices=TABLE3)
    p.add_argument('--defenses', nargs='+', default=list(DEFENSES), choices=DEFENSES)
    p.add_argument('--seeds', nargs='+', type=int, default=[0])
    p.add_argument('--device', default='auto')
    p.add_argument('--epochs', type=int, default=None, help="erasing epochs (default: main.py's, 10)")
    p.add_argument('--mcr_epochs', type=int, default=20, help='MCR curve-training epochs (the paper: 100)')
    p.add_argument('--analysis', nargs='*', default=[], choices=list(ANALYSES) + ['all'],
                   help='analyses to run instead of the Table 1 grid (see README)')
    p.add_argument('--analysis_attack', default='badnets', choices=TABLE3,
                   help='the attack the single-attack analyses run on')
    p.add_argument('--acc_threshold', type=float, default=80.0,
                   help='beta analysis: raise beta until NAD ACC falls below this (Fig. 8 rule)')
    p.add_argument('--nad_beta', type=int, default=5000,
                   help='nad_beta analysis: NAD with beta2 = beta3 = this, beta1 = half (beta picked 5000 here)')
    p.add_argument('--results', default='./results', help='where tables, figures and results/grid go')
    p.add_argument('--models', default='./weight/erasing_net/reproduce', help='where erased models go')
    p.add_argument('--dry_run', action='store_true', help='print the commands, run nothing')
    return p


# --- one resumable run ---------------------------------------------------------------------------------

class Runner:
    """Runs main.py (or train_badnet.py) once per named setting, skipping runs whose result file matches."""

    def __init__(self, args):
        self.args, self.grid = args, os.path.join(args.results, 'grid')
        self.made, self.skipped, self.seconds = 0, 0, 0.0

    def __call__(self, name, flags, need_model=False):
        """`python main.py FLAGS` as result `name`; returns its JSON summary (None on --dry_run). With
        need_model, a stored run counts only if its erased model is still on disk (the attention maps
        load it; a grid made on another machine brings its JSON files, not its models)."""
        flags = self.common(flags) + ['--run_name', name, '--checkpoint_root', os.path.join(self.args.models, name)]
        return self.run('main.py', name, flags, os.path.join(self.grid, f'{name}.json'), need_model)

    def defense(self, attack, defense, seed, need_model=False):
        """A Table 1 run: `defense` on the zoo's `attack` model (shared by the analyses that need one)."""
        return self(f'{attack}_{defense}_seed{seed}',
                    ['--attack', attack, '--seed', seed, '--eval_every', 0, *defense_flags(defense, self.args)],
                    need_model)

    def train(self, name, flags):
        """`python train_badnet.py FLAGS` (FLAGS must name --output <dir>/<name>.pth.tar)."""
        return self.run('train_badnet.py', name, self.common(flags), os.path.join(self.grid, f'badnet_{name}.json'))

    def common(self, flags):
        flags = [str(f) for f in flags]
        if self.args.epochs is not None and '--epochs' not in flags:
            flags += ['--epochs', str(self.args.epochs)]
        return flags + ['--device', self.args.device, '--log_root', self.grid]

    def run(self, script, name, flags, path, need_model=False):
        summary = self.load_if_same(path, flags)
        if summary is not None and need_model and not os.path.isfile(os.path.join(ROOT, summary['checkpoint'])):
            print(f'  {name}: stored, but its model {summary["checkpoint"]} is not here: running it again', flush=True)
            summary = None
        if summary is not None:
            self.skipped += 1
            return summary
        command = [sys.executable, script, *flags]
        print(f"$ python {' '.join(command[1:])}", flush=True)
        if self.args.dry_run:
            return None
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            print(done.stdout[-3000:], file=sys.stderr)
            raise UserError(f'run {name} failed (exit {done.returncode}); the end of its output is above')
        self.made += 1
        self.seconds += wall
        with open(path) as f:
            summary = json.load(f)
        summary['flags'], summary['wall_seconds'] = flags, wall
        write_json(path, summary)
        result = summary.get('after') or summary.get('final')
        print(f"  {name}: ACC {result['acc']:.2f} ASR {result['asr']:.2f} | {wall:.0f}s "
              f"(so far {self.seconds / 60:.1f} min for {self.made} runs)", flush=True)
        return summary

    @staticmethod
    def load_if_same(path, flags):
        """The stored summary if `path` exists and was made with exactly these flags from the student
        checkpoint as it is now (a retrained zoo model makes its runs again)."""
        try:
            with open(path) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            return None
        return summary if summary.get('flags') == flags and same_student(summary) else None


def same_student(summary):
    """Whether the student checkpoint a main.py summary records is still the one at its path."""
    record = summary.get('student_checkpoint')
    if record is None:  # a train_badnet.py run: its flags say everything
        return True
    path = os.path.join(ROOT, record['path'])
    try:
        ckpt = load_checkpoint(path)
    except UserError:
        return False
    return all(ckpt.get(key) == record[key] for key in ('epoch', 'acc', 'asr'))


# --- Table 1 ---------------------------------------------------------------------------------------------

def defense_flags(defense, args):
    if defense == 'mcr':  # the curve, evaluated at t = 0.3 only (endpoints are the backdoored model)
        return ['--defense', 'mcr', '--mcr_epochs', args.mcr_epochs, '--mcr_t', 0.3, '--mcr_points']
    return ['--defense', defense]


def zoo_before(attack):
    """ACC and ASR of the zoo's backdoored model, as train_badnet.py measured them on the test sets."""
    ckpt = load_checkpoint(zoo_paths(attack)[0])
    return ckpt['acc'], ckpt['asr']


def mean_std(values):
    m = sum(values) / len(values)
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0)


def table1(args, runner):
    rows = []
    for attack in args.attacks:
        acc, asr = zoo_before(attack)
        rows.append(row(attack, 'before', [acc], [asr], [0.0]))
        for defense in args.defenses:
            runs = [runner.defense(attack, defense, seed) for seed in args.seeds]
            if args.dry_run:
                continue
            rows.append(row(attack, defense, [r['after']['acc'] for r in runs], [r['after']['asr'] for r in runs],
                            [r.get('wall_seconds', r['seconds']) for r in runs]))
    if args.dry_run:
        return
    for column in ['before', *args.defenses]:  # the paper's average row, over the attacks run
        cells = [r for r in rows if r['defense'] == column]
        rows.append({'attack': 'average', 'defense': column, 'seeds': cells[0]['seeds'],
                     **{k: sum(c[k] for c in cells) / len(cells) for k in ('acc', 'acc_std', 'asr', 'asr_std')},
                     'paper_asr': average_paper(column, args.attacks, 0),
                     'paper_acc': average_paper(column, args.attacks, 1),
                     'seconds': sum(c['seconds'] for c in cells)})
    name = table_name(args)
    write_csv(os.path.join(args.results, f'{name}.csv'), rows)
    markdown = table1_markdown(rows, args)
    atomic_write(os.path.join(args.results, f'{name}.md'), lambda f: f.write(markdown.encode()))
    print(markdown + f'wrote {os.path.join(args.results, name)}.csv and .md')


def table_name(args):
    """table1 for the whole grid at the default settings; any other grid is named for what it changed, so a
    subset or a trial never overwrites the full table (e.g. table1_badnets-trojan_finetune-nad_epochs1)."""
    parts = ['table1']
    if sorted(args.attacks) != sorted(TABLE3):
        parts.append('-'.join(args.attacks))
    if sorted(args.defenses) != sorted(DEFENSES):
        parts.append('-'.join(args.defenses))
    if args.seeds != [0]:
        parts.append('seeds' + '-'.join(map(str, args.seeds)))
    if args.epochs is not None:
        parts.append(f'epochs{args.epochs}')
    if args.mcr_epochs != get_arguments().get_default('mcr_epochs') and 'mcr' in args.defenses:
        parts.append(f'mcr{args.mcr_epochs}')
    return '_'.join(parts)


def row(attack, defense, accs, asrs, seconds):
    (acc, acc_std), (asr, asr_std) = mean_std(accs), mean_std(asrs)
    paper = PAPER[attack].get(defense, (None, None))
    return {'attack': attack, 'defense': defense, 'seeds': len(accs), 'acc': acc, 'acc_std': acc_std, 'asr': asr,
            'asr_std': asr_std, 'paper_asr': paper[0], 'paper_acc': paper[1], 'seconds': sum(seconds)}


def average_paper(defense, attacks, i):
    """The paper's average row over `attacks`: its printed one for all six, else the mean of its cells."""
    if defense not in PAPER_AVERAGE:
        return None
    if sorted(attacks) == sorted(TABLE3):
        return PAPER_AVERAGE[defense][i]
    values = [PAPER[a][defense][i] for a in attacks]
    return sum(values) / len(values)


def table1_markdown(rows, args):
    columns = ['before', *args.defenses]
    seeds = len(args.seeds)
    head = '| attack | ' + ' | '.join(NAMES[c] for c in columns) + ' |'
    defaults = main_arguments()  # main.py's own defaults, so the caption follows config.py
    epochs, lr = args.epochs or defaults.get_default('epochs'), defaults.get_default('lr')
    lines = [f'ASR / ACC in %, ours (paper). WRN-16-1, CIFAR-10, 5% clean data; {seeds} seed(s) '
             f"{' '.join(map(str, args.seeds))}" + (', mean +- std' if seeds > 1 else '') +
             f'. {epochs} epochs at lr {lr:g} (the paper: lr 0.1); MCR {args.mcr_epochs} curve epochs (the paper: '
             '100). Before: the zoo model as trained. Refool: CIFAR-10 here, GTSRB in the paper. '
             'ARGD is not in the paper.', '',
             head, '|' + '---|' * (len(columns) + 1)]

    def cell(r):
        ours = f"{r['asr']:.2f} / {r['acc']:.2f}" if seeds == 1 or r['defense'] == 'before' else \
            f"{r['asr']:.2f}+-{r['asr_std']:.2f} / {r['acc']:.2f}+-{r['acc_std']:.2f}"
        paper = f" ({r['paper_asr']:.2f} / {r['paper_acc']:.2f})" if r['paper_asr'] is not None else ''
        return ours + paper
    for attack in [*args.attacks, 'average']:
        by_defense = {r['defense']: r for r in rows if r['attack'] == attack}
        name = ATTACK_NAMES.get(attack, attack)
        lines.append(f'| {name} | ' + ' | '.join(cell(by_defense[c]) for c in columns) + ' |')
    return '\n'.join(lines) + '\n'


def main():
    args = get_arguments().parse_args()
    if any(s < 0 for s in args.seeds) or (args.epochs is not None and args.epochs < 1) or args.mcr_epochs < 1:
        raise UserError('--seeds must be non-negative and --epochs, --mcr_epochs at least 1')
    runner = Runner(args)
    start = time.perf_counter()
    if args.analysis:
        for name in (list(ANALYSES) if 'all' in args.analysis else args.analysis):
            ANALYSES[name](args, runner)
    else:
        table1(args, runner)
    print(f'reproduce: {runner.made} runs made ({runner.seconds / 60:.1f} min), {runner.skipped} found done; '
          f'{(time.perf_counter() - start) / 60:.1f} min in all', flush=True)


if __name__ == '__main__':
    run(main)
