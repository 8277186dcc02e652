"""What every entry point shows the same way: its --help (each default once, no flag it lacks) and its epoch
lines. The --help runs are in this process (conftest.run_here: the script as its __main__), which stops at the parse."""
import re

import pytest

from conftest import run_here
from utils.cli import epoch_line, plural

ENTRY_POINTS = [['main.py'], ['train_badnet.py'], ['reproduce.py'], ['-m', 'experiments.analyses'],
                ['-m', 'experiments.report'], ['-m', 'zoo.make'], ['-m', 'zoo.sweep'], ['-m', 'attacks.show'],
                ['-m', 'attacks.trojan'], ['-m', 'attacks.refool'], ['-m', 'benchmarks.speed']]


def options(help_text):
    """{'--flag ...': its help} for each option the help lists (under 'options:' and the groups after it)."""
    entries, current = {}, None
    for line in help_text[help_text.index('\noptions:'):].splitlines():
        if line.startswith('  -'):                    # an option's own line: its flags, then maybe its help
            current, _, text = line.strip().partition('  ')
            entries[current] = text.strip()
        elif current and line.startswith(' ' * 6):    # its help, continued
            entries[current] = f'{entries[current]} {line.strip()}'.strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize('entry', ENTRY_POINTS, ids=' '.join)
def test_help_prints_each_default_once_and_only_flags_the_script_has(entry):
    out = run_here(*entry, '--help')
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    entries = options(out.stdout)
    has = {f for e in entries for f in re.findall(r'(?<![\w-])--?[\w-]+', e)}   # every spelling of every option
    for flags, text in entries.items():
        assert len(re.findall(r'default', text, re.I)) <= 1, f'{flags}: the default said more than once: {text}'
        unknown = set(re.findall(r'(?<![\w.-])--[a-z][\w-]*', text)) - has
        assert not unknown, f'{flags}: its help names {sorted(unknown)}, which {" ".join(entry)} has not: {text}'


def test_the_help_parser_reads_each_option_and_its_help():
    text = ('usage: x [-h]\n\nA tool.\n\noptions:\n  -h, --help  show this\n  --lr LR     the rate (default: 0.1)\n'
            '  --schedule [SCHEDULE ...]\n                        epochs where lr drops\n                        '
            'by --gamma\n')
    assert options(text) == {'-h, --help': 'show this', '--lr LR': 'the rate (default: 0.1)',
                             '--schedule [SCHEDULE ...]': 'epochs where lr drops by --gamma'}


def test_an_epoch_line_shows_small_learning_rates_in_aligned_columns():
    metrics = {'acc': 85.0, 'asr': 3.25, 'ra': 80.5}
    lines = [epoch_line(9, lr, 0.4397, metrics, 92.5) for lr in (0.1, 0.01, 1e-6, 0.0)] + [epoch_line(0, None, None, metrics, 8.4)]
    assert 'lr 1.00e-06' in lines[2] and 'lr 0.00e+00' in lines[3]      # 1e-6 was printed as 0.00000
    assert len({line.index('| loss') for line in lines}) == 1           # the columns stay aligned (before: lr -)
    assert epoch_line(0, None, None, {'acc': None, 'asr': None, 'ra': None}, 0.0).count(' - ') == 5


def test_counts_take_the_noun_in_the_right_number():
    assert (plural(1, 'epoch'), plural(0, 'epoch'), plural(20, 'curve epoch')) == ('1 epoch', '0 epochs', '20 curve epochs')
