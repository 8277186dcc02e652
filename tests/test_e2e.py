"""End to end on real CIFAR-10 (fetched once and cached under data/): the shipped weights reach the
figures the README states, and main.py / train_badnet.py run, print and write what they promise."""
import json
import os

import pytest
import torch

from models import select_model
from data_loader import test_loaders as make_test_loaders
from utils.engine import evaluate
from conftest import ROOT, run_cli, run_here

pytestmark = pytest.mark.e2e
STUDENT = os.path.join(ROOT, 'weight', 's_net', 'WRN-16-1-S-model_best.pth.tar')
TEACHER = os.path.join(ROOT, 'weight', 't_net', 'WRN-16-1-T-model_best.pth.tar')
# The runs below are measured on the first 1000 test images (--test_limit): a full pass over the test sets
# costs 20-25 s on a 2-core AVX2 CPU, and these tests check that the scripts run and write, not the figures.
LIMIT = ['--test_limit', '1000']


def quick_start_loaders(cifar, test_limit=None):
    class Args:
        trigger_type, target_type, target_label, num_classes, eval_batch_size = 'gridTrigger', 'all2one', 5, 10, 1000
    Args.test_limit = test_limit
    return make_test_loaders(Args, cifar, torch.device('cpu'), 'gridTrigger')


@pytest.fixture(scope='module')
def loaders(cifar):
    return quick_start_loaders(cifar)


def test_real_cifar10_is_intact(cifar):
    (x, y), (xt, yt) = cifar['train'], cifar['test']
    assert x.shape == (50000, 3, 32, 32) and xt.shape == (10000, 3, 32, 32) and x.dtype == torch.uint8
    assert y[:5].tolist() == [6, 9, 9, 4, 1] and yt[:4].tolist() == [3, 8, 8, 0]
    assert torch.bincount(y).tolist() == [5000] * 10 and torch.bincount(yt).tolist() == [1000] * 10


def test_shipped_backdoored_model(loaders):
    model, ckpt = select_model('WRN-16-1', 10, STUDENT)
    metrics = evaluate(model, *loaders, torch.device('cpu'))
    assert metrics['acc'] >= 84.0 and metrics['asr'] >= 99.0, metrics
    assert metrics['acc'] == pytest.approx(ckpt['acc'], abs=0.1)     # the recorded figures reproduce
    assert metrics['asr'] == pytest.approx(ckpt['asr'], abs=0.1)
    assert ckpt['config']['trigger_type'] == 'gridTrigger' and ckpt['config']['target_label'] == 5
    assert ckpt['config']['augment'] is True and 'seed' in ckpt['config']


def test_shipped_teacher(loaders):
    model, ckpt = select_model('WRN-16-1', 10, TEACHER)
    metrics = evaluate(model, *loaders, torch.device('cpu'))
    assert metrics['acc'] >= 83.0 and metrics['asr'] < 10.0, metrics   # fine-tuning already weakens the backdoor
    assert metrics['acc'] == pytest.approx(ckpt['acc'], abs=0.1) and ckpt['method'] == 'teacher'
    assert metrics['asr'] == pytest.approx(ckpt['asr'], abs=0.1)


def test_one_nad_epoch_writes_results_and_checkpoint(tmp_path, cifar):
    result = run_here('main.py', '--epochs', '1', '--checkpoint_root', str(tmp_path / 'w'), '--log_root',
                      str(tmp_path / 'r'), '--seed', '3', *LIMIT)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [l for l in result.stdout.splitlines() if l.startswith('epoch')]
    assert len(lines) == 2 and 'ACC' in lines[1] and 'ASR' in lines[1]
    assert 'nad done' in result.stdout and 'before: ACC' in result.stdout
    assert 'eval clean' in result.stderr and 'eval triggered' in result.stderr   # evaluation shows a bar
    assert 'RA ' in lines[1]
    summary = json.loads((tmp_path / 'r' / 'nad_WRN-16-1-S-model_best_seed3.json').read_text())
    assert summary['config']['seed'] == 3 and summary['method'] == 'nad' and summary['at_form'] == 'code'
    assert summary['before']['asr'] >= 99.0
    assert summary['after']['asr'] < summary['before']['asr']   # one epoch of NAD already cuts the ASR
    assert summary['config']['test_limit'] == 1000 and summary['acc_note'].startswith('ACC over the 1000 test images')
    csv_rows = (tmp_path / 'r' / 'nad_WRN-16-1-S-model_best_seed3.csv').read_text().splitlines()
    assert csv_rows[0] == 'epoch,lr,loss,acc,asr,ra,seconds' and len(csv_rows) == 3
    model, ckpt = select_model('WRN-16-1', 10, str(tmp_path / 'w' / 'nad_WRN-16-1-S-model_best_seed3.tar'))
    assert summary['checkpoint'].endswith('nad_WRN-16-1-S-model_best_seed3.tar')   # named like its results
    assert ckpt['epoch'] == 1 and ckpt['keep_rule'] == 'last' and ckpt['config']['beta3'] == 1000
    # The recorded result is a float32 measurement: it reproduces exactly (bfloat16 would not, on any device).
    assert ckpt['eval_precision'] == 'float32' and summary['eval_precision'].startswith('float32')
    metrics = evaluate(model, *quick_start_loaders(cifar, 1000), torch.device('cpu'))
    assert (metrics['acc'], metrics['asr']) == (ckpt['acc'], ckpt['asr']) == (summary['after']['acc'], summary['after']['asr'])


def test_train_badnet_one_epoch_of_a_named_clean_label_attack(tmp_path, cifar):
    out = tmp_path / 'bd.pth.tar'
    # the first 5,000 training images (--train_limit): the poisoning and the loop are the same, ten times cheaper
    result = run_here('train_badnet.py', '--epochs', '1', '--output', str(out), '--log_root', str(tmp_path),
                      '--attack', 'sig', '--train_limit', '5000', *LIMIT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'poisoned 400 of 5000 training images (sigTrigger, cleanLabel, target 0)' in result.stdout
    _, ckpt = select_model('WRN-16-1', 10, str(out))
    assert ckpt['epoch'] == 1 and ckpt['config']['attack'] == 'sig' and len(ckpt['poison_idx']) == 400
    assert ckpt['config']['train_limit'] == 5000 and max(ckpt['poison_idx']) < 5000
    assert (cifar['train'][1][ckpt['poison_idx']] == 0).all()     # clean-label: target-class images only
    final = json.loads((tmp_path / 'badnet_bd.json').read_text())['final']
    # one epoch learns something real: the epoch's mean loss (2.18 on AVX512 and on AVX2 kernels) is below
    # chance's ln 10 = 2.30. Not the test ACC, which one epoch leaves at the mercy of the CPU's rounding (22.7
    # with AVX512 kernels, 12.1 with AVX2 ones, on the same weights and data)
    assert final['epoch'] == 1 and final['loss'] < 2.25 and ckpt['acc'] == final['acc']


def run_defense(tmp_path, *argv):
    result = run_here('main.py', '--epochs', '1', '--checkpoint_root', str(tmp_path / 'w'), '--log_root',
                      str(tmp_path / 'r'), *LIMIT, *argv)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize('defense,extra', [('finetune', []), ('mixup', []), ('cutout', []), ('argd', []), ('kd', []),
                                           ('twostage', []), ('fineprune', ['--prune_ratio', '0.25'])])
def test_each_defense_runs_an_epoch_and_writes_its_results(tmp_path, defense, extra):
    # --eval_every 0: measured before and after the epoch only; 'before' is measured on the same 1000 images,
    # not taken from the checkpoint's record (the full test set)
    out = run_defense(tmp_path, '--defense', defense, '--eval_every', '0', *extra)
    assert f'{defense} done' in out
    summary = json.loads((tmp_path / 'r' / f'{defense}_WRN-16-1-S-model_best_seed0.json').read_text())
    assert summary['before_source'] == 'measured'
    assert summary['method'] == defense and summary['config']['defense'] == defense
    assert summary['before']['asr'] >= 99.0 and summary['after']['epoch'] == 1
    assert summary['after']['asr'] < 90.0 or defense == 'fineprune'   # every fine-tuning defense bites at once
    model, ckpt = select_model('WRN-16-1', 10, str(tmp_path / 'w' / f'{defense}_WRN-16-1-S-model_best_seed0.tar'))
    assert ckpt['method'] == defense and ckpt['acc'] == summary['after']['acc']
    if defense == 'twostage':    # fine-tuned from the teacher's weights, and its files say so
        assert ckpt['source_checkpoint'] == summary['teacher_checkpoint']['path'] == summary['started_from']['path']
    if defense == 'fineprune':   # the 16 least active channels stay masked in the saved model
        pruned = summary['pruned_channels']
        assert len(pruned) == 16 and summary['prune_ratio'] == 0.25
        assert model.bn1.weight[pruned].abs().sum() == 0 and model.bn1.bias[pruned].abs().sum() == 0


def test_mcr_curve_reproduces_endpoints_on_real_data(tmp_path):
    out = run_defense(tmp_path, '--defense', 'mcr', '--mcr_epochs', '1', '--mcr_points', '0', '1')
    assert 'mcr done' in out
    curve = (tmp_path / 'r' / 'mcr_WRN-16-1-S-model_best_seed0_curve.csv').read_text().splitlines()
    assert curve[0] == 't,acc,asr,ra,seconds' and [r.split(',')[0] for r in curve[1:]] == ['0.0', '0.3', '1.0']
    summary = json.loads((tmp_path / 'r' / 'mcr_WRN-16-1-S-model_best_seed0.json').read_text())
    t0, t1 = summary['curve'][0], summary['curve'][-1]
    assert (t0['acc'], t0['asr']) == (t1['acc'], t1['asr'])      # both ends are the backdoored model
    at_t = summary['curve'][1]                                     # the reported point is that curve row (float32)
    assert at_t['t'] == 0.3 and (at_t['acc'], at_t['asr']) == (summary['after']['acc'], summary['after']['asr'])
    # the curve is measured under autocast, 'before' in float32: the same model, up to a few of the 1000 images
    assert t0['acc'] == pytest.approx(summary['before']['acc'], abs=0.5)
    assert t0['asr'] == pytest.approx(summary['before']['asr'], abs=0.5)
    assert (tmp_path / 'r' / 'mcr_WRN-16-1-S-model_best_seed0_curve.png').stat().st_size > 1000


def test_the_same_seed_twice_gives_the_same_numbers_and_weights(tmp_path):
    def nad(name):
        result = run_cli('main.py', '--epochs', '2', '--ratio', '0.02', '--eval_every', '0', '--device', 'cpu',
                         '--seed', '4', '--run_name', name, '--log_root', str(tmp_path), *LIMIT,
                         '--checkpoint_root', str(tmp_path / name), timeout=600)   # a new process each: same numbers
        assert result.returncode == 0, result.stderr[-2000:]
        summary = json.loads((tmp_path / f'{name}.json').read_text())
        return summary, select_model('WRN-16-1', 10, str(tmp_path / name / f'{name}.tar'))[0].state_dict()
    (first, weights1), (second, weights2) = nad('a'), nad('b')
    assert [(r['loss'], r['acc'], r['asr'], r['ra']) for r in first['epochs']] == \
        [(r['loss'], r['acc'], r['asr'], r['ra']) for r in second['epochs']]
    assert first['epochs'][-1]['loss'] is not None and first['after']['ra'] is not None
    assert all(torch.equal(weights1[k], weights2[k]) for k in weights1)
