"""Bad input, second round: run names that would escape their folder, counts that come to nothing, a dataset
cache that is not what it claims, a full disk, a signal between renames, erased models that would replace each
other, seeds numpy refuses, the runner's flags, and refusals that name flags the script has. Synthetic."""
import errno
import os
import signal
import subprocess

import numpy as np
import pytest
import torch

import config
import data_loader as dl
from experiments import runner
from utils.records import known_before, model_path
from models import build_model, select_model
from utils import UserError
from utils.cli import check_finite
from utils.files import folder_lock, write_together
from utils.paths import is_shipped, output_file
from conftest import ROOT, run_here



def nad_args(*argv):
    return config.parse(config.get_arguments(), list(argv))


@pytest.mark.parametrize('name', ['../../escape', '/tmp/abs', 'a/b', '..', '.', '', 'x' * 201], ids=lambda n: n[:12] or 'empty')
def test_run_names_are_plain_names(name):
    with pytest.raises(UserError, match='--run_name'):
        nad_args('--run_name', name)
    assert nad_args('--run_name', 'x' * 200).run_name == 'x' * 200


def test_an_escaping_run_name_is_one_line_with_exit_code_2_and_nothing_written(tmp_path):
    result = run_here('main.py', '--run_name', '../../escape', '--log_root', str(tmp_path / 'r'),
                     '--checkpoint_root', str(tmp_path / 'w'))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --run_name '../../escape' must be a plain name: no '/', not '.' or '..' (runs are filed under --log_root)"]
    assert not (tmp_path / 'r').exists() and not (tmp_path / 'w').exists()


def test_an_output_file_name_longer_than_the_file_system_allows_is_refused(tmp_path):
    args = config.parse(config.get_badnet_arguments(), [])
    with pytest.raises(UserError, match='longer than 255 bytes'):
        output_file(str(tmp_path / ('m' * 300 + '.pth.tar')), '--output', args)


@pytest.mark.parametrize('argv,message', [
    (['--ratio', '1e-9'], '--ratio 1e-09 gives 0 of the 50000 training images: nothing to fine-tune on'),
    (['--ratio', '0.001', '--holdout', '0.99'], '50 of the 50000 training images, 0 left after --holdout 0.99'),
    (['--ratio', '0.00002', '--holdout', '0.1'], '--holdout 0.1 of 1 clean images holds out none')])
def test_counts_derived_from_fractions_are_checked_before_any_work(argv, message):
    with pytest.raises(UserError, match=message.replace('(', r'\(').replace('.', r'\.')):
        nad_args(*argv)


def test_a_poisoning_rate_that_poisons_nothing_is_refused():
    with pytest.raises(UserError, match='poisons none of the 50000'):
        config.parse(config.get_badnet_arguments(), ['--inject_portion', '1e-9'])
    config.parse(config.get_badnet_arguments(), ['--attack', 'clean', '--inject_portion', '1e-9'])  # no poison asked


@pytest.mark.parametrize('seed', ['-1', '4294967296'])
def test_seeds_numpy_cannot_take_are_one_clear_line(seed):
    with pytest.raises(UserError, match=f'--seed {seed} must be in 0..4294967295'):
        nad_args('--seed', seed)
    with pytest.raises(UserError, match='--seed'):
        config.parse(config.get_badnet_arguments(), ['--seed', seed])
    import reproduce
    parser = reproduce.get_arguments()
    with pytest.raises(UserError, match=f'--seeds {seed} must be in'):
        check_finite(parser, parser.parse_args(['--seeds', '0', seed]))


# --- the dataset cache -------------------------------------------------------------------------------------

def write_cache(root, train_x, train_y, test_x, test_y):
    os.makedirs(root, exist_ok=True)
    np.savez(os.path.join(root, 'cifar10_uint8.npz'), train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)


def images(n, shape=(3, 32, 32), dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 256, (n, *shape)).astype(dtype)


def labels(n, dtype=np.int64):
    return (np.arange(n) % 10).astype(dtype)


@pytest.mark.parametrize('train_x,train_y,test_x,test_y,message', [
    (images(20, (32, 32, 3)), labels(20), images(10), labels(10), r'train images have shape \(20, 32, 32, 3\)'),
    (images(20), labels(20) + 90, images(10), labels(10), r'train labels run 90\.\.99, outside 0\.\.9'),
    (images(20), labels(20, np.float32), images(10), labels(10), 'train labels are torch.float32'),
    (images(20), labels(10), images(10), labels(10), 'train split has 20 images but 10 labels'),
    (images(20), labels(20), images(0), labels(0), 'test split is empty'),
    (images(20, (3, 16, 16)), labels(20), images(10), labels(10), r'shape \(20, 3, 16, 16\)'),
    (images(20, dtype=np.float32), labels(20), images(10), labels(10), 'train images are torch.float32, not uint8')])
def test_a_malformed_dataset_cache_is_one_line_naming_the_problem(tmp_path, train_x, train_y, test_x, test_y, message):
    write_cache(tmp_path, train_x, train_y, test_x, test_y)
    with pytest.raises(UserError, match=message) as info:
        dl.load_cifar10(str(tmp_path))
    assert 'delete it and run again' in str(info.value)


def test_cached_pixels_are_checked_against_cifar10_once_then_remembered(tmp_path, monkeypatch):
    write_cache(tmp_path, images(20), labels(20), images(10), labels(10))
    with pytest.raises(UserError, match='does not hold the CIFAR-10 train images'):
        dl.load_cifar10(str(tmp_path))                               # right shapes, other pixels
    assert not (tmp_path / 'cifar10_uint8.npz.sha256.json').exists()
    # Pretend these are CIFAR-10's pixels: the first load hashes them and leaves a stamp, the next does not hash.
    monkeypatch.setattr(dl, 'CIFAR10_SHA256', {'train': dl._sha256(images(20)), 'test': dl._sha256(images(10))})
    assert len(dl.load_cifar10(str(tmp_path))['train'][1]) == 20
    assert (tmp_path / 'cifar10_uint8.npz.sha256.json').exists()
    monkeypatch.setattr(dl, '_sha256', lambda x: pytest.fail('hashed again'))
    assert dl.load_cifar10(str(tmp_path))['test'][1].dtype == torch.int64
    write_cache(tmp_path, images(20), labels(20), images(10), labels(10))  # the file changed: no longer stamped
    with pytest.raises(pytest.fail.Exception, match='hashed again'):
        dl.load_cifar10(str(tmp_path))


# --- writing a run's files ---------------------------------------------------------------------------------

def test_a_full_disk_is_one_line_naming_the_file_and_nothing_is_left(tmp_path):
    def disk_full(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(UserError, match=r'could not write .*run\.csv \(No space left on device\): nothing was saved'):
        write_together([(str(tmp_path / 'model.tar'), b'weights'), (str(tmp_path / 'run.csv'), disk_full),
                        (str(tmp_path / 'run.json'), b'{}')])
    assert os.listdir(tmp_path) == []


def test_a_failed_rename_takes_back_the_files_already_renamed(tmp_path, monkeypatch):
    real, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        real(src, dst)
    monkeypatch.setattr(os, 'replace', second_fails)
    with pytest.raises(UserError, match='nothing was saved'):
        write_together([(str(tmp_path / 'model.tar'), b'weights'), (str(tmp_path / 'run.csv'), b'a'),
                        (str(tmp_path / 'run.json'), b'{}')])
    assert os.listdir(tmp_path) == []


def test_a_signal_between_two_renames_waits_until_the_unit_is_whole(tmp_path, monkeypatch):
    real = os.replace

    def interrupted(src, dst):
        real(src, dst)
        if dst.endswith('model.tar'):
            os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C right after the model is in place
    monkeypatch.setattr(os, 'replace', interrupted)
    # Python's own Ctrl-C handler: a background job (nohup ... &, some CI) starts with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            write_together([(str(tmp_path / 'model.tar'), b'weights'), (str(tmp_path / 'run.csv'), b'a'),
                            (str(tmp_path / 'run.json'), b'{}')])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sorted(os.listdir(tmp_path)) == ['model.tar', 'run.csv', 'run.json']   # all three, no temp file


def test_two_writers_into_one_folder_take_turns(tmp_path):
    fcntl = pytest.importorskip('fcntl')
    with folder_lock(str(tmp_path)):
        other = os.open(tmp_path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a second writer waits
        finally:
            os.close(other)
    assert os.listdir(tmp_path) == []                                  # and no lock file is left behind


def test_erased_models_are_named_for_what_made_them():
    paths = {model_path(nad_args(*argv), method) for argv, method in [
        ([], 'nad'), ([], 'finetune'), (['--seed', '1'], 'nad'), (['--attack', 'blend'], 'nad'), ([], 'mixup')]}
    assert len(paths) == 5
    assert model_path(nad_args(), 'nad') == os.path.join('./weight/erasing_net', 'nad_WRN-16-1-S-model_best_seed0.tar')
    assert model_path(nad_args('--run_name', 'mine'), 'nad').endswith('mine.tar')


def test_a_corrupt_before_record_is_measured_and_says_why():
    args = nad_args('--eval_every', '0')
    assert known_before(args, 'nad', {'acc': 85.0, 'asr': 99.0})[1] == 'student checkpoint record'
    for record in ({'acc': 'x', 'asr': 99.0}, {'acc': 85.0}, {'acc': 850.0, 'asr': 1.0}, {'acc': True, 'asr': 1.0},
                   {'acc': 85.0, 'asr': 99.0, 'ra': 'x'}, {'acc': 85.0, 'asr': 99.0, 'ra': 1e9},
                   {'acc': 85.0, 'asr': 99.0, 'config': 'not a dict'}):
        before, source = known_before(args, 'nad', record)
        assert before is None and source.startswith('measured: ') and 'missing or malformed' in source


# --- refusals name what the script has ---------------------------------------------------------------------

class MakesAFile:
    def __reduce__(self):
        return os.system, ('true',)


@pytest.fixture
def evil(tmp_path):
    path = tmp_path / 'evil.pth.tar'
    torch.save({'state_dict': build_model('WRN-16-1').state_dict(), 'payload': MakesAFile()}, path)
    return str(path)


def test_the_refusal_suggests_trust_checkpoint_only_where_the_script_has_it(evil):
    with pytest.raises(UserError, match='Pass --trust_checkpoint only') as has_it:
        select_model('WRN-16-1', 10, evil, trust=False)              # main.py, train_badnet.py, attacks
    with pytest.raises(UserError, match='This script has no --trust_checkpoint') as lacks_it:
        select_model('WRN-16-1', 10, evil)                           # attacks.show, reproduce.py
    assert 'could run code' in str(has_it.value) and 'could run code' in str(lacks_it.value)
    import attacks.trojan
    with pytest.raises(UserError, match='make it again with `python -m attacks.trojan`') as artefact:
        attacks.trojan.nn_trigger(evil)
    assert 'Pass --trust_checkpoint' not in str(artefact.value)


def test_a_malicious_mcr_end_is_refused_before_the_data_are_loaded(evil, tmp_path):
    empty = tmp_path / 'data'  # no cache here: reaching the data would start a fetch and write into it
    empty.mkdir()
    result = run_here('main.py', '--defense', 'mcr', '--mcr_end', evil, '--data_root', str(empty),
                     '--log_root', str(tmp_path / 'r'), '--checkpoint_root', str(tmp_path / 'w'))
    assert result.returncode == 2 and 'could run code' in result.stderr and len(result.stderr.splitlines()) == 1
    assert os.listdir(empty) == []


def test_shipped_means_tracked_by_git_not_merely_in_a_shipped_folder():
    if subprocess.run(['git', '-C', ROOT, 'rev-parse'], capture_output=True).returncode != 0:
        pytest.skip('not a git checkout: the folder rule applies')
    assert is_shipped(os.path.join(ROOT, 'weight', 's_net', 'WRN-16-1-badnets.pth.tar'))
    own = os.path.join(ROOT, 'weight', 's_net', f'.test-own-output-{os.getpid()}.pth.tar')
    try:
        with open(own, 'wb') as f:
            f.write(b'a run of mine')
        assert not is_shipped(own)
    finally:
        os.unlink(own)


# --- the runner's flags ------------------------------------------------------------------------------------

def launch_args(*argv):
    import reproduce
    parser = reproduce.get_arguments()
    return check_finite(parser, parser.parse_args(list(argv)))


def test_the_runner_refuses_an_infinite_time_and_slurm_without_its_client(monkeypatch):
    with pytest.raises(UserError, match='--time inf must be a finite number'):
        launch_args('--time', 'inf')
    monkeypatch.setattr(runner.shutil, 'which', lambda tool: None)
    with pytest.raises(UserError, match="--launcher slurm needs Slurm's client on this machine"):
        runner.launch([runner.Run('r', ['main.py'], 'r.json', 'r.log')], launch_args('--launcher', 'slurm'))


def test_the_dependency_floors_are_the_safe_versions():
    with open(os.path.join(ROOT, 'requirements.txt')) as f:
        lines = {line.split('#')[0].strip() for line in f}
    assert {'torch>=2.10', 'torchvision>=0.25', 'tqdm>=4.66.3', 'pillow>=10.3'} <= lines
