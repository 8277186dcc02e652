"""End to end on real CIFAR-10 (fetched once and cached under data/): the shipped weights reach the
figures the README states, and main.py / train_badnet.py run, print and write what they promise."""
import json
import os
import subprocess
import sys

import pytest
import torch

from data_loader import load_cifar10
from models import select_model
from utils.cli import test_loaders as make_test_loaders
from utils.engine import evaluate

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDENT = os.path.join(ROOT, 'weight', 's_net', 'WRN-16-1-S-model_best.pth.tar')
TEACHER = os.path.join(ROOT, 'weight', 't_net', 'WRN-16-1-T-model_best.pth.tar')


@pytest.fixture(scope='module')
def cifar():
    return load_cifar10()


@pytest.fixture(scope='module')
def loaders(cifar):
    class Args:
        trigger_type, target_type, target_label, num_classes, eval_batch_size = 'gridTrigger', 'all2one', 5, 10, 1000
    return make_test_loaders(Args, cifar, torch.device('cpu'))


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
    assert metrics['acc'] >= 75.0, metrics
    assert metrics['acc'] == pytest.approx(ckpt['acc'], abs=0.1) and ckpt['method'] == 'teacher'


def test_one_nad_epoch_writes_results_and_checkpoint(tmp_path):
    result = subprocess.run([sys.executable, 'main.py', '--epochs', '1', '--checkpoint_root', str(tmp_path / 'w'),
                             '--log_root', str(tmp_path / 'r'), '--seed', '3'],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [l for l in result.stdout.splitlines() if l.startswith('epoch')]
    assert len(lines) == 2 and 'ACC' in lines[1] and 'ASR' in lines[1]
    assert 'nad done' in result.stdout and 'before: ACC' in result.stdout
    summary = json.loads((tmp_path / 'r' / 'nad_WRN-16-1-S-model_best_seed3.json').read_text())
    assert summary['config']['seed'] == 3 and summary['method'] == 'nad' and summary['at_form'] == 'code'
    assert summary['before']['asr'] >= 99.0
    assert summary['after']['asr'] < summary['before']['asr']   # one epoch of NAD already cuts the ASR
    csv_rows = (tmp_path / 'r' / 'nad_WRN-16-1-S-model_best_seed3.csv').read_text().splitlines()
    assert csv_rows[0] == 'epoch,lr,loss,acc,asr,seconds' and len(csv_rows) == 3
    _, ckpt = select_model('WRN-16-1', 10, str(tmp_path / 'w' / 'WRN-16-1.tar'))
    assert ckpt['epoch'] == 1 and ckpt['keep_rule'] == 'last' and ckpt['config']['beta3'] == 1000


def test_train_badnet_one_epoch(tmp_path):
    out = tmp_path / 'bd.pth.tar'
    result = subprocess.run([sys.executable, 'train_badnet.py', '--epochs', '1', '--output', str(out),
                             '--log_root', str(tmp_path), '--trigger_type', 'squareTrigger', '--target_label', '0'],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'poisoned 5000 of 50000' in result.stdout
    _, ckpt = select_model('WRN-16-1', 10, str(out))
    assert ckpt['epoch'] == 1 and ckpt['config']['trigger_type'] == 'squareTrigger' and len(ckpt['poison_idx']) == 5000
    assert ckpt['acc'] > 20.0                                   # one epoch learns something real
    assert json.loads((tmp_path / 'badnet_bd.json').read_text())['final']['epoch'] == 1
