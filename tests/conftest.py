"""Fixtures shared by the test modules."""
import contextlib
import io
import os
import random
import runpy
import signal
import subprocess
import sys
import traceback
import warnings

import numpy as np
import pytest
import submitit  # noqa: F401  imported before any run_here redirects stdout: its loggers keep the real streams
import torch

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
    """`python ARGV` in a fresh interpreter from the repository root: all a user would see, warnings raised while
    importing included. About 2 s of imports each: kept for one refusal of each kind a user meets (a checkpoint
    that would run code, a wrong or corrupt checkpoint, a shipped file, the generators' outputs), a diverging run
    and the same seed in two processes."""
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def run_here(*argv, timeout=900):
    """`python ARGV` (a script, or -m and a module) run in this process as its __main__, from the repository root:
    a CompletedProcess with its exit code and what it printed, as run_cli's, about 2 s sooner (the imports are paid
    once for the suite). Warnings are printed under Python's default filters, as in a new interpreter, but those
    raised while importing the repository's modules were raised once, before: run_cli shows them. Ctrl-C stops
    the suite; a run over `timeout` seconds fails its test with the end of its output."""
    module = argv[0] == '-m'
    name, args = (argv[1], list(argv[2:])) if module else (argv[0], list(argv[1:]))
    out, err, code = io.StringIO(), io.StringIO(), 0
    with state_restored(timeout), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        os.chdir(ROOT)
        sys.argv = [name, *args]
        os.environ['COLUMNS'] = '80'  # argparse wraps --help to the terminal's width
        fresh_interpreter_warnings()
        try:
            if module:
                runpy.run_module(name, run_name='__main__', alter_sys=True)
            else:
                runpy.run_path(os.path.join(ROOT, name), run_name='__main__')
        except SystemExit as e:  # as the interpreter: a message goes to stderr with exit code 1
            if isinstance(e.__context__, KeyboardInterrupt):  # utils.cli.run's Ctrl-C: stop the suite too
                raise KeyboardInterrupt from None
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        except OverTime:
            raise OverTime(f'{" ".join(argv)}: over {timeout} s\n{err.getvalue()[-2000:]}') from None
        except Exception:  # as the interpreter: the traceback on stderr, exit code 1
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


class OverTime(Exception):
    """A run_here command over its time."""


@contextlib.contextmanager
def state_restored(timeout):
    """Put back what a script run here may change: the working directory, sys.argv, the environment, the random
    generators (seed_everything reseeds them), cuDNN's benchmark flag and the SIGTERM handler (utils.cli.run
    installs one); and raise OverTime after `timeout` seconds (SIGALRM)."""
    cwd, argv, environ, benchmark = os.getcwd(), sys.argv, dict(os.environ), torch.backends.cudnn.benchmark
    generators = random.getstate(), np.random.get_state(), torch.get_rng_state()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGALRM)}

    def over_time(signum, frame):
        raise OverTime
    signal.signal(signal.SIGALRM, over_time)
    signal.alarm(timeout)
    try:
        yield
    finally:
        signal.alarm(0)
        for s, handler in handlers.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: one set outside Python
        os.chdir(cwd)
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environ)
        torch.backends.cudnn.benchmark = benchmark
        random.setstate(generators[0])
        np.random.set_state(generators[1])
        torch.set_rng_state(generators[2])


def fresh_interpreter_warnings():
    """Python's default warning filters (DeprecationWarning shown only from __main__), each warning printed to
    stderr, as a new interpreter does; inside warnings.catch_warnings(), which puts pytest's own back."""
    warnings.resetwarnings()
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter('ignore', category)
    warnings.filterwarnings('default', category=DeprecationWarning, module='__main__')
    warnings.filterwarnings('ignore', '.*found in sys.modules', RuntimeWarning)  # runpy: imported by the suite
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line))
