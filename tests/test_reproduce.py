"""reproduce.py: a 1-attack x 2-seed grid of one epoch on real CIFAR-10 writes Table 1's files with mean and
sd over the seeds, makes each teacher once and reuses it; a second call resumes (runs nothing) unless a
setting changed; a stored run that is unreadable, edited or inconsistent is made again, never a crash."""
import csv
import json
import os
import statistics

import pytest

from conftest import GRID, reproduce, run_here
from reproduce import Runner, get_arguments, table_name
from experiments.runner import digest, same_student, seal, stored_run
from utils import UserError

TABLE = 'table1_code_badnets_finetune-nad_seeds0-1_epochs1_test1000'  # the name a subset's table gets


@pytest.mark.e2e
def test_grid_writes_table1_with_mean_and_sd_over_seeds(grid):
    tmp_path, out = grid
    assert 'reproduce: 4 runs made' in out                       # 2 teachers (= fine-tuning) + 2 NAD runs
    assert out.count('--make_teacher') == 2                       # one teacher per (attack, protocol, seed)
    # two passes (the teachers, then NAD taught by them), each counted in wall-clock time as its runs end
    assert out.count('making 2 runs now, 1 at once') == 2
    assert out.count('1 of 2 done in') == 2 and 'min left' in out and out.count('2 of 2 done in') == 2
    assert not (tmp_path / 'results' / 'table1_code.csv').exists()  # a subset never overwrites the full table
    with open(tmp_path / 'results' / f'{TABLE}.csv') as f:
        cells = {(r['attack'], r['defense']): r for r in csv.DictReader(f)}
    assert sorted(cells) == sorted((a, d) for a in ('badnets', 'average') for d in ('before', 'finetune', 'nad'))
    grid = tmp_path / 'results' / 'grid'
    runs = {(d, s): json.loads((grid / f'badnets_{d}_code_epochs1_test1000_seed{s}.json').read_text())
            for d in ('teacher', 'nad') for s in (0, 1)}
    for defense, stored in (('finetune', 'teacher'), ('nad', 'nad')):
        for metric in ('acc', 'asr', 'ra'):
            values = [runs[stored, s]['after'][metric] for s in (0, 1)]
            assert float(cells['badnets', defense][metric]) == pytest.approx(statistics.mean(values))
            assert float(cells['badnets', defense][f'{metric}_std']) == pytest.approx(statistics.stdev(values))
    nad = runs['nad', 0]
    assert nad['protocol'] == 'code' and nad['config']['nesterov'] and nad['config']['cutout_length'] == 3
    assert nad['config']['t_model'] == runs['teacher', 0]['checkpoint']   # NAD's teacher: its own seed's
    assert runs['nad', 1]['config']['t_model'] == runs['teacher', 1]['checkpoint']
    assert float(cells['badnets', 'before']['asr']) > 95 and float(cells['badnets', 'before']['ra']) < 5
    assert float(cells['badnets', 'nad']['paper_asr']) == 4.77    # the paper's value beside ours
    table = (tmp_path / 'results' / f'{TABLE}.md').read_text()
    assert '| attack | Before | Fine-tuning | NAD |' in table and 'protocol code: 1 epoch, lr 0.1' in table
    assert '+-' in table                                          # sd shown with two seeds


@pytest.mark.e2e
def test_second_call_resumes_and_a_changed_setting_reruns(grid):
    tmp_path, _ = grid
    assert 'reproduce: 0 runs made (0.0 min), 4 found done' in reproduce(tmp_path, *GRID)
    planned = reproduce(tmp_path, *GRID, '--epochs', '2', '--dry_run')  # another epoch count: another name, made anew
    assert planned.count('--make_teacher') == 2 and 'badnets_teacher_code_epochs2_test1000_seed0' in planned


@pytest.mark.e2e
def test_an_edited_or_broken_stored_run_is_made_again(grid):
    tmp_path, _ = grid
    path = tmp_path / 'results' / 'grid' / 'badnets_nad_code_epochs1_test1000_seed1.json'
    summary = json.loads(path.read_text())
    summary['after']['acc'] += 5.0                                # "improved" by hand
    path.write_text(json.dumps(summary))
    out = reproduce(tmp_path, *GRID)
    assert 'badnets_nad_code_epochs1_test1000_seed1: the stored run was edited after it was made: running it again' in out
    assert 'reproduce: 1 runs made' in out


def test_table_names_say_what_the_grid_changed():
    name = lambda *argv: table_name(get_arguments().parse_args(list(argv)), 'code')  # noqa: E731
    assert name() == name('--seeds', '0', '1', '2') == 'table1_code'
    assert name('--attacks', 'blend') == 'table1_code_blend'
    assert name('--attacks', 'badnets', 'trojan', 'blend', 'cl', 'sig', 'refool') == \
        'table1_code_badnets-trojan-blend-cl-sig-refool'        # the paper's six, without poison-label Refool
    assert name('--defenses', 'nad', 'finetune', '--seeds', '0') == 'table1_code_nad-finetune_seeds0'
    assert name('--mcr_epochs', '100') == 'table1_code_mcr100' and name('--mcr_epochs', '100', '--defenses', 'nad') == \
        'table1_code_nad'
    assert name('--seeds', '0', '--test_limit', '1000') == 'table1_code_seeds0_test1000'   # part of the test set


@pytest.mark.parametrize('argv,message', [(['--test_limit', '0'], '--test_limit must each be at least 1'),
                                          (['--analysis', 'detection', '--test_limit', '1000'], 'Table 1 grids')])
def test_bad_grid_settings_are_one_line(tmp_path, argv, message):
    result = run_here('reproduce.py', *argv, '--results', str(tmp_path))
    assert result.returncode != 0 and message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert not any(tmp_path.iterdir())                            # nothing run, nothing written


def test_run_names_carry_every_setting_that_changes_the_result(tmp_path):
    runner = Runner(get_arguments().parse_args(['--results', str(tmp_path), '--epochs', '1']))
    assert runner.cell_name('badnets', 'finetune', 0, 'code') == 'badnets_finetune_code_epochs1_seed0'
    assert runner.cell_name('sig', 'mcr', 2, 'paper') == 'sig_mcr_paper_epochs1_mcr20_seed2'
    runner = Runner(get_arguments().parse_args(['--results', str(tmp_path)]))
    assert runner.cell_name('badnets', 'nad', 0, 'paper-lr0.01') == 'badnets_nad_paper-lr0.01_seed0'
    runner = Runner(get_arguments().parse_args(['--results', str(tmp_path), '--test_limit', '500']))
    assert runner.cell_name('badnets', 'nad', 0, 'code') == 'badnets_nad_code_test500_seed0'


def stored(tmp_path, flags, **extra):
    """A finished run's files as the runner leaves them: CSV, model, sealed JSON."""
    (tmp_path / 'run.csv').write_text('epoch,acc\n1,80.0\n')
    (tmp_path / 'model.tar').write_bytes(b'weights')
    summary = {'flags': flags, 'after': {'acc': 80.0, 'asr': 3.0}, 'config': {}, 'checkpoint': str(tmp_path / 'model.tar'),
               **extra}
    seal(summary, str(tmp_path / 'run.json'))
    return summary


@pytest.mark.parametrize('damage,why', [
    (lambda p: p.write_text('[1, 2]'), 'is not a JSON object (a list)'),
    (lambda p: p.write_text('null'), 'is not a JSON object (a NoneType)'),
    (lambda p: p.write_text('{"flags": '), 'is unreadable (JSONDecodeError)'),
    (lambda p: p.write_text('{"flags": ["--seed", "0"]}'), 'lacks keys a finished run has'),
    (lambda p: p.write_text(p.read_text().replace('"asr": 3.0', '"asr": 1.0')), 'was edited after it was made'),
    (lambda p: (p.parent / 'run.csv').write_text('epoch,acc\n1,99.0\n'), 'and its CSV disagree'),
])
def test_a_malformed_stored_run_is_not_done_and_never_raises(tmp_path, damage, why):
    stored(tmp_path, ['--seed', '0'])
    assert stored_run(str(tmp_path / 'run.json'), ['--seed', '0'])[0] is not None   # whole: done
    damage(tmp_path / 'run.json')
    assert stored_run(str(tmp_path / 'run.json'), ['--seed', '0']) == (None, why)


def test_a_stored_run_counts_only_with_its_flags_student_and_model(tmp_path):
    stored(tmp_path, ['--seed', '0'])
    path = str(tmp_path / 'run.json')
    assert stored_run(path, ['--seed', '1']) == (None, 'was made with other flags')
    assert stored_run(path, ['--seed', '0'], need_model=True)[0] is not None
    (tmp_path / 'model.tar').write_bytes(b'other weights')                 # replaced since
    assert stored_run(path, ['--seed', '0'], need_model=True)[1].startswith('has no model')
    assert stored_run(path, ['--seed', '0'])[0] is not None              # Table 1 needs only the numbers
    assert stored_run(str(tmp_path / 'none.json'), []) == (None, None)   # nothing stored: nothing to say


def test_a_retrained_student_makes_its_runs_again(tmp_path):
    from utils.files import file_sha256
    path = tmp_path / 'student.pth.tar'
    path.write_bytes(b'model A')
    summary = {'student_checkpoint': {'path': str(path), 'sha256': file_sha256(str(path))}}
    assert same_student(summary)
    path.write_bytes(b'model B')                                           # retrained
    assert not same_student(summary)
    path.unlink()
    assert not same_student(summary)
    assert not same_student({'student_checkpoint': ['not', 'a', 'record']})
    assert same_student({'final': {'acc': 80.0}})          # train_badnet.py runs are judged by their flags
    assert digest({'a': 1, 'digest': 'x'}) == digest({'a': 1})


def test_every_distillation_run_gets_the_teacher_of_its_own_protocol_and_seed(tmp_path, capsys):
    runner = Runner(get_arguments().parse_args(['--results', str(tmp_path), '--models', str(tmp_path / 'm'),
                                                '--protocols', 'code', '--dry_run']))
    assert runner('beta_badnets_b5000_seed1', ['--attack', 'badnets', '--seed', 1, '--beta2', 5000]) is None
    planned = capsys.readouterr().out
    assert '--make_teacher' in planned and 'badnets_teacher_code_seed1' in planned and '--protocol code' in planned
    runner('curves_badnets_finetune_seed0', ['--attack', 'badnets', '--defense', 'finetune'])
    planned = capsys.readouterr().out                                  # fine-tuning needs no teacher
    assert '--make_teacher' not in planned and '--run_name curves_badnets_finetune_seed0_code' in planned


def test_a_distillation_run_whose_teacher_changed_is_made_again(tmp_path):
    teacher = tmp_path / 'teacher.tar'
    teacher.write_bytes(b'teacher A')
    from utils.files import file_sha256
    stored(tmp_path, ['--seed', '0'], teacher_checkpoint={'path': str(teacher), 'sha256': file_sha256(str(teacher))})
    assert stored_run(str(tmp_path / 'run.json'), ['--seed', '0'])[0] is not None
    teacher.write_bytes(b'teacher B')                                  # re-made since
    assert stored_run(str(tmp_path / 'run.json'), ['--seed', '0']) == \
        (None, 'was taught by a teacher that has changed since')


def test_a_stored_nad_run_needs_its_teachers_record_not_its_model_file(tmp_path, capsys):
    from utils.files import file_sha256
    runner = Runner(get_arguments().parse_args(['--results', str(tmp_path), '--models', str(tmp_path / 'm'),
                                                '--protocols', 'code', '--dry_run']))
    grid = tmp_path / 'grid'
    grid.mkdir()

    def store(name, flags, checkpoint, **extra):
        (grid / f'{name}.csv').write_text('epoch,acc\n1,80.0\n')
        summary = {'flags': runner.common(flags) + ['--run_name', name, '--checkpoint_root', str(tmp_path / 'm' / name)],
                   'after': {'acc': 80.0, 'asr': 3.0}, 'config': {}, 'checkpoint': checkpoint, **extra}
        seal(summary, str(grid / f'{name}.json'))
        return summary
    t_name = 'badnets_teacher_code_seed0'
    t_path = tmp_path / 'm' / t_name / 'teacher.pth.tar'
    t_path.parent.mkdir(parents=True)
    t_path.write_bytes(b'teacher weights')
    teacher = store(t_name, ['--attack', 'badnets', '--protocol', 'code', '--seed', '0', '--eval_every', '0',
                             '--make_teacher', '--t_model', str(t_path)], str(t_path))
    store('badnets_nad_code_seed0', ['--attack', 'badnets', '--protocol', 'code', '--seed', '0', '--eval_every', '0',
                                     '--defense', 'nad', '--t_model', str(t_path)], str(tmp_path / 'nad.tar'),
          teacher_checkpoint={'path': str(t_path), 'sha256': file_sha256(str(t_path))})
    t_path.unlink()                                       # a grid copied from another machine: JSON files only
    assert runner.defense('badnets', 'nad', 0)['after']['asr'] == 3.0
    assert '$ python' not in capsys.readouterr().out     # nothing to make: the teacher's record is enough
    assert teacher['checkpoint_sha256'] is not None


def test_a_run_on_an_erased_model_needs_the_erasing_runs_record_not_its_model_file(tmp_path, capsys):
    """Runner(..., student=): NC on NAD's model, on a grid copied from another machine (no models): the stored
    run counts while its student is the one NAD's run records; once NAD is made again (another model) it is
    made again, and a run still to make first has NAD's model made (remake returns None until then)."""
    from utils.files import file_sha256
    runner = Runner(get_arguments().parse_args(['--results', str(tmp_path), '--models', str(tmp_path / 'm'),
                                                '--protocols', 'code', '--dry_run']))
    (tmp_path / 'grid').mkdir()
    erased = tmp_path / 'nad.tar'
    erased.write_bytes(b'erased weights')
    nad = {'checkpoint': str(erased), 'checkpoint_sha256': file_sha256(str(erased))}
    flags = ['--attack', 'badnets', '--seed', '0', '--defense', 'nc']
    run_flags = runner.common([*flags, '--s_model', str(erased), '--protocol', 'code'])
    (tmp_path / 'grid' / 'nc_code.csv').write_text('epoch,acc\n1,80.0\n')
    seal({'flags': run_flags + ['--run_name', 'nc_code', '--checkpoint_root', str(tmp_path / 'm' / 'nc_code')],
          'after': {'acc': 80.0, 'asr': 3.0}, 'config': {}, 'checkpoint': None,
          'student_checkpoint': {'path': str(erased), 'sha256': nad['checkpoint_sha256']}},
         str(tmp_path / 'grid' / 'nc_code.json'))
    erased.unlink()
    remade = []
    assert runner('nc', flags, student=(nad, lambda: remade.append(1)))['after']['asr'] == 3.0
    assert not remade and '$ python' not in capsys.readouterr().out       # the record is enough: nothing made
    runner.new_pass()
    erased.write_bytes(b'a stale file')                                   # NAD's record, not this file, decides
    assert runner('nc', flags, student=(nad, lambda: remade.append(1)))['after']['asr'] == 3.0 and not remade
    runner.new_pass()
    assert runner('nc', flags, student=(dict(nad, checkpoint_sha256='another model'), lambda: remade.append(1))) is None
    assert remade and runner.blocked == 1 and '$ python' not in capsys.readouterr().out  # NAD's model first
    runner.new_pass()
    erased.write_bytes(b'erased again')                                   # NAD made again: another model
    again = {'checkpoint': str(erased), 'checkpoint_sha256': file_sha256(str(erased))}
    assert runner('nc', flags, student=(again, lambda: again)) is None
    assert '--s_model ' + str(erased) in capsys.readouterr().out          # made again, on the model now


def test_poison_label_refool_is_a_row_of_its_own_outside_the_papers_average(tmp_path, monkeypatch):
    import reproduce as rp

    class Runs:
        def defense(self, attack, defense, seed, protocol=None):
            asr = {'badnets': 4.0, 'refool_pl': 50.0}[attack]
            return {'after': {'asr': asr, 'acc': 80.0, 'ra': 70.0}, 'seconds': 1.0}
    monkeypatch.setattr(rp, 'zoo_before', lambda args, attack: {'asr': 100.0, 'acc': 85.0, 'ra': 0.0})
    args = get_arguments().parse_args(['--attacks', 'badnets', 'refool_pl', '--defenses', 'finetune', 'nad',
                                       '--seeds', '0', '--results', str(tmp_path)])
    rp.table1_for(args, Runs(), 'code')
    with open(tmp_path / 'table1_code_badnets-refool_pl_finetune-nad_seeds0.csv') as f:
        cells = {(r['attack'], r['defense']): r for r in csv.DictReader(f)}
    assert float(cells['average', 'nad']['asr']) == 4.0                  # over the paper's attacks only
    assert float(cells['average', 'nad']['paper_asr']) == 4.77 and cells['refool_pl', 'nad']['paper_asr'] == ''
    text = (tmp_path / 'table1_code_badnets-refool_pl_finetune-nad_seeds0.md').read_text()
    assert '| Refool (poison-label; not in the paper) | 100.00 / 85.00 / 0.00 | 50.00 / 80.00 / 70.00 |' in text


def test_progress_estimates_what_is_left_with_runs_side_by_side(tmp_path):
    runner = Runner(get_arguments().parse_args(['--jobs', '4', '--results', str(tmp_path)]))
    runner.start_pass(8)
    runner.pass_done, runner.pass_times = 4, [60.0] * 4
    assert runner.progress().endswith('about 1.0 min left')    # four one-minute runs left, four at once
    runner.pass_done, runner.pass_times = 7, [60.0] * 6 + [120.0]
    assert runner.progress().endswith('about 1.1 min left')    # the last one alone, as long as the mean
    runner.pass_done = 8
    assert runner.progress().startswith('8 of 8 done in') and 'left' not in runner.progress()


def test_nad_minus_fine_tuning_is_paired_by_seed(tmp_path, monkeypatch):
    import reproduce as rp

    class Runs:  # NAD beats fine-tuning by 1 point at seed 0 and by 3 at seed 1, on both attacks
        def defense(self, attack, defense, seed, protocol=None):
            asr = 10.0 + seed * 5 - (0 if defense == 'finetune' else 1 + 2 * seed)
            return {'after': {'asr': asr, 'acc': 80.0, 'ra': None}, 'seconds': 1.0}
    monkeypatch.setattr(rp, 'zoo_before', lambda args, attack: {'asr': 100.0, 'acc': 85.0, 'ra': 0.0})
    args = get_arguments().parse_args(['--attacks', 'badnets', 'sig', '--defenses', 'finetune', 'nad',
                                       '--seeds', '0', '1', '--results', str(tmp_path)])
    rp.table1_for(args, Runs(), 'code')
    with open(tmp_path / 'table1_code_badnets-sig_finetune-nad_seeds0-1_nad-minus-finetune.csv') as f:
        cells = {r['attack']: r for r in csv.DictReader(f)}
    assert float(cells['sig']['asr']) == -2.0 and float(cells['sig']['asr_std']) == pytest.approx(2 ** 0.5)
    assert float(cells['average']['asr']) == -2.0 and float(cells['badnets']['acc']) == 0.0 and cells['sig']['ra'] == ''
    text = (tmp_path / 'table1_code_badnets-sig_finetune-nad_seeds0-1.md').read_text()
    assert '| SIG | -2.00+-1.41 | +0.00+-0.00 | - |' in text
    # the table at a glance comes first: ASR +- sd / ACC (the paper's ASR), then NAD - FT
    assert text.index('| SIG | 100.00 / 85.0 (99.91) | 12.50+-3.54 / 80.0 (9.18) | 10.50+-2.12 / 80.0 (2.52) | '
                      '-2.00+-1.41 |') < text.index('| SIG | -2.00+-1.41 |')


def test_an_analysis_pair_stored_elsewhere_is_not_made_again_for_its_teachers_model(tmp_path, capsys):
    """finetune_then_nad on a grid copied from another machine (JSON files, no models): both stored runs are
    found; a NAD run still to make has its teacher made again first."""
    from experiments import analyses
    from utils.files import file_sha256
    runner = Runner(get_arguments().parse_args(['--results', str(tmp_path), '--models', str(tmp_path / 'm'),
                                                '--protocols', 'code', '--dry_run']))
    (tmp_path / 'grid').mkdir()
    teacher = tmp_path / 'm' / 'ft' / 'teacher.pth.tar'
    common = ['--attack', 'badnets', '--seed', '0', '--protocol', 'code']

    def store(name, flags, checkpoint, **extra):
        (tmp_path / 'grid' / f'{name}.csv').write_text('epoch,acc\n1,80.0\n')
        summary = {'flags': runner.common(flags) + ['--run_name', name, '--checkpoint_root', str(tmp_path / 'm' / name)],
                   'after': {'acc': 80.0, 'asr': 3.0}, 'config': {}, 'checkpoint': checkpoint, **extra}
        seal(summary, str(tmp_path / 'grid' / f'{name}.json'))
    teacher.parent.mkdir(parents=True)
    teacher.write_bytes(b'teacher weights')
    store('ft', [*common, '--make_teacher', '--t_model', str(teacher)], str(teacher))
    store('nad', [*common, '--t_model', str(teacher)], str(tmp_path / 'nad.tar'),
          teacher_checkpoint={'path': str(teacher), 'sha256': file_sha256(str(teacher))})
    teacher.unlink()
    ft, nad = analyses.finetune_then_nad(runner, 'ft', 'nad', common, teacher_at=str(teacher))
    assert ft and nad and '$ python' not in capsys.readouterr().out         # both found: nothing to make
    runner.new_pass()
    ft, nad = analyses.finetune_then_nad(runner, 'ft', 'new_nad', common, teacher_at=str(teacher))
    planned = capsys.readouterr().out
    assert ft and nad is None and '--run_name ft ' in planned and 'new_nad' not in planned  # teacher first


def test_drive_makes_runs_in_passes_each_waiting_for_the_models_it_reads(tmp_path, monkeypatch):
    """reproduce.Runner.drive with a stand-in launch: a run reading a model another run writes waits for the
    next pass; the outputs are written once, from the last pass; a failed run stops the grid (after the
    others) with one line; a run that exits 0 but leaves no result is a failure, not a loop."""
    import reproduce as rp
    from experiments.runner import Outcome, announce
    batches = []

    def fake_launch(runs, args, on_done):
        batches.append(sorted(r.name for r in runs))
        assert len(batches) < 5, 'drive launches again and again'
        for run in runs:
            flags = run.command[1:]
            if 'bad' not in run.name and 'empty' not in run.name:
                os.makedirs(os.path.dirname(run.result), exist_ok=True)
                open(os.path.splitext(run.result)[0] + '.csv', 'w').write('epoch\n1\n')
                with open(run.result, 'w') as f:
                    json.dump({'after': {'acc': 80.0, 'asr': 1.0}, 'config': {}}, f)
                run.seal(1.0)
                for model in rp.models_written(flags):
                    open(model, 'w').write('weights')
            announce(Outcome(run, 'bad' not in run.name, 1.0, '' if 'bad' not in run.name else 'exit 1'), on_done)
    monkeypatch.setattr(rp, 'launch', fake_launch)
    results = os.path.relpath(tmp_path / 'results', rp.ROOT)      # relative, as the default ./results is
    written = []

    def work(runner, names):
        teacher = str(tmp_path / f'{names[0]}.pth.tar')

        def table(args):
            made = runner(names[0], ['--make_teacher', '--t_model', teacher])
            taught = runner(names[1], ['--t_model', teacher])
            if not args.dry_run:
                written.append((made['after']['acc'], taught['after']['acc']))
        return table
    runner = rp.Runner(get_arguments().parse_args(['--results', results, '--protocols', 'code', '--device', 'cpu']))
    runner.drive(work(runner, ['teacher', 'taught']))
    assert batches == [['teacher_code'], ['taught_code']] and written == [(80.0, 80.0)] and runner.made == 2
    again = rp.Runner(get_arguments().parse_args(['--results', results, '--protocols', 'code', '--device', 'cpu']))
    again.drive(work(again, ['teacher', 'taught']))                # everything stored: nothing launched
    assert len(batches) == 2 and again.made == 0 and again.skipped == 2 and len(written) == 2
    os.remove(tmp_path / 'teacher.pth.tar')   # its run stays stored, its model is gone (as in a fresh clone)
    batches.clear()
    again = rp.Runner(get_arguments().parse_args(['--results', results, '--protocols', 'code', '--device', 'cpu']))
    again.drive(work(again, ['teacher', 'new_pupil']))             # a new run reads it: it is made again first
    assert batches == [['teacher_code'], ['new_pupil_code']] and len(written) == 3
    for broken in ('bad', 'empty'):
        batches.clear()
        runner = rp.Runner(get_arguments().parse_args(['--results', results, '--protocols', 'code']))
        with pytest.raises(UserError, match=f'1 run\\(s\\) failed.*{broken}_teacher_code'):
            runner.drive(work(runner, [f'{broken}_teacher', f'{broken}_taught']))
        assert batches == [[f"{broken}_teacher_code"]] and len(written) == 3  # never its pupil, nor the table


def test_cuda_graphs_reach_every_run_but_not_its_identity(tmp_path, monkeypatch):
    """reproduce.py --cuda_graphs on: each run's command carries it, the flags sealed with the run (what
    identifies it) do not, so the same grid without it finds every run stored, and the other way round."""
    import reproduce as rp
    from experiments.runner import Outcome, announce
    commands = []

    def fake_launch(runs, args, on_done):
        for run in runs:
            commands.append(run.command)
            with open(os.path.splitext(run.result)[0] + '.csv', 'w') as f:
                f.write('epoch\n1\n')
            with open(run.result, 'w') as f:
                json.dump({'after': {'acc': 80.0, 'asr': 1.0}, 'config': {}}, f)
            run.seal(1.0)
            announce(Outcome(run, True, 1.0, ''), on_done)
    monkeypatch.setattr(rp, 'launch', fake_launch)
    os.makedirs(tmp_path / 'grid')

    def grid(*extra):
        runner = rp.Runner(get_arguments().parse_args(['--results', str(tmp_path), '--protocols', 'code', *extra]))
        runner.drive(lambda args: runner('finetune', ['--attack', 'badnets', '--defense', 'finetune']))
        return runner
    assert grid('--cuda_graphs', 'on').made == 1 and commands[0][-2:] == ['--cuda_graphs', 'on']
    sealed = json.load(open(tmp_path / 'grid' / 'finetune_code.json'))['flags']
    assert sealed == commands[0][1:-2] and '--cuda_graphs' not in sealed
    assert grid().made == 0 and grid('--cuda_graphs', 'on').made == 0 and len(commands) == 1
