"""experiments/runner.py: runs go through submitit (its local executor, and a real Slurm cluster where one answers); a
failed run is reported with its log and never stops the others; only a run that exited cleanly is sealed,
so an interrupted one is never taken for finished; the Slurm launcher makes exactly the local grid."""
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
from experiments.runner import Run, add_arguments, check_launch_arguments, launch, seal_result, stored_run
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
    stuck, flags = script_run(tmp_path, 'stuck', 'import time; time.sleep(600)')    # its summary, then hangs
    outcomes = launch([stuck], launch_args('--time', '0.05'))                       # 3 seconds
    assert not outcomes[0].ok and outcomes[0].why.startswith('stopped before it finished: over --time')
    assert stored_run(stuck.result, flags) == (None, 'lacks keys a finished run has')  # not sealed: not done
    left = subprocess.run(['pgrep', '-f', 'time.sleep\\(600\\)'], capture_output=True, text=True).stdout
    assert left == '', 'the command of a stopped run must not outlive it'


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
