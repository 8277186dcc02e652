"""Fixtures shared by the test modules."""
import os
import runpy
import signal
import subprocess
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: scripts run from here


@pytest.fixture(scope='session')
def cifar():
    """Real CIFAR-10 as uint8 tensors, fetched once and cached under data/ (REFERENCE section 4)."""
    from data_loader import load_cifar10
    return load_cifar10()


# The grid tests/test_reproduce.py checks, and tests/test_runner.py makes again on Slurm: BadNets, fine-tuning
# (= NAD's teacher) and NAD, seeds 0 and 1, one epoch of the `code` protocol, measured on the first 1000 test
# images (4 runs, ~1 min on 2 cores).
GRID = ('--attacks', 'badnets', '--protocols', 'code', '--defenses', 'finetune', 'nad', '--seeds', '0', '1',
        '--epochs', '1', '--device', 'cpu', '--test_limit', '1000')


def reproduce(tmp_path, *flags):
    """`python reproduce.py FLAGS` with its results and models under tmp_path; returns its output."""
    result = subprocess.run([sys.executable, 'reproduce.py', *flags, '--results', str(tmp_path / 'results'),
                             '--models', str(tmp_path / 'models')], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope='session')
def grid(tmp_path_factory):
    """The GRID made once by the local launcher: (its folder, reproduce.py's output)."""
    tmp_path = tmp_path_factory.mktemp('reproduce')
    return tmp_path, reproduce(tmp_path, *GRID)


def run_in_process(name, module, args, monkeypatch):
    """Run `python [-m] name args` here, as its __main__; its exit code. For what stops at the parse (--help,
    --dry_run): the imports are paid once for the whole suite, not once a command."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv('COLUMNS', '80')  # argparse wraps --help to the terminal's width
    monkeypatch.setattr(sys, 'argv', [name, *args])
    term = signal.getsignal(signal.SIGTERM)  # utils.cli.run installs its own
    try:
        if module:
            with warnings.catch_warnings():  # the suite has imported it already, which is what runpy warns of
                warnings.filterwarnings('ignore', '.*found in sys.modules', RuntimeWarning)
                runpy.run_module(name, run_name='__main__', alter_sys=True)
        else:
            runpy.run_path(os.path.join(ROOT, name), run_name='__main__')
    except SystemExit as e:
        return e.code
    finally:
        signal.signal(signal.SIGTERM, term)
    return 0
