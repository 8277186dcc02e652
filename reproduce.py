"""Reproduce the paper's Table 1 and its analyses from the shipped model zoo, with one command.

    python reproduce.py                                        # Table 1: 6 attacks x 5 defenses, seeds 0 1 2
    python reproduce.py --protocols code paper-lr0.01 --defenses finetune nad      # a table per protocol
    python reproduce.py --attacks badnets blend --defenses finetune nad --seeds 0
    python reproduce.py --analysis curves attention            # see ANALYSES below
    python reproduce.py --analysis all                         # every analysis (days on a 2-core CPU; a GPU: minutes)
    python reproduce.py --jobs 8                               # 8 runs at once (a GPU box); --launcher slurm

Every run is one `python main.py ...` process (the command is printed first) launched by experiments/runner.py,
filed as results/grid/<attack>_<defense>_<protocol>[_epochs<n>][_test<n>]_seed<seed>.json, .csv and .log with the
config that made it; the name carries every setting that changes the result. NAD's teacher is the attack's zoo model
fine-tuned under the same protocol and seed (betas 0), made once and reused; it is also the fine-tuning
cell. A distillation run taught by the teacher of another protocol (the `teacher` analysis) says so in its
name, <attack>_<defense>_<protocol>_teacher-<teacher's protocol>..._seed<seed>, and reuses that teacher.
A run whose stored files are whole (digest, CSV fingerprint) and were made with the same flags
from the same student checkpoint is skipped, so an interrupted grid resumes; anything else is made
again, with one line saying why. Table 1 goes to results/table1_<protocol>.csv and .md, our numbers
(ASR, ACC, RA; mean and sd over --seeds) next to the paper's; a grid with other attacks, defenses,
seeds, epochs or test images (--test_limit) is written under a name that says so (table_name), never over the
full table.

Compute: every run evaluates on the full test sets (or the first --test_limit images) only after its last
epoch (main.py --eval_every 0); 'before' is the zoo model measured once per attack; MCR trains its curve
for --mcr_epochs (20 here, the paper 100) and evaluates t = 0.3 only. On a 2-core AVX2 CPU (float32) a
`code` protocol run takes 2-4 minutes (20 epochs), a `paper-lr0.01` one 1-2 minutes.
"""
import argparse
import functools
import json
import os
import time

import attacks
import config
import defenses
from experiments.analyses import ANALYSES, SEEDS, STUDENT_PROTOCOLS, TEACHER_PROTOCOLS, grouped, mean_sd
from attacks import TABLE1, TABLE3
from config import DEFAULT_PROTOCOL, PROTOCOLS, zoo_paths
from utils import UserError
from experiments.runner import (ROOT, Outcome, Run, add_arguments, check_launch_arguments, launch, report_failures, seal_result,
                    stored_run)
from utils.checkpoint import load_checkpoint
from utils.files import atomic_write, file_sha256, write_csv, write_json
from utils.cli import HelpFormatter, check_finite, plural, run

DEFENSES = tuple(name for name, d in defenses.DEFENSES.items() if d.table1)  # Table 1's columns
# Table 1's rows (attacks.TABLE1): the paper's six Table 3 attacks, then Refool with poisoned labels, which
# implants a backdoor on CIFAR-10 where the paper's clean-label Refool does not (docs/ZOO.md).


def paper(attack, column):
    """The paper's (ASR, ACC) of a Table 1 cell ('average': its printed average row); (None, None) if none.
    The "Before" column is the attacks' entries', the defenses' columns the defenses' entries'."""
    if column == 'before':
        return attacks.PAPER_BEFORE_AVERAGE if attack == 'average' else attacks.ATTACKS[attack].paper or (None, None)
    return defenses.DEFENSES[column].paper.get(attack, (None, None))


def attack_title(attack):
    return attacks.ATTACKS[attack].title if attack in attacks.ATTACKS else attack


def title(column):
    return 'Before' if column == 'before' else defenses.DEFENSES[column].title


def get_arguments():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--attacks', nargs='+', default=list(TABLE1), choices=TABLE1)
    p.add_argument('--defenses', nargs='+', default=list(DEFENSES), choices=DEFENSES)
    p.add_argument('--seeds', nargs='+', type=int, default=SEEDS)
    p.add_argument('--protocols', nargs='+', default=[DEFAULT_PROTOCOL], choices=list(PROTOCOLS),
                   help='erasing protocols (config.PROTOCOLS); one Table 1 each, results/table1_<protocol>.*; the '
                        'analyses use the first')
    p.add_argument('--device', default='auto')
    p.add_argument('--epochs', type=int, default=None, help="erasing epochs (default: the protocol's)")
    p.add_argument('--mcr_epochs', type=int, default=20, help='MCR curve-training epochs (the paper: 100)')
    p.add_argument('--test_limit', type=int, default=None,
                   help='measure every run on the first N test images (a quick check; default: all)')
    p.add_argument('--analysis', nargs='*', default=[], choices=list(ANALYSES) + ['all'],
                   help='analyses to run instead of the Table 1 grid (docs/ANALYSES.md)')
    p.add_argument('--analysis_attack', default='badnets', choices=TABLE1,
                   help='the attack the single-attack analyses run on')
    p.add_argument('--acc_threshold', type=float, default=80.0,
                   help='beta analysis: raise beta until NAD ACC falls below this (Fig. 8 rule)')
    p.add_argument('--nad_beta', type=int, default=5000,
                   help='nad_beta analysis: NAD with beta2 = beta3 = this, beta1 = half (beta picked 5000 here)')
    p.add_argument('--teacher_protocols', nargs='+', default=list(TEACHER_PROTOCOLS), choices=list(PROTOCOLS),
                   help="teacher analysis: the protocols the teachers are fine-tuned under (a subset writes files "
                        "of its own, e.g. --teacher_protocols code --student_protocols paper-lr0.01: the key cell)")
    p.add_argument('--student_protocols', nargs='+', default=list(STUDENT_PROTOCOLS), choices=list(PROTOCOLS),
                   help='teacher analysis: the protocols NAD, KD, two-stage and fine-tuning run under')
    p.add_argument('--results', default='./results', help='where tables, figures and results/grid go')
    p.add_argument('--models', default='./weight/erasing_net/reproduce', help='where erased models go')
    p.add_argument('--dry_run', action='store_true', help='print the commands of the first runs, run nothing')
    p.add_argument('--cuda_graphs', default='off', choices=['off', 'on'],
                   help="every run's --cuda_graphs (main.py, train_badnet.py; CUDA float32 only). It changes how a "
                        "run is computed, not what it computes, so it is not among the flags that identify a stored "
                        "run; each run's record says what ran")
    add_arguments(p)
    return p


# --- one resumable run ---------------------------------------------------------------------------------

class Runner:
    """Table 1's and the analyses' runs: names them, gives each distillation run its teacher, skips runs whose
    stored result is whole and was made with the same flags from the same student checkpoint, and hands
    the rest to runner.launch. `drive` calls the table or analysis until every run it asks for is stored:
    each pass but the last is a dry run that plans the runs whose inputs exist (a run waits while a model
    it reads is missing or being made: NAD for its teacher, NC on NAD's model for NAD), then launches them
    side by side; the last pass finds them all and writes the outputs. Result paths are keyed absolute
    (--results may be relative)."""

    def __init__(self, args):
        self.args, self.grid = args, os.path.join(args.results, 'grid')
        self.made, self.skipped, self.seconds = 0, 0, 0.0
        self.start_pass(0)
        self.counted = set()  # result paths counted as made or found done: each run counted once
        self.failed = {}      # result path -> its Outcome: not tried again by this invocation
        self.launched = {}    # result path -> its Run, for every run made by this invocation
        self.producers = {}   # model path -> (script, name, flags, result path) of the run that writes it
        self.final = False    # the last pass: every run is stored
        self.new_pass()

    def new_pass(self):
        self.seen = {}        # (result path, need_model) -> summary found done in this pass
        self.planned = {}     # result path -> the Run this pass plans
        self.outputs = set()  # the models the planned runs will write: runs reading one wait
        self.waiting = {}     # result path -> (run name, the missing model it reads)
        self.blocked = 0      # runs waiting for their teacher's or student's model

    def start_pass(self, size):
        """The counts behind the progress lines of a pass that launches `size` runs."""
        self.pass_size, self.pass_done, self.pass_start, self.pass_times = size, 0, time.perf_counter(), []

    def at_once(self):
        """How many runs the launcher runs side by side, at most."""
        return self.args.jobs if self.args.launcher == 'local' else self.args.slurm_array_parallelism

    def drive(self, work):
        """work(args) until nothing is missing; every pass but the last gets args with dry_run set."""
        planning_args = argparse.Namespace(**{**vars(self.args), 'dry_run': True})
        while True:
            self.new_pass()
            work(planning_args)
            if self.args.dry_run:
                print(f'{len(self.planned)} runs to make first; {len(self.waiting) + self.blocked} more known to wait '
                      'for models these make (runs built on their results are planned once those exist)', flush=True)
            if not self.planned or self.args.dry_run:
                break
            self.launched.update(self.planned)
            self.start_pass(len(self.planned))
            at_once = f', {min(self.at_once(), self.pass_size)} at once' if self.args.launcher == 'local' else ''
            print(f"making {plural(self.pass_size, 'run')} now{at_once}", flush=True)
            launch(list(self.planned.values()), self.args, self.finished)
        if self.args.dry_run:
            return
        report_failures(self.failed.values())
        if self.waiting:
            names = '; '.join(f'{name} reads {model}' for name, model in list(self.waiting.values())[:5])
            raise UserError(f'{len(self.waiting)} run(s) cannot start, a model they read is missing: {names}')
        self.final = True
        work(self.args)

    def __call__(self, name, flags, need_model=False, student=None, teacher_protocol=None):
        """`python main.py FLAGS` as result `name`; returns its JSON summary (None while it is not made). With
        need_model, a stored run counts only if its model is still on disk, unchanged (the attention maps
        and NAD's teacher load it; a grid made on another machine brings its JSON files, not its models).
        Runs that name no --protocol get the runner's (and it goes into their name); distillation runs (NAD,
        ARGD, KD, two-stage) on a zoo model that name no --t_model get the teacher made under that protocol (or
        `teacher_protocol`, which the caller puts in the name) and seed. The teacher's
        model file is needed only to make such a run: a stored one needs the teacher's record alone. So
        with `student`, the run that makes this run's student model: (its summary, a function that returns
        it once its model is on disk); the run gets --s_model, and a stored one needs the record alone."""
        flags = [str(f) for f in flags]
        sources = []
        if student is not None:
            flags += ['--s_model', student[0]['checkpoint']]
            sources.append(('student_checkpoint', *student))
        if '--protocol' not in flags:
            flags, name = flags + ['--protocol', self.protocol()], f'{name}_{self.protocol()}'
        if needs_teacher(flags):
            key = flag(flags, '--attack'), flag(flags, '--seed', '0'), teacher_protocol or flag(flags, '--protocol')
            record = self.teacher(*key, need_model=False)
            if record is None:  # the teacher is being made first
                self.blocked += 1
                self.wait_note(name, f"its teacher, the {key[2]} protocol's of seed {key[1]}")
                return None
            flags += ['--t_model', record['checkpoint']]
            sources.append(('teacher_checkpoint', record, lambda: self.teacher(*key, need_model=True)))
        flags = self.common(flags) + ['--run_name', name, '--checkpoint_root', os.path.join(self.args.models, name)]
        return self.run('main.py', name, flags, os.path.join(self.grid, f'{name}.json'), need_model, sources)

    def protocol(self):
        """The protocol of the runs the analyses make (the first of --protocols)."""
        return self.args.protocols[0]

    def cell_name(self, attack, method, seed, protocol, teacher_protocol=None):
        """A Table 1 run's name: every setting that changes its result and is not fixed by the zoo. A teacher
        of another protocol adds _teacher-<its protocol>; one of the run's own adds nothing (Table 1's name)."""
        epochs = '' if self.args.epochs is None else f'_epochs{self.args.epochs}'
        mcr = f'_mcr{self.args.mcr_epochs}' if method == 'mcr' else ''
        teacher = f'_teacher-{teacher_protocol}' if teacher_protocol not in (None, protocol) else ''
        return f'{attack}_{method}_{protocol}{teacher}{epochs}{mcr}{limited_suffix(self.args)}_seed{seed}'

    def teacher(self, attack, seed, protocol=None, need_model=True):
        """The attack's zoo model fine-tuned under `protocol` on seed's clean subset (all betas 0): NAD's
        teacher, and Table 1's fine-tuning cell. Made once per (attack, protocol, seed, epochs), then reused."""
        protocol = protocol or self.protocol()
        name = self.cell_name(attack, 'teacher', seed, protocol)
        path = os.path.join(self.args.models, name, 'teacher.pth.tar')
        return self(name, ['--attack', attack, '--protocol', protocol, '--seed', seed, '--eval_every', 0,
                           '--make_teacher', '--t_model', path], need_model=need_model)

    def defense(self, attack, defense, seed, need_model=False, protocol=None, teacher_protocol=None):
        """A Table 1 run: `defense` on the zoo's `attack` model under `protocol` (shared by the analyses). A
        distillation defense is taught by the teacher of `teacher_protocol` (default: `protocol`, Table 1's)."""
        protocol = protocol or self.protocol()
        if teacher_protocol not in (None, protocol) and not defenses.DEFENSES[defense].needs_teacher:
            raise ValueError(f'{defense} has no teacher to take from protocol {teacher_protocol}')
        if defense == 'finetune':  # fine-tuning is the teacher run: the same command line, betas 0
            return self.teacher(attack, seed, protocol, need_model=need_model)
        flags = ['--attack', attack, '--protocol', protocol, '--seed', seed, '--eval_every', 0,
                 *defense_flags(defense, self.args)]
        return self(self.cell_name(attack, defense, seed, protocol, teacher_protocol), flags, need_model,
                    teacher_protocol=teacher_protocol)

    def before(self, attack):
        """ACC, ASR and RA of the zoo's backdoored model (Table 1's "before")."""
        return zoo_before(self.args, attack)

    def train(self, name, flags):
        """`python train_badnet.py FLAGS` (FLAGS must name --output <dir>/<name>.pth.tar)."""
        return self.run('train_badnet.py', name, self.common(flags), os.path.join(self.grid, f'badnet_{name}.json'))

    def common(self, flags):
        flags = [str(f) for f in flags]
        if self.args.epochs is not None and '--epochs' not in flags:
            flags += ['--epochs', str(self.args.epochs)]
        flags += limit_flags(self.args)
        # --replace_shipped: this is the command that makes results/ (a stale run there is made again)
        return flags + ['--device', self.args.device, '--log_root', self.grid, '--replace_shipped']

    def run(self, script, name, flags, path, need_model=False, sources=()):
        """The run's summary if it is stored (and made from the teacher and student models the runs that
        make them record now); else None, the run planned for this pass once those models are on disk.
        `sources`: (role, the summary of the run that makes the model, a function that returns that summary
        once its model is on disk), role being the key this run's summary records the model under."""
        where = at_root(path)  # the runs resolve their paths from ROOT, where they run
        for model in models_written(flags):
            self.producers[at_root(model)] = (script, name, flags, path)
        if (where, need_model) in self.seen:
            return self.seen[where, need_model]
        summary, why = stored_run(where, flags, need_model,
                                  student_recorded=any(role == 'student_checkpoint' for role, _, _ in sources))
        for role, record, _ in sources:
            if summary is not None and (record.get('checkpoint_sha256') is None or
                                        (summary.get(role) or {}).get('sha256') != record['checkpoint_sha256']):
                summary, why = None, f"was made from another {role.split('_')[0]} than the one stored now"
        if summary is not None:
            self.skipped += where not in self.counted
            self.counted.add(where)
            self.seen[where, need_model] = summary
            return summary
        if self.final:  # drive reaches the last pass only when every run is stored
            raise RuntimeError(f'{name} is not stored in the last pass ({why})')
        if where in self.failed or where in self.planned:
            return None
        if any(remake() is None for _, _, remake in sources):
            self.blocked += 1
            self.wait_note(name, 'the model of its ' + ' and '.join(role.split('_')[0] for role, _, _ in sources))
            return None
        if where in self.launched:  # made by this invocation, exited 0, and still not a finished run
            why = f"exited 0 but its result {why or 'is missing'}"
            self.failed[where] = Outcome(self.launched[where], False, 0.0, why)
            return None
        missing = []
        for model in map(at_root, models_read(flags)):
            if model not in self.outputs and not os.path.isfile(model) and model in self.producers:
                self.run(*self.producers[model], need_model=True)  # its run is stored, its model is not: make it again
            if model in self.outputs or not os.path.isfile(model):
                missing.append(model)
        if missing:
            self.waiting[where] = (name, missing[0])
            return None
        if why:
            print(f'  {name}: the stored run {why}: running it again', flush=True)
        command = [script, *flags] + (['--cuda_graphs', 'on'] if self.args.cuda_graphs == 'on' else [])
        if self.args.dry_run:
            print(f"$ python {' '.join(command)}", flush=True)
        self.outputs |= {at_root(m) for m in models_written(flags)}
        self.planned[where] = Run(name, command, where, os.path.splitext(where)[0] + '.log',
                                  functools.partial(seal_result, where, flags))
        return None

    def wait_note(self, name, what):
        """A dry run names each run that waits for its teacher's or student's model to be made (it is planned
        once that exists)."""
        if self.args.dry_run:
            print(f'  {name}: waits for {what}', flush=True)

    def finished(self, outcome):
        """Called as each launched run ends: count it and print its result."""
        path = outcome.run.result
        self.pass_done += 1  # failed runs too: they are done for this pass
        if not outcome.ok:
            self.failed[path] = outcome
            return
        with open(path) as f:  # an unreadable result raises: runner.announce reports the run as failed
            summary = json.load(f)
        result = summary.get('after') or summary.get('final')
        self.made += 1
        self.counted.add(path)
        self.seconds += outcome.seconds
        self.pass_times.append(outcome.seconds)
        print(f"  {outcome.run.name}: ACC {result['acc']:.2f} ASR {result['asr']:.2f} | {outcome.seconds:.0f}s "
              f"| {self.progress()}", flush=True)

    def progress(self):
        """Where this pass stands in wall-clock minutes, and an estimate of what is left: the runs still to
        finish, each as long as the finished ones on average, as many at once as the launcher runs."""
        elapsed, left = time.perf_counter() - self.pass_start, self.pass_size - self.pass_done
        estimate = sum(self.pass_times) / len(self.pass_times) * left / min(self.at_once(), left) if left > 0 else 0
        return (f'{self.pass_done} of {self.pass_size} done in {elapsed / 60:.1f} min'
                + (f', about {estimate / 60:.1f} min left' if left > 0 else ''))


def flag(flags, name, default=None):
    """The value given to `name` in a flag list (the last one wins, as in argparse)."""
    at = [i for i, f in enumerate(flags) if f == name]
    return flags[at[-1] + 1] if at else default


def at_root(path):
    return os.path.normpath(os.path.join(ROOT, path))


def models_read(flags):
    """The model files a run reads besides the zoo's: its student and (unless it makes it) its teacher."""
    return [m for m in (flag(flags, '--s_model'), None if '--make_teacher' in flags else flag(flags, '--t_model'))
            if m is not None]


def models_written(flags):
    """The model files a run writes that other runs read: a teacher it makes, a backdoored model it trains."""
    return [m for m in (flag(flags, '--t_model') if '--make_teacher' in flags else None, flag(flags, '--output'))
            if m is not None]


def needs_teacher(flags):
    """A run of a defense that reads a teacher (nad, argd, kd, twostage: defenses.DEFENSES) on a zoo model
    (--attack) with no teacher named."""
    defense = defenses.DEFENSES.get(flag(flags, '--defense', 'nad'))
    return (defense is not None and defense.needs_teacher and '--attack' in flags and '--t_model' not in flags
            and '--make_teacher' not in flags and '--s_model' not in flags)


# --- Table 1 ---------------------------------------------------------------------------------------------

def defense_flags(defense, args):
    if defense == 'mcr':  # the curve, evaluated at t = 0.3 only (endpoints are the backdoored model)
        return ['--defense', 'mcr', '--mcr_epochs', args.mcr_epochs, '--mcr_t', 0.3, '--mcr_points']
    return ['--defense', defense]


def limit_flags(args):
    """main.py's flags for reproduce.py's --test_limit."""
    return [] if args.test_limit is None else ['--test_limit', str(args.test_limit)]


def limited_suffix(args):
    """The part of a run's or a table's name that says it was measured on part of the test set (_test<N>)."""
    return '' if args.test_limit is None else f'_test{args.test_limit}'


def zoo_before(args, attack):
    """ACC, ASR and RA of the zoo's backdoored model, measured once in float32 and stored beside the grid
    (grid/<attack>_before[_test<N>].json, with the checkpoint's sha256: a retrained model is measured again)."""
    path = zoo_paths(attack)[0]
    sha = file_sha256(os.path.join(ROOT, path))
    stored = os.path.join(args.results, 'grid', f'{attack}_before{limited_suffix(args)}.json')
    try:
        with open(stored) as f:
            record = json.load(f)
        if isinstance(record, dict) and record.get('sha256') == sha and \
                all(isinstance(record.get(k), (int, float)) for k in ('acc', 'asr', 'ra')):
            return record
    except (OSError, ValueError):
        pass
    if args.dry_run:
        ckpt = load_checkpoint(os.path.join(ROOT, path))
        return {'acc': ckpt['acc'], 'asr': ckpt['asr'], 'ra': None}
    from attacks import trigger_for
    from data_loader import dataset_for, test_loaders
    from models import select_model
    from utils.engine import evaluate
    from utils.runtime import resolve_device
    margs = config.parse(config.get_arguments(), ['--attack', attack, *limit_flags(args)])
    device = resolve_device(args.device)
    data = dataset_for(margs)
    model = select_model(margs.s_name, margs.num_classes, os.path.join(ROOT, path))[0].to(device)
    metrics = evaluate(model, *test_loaders(margs, data, device, trigger_for(margs)), device)
    record = {'attack': attack, 'checkpoint': path, 'sha256': sha, **metrics}
    write_json(stored, record)
    print(f"  {attack}: the zoo model measured: ACC {record['acc']:.2f} ASR {record['asr']:.2f} RA {record['ra']:.2f}",
          flush=True)
    return record


METRICS = ('asr', 'acc', 'ra')


def table1(args, runner):
    for protocol in args.protocols:
        table1_for(args, runner, protocol)


def table1_for(args, runner, protocol):
    rows = []
    for attack in args.attacks:
        rows.append(row(attack, 'before', [zoo_before(args, attack)], [0.0]))
        for defense in args.defenses:
            runs = [runner.defense(attack, defense, seed, protocol=protocol) for seed in args.seeds]
            if args.dry_run:
                continue
            rows.append(row(attack, defense, [r['after'] for r in runs],
                            [r.get('wall_seconds', r['seconds']) for r in runs]))
    if args.dry_run:
        return
    paper_six = [a for a in args.attacks if a in TABLE3]
    for column in ['before', *args.defenses] if paper_six else []:  # the paper's average row, over its attacks run
        cells = [r for r in rows if r['defense'] == column and r['attack'] in paper_six]
        rows.append({'attack': 'average', 'defense': column, 'seeds': cells[0]['seeds'],
                     **{f'{m}{s}': average([c[f'{m}{s}'] for c in cells]) for m in METRICS for s in ('', '_std')},
                     'paper_asr': average_paper(column, paper_six, 0),
                     'paper_acc': average_paper(column, paper_six, 1),
                     'seconds': sum(c['seconds'] for c in cells)})
    name = table_name(args, protocol)
    write_csv(os.path.join(args.results, f'{name}.csv'), rows)
    markdown = table1_markdown(rows, args, protocol)
    paired = None
    if {'finetune', 'nad'} <= set(args.defenses):
        paired = nad_minus_finetune(args, runner, protocol, paper_six)
        write_csv(os.path.join(args.results, f'{name}_nad-minus-finetune.csv'), paired)
        markdown += '\n' + paired_markdown(paired, args)
    markdown = compact_markdown(rows, paired, args) + '\n' + markdown
    atomic_write(os.path.join(args.results, f'{name}.md'), lambda f: f.write(markdown.encode()))
    print(markdown + f'wrote {os.path.join(args.results, name)}.csv and .md')


def nad_minus_finetune(args, runner, protocol, paper_six):
    """NAD's ASR, ACC and RA minus fine-tuning's, paired by seed (the same clean subset and augmentation;
    the fine-tuned model is NAD's teacher): mean and sd over the seeds per attack, and for the average row
    the seeds' averages over the paper's six attacks."""
    diffs = {}
    for attack in args.attacks:
        for seed in args.seeds:
            ft, nad = (runner.defense(attack, d, seed, protocol=protocol)['after'] for d in ('finetune', 'nad'))
            diffs[attack, seed] = {m: None if ft.get(m) is None or nad.get(m) is None else nad[m] - ft[m]
                                   for m in METRICS}
    if paper_six:
        for seed in args.seeds:
            diffs['average', seed] = {m: average([diffs[a, seed][m] for a in paper_six]) for m in METRICS}
    rows = []
    for attack in [*args.attacks, *(['average'] if paper_six else [])]:
        cell = {'attack': attack, 'seeds': len(args.seeds)}
        for m in METRICS:
            cell[m], cell[f'{m}_std'] = mean_sd([diffs[attack, seed][m] for seed in args.seeds])
        rows.append(cell)
    return rows


def paired_markdown(rows, args):
    def number(r, m):
        return '-' if r[m] is None else f"{r[m]:+.2f}+-{r[f'{m}_std']:.2f}"
    lines = ['NAD minus fine-tuning, paired by seed (same clean subset; the fine-tuned model is NAD\'s teacher), '
             f"mean +- sd over {len(args.seeds)} seed(s), in points: negative ASR = NAD leaves less backdoor.", '',
             '| attack | ASR | ACC | RA |', '|---|---|---|---|']
    lines += [f"| {attack_title(r['attack'])} | " + ' | '.join(number(r, m) for m in METRICS) + ' |'
              for r in rows]
    return '\n'.join(lines) + '\n'


def compact_markdown(rows, paired, args):
    """The table at a glance: ASR +- sd / ACC per cell, the paper's ASR in brackets, and
    NAD's ASR minus fine-tuning's paired by seed when both were run."""
    columns = ['before', *args.defenses]
    diff = {r['attack']: r for r in paired or []}

    def cell(r):
        if r['asr'] is None:
            return '-'
        spread = f"+-{r['asr_std']:.2f}" if len(args.seeds) > 1 and r['defense'] != 'before' else ''
        paper = f" ({r['paper_asr']:.2f})" if r['paper_asr'] is not None else ''
        return f"{r['asr']:.2f}{spread} / {r['acc']:.1f}{paper}"
    lines = ["ASR / ACC in %, mean over the seeds (ASR +- sd); the paper's ASR in brackets" +
             (", NAD - FT: NAD's ASR minus fine-tuning's, paired by seed" if paired else '') + '.', '',
             '| attack | ' + ' | '.join(title(c) for c in columns) + (' | NAD - FT |' if paired else ' |'),
             '|' + '---|' * (len(columns) + 1 + bool(paired))]
    for attack, by_defense in by_attack(rows).items():
        line = f'| {attack_title(attack)} | ' + ' | '.join(cell(by_defense[c]) for c in columns) + ' |'
        if paired:
            d = diff[attack]
            line += ' - |' if d['asr'] is None else f" {d['asr']:+.2f}+-{d['asr_std']:.2f} |"
        lines.append(line)
    return '\n'.join(lines) + '\n'


def average(values):
    return None if any(v is None for v in values) else sum(values) / len(values)


def table_name(args, protocol):
    """table1_<protocol> for the whole grid at the default settings; any other grid is named for what it
    changed, so a subset or a trial never overwrites the full table (e.g.
    table1_code_badnets-trojan_finetune-nad_epochs1)."""
    parts = ['table1', protocol]
    if sorted(args.attacks) != sorted(TABLE1):
        parts.append('-'.join(args.attacks))
    if sorted(args.defenses) != sorted(DEFENSES):
        parts.append('-'.join(args.defenses))
    if args.seeds != SEEDS:
        parts.append('seeds' + '-'.join(map(str, args.seeds)))
    if args.epochs is not None:
        parts.append(f'epochs{args.epochs}')
    if args.mcr_epochs != get_arguments().get_default('mcr_epochs') and 'mcr' in args.defenses:
        parts.append(f'mcr{args.mcr_epochs}')
    return '_'.join(parts) + limited_suffix(args)


def row(attack, defense, results, seconds):
    """One Table 1 cell: mean and sd over seeds of each metric (None where a result lacks it)."""
    cell = {'attack': attack, 'defense': defense, 'seeds': len(results)}
    for m in METRICS:
        values = [r.get(m) for r in results]
        cell[m], cell[f'{m}_std'] = mean_sd(values)
    asr, acc = paper(attack, defense)
    return {**cell, 'paper_asr': asr, 'paper_acc': acc, 'seconds': sum(seconds)}


def average_paper(defense, attacks, i):
    """The paper's average row over `attacks`: its printed one for all six, else the mean of its cells."""
    if paper('average', defense)[i] is None:
        return None
    if sorted(attacks) == sorted(TABLE3):
        return paper('average', defense)[i]
    values = [paper(a, defense)[i] for a in attacks]
    return sum(values) / len(values)


def table1_markdown(rows, args, protocol):
    columns = ['before', *args.defenses]
    seeds = len(args.seeds)
    head = '| attack | ' + ' | '.join(title(c) for c in columns) + ' |'
    p = PROTOCOLS[protocol]
    epochs = args.epochs or p['epochs']
    lines = [f'ASR / ACC / RA in %, ours (the paper\'s ASR / ACC). WRN-16-1, CIFAR-10, 5% clean data; protocol '
             f"{protocol}: {plural(epochs, 'epoch')}, lr {p['lr']:g} x{p['gamma']:g} at epochs {p['schedule']}"
             f"{', Nesterov' if p['nesterov'] else ''}, weight decay {p['weight_decay']:g}, Cutout {p['cutout_length']}; "
             f"{seeds} seed(s) {' '.join(map(str, args.seeds))}" + (', mean +- sd' if seeds > 1 else '') +
             f'. MCR {plural(args.mcr_epochs, "curve epoch")} (the paper: 100). Before: the zoo model. Fine-tuning is also '
             "NAD's teacher. Refool: CIFAR-10 here, GTSRB in the paper. ARGD is not in the paper. The average row is "
             "over the paper's six attacks run here." +
             ('' if args.test_limit is None else f' Measured on the first {args.test_limit} test images only.'), '',
             head, '|' + '---|' * (len(columns) + 1)]

    def number(r, m):
        if r[m] is None:
            return '-'
        return f'{r[m]:.2f}' if seeds == 1 or r['defense'] == 'before' else f"{r[m]:.2f}+-{r[f'{m}_std']:.2f}"

    def cell(r):
        paper = f" ({r['paper_asr']:.2f} / {r['paper_acc']:.2f})" if r['paper_asr'] is not None else ''
        return ' / '.join(number(r, m) for m in METRICS) + paper
    for attack, by_defense in by_attack(rows).items():
        lines.append(f'| {attack_title(attack)} | ' + ' | '.join(cell(by_defense[c]) for c in columns) + ' |')
    return '\n'.join(lines) + '\n'


def by_attack(rows):
    """Table 1's rows as {attack: {column: row}}, in the order the rows come (each attack's, the average last)."""
    return {attack: {r['defense']: r for r in cells} for (attack,), cells in grouped(rows, ('attack',)).items()}


def main():
    parser = get_arguments()
    args = check_finite(parser, parser.parse_args())
    if args.mcr_epochs < 1 or any(n is not None and n < 1 for n in (args.epochs, args.test_limit)):
        raise UserError('--epochs, --mcr_epochs and --test_limit must each be at least 1')
    if args.test_limit is not None and args.analysis:
        raise UserError("--test_limit is for Table 1 grids, whose runs and tables are named for it; the analyses' "
                        'are not, and would be replaced by runs measured on part of the test set')
    check_launch_arguments(args)
    runner = Runner(args)
    start = time.perf_counter()
    names = list(ANALYSES) if 'all' in args.analysis else args.analysis
    if names:
        runner.drive(lambda a: [ANALYSES[name](a, runner) for name in names])
    else:
        runner.drive(lambda a: table1(a, runner))
    print(f'reproduce: {runner.made} runs made ({runner.seconds / 60:.1f} min), {runner.skipped} found done; '
          f'{(time.perf_counter() - start) / 60:.1f} min in all', flush=True)


if __name__ == '__main__':
    run(main)
