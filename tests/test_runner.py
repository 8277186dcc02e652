"""experiments/runner.py: local runs are forked from a server that has imported torch (and run their command as
`python` would), Slurm runs go through submitit (tested on a real cluster where one answers); a failed run is
reported with its log and never stops the others; only a run that exited cleanly is sealed, so an interrupted
one is never taken for finished; the Slurm launcher makes exactly the local grid."""
import argparse
import csv
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from zoo import make as make_zoo
from conftest import GRID, reproduce as run_reproduce
from experiments import runner
from experiments.runner import ROOT, Run, add_arguments, check_launch_arguments, launch, seal_result, stored_run
from utils import UserError


def launch_args(*argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def script_run(tmp_path, name, code):
    """A run whose command is a Python one-liner writing a main.py-like summary (then doing `code`)."""
    result = str(tmp_path / f'{name}.json')
    summary = {'after': {'acc': 80.0, 'asr': 1.0}, 'config': {}}
    write = f'import json; open({str(tmp_path / (name + ".csv"))!r}, "w").write("epoch\\n1\\n"); ' \
            f'json.dump({summary!r}, open({result!r}, "w")); {code}'
    flags = ['--seed', '0']
    return Run(name, ['-c', write, *flags], result, str(tmp_path / f'{name}.log'),
               functools.partial(seal_result, result, flags)), flags


def test_a_failed_run_is_reported_with_its_log_and_the_others_finish_sealed(tmp_path, capsys):
    good, flags = script_run(tmp_path, 'good', 'print("trained")')
    bad, _ = script_run(tmp_path, 'bad', 'raise SystemExit("killed mid-way")')
    seen = []
    outcomes = launch([bad, good], launch_args('--jobs', '2'), on_done=seen.append)
    assert {o.run.name: o.ok for o in outcomes} == {'good': True, 'bad': False} and len(seen) == 2
    assert [o.why for o in outcomes if not o.ok] == ['exit 1']
    assert f'bad: FAILED (exit 1); its log: {bad.log}' in capsys.readouterr().out
    assert 'killed mid-way' in open(bad.log).read() and 'trained' in open(good.log).read()
    assert stored_run(good.result, flags)[0]['wall_seconds'] > 0         # sealed by its job: done
    # the failed run wrote its summary before dying, but was not sealed: never taken for a finished run
    assert stored_run(bad.result, flags) == (None, 'lacks keys a finished run has')


def test_bad_launch_settings_are_one_clear_line():
    with pytest.raises(UserError, match='at least 1'):
        check_launch_arguments(launch_args('--jobs', '0'))
    with pytest.raises(UserError, match='KEY=VALUE'):
        check_launch_arguments(launch_args('--launcher', 'slurm', '--slurm', 'account'))
    check_launch_arguments(launch_args('--launcher', 'slurm', '--slurm', 'account=lab', 'mem=8G'))


def test_the_zoo_plan_makes_what_each_attack_needs_first():
    names = [s.name for s in make_zoo.steps(['cl', 'trojan'])]
    assert names == ['clean', 'trojan_trigger', 'robust', 'cl', 'teacher_cl', 'trojan', 'teacher_trojan']
    assert [s.name for s in make_zoo.steps(['sig'])] == ['sig', 'teacher_sig']       # needs nothing shared
    refool = {s.name: s for s in make_zoo.steps(['refool'])}
    assert list(refool) == ['refool_candidates', 'refool_selection', 'refool', 'teacher_refool']
    assert refool['refool'].needs == (make_zoo.REFOOL_SELECTION,) and refool['teacher_refool'].needs == \
        ('weight/s_net/WRN-16-1-refool.pth.tar',)
    everything = make_zoo.steps(list(make_zoo.ZOO_ATTACKS))
    assert all(make_zoo.exists(s.output) for s in everything)   # the shipped zoo


def test_a_run_over_its_time_is_stopped_reported_and_leaves_no_process(tmp_path):
    pid = tmp_path / 'pid'
    stuck, flags = script_run(tmp_path, 'stuck', f'import os, time; open({str(pid)!r}, "w").write(str(os.getpid())); '
                                                 'time.sleep(600)')                 # its summary, then hangs
    outcomes = launch([stuck], launch_args('--time', '0.05'))                       # 3 seconds
    assert not outcomes[0].ok and outcomes[0].why.startswith('stopped before it finished: over --time')
    assert stored_run(stuck.result, flags) == (None, 'lacks keys a finished run has')  # not sealed: not done
    assert not alive(int(pid.read_text())), 'the command of a stopped run must not outlive it'


def test_a_launcher_killed_outright_leaves_no_run_behind(tmp_path):
    """SIGKILL to the launcher (reproduce.py), which can clean nothing up: its runs, forked by a server that
    outlives it while they run, notice that it is gone and die too."""
    pid = tmp_path / 'pid'
    sleeper = f'import os, time; open({str(pid)!r}, "w").write(str(os.getpid())); time.sleep(600)'
    launcher = subprocess.Popen([sys.executable, '-c', (
        f'import argparse, sys; sys.path.insert(0, {ROOT!r}); from experiments.runner import Run, launch; '
        f'launch([Run("stuck", ["-c", {sleeper!r}], "", {str(tmp_path / "stuck.log")!r})], '
        'argparse.Namespace(launcher="local", jobs=1, threads=1, time=None))')])
    deadline = time.monotonic() + 120
    while not (pid.exists() and pid.read_text()):
        assert launcher.poll() is None and time.monotonic() < deadline, 'the run never started'
        time.sleep(0.1)
    launcher.kill()
    launcher.wait()
    run = int(pid.read_text())
    for _ in range(100):
        if not alive(run):
            break
        time.sleep(0.1)
    assert not alive(run), 'a run must not outlive its launcher'


def test_what_the_forkserver_imports_starts_no_cuda():
    """The server imports PRELOAD once and forks every run from it; a CUDA driver started there would fail every
    run's first CUDA call on a GPU box. So importing them may not ask CUDA anything (not even whether it exists)."""
    probe = ('import torch\n'
             'def refuse(*a, **k): raise SystemExit("asked CUDA at import")\n'
             'torch.cuda.is_available = torch.cuda.device_count = torch.cuda.init = refuse\n'
             'torch._C._cuda_getDeviceCount = refuse\n'
             'from experiments.runner import PRELOAD\n'
             'for name in PRELOAD: __import__(name)\n'
             'assert not torch.cuda.is_initialized(); print("ok", PRELOAD)')
    done = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith('ok'), done.stdout + done.stderr


def alive(pid):
    """Whether process `pid` is running (a zombie, dead but not yet reaped, is not)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def test_a_local_run_is_its_command_as_python_runs_it_in_a_process_of_its_own(tmp_path, monkeypatch):
    """Forked from a server that imported torch before this test set anything: the launcher's environment as it
    is now, its thread count (a parallel op on two threads: it would hang if the server had started OpenMP's),
    the slot's GPU, the argv and __name__ of `python -c` and `python -m`, the working directory, new random
    states, the interpreter's exit codes; one run's state never reaches the next."""
    monkeypatch.setenv('NAD_TEST_VALUE', 'now')
    show = ('import json, os, random, sys, torch; torch.ones(1_000_000).add(1).sum(); print(json.dumps(['
            'os.environ["NAD_TEST_VALUE"], torch.get_num_threads(), os.environ["CUDA_VISIBLE_DEVICES"], sys.argv, '
            '__name__, os.getcwd(), os.getpid(), hasattr(torch, "mark"), torch.rand(1).item(), random.random()])); '
            'torch.mark = 1')
    runs = [Run(f'show{i}', ['-c', show, '--seed', str(i)], '', str(tmp_path / f'show{i}.log')) for i in range(2)]
    (tmp_path / 'data.json').write_text('{"a": 1}')
    runs += [Run('module', ['-m', 'json.tool', '--compact', str(tmp_path / 'data.json')], '',
                 str(tmp_path / 'module.log')),
             Run('message', ['-c', 'raise SystemExit("no such checkpoint")'], '', str(tmp_path / 'message.log')),
             Run('code', ['-c', 'import sys; sys.exit(3)'], '', str(tmp_path / 'code.log')),
             Run('error', ['-c', '1 / 0'], '', str(tmp_path / 'error.log'))]
    outcomes = {o.run.name: o for o in launch(runs, launch_args('--threads', '2', '--time', '1'))}
    assert {name: o.why for name, o in outcomes.items()} == {'show0': '', 'show1': '', 'module': '',
                                                             'message': 'exit 1', 'code': 'exit 3', 'error': 'exit 1'}
    seen = [json.loads(open(r.log).read().splitlines()[-1]) for r in runs[:2]]
    gpu = (runner.visible_gpus() or [''])[0]                                   # slot 0's: none on a CPU-only machine
    assert [s[:5] for s in seen] == [['now', 2, gpu, ['-c', '--seed', str(i)], '__main__'] for i in range(2)]
    assert all(os.path.samefile(s[5], ROOT) for s in seen)
    assert seen[0][6] != seen[1][6] != os.getpid() and not seen[0][7] and not seen[1][7]  # fresh state each
    assert seen[0][8] != seen[1][8] and seen[0][9] != seen[1][9]                          # and new random states
    assert open(runs[0].log).readline() == f"$ python {' '.join(runs[0].command)}\n"      # the log names it
    assert open(tmp_path / 'module.log').read().splitlines()[1:] == ['{"a":1}']
    assert open(tmp_path / 'message.log').read().endswith('no such checkpoint\n')
    assert 'ZeroDivisionError' in open(tmp_path / 'error.log').read()


def test_a_server_that_cannot_start_is_one_line(tmp_path):
    """A preload that fails on import (not just a missing module, which the server skips): the launcher stops
    with one line instead of an EOFError traceback."""
    (tmp_path / 'broken_preload.py').write_text('raise RuntimeError("broken on import")\n')
    done = subprocess.run([sys.executable, '-c', (
        f'import argparse, sys; sys.path.insert(0, {ROOT!r}); from experiments import runner; '
        'from utils.cli import run; runner.PRELOAD = ["broken_preload"]; '
        f'run(lambda: runner.launch([runner.Run("r", ["-c", "pass"], "", {str(tmp_path / "r.log")!r})], '
        'argparse.Namespace(launcher="local", jobs=1, threads=1, time=None)))')],
        capture_output=True, text=True, timeout=120, env={**os.environ, 'PYTHONPATH': str(tmp_path)})  # the server's
    assert done.returncode == 2, done.stderr
    assert "error: the runner's forkserver did not start r (EOFError" in done.stderr.splitlines()[-1]


def slurm_up():
    if shutil.which('sinfo') is None:
        return False
    done = subprocess.run(['sinfo', '-h', '-o', '%T'], capture_output=True, text=True)
    return done.returncode == 0 and ('idle' in done.stdout or 'mixed' in done.stdout)


SLURM = pytest.mark.skipif(not slurm_up(), reason='no Slurm cluster answers here (sinfo); sudo .ci/slurm-up starts one')


@pytest.mark.e2e
@SLURM
def test_a_grid_on_slurm_makes_exactly_what_the_local_launcher_made(grid, tmp_path):
    """Seed 0 of the local grid again on Slurm: fine-tuning (= the teacher) in one array, NAD in a second."""
    local, _ = grid
    # the local launcher leaves one run at a time to torch's own thread count: the same here
    threads = subprocess.run([sys.executable, '-c', 'import torch; print(torch.get_num_threads())'],
                             capture_output=True, text=True).stdout.strip()
    seeds = GRID.index('--seeds')
    flags = [*GRID[:seeds], '--seeds', '0', *GRID[seeds + 3:]]
    out = run_reproduce(tmp_path, *flags, '--launcher', 'slurm', '--threads', threads, '--time', '20',
                        '--cpus_per_run', str(min(int(threads), len(os.sched_getaffinity(0)))))
    assert out.count('as Slurm array') == 2 and 'reproduce: 2 runs made' in out
    for name in ('badnets_teacher_code_epochs1_test1000_seed0', 'badnets_nad_code_epochs1_test1000_seed0'):
        ours, theirs = (json.loads((root / 'results' / 'grid' / f'{name}.json').read_text())
                        for root in (tmp_path, local))
        metrics = [{k: v for k, v in run['after'].items() if k != 'seconds'} for run in (ours, theirs)]
        assert metrics[0] == metrics[1] and {'acc', 'asr', 'ra'} <= set(metrics[0])
        rows = []
        for root in (tmp_path, local):
            with open(root / 'results' / 'grid' / f'{name}.csv') as f:
                rows.append([{k: v for k, v in r.items() if k != 'seconds'} for r in csv.DictReader(f)])
        assert rows[0] == rows[1] and len(rows[0]) >= 1                   # the same per-epoch numbers
        assert (tmp_path / 'results' / 'grid' / f'{name}.log').exists()    # its log, next to its result


@SLURM
def test_a_cancelled_slurm_run_is_reported_and_the_others_finish(tmp_path):
    good, flags = script_run(tmp_path, 'good', 'print("trained")')
    # this one says which Slurm job it is, then hangs until it is cancelled
    marker = tmp_path / 'job_id'
    doomed, _ = script_run(tmp_path, 'doomed', f'import os, time; open({str(marker)!r}, "w").write(os.environ['
                                               f'"SLURM_ARRAY_JOB_ID"] + "_" + os.environ["SLURM_ARRAY_TASK_ID"]); '
                                               f'time.sleep(600)')

    def cancel():
        for _ in range(120):
            if marker.exists() and marker.read_text():
                subprocess.run(['scancel', marker.read_text()])
                return
            time.sleep(0.5)
    threading.Thread(target=cancel, daemon=True).start()
    outcomes = launch([doomed, good], launch_args('--launcher', 'slurm', '--cpus_per_run', '1', '--time', '5'))
    assert {o.run.name: o.ok for o in outcomes} == {'good': True, 'doomed': False}
    assert [o.why for o in outcomes if not o.ok] != ['']     # says why: killed by a signal, or stopped
    assert stored_run(good.result, flags)[0] is not None and stored_run(doomed.result, flags)[0] is None


def test_a_slurm_task_gone_from_the_queue_without_a_result_is_reported_not_awaited(tmp_path, monkeypatch):
    """Where Slurm keeps no accounting (sacct), submitit cannot tell that a task killed outright (SIGKILL, a
    lost node) will never write its result: the runner must, from squeue, and not wait for it."""
    import contextlib
    import types
    from experiments import runner

    class Job:
        job_id, paths = '7_0', types.SimpleNamespace(stderr=tmp_path / '7_0_log.err')
        cancelled = False

        def done(self):
            return False

        def result(self):
            raise AssertionError('waited for a result that will never come')

        def cancel(self, check=True):
            Job.cancelled = True

    class Executor:
        def update_parameters(self, **kw):
            pass

        def batch(self):
            return contextlib.nullcontext()

        def submit(self, *a):
            return Job()
    monkeypatch.setattr(runner, 'squeue', lambda array: set())                    # the array left the queue
    monkeypatch.setattr(runner, 'time', types.SimpleNamespace(sleep=lambda s: None))
    lost, _ = script_run(tmp_path, 'lost', '')
    seen = []
    outcomes = runner.slurm(Executor(), [lost], launch_args('--launcher', 'slurm'), 2, seen.append)
    assert [(o.run.name, o.ok) for o in outcomes] == [('lost', False)] and seen == outcomes
    assert outcomes[0].why.startswith('stopped before it finished') and not Job.cancelled
