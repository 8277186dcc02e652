"""Fixtures shared by the test modules."""
import contextlib
import io
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
    result = run_here('reproduce.py', *flags, '--results', str(tmp_path / 'results'),
                      '--models', str(tmp_path / 'models'))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope='session')
def grid(tmp_path_factory):
    """The GRID made once by the local launcher: (its folder, reproduce.py's output)."""
    tmp_path = tmp_path_factory.mktemp('reproduce')
    return tmp_path, reproduce(tmp_path, *GRID)


def run_cli(*argv, timeout=300):
    """`python ARGV` in a fresh interpreter from the repository root: all a user would see, warnings at import
    included. About 2 s of imports each: kept for what only a new process shows (main.py's, train_badnet.py's and
    the attack generators' refusals as a user meets them, a diverging run, the same seed in two processes)."""
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def run_here(*argv):
    """`python ARGV` (a script, or -m and a module) run in this process as its __main__, from the repository root:
    a CompletedProcess with its exit code and what it printed. For commands that stop before the heavy work (bad
    input, --help, --dry_run, and the end-to-end runs): the imports are paid once for the suite, not once a
    command (about 2 s each). The environment is restored after it; Python warnings go to pytest's record here, not
    to stderr: run_cli shows those."""
    module = argv[0] == '-m'
    name, args = (argv[1], list(argv[2:])) if module else (argv[0], list(argv[1:]))
    out, err, code = io.StringIO(), io.StringIO(), 0
    cwd, saved_argv, environ = os.getcwd(), sys.argv, dict(os.environ)
    term = signal.getsignal(signal.SIGTERM)  # utils.cli.run installs its own
    try:
        os.chdir(ROOT)
        sys.argv = [name, *args]
        os.environ['COLUMNS'] = '80'  # argparse wraps --help to the terminal's width
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.filterwarnings('ignore', '.*found in sys.modules', RuntimeWarning)  # runpy: imported already
            try:
                if module:
                    runpy.run_module(name, run_name='__main__', alter_sys=True)
                else:
                    runpy.run_path(os.path.join(ROOT, name), run_name='__main__')
            except SystemExit as e:  # as the interpreter would: a message goes to stderr with exit code 1
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    finally:
        os.chdir(cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(environ)
        signal.signal(signal.SIGTERM, term)
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())
