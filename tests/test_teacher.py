"""A teacher of another protocol than the student's (the `teacher` and `tradeoff_harsh` analyses) and NAD's two
controls: the run is named for its teacher's protocol only when that differs (Table 1's names stay), the teacher
is made once and reused; KD's loss against a hand computation; two-stage fine-tuning starts from the teacher;
the analyses ask for the right runs and write their own files. No training."""
import csv
import itertools
import math
import statistics
from types import SimpleNamespace

import pytest
import torch

from experiments import analyses
import config
from conftest import run_here
from defenses import DEFENSES, kd, twostage
from models import build_model
from reproduce import Runner, get_arguments, needs_teacher
from experiments.runner import seal
from utils import UserError


def dry_runner(tmp_path, *argv):
    return Runner(get_arguments().parse_args(['--results', str(tmp_path), '--models', str(tmp_path / 'm'),
                                              '--dry_run', *argv]))


def test_a_run_is_named_for_its_teachers_protocol_only_when_it_is_another(tmp_path):
    runner = dry_runner(tmp_path)
    assert runner.cell_name('badnets', 'nad', 0, 'paper-lr0.01', 'paper-lr0.01') == \
        runner.cell_name('badnets', 'nad', 0, 'paper-lr0.01') == 'badnets_nad_paper-lr0.01_seed0'   # Table 1's
    assert runner.cell_name('badnets', 'kd', 2, 'paper-lr0.01', 'code') == 'badnets_kd_paper-lr0.01_teacher-code_seed2'
    runner = dry_runner(tmp_path, '--epochs', '1', '--test_limit', '500')
    assert runner.cell_name('sig', 'nad', 1, 'code', 'paper') == 'sig_nad_code_teacher-paper_epochs1_test500_seed1'


def test_every_defense_that_reads_a_teacher_gets_one(tmp_path):
    for name, defense in DEFENSES.items():
        assert needs_teacher(['--attack', 'badnets', '--defense', name]) == defense.needs_teacher, name
    assert needs_teacher(['--attack', 'badnets', '--defense', 'kd']) and \
        needs_teacher(['--attack', 'badnets', '--defense', 'twostage'])
    assert not needs_teacher(['--attack', 'badnets', '--defense', 'kd', '--t_model', 'given.tar'])
    with pytest.raises(ValueError):  # fine-pruning has no teacher to take from another protocol
        dry_runner(tmp_path).defense('badnets', 'fineprune', 0, protocol='paper-lr0.01', teacher_protocol='code')


def test_the_teacher_of_another_protocol_is_made_once_for_every_run_it_teaches(tmp_path, capsys):
    runner = dry_runner(tmp_path)
    for method in ('nad', 'kd', 'twostage'):
        assert runner.defense('badnets', method, 1, protocol='paper-lr0.01', teacher_protocol='code') is None
    planned = capsys.readouterr().out
    assert list(runner.planned) == [str(tmp_path / 'grid' / 'badnets_teacher_code_seed1.json')]
    assert planned.count('--make_teacher') == 1 and '--protocol code --seed 1' in planned
    assert runner.blocked == 3                                   # the three wait for it


def test_a_stored_teacher_of_another_protocol_teaches_without_being_made_again(tmp_path, capsys):
    runner = dry_runner(tmp_path)
    grid, t_name = tmp_path / 'grid', 'badnets_teacher_code_seed0'
    t_path = tmp_path / 'm' / t_name / 'teacher.pth.tar'
    t_path.parent.mkdir(parents=True)
    t_path.write_bytes(b'teacher weights')
    flags = runner.common(['--attack', 'badnets', '--protocol', 'code', '--seed', '0', '--eval_every', '0',
                           '--make_teacher', '--t_model', str(t_path)])
    grid.mkdir()
    (grid / f'{t_name}.csv').write_text('epoch,acc\n1,80.0\n')
    seal({'flags': flags + ['--run_name', t_name, '--checkpoint_root', str(tmp_path / 'm' / t_name)],
          'after': {'acc': 80.0, 'asr': 3.0}, 'config': {}, 'checkpoint': str(t_path)}, str(grid / f'{t_name}.json'))
    for method in ('nad', 'kd', 'twostage'):
        runner.defense('badnets', method, 0, protocol='paper-lr0.01', teacher_protocol='code')
    assert runner.defense('badnets', 'finetune', 0, protocol='code')['after']['asr'] == 3.0   # the teacher, found
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith('$ python')]
    assert len(commands) == 3 and not any('--make_teacher' in c for c in commands)
    for method, command in zip(('nad', 'kd', 'twostage'), commands):
        assert f'--defense {method}' in command and '--protocol paper-lr0.01' in command
        assert f'--t_model {t_path}' in command
        assert f'--run_name badnets_{method}_paper-lr0.01_teacher-code_seed0' in command


class Logits(torch.nn.Module):
    """A stand-in for a WRN: three empty groups and fixed logits (with a parameter, so they have a gradient)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits))

    def forward(self, x):
        return None, None, None, self.logits


def softmax(values, t=1.0):
    e = [math.exp(v / t) for v in values]
    return [v / sum(e) for v in e]


def test_kd_loss_is_the_hand_computed_convex_mix_of_ce_and_scaled_kl():
    student, teacher = [[1.0, 2.0, 3.0], [0.5, 0.0, -0.5]], [[3.0, 2.0, 1.0], [0.0, 1.0, 0.0]]
    y, t, alpha = [0, 1], 2.0, 0.25
    ce = sum(-math.log(softmax(s)[c]) for s, c in zip(student, y)) / 2
    kl = sum(sum(p * math.log(p / q) for p, q in zip(softmax(tl, t), softmax(sl, t)))
             for sl, tl in zip(student, teacher)) / 2               # summed over classes, averaged over the batch
    loss = kd.kd_loss(Logits(teacher), t, alpha)(Logits(student), torch.zeros(2), torch.tensor(y))
    assert loss.item() == pytest.approx((1 - alpha) * ce + alpha * t ** 2 * kl, rel=1e-6)


def test_kd_loss_has_no_soft_term_when_student_is_teacher_and_reaches_the_student_when_not():
    logits, y = [[1.0, -2.0, 0.5]], torch.tensor([2])
    same = kd.kd_loss(Logits(logits), 4.0, 0.9)(Logits(logits), torch.zeros(1), y)
    assert same.item() == pytest.approx(0.1 * -math.log(softmax(logits[0])[2]), rel=1e-6)
    student = Logits([[0.0, 0.0, 0.0]])
    kd.kd_loss(Logits(logits), 4.0, 1.0)(student, torch.zeros(1), y).backward()   # the KL term alone
    assert student.logits.grad.abs().sum() > 0
    with torch.autocast('cpu', torch.bfloat16):                  # the soft term stays float32 under autocast
        loss = kd.kd_loss(Logits(logits), 4.0, 0.9)(Logits([[0.0, 0.0, 0.0]]), torch.zeros(1), y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_two_stage_starts_from_the_teachers_weights(tmp_path):
    torch.manual_seed(0)
    student, teacher = build_model('WRN-16-1'), build_model('WRN-16-1')
    torch.save({'state_dict': teacher.state_dict(), 'arch': 'WRN-16-1', 'num_classes': 10, 'epoch': 10, 'acc': 84.0,
                'asr': 3.0}, tmp_path / 'teacher.pth.tar')
    args = SimpleNamespace(t_name='WRN-16-1', num_classes=10, t_model=str(tmp_path / 'teacher.pth.tar'),
                           trust_checkpoint=False)
    fields = twostage.prepare(args, student, None, torch.device('cpu'), None)
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), teacher.state_dict().values()))
    assert fields['started_from']['asr'] == 3.0 and DEFENSES['twostage'].needs_teacher


@pytest.mark.parametrize('argv,message', [(['--defense', 'twostage', '--t_name', 'WRN-16-2'], '--t_name equal'),
                                          (['--defense', 'kd', '--kd_alpha', '1.5'], '--kd_alpha 1.5'),
                                          (['--defense', 'kd', '--kd_t', '0'], '--kd_t 0.0')])
def test_bad_control_settings_are_refused(argv, message):
    with pytest.raises(UserError, match=message):
        config.parse(config.get_arguments(), argv)


class FakeRunner:
    """Answers Runner.defense and Runner(...) with a summary whose ASR is set per method (+ seed); records them."""
    ASR = {'finetune': 10.0, 'nad': 2.0, 'kd': 5.0, 'twostage': 4.0}

    def __init__(self):
        self.asked, self.runs = [], []

    def defense(self, attack, defense, seed, need_model=False, protocol=None, teacher_protocol=None):
        self.asked.append((attack, defense, seed, protocol, teacher_protocol))
        asr = self.ASR[defense] + seed + (1.0 if teacher_protocol == 'code' and defense == 'nad' else 0.0)
        return {'after': {'acc': 80.0 + seed, 'asr': asr, 'ra': 50.0}, 'checkpoint': f'/erased/{defense}.tar'}

    def __call__(self, name, flags, need_model=False, student=None):
        self.runs.append((name, [str(f) for f in flags]))
        return {'after': {'acc': 70.0 + len(name) % 7, 'asr': 5.0, 'ra': 50.0}, 'checkpoint': f'/erased/{name}.tar'}


def arguments(tmp_path, **kw):
    return SimpleNamespace(**{'seeds': [0, 1], 'attacks': ['badnets', 'sig'], 'results': str(tmp_path),
                              'teacher_protocols': list(analyses.TEACHER_PROTOCOLS),
                              'student_protocols': list(analyses.STUDENT_PROTOCOLS), 'dry_run': False, **kw})


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_teacher_analysis_asks_for_each_cells_runs_and_pairs_nad_with_each_control(tmp_path):
    runner = FakeRunner()
    analyses.teacher(arguments(tmp_path), runner)
    asked = set(runner.asked)
    for tp, sp in itertools.product(('code', 'paper-lr0.01'), ('paper-lr0.01', 'code')):
        assert ('sig', 'finetune', 1, tp, None) in asked                        # the teacher's own run
        assert ('sig', 'finetune', 1, sp, None) in asked                        # fine-tuning: the student's protocol
        assert {('sig', m, 1, sp, tp) for m in ('nad', 'kd', 'twostage')} <= asked
    assert len(asked) == 2 * 2 * (2 + 2 * 2 * 3)                 # attacks x seeds x (2 teachers + 4 cells x 3 runs)
    name = 'teacher_badnets-sig_seeds0-1'                         # a subset names its files for what it holds
    assert not (tmp_path / 'teacher.csv').exists() and len(rows(tmp_path / f'{name}_runs.csv')) == 2 * 2 * 4 * 5
    cells = {(r['attack'], r['teacher_protocol'], r['student_protocol'], r['method']): r
             for r in rows(tmp_path / f'{name}.csv')}
    key = ('badnets', 'code', 'paper-lr0.01')
    assert float(cells[(*key, 'nad-finetune')]['asr']) == -7.0 and float(cells[(*key, 'nad-kd')]['asr']) == -2.0
    assert float(cells[(*key, 'nad-twostage')]['asr_sd']) == 0.0 and cells[(*key, 'nad')]['seeds'] == '2'
    assert float(cells[('average', 'paper-lr0.01', 'code', 'nad-finetune')]['asr']) == -8.0   # same-protocol teacher
    assert float(cells[(*key, 'teacher')]['asr']) == 10.5 and float(cells[(*key, 'nad')]['asr_sd']) == \
        pytest.approx(2 ** 0.5 / 2)
    markdown = (tmp_path / f'{name}.md').read_text()
    assert 'Teacher `code`, student `paper-lr0.01`:' in markdown and "student `code` (NAD: the run Table 1 makes)" in markdown
    assert '| badnets | 10.50+-0.71 / 80.50 / 50.00 | 10.50+-0.71 / 80.50 / 50.00 | 3.50+-0.71 / 80.50 / 50.00 | ' \
        '5.50+-0.71 / 80.50 / 50.00 | 4.50+-0.71 / 80.50 / 50.00 | -7.00+-0.00 / +0.00 | -2.00+-0.00 / +0.00 | ' \
        '-1.00+-0.00 / +0.00 |' in markdown


def test_the_key_cell_and_other_slices_write_files_of_their_own(tmp_path):
    full = arguments(tmp_path, attacks=list(analyses.TABLE1), seeds=[0, 1, 2])
    assert analyses.teacher_name(full) == 'teacher'
    key = arguments(tmp_path, attacks=list(analyses.TABLE1), seeds=[2, 1, 0], teacher_protocols=['code'],
                    student_protocols=['paper-lr0.01'])
    assert analyses.teacher_name(key) == 'teacher_from-code_to-paper-lr0.01'
    runner = FakeRunner()
    analyses.teacher(arguments(tmp_path, attacks=['badnets'], seeds=[0], teacher_protocols=['code'],
                               student_protocols=['paper-lr0.01']), runner)
    taught = [('badnets', m, 0, 'paper-lr0.01', 'code') for m in ('nad', 'kd', 'twostage')]
    assert sorted(runner.asked) == sorted([('badnets', 'finetune', 0, 'code', None),
                                           ('badnets', 'finetune', 0, 'paper-lr0.01', None), *taught])
    assert (tmp_path / 'teacher_badnets_seeds0_from-code_to-paper-lr0.01.md').exists()
    analyses.teacher(arguments(tmp_path / 'dry', dry_run=True), FakeRunner())     # a dry run writes nothing
    assert not (tmp_path / 'dry').exists()


def test_the_harsh_trade_off_teaches_nad_and_kd_with_the_code_teacher_at_every_lr(tmp_path):
    runner = FakeRunner()
    analyses.tradeoff_harsh(arguments(tmp_path, attacks=['badnets'], seeds=[0, 1]), runner)
    harsh = {name: flags for name, flags in runner.runs if 'teacher-code' in name}
    assert len(harsh) == 2 * 2 * 3                                # nad and kd x seeds x the three lrs below 0.1
    for name, flags in harsh.items():       # no --t_model: the runner hands them the teacher of --protocol code
        assert '--t_model' not in flags and flags[flags.index('--protocol') + 1] == 'code'
        assert flags[flags.index('--lr') + 1] == name.split('_lr')[1].split('_')[0]
        assert flags[flags.index('--defense') + 1] == name.split('_')[2]
    assert ('badnets', 'kd', 1, 'code', None) in runner.asked and ('badnets', 'nad', 1, 'code', None) in runner.asked
    own = dict(runner.runs)['tradeoff_badnets_nad_lr0.01_seed0']  # the trade-off's NAD keeps the teacher of its lr
    assert own[own.index('--t_model') + 1] == '/erased/tradeoff_badnets_finetune_lr0.01_seed0.tar'
    table = rows(tmp_path / 'tradeoff_harsh.csv')
    assert {r['method'] for r in table} == {'finetune', 'nad', 'nad_code_teacher', 'kd_code_teacher'}
    assert len(table) == 4 * 4 * 2
    summary = rows(tmp_path / 'tradeoff_harsh_summary.csv')[0]
    assert {'nad_minus_ft_asr', 'nad_code_teacher_minus_ft_asr', 'kd_code_teacher_matched_runs'} <= set(summary)
    by = {(r['method'], r['seed'], r['lr']): r for r in table}   # NAD - KD: the same code teacher, lr and seed
    for metric in ('acc', 'asr'):
        diffs = [float(by[('nad_code_teacher', s, lr)][metric]) - float(by[('kd_code_teacher', s, lr)][metric])
                 for s, lr in {(r['seed'], r['lr']) for r in table}]
        assert float(summary[f'nad_minus_kd_{metric}']) == pytest.approx(statistics.mean(diffs))
        assert float(summary[f'nad_minus_kd_{metric}_sd']) == pytest.approx(statistics.stdev(diffs))
    assert summary['nad_minus_kd_pairs'] == '8'                   # 2 seeds x 4 lrs
    assert (tmp_path / 'tradeoff_harsh.png').stat().st_size > 1000
    assert not (tmp_path / 'tradeoff.csv').exists() and not (tmp_path / 'tradeoff_summary.csv').exists()
    assert analyses.method_name('kd_code_teacher') == 'KD, code teacher'


def test_the_teacher_analysis_dry_run_prints_its_plan(tmp_path):
    result = run_here('reproduce.py', '--analysis', 'teacher', '--attacks', 'badnets', '--seeds', '0', '--dry_run',
                      '--results', str(tmp_path), '--models', str(tmp_path / 'm'))
    assert result.returncode == 0, result.stderr
    # nothing stored: the two teachers first; NAD, KD and two-stage of the 4 cells wait (Table 1's NAD in 2 of them)
    assert '2 runs to make first; 12 more known to wait' in result.stdout
    assert result.stdout.count('--make_teacher') == 2 and not any(tmp_path.glob('*.csv'))
    assert "badnets_twostage_paper-lr0.01_teacher-code_seed0: waits for its teacher, the code protocol's of seed 0" \
        in result.stdout
