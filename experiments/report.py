"""Write docs/RESULTS.md, and the README's headline table, from the tables stored in results/, so that no
table drifts from the runs.

    python -m experiments.report            # (re)write docs/RESULTS.md and the README's headline table
    python -m experiments.report --check    # exit 1 if either is not what would be written

Each section names the command that made its files, then includes the stored Markdown table as it is (or,
where only a CSV is stored, writes the table from it) with a link to its source; every figure in results/
is shown. The same files in give the same page, byte for byte.
"""
import argparse
import csv
import glob
import os
import re
import sys

from attacks import ATTACKS
from data_loader import TRAIN_SIZES, subset_size
from defenses import DEFENSES
from utils import UserError
from utils.cli import HelpFormatter, run
from utils.paths import ROOT
from utils.files import write_together

RESULTS = os.path.join(ROOT, 'results')
OUTPUT = os.path.join(ROOT, 'docs', 'RESULTS.md')
README = os.path.join(ROOT, 'README.md')
HEADLINE = ('<!-- headline table: written by python -m experiments.report -->\n', '<!-- /headline table -->')


# --- reading results/ ------------------------------------------------------------------------------------

def source(name):
    """The path of results/<name>; a missing file is a one-line error."""
    path = os.path.join(RESULTS, name)
    if not os.path.isfile(path):
        raise UserError(f'{os.path.relpath(path, ROOT)} is missing: run the command of its section first')
    return path


def relative(path):
    """`path` as seen from docs/RESULTS.md."""
    return os.path.relpath(path, os.path.dirname(OUTPUT)).replace(os.sep, '/')


def link(path):
    return f'[{os.path.relpath(path, ROOT)}]({relative(path)})'


def image(path):
    return f'![{os.path.basename(path)}]({relative(path)})'


def included(path):
    """A stored Markdown table, as it is."""
    with open(path, encoding='utf-8') as f:
        return f.read().strip('\n')


def rows(name):
    """The rows of results/<name> (a CSV) as dicts, numbers as floats where they parse."""
    def value(text):
        try:
            return float(text)
        except ValueError:
            return text
    with open(source(name), newline='', encoding='utf-8') as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def table(header, body):
    """A Markdown table from a header and rows of cells."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(map(str, cells)) + ' |' for cells in body])


def pair(asr, acc):
    return f'{asr:.2f} / {acc:.2f}'


METHODS = ('finetune', 'nad')


def cell(by, key, method):
    """ASR / ACC of the row `by[key, method]`, '-' if there is none."""
    row = by.get((key, method))
    return pair(row['asr'], row['acc']) if row else '-'


def title(attack):
    return ATTACKS[attack].title if attack in ATTACKS else attack


def paper_nad(attack):
    paper = DEFENSES['nad'].paper.get(attack)
    return pair(*paper) if paper else '-'


def seeds_of(data):
    return ' '.join(str(int(s)) for s in sorted({r['seed'] for r in data}))


# --- the sections: (heading, text) -------------------------------------------------------------------------

def table1(protocol, what):
    path = source(f'table1_{protocol}.md')
    return (f'Table 1 under {what}',
            f'Each attack\'s zoo model erased by fine-tuning, fine-pruning, MCR, NAD and ARGD, seeds 0 1 2, '
            f'`--protocol {protocol}`: `python reproduce.py --protocols {protocol}` (its runs: results/grid/). '
            f'Source: {link(path)}.\n\n{included(path)}')


def table1_earlier():
    path = source('table1.md')
    return ('The earlier one-seed Table 1 (superseded)',
            'One seed, before the protocols existed, under what is now `paper-lr0.01` (its runs: '
            'results/grid/<attack>_<defense>_seed0.*; the tables above supersede it, and reproduce.py now writes '
            'a one-seed grid to table1_paper-lr0.01_seeds0.md). '
            f'Source: {link(path)}.\n\n{included(path)}')


def tradeoff():
    data = rows('tradeoff_summary.csv')
    body = [['NAD - FT ASR at matched ACC', *(f"{r['nad_minus_ft_asr']:+.2f} +- {r['sd']:.2f}" for r in data)],
            ['matched runs', *(f"{r['matched_runs']:.0f}" for r in data)]]
    attacks = ' '.join(r['attack'] for r in data)
    return ('The trade-off: NAD against fine-tuning at the same ACC',
            f'Fine-tuning and NAD under `code` at first-phase lr 0.003 / 0.01 / 0.03 / 0.1, seeds 0 1 2: '
            f'`python reproduce.py --analysis tradeoff --attacks {attacks}`. NAD\'s ASR minus fine-tuning\'s at NAD\'s '
            f'ACC (fine-tuning\'s curve of the same seed read there), mean +- sd over the matched runs. Source: '
            f'{link(source("tradeoff_summary.csv"))}; every run: {link(source("tradeoff.csv"))}.\n\n'
            + table(['', *(title(r['attack']) for r in data)], body)
            + f'\n\n{image(source("tradeoff.png"))}')


HARSH_LABELS = {'nad': 'NAD, teacher of its own lr', 'nad_code_teacher': 'NAD, `code` teacher',
                'kd_code_teacher': 'KD, `code` teacher'}  # analyses.HARSH_METHODS, as the table names them


def tradeoff_harsh():
    """The trade-off with the seed's `code` teacher for every lr (float32), once its grid is complete: until then
    the section is left out (None), since a partial grid writes no summary."""
    path = os.path.join(RESULTS, 'fp32', 'tradeoff_harsh_summary.csv')
    if not os.path.isfile(path):
        return None
    runs_path = path.replace('_summary', '')                  # every run: the seeds and lrs
    data, runs = rows(os.path.relpath(path, RESULTS)), rows(os.path.relpath(runs_path, RESULTS))

    def matched(r, method):
        if r[f'{method}_minus_ft_asr'] in ('', None):
            return '-'
        return f"{r[f'{method}_minus_ft_asr']:+.2f} +- {r[f'{method}_sd']:.2f} ({r[f'{method}_matched_runs']:.0f})"

    def paired(r):  # NAD minus KD, the same teacher, lr and seed: ASR / ACC
        if not r.get('nad_minus_kd_pairs'):
            return '-'
        return (f"{r['nad_minus_kd_asr']:+.2f} +- {r['nad_minus_kd_asr_sd']:.2f} / {r['nad_minus_kd_acc']:+.2f} +- "
                f"{r['nad_minus_kd_acc_sd']:.2f} ({r['nad_minus_kd_pairs']:.0f})")

    body = [[label, *(matched(r, method) for r in data)] for method, label in HARSH_LABELS.items()]
    body.append(['NAD - KD, both `code`-taught (ASR / ACC)', *(paired(r) for r in data)])
    attacks, seeds = ' '.join(r['attack'] for r in data), seeds_of(runs)
    lrs = ' / '.join(f'{lr:g}' for lr in sorted({r['lr'] for r in runs}))
    return ('The trade-off with a harsh teacher',
            f'Fine-tuning, NAD taught by the fine-tuned model of its own lr, and NAD and KD taught by the seed\'s '
            f'`code` (lr 0.1) teacher at every lr, under `code` at first-phase lr {lrs}, seeds {seeds}, float32: '
            f'`python reproduce.py --analysis tradeoff_harsh --attacks {attacks} --seeds {seeds} --results '
            f'results/fp32 --models weight/erasing_net/fp32`. Each method\'s ASR minus fine-tuning\'s at its ACC '
            f'(fine-tuning\'s curve of the same seed read there), mean +- sd (matched runs); last row: NAD\'s '
            f'ASR and ACC minus KD\'s at the same lr and seed, both taught by the `code` teacher (lr 0.1 included), '
            f'mean +- sd (pairs). Source: {link(path)}; '
            f'every run: {link(runs_path)}.\n\n'
            + table(['', *(title(r['attack']) for r in data)], body)
            + f'\n\n{image(path.replace("_summary.csv", ".png"))}')


def teacher_files():
    """The teacher analysis's tables: the whole grid's (teacher.md) once it is made, else each slice's (e.g.
    teacher_from-code_to-paper-lr0.01.md, the key cell), in name order."""
    whole = os.path.join(RESULTS, 'fp32', 'teacher.md')
    paths = [whole] if os.path.isfile(whole) else sorted(glob.glob(os.path.join(RESULTS, 'fp32', 'teacher*.md')))
    if not paths:
        raise UserError('results/fp32/teacher*.md is missing: run the teacher analysis first')
    return paths


def cell_rows(teacher_protocol, student_protocol):
    """{(attack, method): summary row} of one teacher x student cell, from the teacher table that holds most of
    it (then most seeds): a one-attack slice never hides the whole cell."""
    def cell(path):
        return {(r['attack'], r['method']): r for r in rows(os.path.relpath(path, RESULTS)[:-3] + '.csv')
                if (r['teacher_protocol'], r['student_protocol']) == (teacher_protocol, student_protocol)}
    found = max((cell(path) for path in teacher_files()),
                key=lambda c: (len(c), sum(r['seeds'] for r in c.values())))
    if not found:
        raise UserError(f'no teacher table holds the cell teacher {teacher_protocol} -> student {student_protocol}: '
                        'run python reproduce.py --analysis teacher --results results/fp32 --models weight/erasing_net/fp32')
    return found


def teacher_command(path):
    """The reproduce.py command that writes `path`, from its name (analyses.teacher_name)."""
    name = os.path.basename(path)[:-len('.md')]
    match = re.fullmatch(r'teacher(?:_(?P<attacks>.+?))??(?:_seeds(?P<seeds>[\d-]+))?'
                         r'(?:_from-(?P<teachers>[^_]+))?(?:_to-(?P<students>[^_]+))?', name)
    parts = match.groupdict() if match else {}
    flags = ['--analysis', 'teacher']
    for flag, part, joiner in (('--attacks', 'attacks', '-'), ('--teacher_protocols', 'teachers', '+'),
                               ('--student_protocols', 'students', '+'), ('--seeds', 'seeds', '-')):
        if parts.get(part):
            flags += [flag, *parts[part].split(joiner)]
    return ' '.join(['python reproduce.py', *flags, '--results results/fp32 --models weight/erasing_net/fp32'])


def teacher():
    paths = teacher_files()
    commands = '; '.join(f'`{teacher_command(path)}` ({link(path)})' for path in paths)
    return ('The teacher analysis: NAD, KD and two-stage fine-tuning from each protocol\'s teacher',
            'NAD, logit distillation (KD) and two-stage fine-tuning under the student\'s protocol, each taught by '
            'the same seed\'s teacher fine-tuned under the teacher\'s protocol, beside fine-tuning under the '
            f'student\'s; trained and measured in float32 in a grid of its own: {commands}.\n\n' + teacher_tables(paths))


def teacher_tables(paths):
    """The tables of `paths` one after the other, each legend once, before the tables it heads."""
    by_legend = {}
    for path in paths:
        legend, cells = included(path).split('\n\n', 1)
        by_legend.setdefault(legend, []).append(cells)
    return '\n\n'.join(part for legend, cells in by_legend.items() for part in (legend, *cells))


def attribution():
    path = source('attribution.md')
    return ('Why the paper differs: backdoor recipe and protocol',
            'BadNets, Trojan and SIG backdoored with the zoo\'s recipe and with the original repository\'s '
            '(`--recipe authors`), each fine-tuned and erased by NAD under `code`, `paper` and `paper-lr0.01`, '
            f'seeds 0 1 2: `python reproduce.py --analysis attribution`. Source: {link(path)}.\n\n{included(path)}')


def detection():
    path = source('detection.md')
    return ('Detection: Neural Cleanse and STRIP',
            'Neural Cleanse and STRIP on every zoo model and on its NAD-erased model (`paper-lr0.01`), seeds 0 1 2: '
            f'`python reproduce.py --analysis detection`. Source: {link(path)}.\n\n{included(path)}')


def attention_maps():
    data = rows('attention_maps_badnets.csv')
    body = [['backdoored' if r['model'] == 'before' else DEFENSES[r['model']].title,
             *(f"{r[f'group{g}_similarity']:.2f}" for g in (1, 2, 3))] for r in data]
    return ('Attention maps (BadNets)',
            'Mean cosine similarity between a model\'s attention maps of triggered and of clean test images '
            f'(1: the trigger no longer changes where the model looks): `python reproduce.py --analysis attention`. '
            f'Source: {link(source("attention_maps_badnets.csv"))}.\n\n'
            + table(['model', 'group 1', 'group 2', 'group 3'], body)
            + f'\n\n{image(source("attention_maps_badnets.png"))}')


def curves():
    return ('Learning curves (BadNets)',
            'ACC and ASR after every epoch of fine-tuning and NAD: `python reproduce.py --analysis curves`. '
            f'Source: {link(source("curves_badnets.csv"))}.\n\n{image(source("curves_badnets.png"))}')


def attack_rows(data, columns):
    """One row per attack: its title, ASR / ACC of each column (`<column>_asr`, `<column>_acc`), the paper's NAD."""
    return [[title(r['attack']), *(pair(r[f'{c}_asr'], r[f'{c}_acc']) for c in columns), paper_nad(r['attack'])]
            for r in data]


def paper_lr():
    data = rows('paper_lr.csv')
    body = attack_rows(data, ('before', 'finetune', 'nad'))
    return ('The paper\'s lr 0.1',
            f'Fine-tuning and NAD at lr 0.1, NAD taught by that fine-tuned model, seed {seeds_of(data)}; ASR / ACC: '
            f'`python reproduce.py --analysis paper_lr`. Source: {link(source("paper_lr.csv"))}.\n\n'
            + table(['attack', 'before', 'fine-tuning, lr 0.1', 'NAD, lr 0.1 (teacher: that fine-tuned model)',
                     'paper NAD'], body))


def ratio():
    data = rows('ratio_badnets.csv')
    by = {(r['ratio'], r['method']): r for r in data}
    images = TRAIN_SIZES['CIFAR10']
    body = [[f'{ratio:.0%} ({subset_size(images, ratio)} images)', *(cell(by, ratio, m) for m in METHODS)]
            for ratio in dict.fromkeys(r['ratio'] for r in data)]
    return ('Clean data (BadNets)',
            'Fine-tuning and NAD with 1 to 20% of the training set as clean data, NAD\'s teacher fine-tuned on the '
            f'same fraction, seed {seeds_of(data)}; ASR / ACC: `python reproduce.py --analysis ratio`. '
            f'Source: {link(source("ratio_badnets.csv"))}.\n\n'
            + table(['clean data', 'fine-tuning', 'NAD'], body) + f'\n\n{image(source("ratio_badnets.png"))}')


def beta():
    data = rows('beta_badnets.csv')
    return ('Beta (BadNets)',
            'NAD with beta2 = beta3 = B and beta1 = B / 2, raising B until ACC falls below 80; ASR / ACC: '
            f'`python reproduce.py --analysis beta`. Source: {link(source("beta_badnets.csv"))}.\n\n'
            + table(['B', *(f"{r['beta']:.0f}" for r in data)], [['NAD', *(pair(r['asr'], r['acc']) for r in data)]])
            + f'\n\n{image(source("beta_badnets.png"))}')


def nad_beta():
    data = rows('nad_beta5000.csv')
    body = attack_rows(data, ('finetune', 'nad', 'nad_beta5000'))
    return ('NAD at B = 5000 on every attack',
            f'NAD at the beta picked on BadNets beside fine-tuning and NAD at the default, seed {seeds_of(data)}; '
            f'ASR / ACC: `python reproduce.py --analysis nad_beta`. Source: {link(source("nad_beta5000.csv"))}.\n\n'
            + table(['attack', 'fine-tuning', 'NAD, B = 1000', 'NAD, B = 5000', 'paper NAD'], body))


def attention_fns():
    def name(r):
        if r['attention'] == 'activation':
            return 'raw activations'
        power = '' if r['p'] == 1 else f"^{r['p']:g}"
        return f"A{power}_{r['attention'].split('_')[0]}"
    path = source('attention_functions_badnets.csv')
    data = rows('attention_functions_badnets.csv')
    return ('Attention functions and raw activations (BadNets)',
            f'NAD distilling each attention operator or the raw feature maps, default betas, seed {seeds_of(data)}: '
            f'`python reproduce.py --analysis attention_fns`. Source: {link(path)}.\n\n'
            + table(['distilled', 'ASR / ACC'], [[name(r), pair(r['asr'], r['acc'])] for r in data]))


def adaptive():
    data = rows('adaptive.csv')
    by = {(r['alpha'], r['method']): r for r in data}
    body = []
    for alpha in dict.fromkeys(r['alpha'] for r in data):
        any_run = next(r for r in data if r['alpha'] == alpha)
        body.append([f'{alpha:.1f}', pair(any_run['before_asr'], any_run['before_acc']),
                     *(cell(by, alpha, m) for m in METHODS)])
    return ('Adaptive attack',
            'The centre square blended at alpha, each model trained from scratch, its teacher fine-tuned, NAD at the '
            f'paper\'s Table 9 betas; ASR / ACC: `python reproduce.py --analysis adaptive`. '
            f'Source: {link(source("adaptive.csv"))}.\n\n'
            + table(['alpha', 'backdoored', 'fine-tuning (= the teacher)', 'NAD'], body))


def teachers():
    data = rows('teachers_badnets.csv')
    body = [[r['teacher'], pair(r['teacher_asr'], r['teacher_acc']), pair(r['asr'], r['acc'])] for r in data]
    return ('Teacher architectures (BadNets)',
            'NAD from teachers of five architectures trained from scratch on the clean subset for 10 epochs; '
            f'ASR / ACC: `python reproduce.py --analysis teachers`. Source: {link(source("teachers_badnets.csv"))}.\n\n'
            + table(['teacher', 'teacher (from scratch)', 'NAD student'], body))


SECTIONS = [lambda: table1('code', "the authors' code's schedule"), lambda: table1('paper-lr0.01', 'the default'),
            table1_earlier, tradeoff, tradeoff_harsh, teacher, attribution, detection, attention_maps, curves, paper_lr, ratio,
            beta, nad_beta, attention_fns, adaptive, teachers]


def others(text):
    """The figures and Markdown tables in results/ (not its grids) that no section above shows."""
    figures = [p for p in sorted(glob.glob(os.path.join(RESULTS, '*.png'))) if image(p) not in text]
    stored = glob.glob(os.path.join(RESULTS, '*.md')) + glob.glob(os.path.join(RESULTS, '*', '*.md'))
    tables = [p for p in sorted(stored) if link(p) not in text]
    parts = []
    if figures:
        parts.append(('Other figures', 'The figures in results/ that no section above shows (those written beside the '
                      'single `main.py` runs filed there, and the trigger figure):\n\n'
                      + '\n\n'.join(f'{link(p)}:\n\n{image(p)}' for p in figures)))
    if tables:
        parts.append(('Other stored tables', 'Slices and earlier versions of the tables above:\n\n'
                      + '\n'.join(f'- {link(p)}' for p in tables)))
    return parts


def page():
    sections = [part for part in (section() for section in SECTIONS) if part]  # None: a section not made yet
    sections += others('\n'.join(text for _, text in sections))
    head = ('# Results\n\n'
            'Every table and figure stored in [results/](../results), with the command that made it. This page is '
            'written by `python -m experiments.report` from those files (stored Markdown tables included as they '
            'are, CSVs written out as tables): do not edit it by hand; `python -m experiments.report --check` tells '
            'whether it is current. What the numbers say: [FINDINGS.md](FINDINGS.md) and [ANALYSES.md](ANALYSES.md); '
            'how the runs are made: [REPRODUCING.md](REPRODUCING.md).\n\n'
            + '\n'.join(f'- [{heading}](#{anchor(heading)})' for heading, _ in sections))
    return '\n\n'.join([head] + [f'## {heading}\n\n{text}' for heading, text in sections]) + '\n'


# --- the README's headline table --------------------------------------------------------------------------

CELLS = (('code', 'code', "the authors' schedule"), ('paper-lr0.01', 'paper-lr0.01', 'the default'),
         ('code', 'paper-lr0.01', 'harsh teacher, gentle student'),
         ('paper-lr0.01', 'code', 'gentle teacher, harsh student'))  # the teacher analysis's cells, in reading order
CONTROLS = ('finetune', 'kd', 'twostage')


def headline():
    """For each teacher x student cell of the teacher analysis, the average over the paper's six attacks: the
    teacher, fine-tuning under the student's protocol, NAD, KD and two-stage (ASR +- sd / ACC), and NAD minus
    each control, paired by seed."""
    def short(row, sign=''):
        return f"{row['asr']:{sign}.1f} +- {row['asr_sd']:.1f} / {row['acc']:{sign}.1f}" if row else '-'

    body = []
    for teacher, student, what in CELLS:
        average = {method: row for (attack, method), row in cell_rows(teacher, student).items() if attack == 'average'}
        body.append([f'`{teacher}` -> `{student}` ({what})',
                     *(short(average.get(m)) for m in ('teacher', 'finetune', 'nad', 'kd', 'twostage')),
                     *(short(average.get(f'nad-{m}'), '+') for m in CONTROLS)])
    return table(['teacher -> student', 'teacher', 'FT', 'NAD', 'KD', 'two-stage',
                  'NAD - FT', 'NAD - KD', 'NAD - two-stage'], body)


def readme_with_headline():
    """README.md with the text between the HEADLINE markers replaced by the headline table."""
    with open(README, encoding='utf-8') as f:
        text = f.read()
    start, end = text.find(HEADLINE[0]), text.find(HEADLINE[1])
    if start < 0 or end < start:
        raise UserError(f'README.md lacks the headline markers {HEADLINE[0].strip()} ... {HEADLINE[1]}')
    return text[:start + len(HEADLINE[0])] + headline() + '\n' + text[end:]


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces as '-'."""
    return re.sub(r'[^\w\- ]', '', heading.lower()).replace(' ', '-')


def main():
    p = argparse.ArgumentParser(prog='python -m experiments.report', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--check', action='store_true',
                   help='write nothing; exit 1 if docs/RESULTS.md or the README differs from what would be written')
    args = p.parse_args()
    pages = {OUTPUT: page().encode('utf-8'), README: readme_with_headline().encode('utf-8')}
    if not args.check:
        write_together(list(pages.items()))
        print('wrote ' + ' and '.join(os.path.relpath(path, ROOT) for path in pages))
        return
    for path, text in pages.items():
        current = None
        if os.path.exists(path):
            with open(path, 'rb') as f:
                current = f.read()
        if current != text:
            sys.exit(f'{os.path.relpath(path, ROOT)} is not current with results/: run python -m experiments.report')


if __name__ == '__main__':
    run(main)
