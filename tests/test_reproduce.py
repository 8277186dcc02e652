"""reproduce.py on real CIFAR-10: a 2-attack x 2-defense grid of one epoch each writes Table 1's files in
the paper's layout, and a second call resumes (runs nothing) unless a setting changed."""
import csv
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = 'table1_badnets-trojan_finetune-nad_epochs1'  # the name a subset's table gets


def reproduce(tmp_path, *flags):
    result = subprocess.run([sys.executable, 'reproduce.py', '--attacks', 'badnets', 'trojan',
                             '--defenses', 'finetune', 'nad', '--epochs', '1', '--device', 'cpu',
                             '--results', str(tmp_path / 'results'), '--models', str(tmp_path / 'models'), *flags],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope='module')
def grid(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('reproduce')
    return tmp_path, reproduce(tmp_path)


def test_grid_writes_table1_in_the_papers_layout(grid):
    tmp_path, out = grid
    assert 'reproduce: 4 runs made' in out
    assert not (tmp_path / 'results' / 'table1.csv').exists()    # a subset never overwrites the full table
    with open(tmp_path / 'results' / f'{TABLE}.csv') as f:
        rows = list(csv.DictReader(f))
    cells = {(r['attack'], r['defense']): r for r in rows}
    assert sorted(cells) == sorted((a, d) for a in ('badnets', 'trojan', 'average')
                                   for d in ('before', 'finetune', 'nad'))
    assert float(cells['badnets', 'before']['asr']) > 95          # the zoo model's own record
    assert float(cells['badnets', 'nad']['paper_asr']) == 4.77    # the paper's value beside ours
    for attack in ('badnets', 'trojan'):                          # one epoch of either already erases most of it
        assert float(cells[attack, 'nad']['asr']) < float(cells[attack, 'before']['asr'])
        assert 60 < float(cells[attack, 'nad']['acc']) <= 100
    average = (float(cells['badnets', 'nad']['acc']) + float(cells['trojan', 'nad']['acc'])) / 2
    assert float(cells['average', 'nad']['acc']) == pytest.approx(average)
    table = (tmp_path / 'results' / f'{TABLE}.md').read_text()
    assert '| attack | Before | Fine-tuning | NAD |' in table
    assert [line.split('|')[1].strip() for line in table.splitlines() if line.startswith('| ')] == \
        ['attack', 'BadNets', 'Trojan', 'average']
    run = json.loads((tmp_path / 'results' / 'grid' / 'trojan_nad_seed0.json').read_text())
    assert run['config']['attack'] == 'trojan' and run['config']['epochs'] == 1 and run['config']['seed'] == 0
    assert run['before_source'] == 'student checkpoint record'


def test_second_call_resumes_and_a_changed_setting_reruns(grid):
    tmp_path, _ = grid
    assert 'reproduce: 0 runs made (0.0 min), 4 found done' in reproduce(tmp_path)
    planned = reproduce(tmp_path, '--epochs', '2', '--dry_run')  # another epoch count: every run is made again
    assert planned.count('$ python main.py') == 4 and '--epochs 2' in planned


def test_only_the_full_default_grid_is_named_table1():
    from reproduce import get_arguments, table_name
    name = lambda *argv: table_name(get_arguments().parse_args(list(argv)))  # noqa: E731
    assert name() == name('--seeds', '0') == 'table1'
    assert name('--attacks', 'blend') == 'table1_blend'
    assert name('--defenses', 'nad', 'finetune', '--seeds', '0', '1', '2') == 'table1_nad-finetune_seeds0-1-2'
    assert name('--mcr_epochs', '100') == 'table1_mcr100' and name('--mcr_epochs', '100', '--defenses', 'nad') == \
        'table1_nad'


def test_a_retrained_student_makes_its_runs_again(tmp_path):
    import torch
    from reproduce import same_student
    from utils.checkpoint import save_checkpoint
    path = tmp_path / 'student.pth.tar'
    save_checkpoint(str(path), torch.nn.Linear(1, 1), 'WRN-16-1', 10, epoch=4, acc=84.7, asr=0.63)
    summary = {'student_checkpoint': {'path': str(path), 'epoch': 4, 'acc': 84.7, 'asr': 0.63}}
    assert same_student(summary)
    save_checkpoint(str(path), torch.nn.Linear(1, 1), 'WRN-16-1', 10, epoch=8, acc=84.5, asr=97.1)  # retrained
    assert not same_student(summary)
    path.unlink()
    assert not same_student(summary)
    assert same_student({'final': {'acc': 80.0}})          # train_badnet.py runs are judged by their flags


def test_a_stored_run_whose_model_is_gone_runs_again_only_when_the_model_is_needed(tmp_path, capsys):
    import json
    from reproduce import Runner, get_arguments
    args = get_arguments().parse_args(['--results', str(tmp_path), '--models', str(tmp_path / 'm'), '--dry_run'])
    runner = Runner(args)
    flags = runner.common(['--attack', 'badnets', '--seed', 0, '--eval_every', 0, '--defense', 'nad'])
    flags += ['--run_name', 'badnets_nad_seed0', '--checkpoint_root', str(tmp_path / 'm' / 'badnets_nad_seed0')]
    (tmp_path / 'grid').mkdir()
    stored = {'flags': flags, 'after': {'acc': 83.0, 'asr': 2.5}, 'checkpoint': str(tmp_path / 'gone.tar')}
    (tmp_path / 'grid' / 'badnets_nad_seed0.json').write_text(json.dumps(stored))
    assert runner.defense('badnets', 'nad', 0)['after']['asr'] == 2.5      # Table 1 needs only the numbers
    assert runner.defense('badnets', 'nad', 0, need_model=True) is None    # --dry_run: planned, not reused
    assert 'is not here: running it again' in capsys.readouterr().out
    (tmp_path / 'gone.tar').write_bytes(b'')
    assert runner.defense('badnets', 'nad', 0, need_model=True)['after']['asr'] == 2.5
