"""Untrusted files and bad values: a checkpoint never runs code as it loads, a diverged run writes nothing,
bad paths and numbers are one clear line, shipped files are not replaced by ordinary runs, and files are
written as one unit. Synthetic except where the training loop is involved (a short real run)."""
import argparse
import os
import subprocess
import sys

import pytest
import torch

import attacks.refool
import attacks.trojan
import config
from models import build_model, select_model
from utils import UserError
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.files import HOST, remove_stale_temps, write_together
from utils.engine import train_epoch
from conftest import ROOT, run_cli, run_here



class MakesAFile:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'evil.pth.tar'
    torch.save({'state_dict': build_model('WRN-16-1').state_dict(), 'payload': MakesAFile(marker)}, path)
    return str(path), marker


def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    return result.returncode != 0 and len(lines) == 1 and lines[0].startswith('error: ')


@pytest.mark.parametrize('argv', [['main.py', '--s_model'], ['main.py', '--defense', 'nad', '--t_model'],
                                  ['train_badnet.py', '--init']])
def test_a_checkpoint_that_would_run_code_is_refused(evil, tmp_path, argv):
    path, marker = evil
    out = ['--output', str(tmp_path / 'w' / 'bd.pth.tar')] if argv[0] == 'train_badnet.py' else \
        ['--checkpoint_root', str(tmp_path / 'w')]
    result = run_cli(*argv, path, '--log_root', str(tmp_path / 'r'), *out)
    assert not marker.exists()                                      # the payload never ran
    assert one_line_error(result) and 'posix.system' in result.stderr and '--trust_checkpoint' in result.stderr
    assert not os.listdir(tmp_path / 'r') and not os.listdir(tmp_path / 'w')   # and nothing was written


def test_artefact_files_load_without_running_code_too(evil):
    path, marker = evil
    with pytest.raises(UserError, match='could run code'):
        attacks.trojan.nn_trigger(path)
    with pytest.raises(UserError, match='could run code'):
        attacks.refool.selected_trigger(path=path)
    assert not marker.exists()


def test_trust_checkpoint_loads_what_the_user_vouches_for(tmp_path):
    path = tmp_path / 'old.pth.tar'  # e.g. an original-repository checkpoint that pickled its argparse Namespace
    torch.save({'state_dict': build_model('WRN-16-1').state_dict(), 'args': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UserError, match='argparse.Namespace'):
        select_model('WRN-16-1', 10, str(path))
    assert select_model('WRN-16-1', 10, str(path), trust=True)[1]['args'].lr == 0.1
    assert config.parse(config.get_arguments(), []).trust_checkpoint is False       # off by default


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    state = build_model('WRN-16-1').state_dict()
    state['fc.weight'][0, 0] = float('nan')
    torch.save({'state_dict': state}, tmp_path / 'nan.tar')
    with pytest.raises(UserError, match=r'non-finite weights \(NaN or inf in fc.weight\)'):
        load_checkpoint(str(tmp_path / 'nan.tar'))


def test_a_non_finite_loss_stops_training_naming_epoch_and_step():
    model = build_model('WRN-16-1')
    batches = [(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)) for _ in range(5)]
    calls = []

    def loss_fn(m, x, y):  # finite for two steps, then NaN
        calls.append(1)
        out = torch.nn.functional.cross_entropy(m(x)[-1], y)
        return out * float('nan') if len(calls) == 3 else out
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(UserError, match='at epoch 7, step 3 of 5; nothing was saved'):
        train_epoch(model, batches, loss_fn, optimizer, torch.device('cpu'), epoch=7)


@pytest.mark.e2e
def test_a_diverging_real_run_ends_in_one_line_and_writes_nothing(tmp_path):
    result = run_cli('main.py', '--lr', '1e8', '--epochs', '1', '--ratio', '0.02', '--eval_every', '0',
                     '--device', 'cpu', '--log_root', str(tmp_path / 'r'), '--checkpoint_root', str(tmp_path / 'w'))
    last = result.stderr.strip().splitlines()[-1]      # after the progress bar: one line, no traceback
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert last.startswith('error: training diverged: the loss became NaN or infinite at epoch 1, step ')
    assert os.listdir(tmp_path / 'r') == [] and os.listdir(tmp_path / 'w') == []


@pytest.mark.parametrize('argv,message', [
    (['--lr', 'nan'], '--lr nan must be a finite number'), (['--lr', 'inf'], '--lr inf must be a finite number'),
    (['--beta1', 'nan'], '--beta1 nan must be a finite number'), (['--p', '0'], '--p 0.0 must be positive'),
    (['--momentum', '1'], '--momentum 1.0 must be in [0, 1)'), (['--weight_decay', '-0.5'], 'must not be negative'),
    (['--gamma', '0'], '--gamma 0.0 must be positive'), (['--mcr_points', '0', 'nan'], '--mcr_points nan'),
    (['--trigger_alpha', '0'], '--trigger_alpha 0.0 must be in (0, 1]'), (['--lr', '-0.1'], 'must be positive'),
    (['--prune_target_acc', '120'], 'percentage'), (['--schedule', '-1'], 'must not be negative'),
    (['--protocol', 'code', '--momentum', '0'], '--nesterov needs a positive --momentum')])
def test_numeric_flags_are_finite_and_in_range(argv, message):
    with pytest.raises(UserError, match=message.replace('(', r'\(').replace(')', r'\)').replace('[', r'\[')):
        config.parse(config.get_arguments(), argv)


@pytest.mark.parametrize('argv,message', [
    (['--data_root', 'README.md'], '--data_root README.md is a file, not a directory'),
    (['--checkpoint_root', 'README.md/erased'], 'is not a writable directory'),
    (['--log_root', 'README.md/results'], 'is not a writable directory'),
    (['--s_model', 'weight'], '--s_model weight: a directory, not a file'),
    (['--t_model', 'no/such/teacher.tar'], '--t_model no/such/teacher.tar: no such file'),
    (['--make_teacher', '--t_model', 'weight/t_net/WRN-16-1-T-model_best.pth.tar'], 'a file the repository ships'),
    (['--log_root', 'results', '--run_name', 'nad_WRN-16-1-S-model_best_seed0'], 'a file the repository ships')])
def test_bad_paths_are_one_line_before_any_work(argv, message):
    result = run_here('main.py', *argv)
    assert one_line_error(result) and message in result.stderr, result.stderr


def test_train_badnet_refuses_to_replace_a_zoo_model(tmp_path):
    result = run_cli('train_badnet.py', '--attack', 'badnets', '--output', 'weight/s_net/WRN-16-1-badnets.pth.tar',
                     '--log_root', str(tmp_path))
    assert one_line_error(result) and 'a file the repository ships' in result.stderr and '--replace_shipped' \
        in result.stderr


def test_ordinary_runs_write_to_the_git_ignored_runs_folder():
    a = config.parse(config.get_arguments(), [])
    assert a.log_root == './runs' and a.checkpoint_root == './weight/erasing_net'
    teacher = config.parse(config.get_arguments(), ['--make_teacher'])
    assert teacher.t_model == os.path.join('.', 'runs', 'weights', 'WRN-16-1-S-model_best-T.pth.tar')
    assert config.parse(config.get_arguments(), ['--make_teacher', '--t_model', 'x.tar']).t_model == 'x.tar'
    from train_badnet import default_output
    assert default_output(config.parse(config.get_badnet_arguments(), ['--attack', 'sig'])) == \
        os.path.join('runs', 'weights', 'WRN-16-1-sig.pth.tar')
    with open(os.path.join(ROOT, '.gitignore')) as f:
        assert 'runs/' in f.read().split()


def test_files_of_one_run_are_written_together_or_not_at_all(tmp_path):
    def fails(f):
        raise KeyboardInterrupt  # Ctrl-C while the second file is written
    with pytest.raises(KeyboardInterrupt):
        write_together([(tmp_path / 'model.tar', b'weights'), (tmp_path / 'run.csv', fails),
                        (tmp_path / 'run.json', b'{}')])
    assert os.listdir(tmp_path) == []                               # no file, no temp file
    write_together([(tmp_path / 'model.tar', b'weights'), (tmp_path / 'run.json', b'{}')])
    assert sorted(os.listdir(tmp_path)) == ['model.tar', 'run.json']


def test_temp_files_of_killed_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    (tmp_path / f'.tmp-{HOST}-{dead.stdout.strip()}-abc').write_bytes(b'half a checkpoint')  # its writer was killed
    live = [f'.tmp-{HOST}-{os.getpid()}-def',                  # a live writer's
            f'.tmp-othernode-{dead.stdout.strip()}-ghi']       # another host's, on a shared file system
    for name in live:
        (tmp_path / name).write_bytes(b'being written')
    save_checkpoint(str(tmp_path / 'm.tar'), torch.nn.Linear(1, 1), 'WRN-16-1', 10)
    assert sorted(os.listdir(tmp_path)) == sorted(live + ['m.tar'])
    remove_stale_temps(str(tmp_path))
    assert len(os.listdir(tmp_path)) == 3


def test_the_protocol_presets_are_the_facts():
    nad = lambda *argv: config.parse(config.get_arguments(), list(argv))  # noqa: E731
    code = nad('--protocol', 'code')
    assert (code.epochs, code.lr, code.schedule, code.gamma, code.nesterov, code.momentum, code.weight_decay,
            code.batch_size, code.cutout_length) == (20, 0.1, [2], 0.1, True, 0.9, 1e-4, 64, 3)
    assert (code.beta1, code.beta2, code.beta3, code.p, code.ratio) == (500, 1000, 1000, 2.0, 0.05)
    paper = nad('--protocol', 'paper')
    assert (paper.epochs, paper.lr, paper.schedule, paper.nesterov, paper.cutout_length) == \
        (10, 0.1, [2, 4, 6, 8], False, 9)
    low = nad('--protocol', 'paper-lr0.01')
    assert (low.epochs, low.lr, low.schedule, low.nesterov, low.cutout_length) == (10, 0.01, [2, 4, 6, 8], False, 9)
    mine = nad('--protocol', 'code', '--lr', '0.03', '--no-nesterov', '--cutout_length', '0')   # explicit flags win
    assert (mine.lr, mine.nesterov, mine.cutout_length, mine.epochs) == (0.03, False, 0, 20)
    assert nad('--protocol', 'code', '--defense', 'mixup').cutout_length == 0
    assert nad('--protocol', 'code', '--attack', 'sig').trigger_type == 'sigTrigger'     # with an attack preset too


def test_the_authors_backdoor_recipe_is_the_original_train_badnet():
    bd = lambda *argv: config.parse(config.get_badnet_arguments(), ['--attack', 'badnets', *argv])  # noqa: E731
    authors = bd('--recipe', 'authors')
    assert (authors.epochs, authors.lr, authors.lr_schedule, authors.nesterov, authors.weight_decay,
            authors.batch_size, authors.augment, authors.shuffle) == (19, 0.1, 'constant', True, 1e-4, 64, False, False)
    zoo = bd()
    assert (zoo.lr_schedule, zoo.nesterov, zoo.weight_decay, zoo.batch_size, zoo.augment, zoo.shuffle) == \
        ('linear', False, 5e-4, 128, True, True)
    assert bd('--recipe', 'authors', '--epochs', '5').epochs == 5                      # explicit flags win


def test_a_run_records_its_numbers_with_robust_accuracy():
    from utils.engine import evaluate
    from data_loader import BatchLoader
    model = build_model('WRN-16-1').eval()
    x = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    cpu = torch.device('cpu')
    preds = model(x.float() / 255)[-1].argmax(1)
    target, true = torch.full((12,), 5), preds.clone()
    true[:3] = (preds[:3] + 1) % 10                                 # 9 of 12 classified as their true label
    metrics = evaluate(model, BatchLoader(x, true, 5, cpu), BatchLoader(x, target, 5, cpu, true_y=true), cpu)
    assert metrics['ra'] == pytest.approx(75.0) and metrics['asr'] == pytest.approx(100 * (preds == 5).float().mean())
    assert metrics['acc'] == pytest.approx(75.0)


def test_attack_generators_do_not_replace_their_shipped_artefacts_by_accident(tmp_path):
    for module, output in (('attacks.trojan', 'triggers/trojan_WRN-16-1.pt'),
                           ('attacks.refool', 'triggers/refool_WRN-16-1.pt')):
        result = run_cli('-m', module)
        assert one_line_error(result) and f'--output ./{output} is a file the repository ships' in result.stderr


def test_a_pgd_step_of_zero_is_refused():
    with pytest.raises(UserError, match='--pgd_step_size 0.0 must be positive'):
        config.parse(config.get_badnet_arguments(), ['--attack', 'cl', '--pgd_step_size', '0'])


def test_plain_fine_tuning_needs_no_teacher_file(tmp_path):
    args = config.parse(config.get_arguments(), ['--beta1', '0', '--beta2', '0', '--beta3', '0',
                                                 '--t_model', str(tmp_path / 'none.tar'), '--log_root', str(tmp_path)])
    config.check_paths(args, [])                                     # fine-tuning loads no teacher
    args = config.parse(config.get_arguments(), ['--t_model', str(tmp_path / 'none.tar'), '--log_root', str(tmp_path)])
    with pytest.raises(UserError, match='no such file'):
        config.check_paths(args, [])
