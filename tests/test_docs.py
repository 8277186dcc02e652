"""The documentation a newcomer follows: docs/RESULTS.md is what `python -m experiments.report` writes from
results/; every `python ...` command in the fenced shell blocks of README.md and docs/*.md works as written, in a
cheap form (main.py's and train_badnet.py's flags parsed by their own parser, a script with --dry_run dry-run,
any other asked for --help, and its flags looked up there); and docs/EXTENDING.md's "Adding a defense" / "Adding an attack" snippets, run in the module
they extend, add an entry that works. The docs are read when the tests are collected, so the tests follow them."""
import glob
import importlib.util
import os
import re
import shlex

import pytest

import config
from conftest import ROOT, run_cli, run_here
from utils import UserError

DOCS = ['README.md', *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))]
SHELL = ('', 'bash', 'sh', 'shell', 'console')                   # fenced blocks whose lines are shell commands
PARSERS = {'main.py': config.get_arguments, 'train_badnet.py': config.get_badnet_arguments}  # importable parsers
OPERATORS = ('&&', '||', ';')                                    # chains: each part is a command of its own


def read(doc):
    with open(os.path.join(ROOT, doc), encoding='utf-8') as f:
        return f.read()


def blocks(text):
    """(heading, language, first line number, lines) of each fenced code block, under the last heading above it."""
    found, heading, fence = [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        marker = re.match(r'\s*```(\S*)', line)
        if fence is None and marker:
            fence = (marker.group(1), number + 1, [])
        elif fence is not None and marker:
            found.append((heading, *fence))
            fence = None
        elif fence is not None:
            fence[2].append(line)
        elif line.startswith('#'):
            heading = line.lstrip('#').strip()
    return found


def split_commands(line):
    """The commands of one shell line, each as argv: '# comments' dropped, chains split, a command cut at any
    other operator (a pipe, a redirection, '&')."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, argv = [], []
    for token in lexer:
        if token in OPERATORS:
            commands.append(argv)
            argv = []
        else:
            argv.append(token)
    commands.append(argv)
    return [argv[:next((i for i, t in enumerate(argv) if set(t) <= set('|&<>')), len(argv))] for argv in commands]


def doc_commands():
    """{command: 'doc:line'} for the python commands of the docs' shell blocks: each line that starts with
    `python` (continuations joined), and each command of its chain; the first place each is written; pip is
    left out."""
    found = {}
    for doc in DOCS:
        for _, language, start, lines in blocks(read(doc)):
            if language not in SHELL:
                continue
            logical, first = '', start
            for number, line in enumerate(lines, start):
                if not logical:
                    first = number
                if line.rstrip().endswith('\\'):
                    logical += line.rstrip()[:-1] + ' '
                    continue
                command, logical = logical + line, ''
                if not re.match(r'\s*python3?(\s|$)', command):  # a plain block may be no shell at all
                    continue
                try:
                    argvs = split_commands(command)
                except ValueError:  # unbalanced quotes: kept as written, and its test says so
                    found.setdefault(command.strip(), f'{doc}:{first}')
                    continue
                for argv in argvs:
                    if argv[:1] in (['python'], ['python3']) and argv[1:3] != ['-m', 'pip']:
                        found.setdefault(shlex.join(argv), f'{doc}:{first}')
    return found


COMMANDS = doc_commands()


def target(argv):
    """(the script or module, whether it is a module, its arguments) of a python command."""
    if argv[1] == '-m':
        return argv[2], True, argv[3:]
    return argv[1], False, argv[2:]


def source_path(name, module):
    """The file `python [-m] name` runs first, or None if there is none."""
    if module:
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:
            return None
        return spec.origin if spec else None
    path = os.path.join(ROOT, name)
    return path if os.path.isfile(path) else None


def test_results_page_is_current():
    """docs/RESULTS.md is what the report writes from results/ now (else: python -m experiments.report)."""
    result = run_here('-m', 'experiments.report', '--check')
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_teacher_section_shows_every_cell_and_a_cell_is_read_whole(tmp_path, monkeypatch):
    from experiments import report
    monkeypatch.setattr(report, 'RESULTS', str(tmp_path))
    (tmp_path / 'fp32').mkdir()
    legend = 'ASR +- sd / ACC / RA in %, mean over seeds 0 1 2.'
    header = 'attack,teacher_protocol,student_protocol,method,seeds,asr,asr_sd,acc,acc_sd,ra,ra_sd\n'
    cells = (('teacher_badnets_from-code_to-paper-lr0.01', 'code', 'badnets'),   # a one-attack slice, first by name
             ('teacher_from-code_to-paper-lr0.01', 'code', 'badnets blend'),    # the key cell
             ('teacher_from-paper-lr0.01_to-paper-lr0.01', 'paper-lr0.01', 'badnets blend'))
    for name, teacher, attacks in cells:
        (tmp_path / 'fp32' / f'{name}.md').write_text(f'{legend}\n\nTeacher `{teacher}`, student `paper-lr0.01`:\n')
        (tmp_path / 'fp32' / f'{name}.csv').write_text(header + ''.join(
            f'{a},{teacher},paper-lr0.01,nad,3,{len(name)},0,80,0,70,0\n' for a in attacks.split()))
    (tmp_path / 'fp32' / f'{cells[0][0]}.md').write_text('Other legend.\n\nTeacher `code`, one attack:\n')
    _, text = report.teacher()
    assert text.count(legend) == 1 and text.index(legend) < text.index('Teacher `paper-lr0.01`, student')
    assert text.index('Other legend.') < text.index('one attack') < text.index(legend)   # each legend above its tables
    assert '--teacher_protocols paper-lr0.01 --student_protocols paper-lr0.01' in text
    key = report.cell_rows('code', 'paper-lr0.01')                 # the whole key cell, not the slice sorted first
    assert set(key) == {('badnets', 'nad'), ('blend', 'nad')} and key['badnets', 'nad']['asr'] == len(cells[1][0])
    (tmp_path / 'fp32' / 'teacher.md').write_text(f'{legend}\n\nall four cells\n')  # the whole grid: it alone
    assert report.teacher_files() == [str(tmp_path / 'fp32' / 'teacher.md')]


def test_the_headline_has_each_cells_averages_and_its_paired_differences(tmp_path, monkeypatch):
    from experiments import report
    monkeypatch.setattr(report, 'RESULTS', str(tmp_path))
    (tmp_path / 'fp32').mkdir()
    (tmp_path / 'fp32' / 'teacher.md').write_text('all four cells\n')
    lines = ['attack,teacher_protocol,student_protocol,method,seeds,asr,asr_sd,acc,acc_sd,ra,ra_sd']
    for number, (teacher, student, _) in enumerate(report.CELLS):
        lines += [f'average,{teacher},{student},{method},3,{number}{i}.25,0.5,7{i}.0,0,0,0'
                  for i, method in enumerate(('teacher', 'finetune', 'nad', 'kd', 'twostage'))]
        lines += [f'average,{teacher},{student},nad-{m},3,-{number}.{i}0,0.5,1.0,0,0,0' for i, m in enumerate(report.CONTROLS)]
        lines.append(f'badnets,{teacher},{student},nad,3,99,0,99,0,0,0')       # a row per attack: not in the headline
    (tmp_path / 'fp32' / 'teacher.csv').write_text('\n'.join(lines) + '\n')
    rows = report.headline().splitlines()[2:]
    assert len(rows) == 4 and all(f'`{t}` -> `{s}`' in row for (t, s, _), row in zip(report.CELLS, rows))
    assert rows[2].split(' | ')[1:] == ['20.2 +- 0.5 / 70.0', '21.2 +- 0.5 / 71.0', '22.2 +- 0.5 / 72.0',
                                        '23.2 +- 0.5 / 73.0', '24.2 +- 0.5 / 74.0', '-2.0 +- 0.5 / +1.0',
                                        '-2.1 +- 0.5 / +1.0', '-2.2 +- 0.5 / +1.0 |']
    (tmp_path / 'fp32' / 'teacher.csv').write_text('\n'.join(l for l in lines if ',code,code,' not in l) + '\n')
    with pytest.raises(UserError, match='teacher code -> student code'):
        report.headline()


def test_the_harsh_trade_off_section_waits_for_its_summary_then_shows_each_method(tmp_path, monkeypatch):
    from experiments import analyses, report
    monkeypatch.setattr(report, 'RESULTS', str(tmp_path))
    (tmp_path / 'fp32').mkdir()
    assert report.tradeoff_harsh() is None                          # no summary yet: no section
    assert set(report.HARSH_LABELS) == set(analyses.HARSH_METHODS)
    header = ','.join(['attack', *(f'{m}_{c}' for m in analyses.HARSH_METHODS
                                   for c in ('minus_ft_asr', 'sd', 'matched_runs')),
                       *(f'nad_minus_kd_{c}' for c in ('pairs', 'acc', 'acc_sd', 'asr', 'asr_sd'))])
    (tmp_path / 'fp32' / 'tradeoff_harsh_summary.csv').write_text(
        header + '\nbadnets,-1.5,0.5,12,-20.25,2.0,11,,,0,12,1.25,0.5,-4.5,2.25\ncl,0.5,0.25,10,-3.0,1.0,9,-2.0,1.5,8,0,,,,\n')
    (tmp_path / 'fp32' / 'tradeoff_harsh.csv').write_text(   # every run: the seeds and lrs the command names
        'attack,method,lr,seed,acc,asr,ra\n' + ''.join(f'badnets,finetune,{lr},{seed},80,5,70\n'
                                                       for lr in (0.01, 0.003) for seed in (0, 2)))
    heading, text = report.tradeoff_harsh()
    lines = text.splitlines()
    assert '| NAD, `code` teacher | -20.25 +- 2.00 (11) | -3.00 +- 1.00 (9) |' in lines
    assert '| KD, `code` teacher | - | -2.00 +- 1.50 (8) |' in lines   # no matched run: a dash
    assert '| NAD - KD, both `code`-taught (ASR / ACC) | -4.50 +- 2.25 / +1.25 +- 0.50 (12) | - |' in lines
    assert '--attacks badnets cl --seeds 0 2' in text and 'lr 0.003 / 0.01, seeds 0 2' in text
    assert 'tradeoff_harsh.png' in text


def test_the_docs_have_commands():
    assert any(command.startswith('python main.py') for command in COMMANDS), COMMANDS


@pytest.mark.parametrize('command', COMMANDS)
def test_doc_command(command, capsys):
    """main.py and train_badnet.py: the flags parsed and checked by the script's own parser (an unknown flag or a
    bad value fails), nothing run. A script with --dry_run: dry-run here. Any other: --help here."""
    where = COMMANDS[command]
    try:
        argv = shlex.split(command)
    except ValueError as e:
        pytest.fail(f'{where}: {command}: not a shell command ({e})')
    name, module, args = target(argv)
    script = ['-m', name] if module else [name]
    path = source_path(name, module)
    if path is None:
        pytest.fail(f'{where}: {command}: there is no {"module" if module else "script"} {name}')
    with open(path, encoding='utf-8') as f:
        dry_run = "'--dry_run'" in f.read()
    if not module and name in PARSERS:
        try:
            config.parse(PARSERS[name](), args)
        except (SystemExit, UserError) as e:
            error = capsys.readouterr().err.strip().splitlines()
            pytest.fail(f'{where}: {command}: {error[-1] if error else e}')
    elif '--dry_run' in args or dry_run:
        out = run_here(*script, *args, *([] if '--dry_run' in args else ['--dry_run']))
        assert out.returncode == 0, \
            f'{where}: {command} --dry_run: exit {out.returncode}\n{out.stdout[-2000:]}{out.stderr[-2000:]}'
    else:  # --help stops at the parse: the command's flags are looked up in the help instead
        out = run_here(*script, '--help')
        assert out.returncode == 0, f'{where}: {command} --help: exit {out.returncode}\n{out.stderr[-2000:]}'
        flags = [a.split('=')[0] for a in args if re.match(r'--?[A-Za-z]', a)]
        unknown = [f for f in flags if not re.search(rf'(?<![\w-]){re.escape(f)}(?![\w-])', out.stdout)]
        assert not unknown, f'{where}: {command}: {", ".join(unknown)} not in its --help'


# docs/EXTENDING.md's snippets: run in the module they extend, then the new entry is used as the scripts use it.
EXTENDING = os.path.join('docs', 'EXTENDING.md')
EXTENSIONS = {
    'Adding a defense': '''
import torch
import config, defenses
from models import build_model
before = set(defenses.DEFENSES)
exec(SNIPPET, vars(defenses))
(name,) = set(defenses.DEFENSES) - before
args = config.parse(config.get_arguments(), ['--defense', name])     # main.py takes it
loss, parameters = defenses.DEFENSES[name].loss(args, None, 'cpu')
value = loss(build_model('WRN-16-1', 10), torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
assert torch.isfinite(value), value
print('new defense', name)
''',
    'Adding an attack': '''
import torch
import attacks, config
before = set(attacks.ATTACKS)
exec(SNIPPET, vars(attacks))
(name,) = set(attacks.ATTACKS) - before
attack = attacks.ATTACKS[name]
args = config.parse(config.get_badnet_arguments(), ['--attack', name])   # train_badnet.py takes it
assert (args.trigger_type, args.target_type, args.inject_portion) == \\
    (attack.trigger_type, attack.target_type, attack.inject_portion), vars(args)
x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
assert not torch.equal(attacks.build_trigger(attack.trigger_type)(x), x)
print('new attack', name)
''',
}


@pytest.mark.parametrize('heading', EXTENSIONS)
def test_extension_snippet(heading):
    snippets = ['\n'.join(lines) for under, language, _, lines in blocks(read(EXTENDING))
                if under == heading and language == 'python']
    assert len(snippets) == 1, f'{EXTENDING}: one ```python block expected under "{heading}", found {len(snippets)}'
    program = f'SNIPPET = {snippets[0]!r}\n' + EXTENSIONS[heading]
    result = run_cli('-c', program, timeout=120)   # a new interpreter: the snippet changes the registries
    assert result.returncode == 0, f'{EXTENDING}, "{heading}":\n{snippets[0]}\n{result.stderr[-2000:]}'
