"""The one runner of every grid (reproduce.py's Table 1 and analyses, zoo.sweep, zoo.make): a run is a
command line (`python main.py ...`, `python train_badnet.py ...`, `python -m attacks.trojan ...`) and the
result it must leave; the caller skips a run whose result is stored and whole, and hands the rest to
`launch`, which executes them:

    --launcher local   (default) --jobs runs at once on this machine, each a process of its own, forked
                       from a server that has imported torch once (multiprocessing's forkserver: a run starts
                       in a tenth of a second instead of two); on a GPU box they are spread over the visible
                       GPUs (--jobs 8 on one GPU: 8 runs share it)
    --launcher slurm   one Slurm job array per batch of runs, through submitit (--partition, --time, --gpus_per_run,
                       --cpus_per_run, --slurm_array_parallelism, --slurm KEY=VALUE for anything else)

Each run's output goes to its log next to its result (results/grid/<run>.log for reproduce.py). A run that
fails, times out or is cancelled is reported with that log and never stops the others; its result is
not written, so running the grid again makes exactly what is missing. A run's result counts only once
it is sealed (`seal`: the flags that made it, the fingerprints of its files and a digest of it all,
written by the run's own job after the command exits cleanly), so a run interrupted mid-way is never
taken for a finished one.
"""
import dataclasses
import hashlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from typing import Callable, Optional

from utils import UserError
from utils.files import file_sha256, write_json

# The repository (this file's folder's parent): every command runs here; recorded paths are relative to it.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_arguments(parser):
    g = parser.add_argument_group('where the runs go')
    g.add_argument('--launcher', default='local', choices=['local', 'slurm'])
    g.add_argument('--jobs', type=int, default=1, help='local: runs at once (spread over the visible GPUs)')
    g.add_argument('--threads', type=int, default=None,
                   help="CPU threads per run (OMP_NUM_THREADS; default: torch's own for one run at a time, this "
                        "machine's cores / --jobs for more, --cpus_per_run on Slurm)")
    g.add_argument('--time', type=float, default=None,
                   help='minutes a run may take before it is stopped (default: no limit locally, 360 on Slurm)')
    g.add_argument('--partition', default=None, help="slurm: the partition (default: the cluster's)")
    g.add_argument('--gpus_per_run', type=int, default=0, help='slurm: GPUs per run')
    g.add_argument('--cpus_per_run', type=int, default=2, help='slurm: CPUs per run')
    g.add_argument('--slurm_array_parallelism', type=int, default=64, help='slurm: runs of an array at once')
    g.add_argument('--slurm', nargs='*', default=[], metavar='KEY=VALUE',
                   help='slurm: any other sbatch option, e.g. --slurm account=mylab mem=8G')
    return g


def check_launch_arguments(args):
    threads = 1 if args.threads is None else args.threads
    if min(args.jobs, args.cpus_per_run, args.slurm_array_parallelism, threads) < 1 or args.gpus_per_run < 0 or \
            (args.time is not None and not (args.time > 0 and math.isfinite(args.time))):
        raise UserError('--jobs, --cpus_per_run, --slurm_array_parallelism and --threads must be at least 1, '
                        '--gpus_per_run at least 0 and --time a positive number of minutes')
    if any('=' not in item for item in args.slurm):
        raise UserError(f"--slurm takes KEY=VALUE items (sbatch options), got {' '.join(args.slurm)}")


@dataclasses.dataclass
class Run:
    name: str
    command: list          # what follows `python`: a script or `-m module`, then its flags
    result: str            # the file it must leave (its caller decides whether a stored one counts)
    log: str               # where its output goes, next to its result
    seal: Optional[Callable] = None   # called by the run's job with the wall seconds once the command exits 0
    # (pickled to that job: a module-level function or a functools.partial of one, not a lambda)


@dataclasses.dataclass
class Outcome:
    run: Run
    ok: bool
    seconds: float
    why: str = ''          # what went wrong, for a run that failed


# --- a Slurm task: what a worker executes (submitit pickles it, with its Run, to the worker) ---------------

def execute(run, threads, gpu):
    """Run the command with its output in its log; seal its result if it exits 0. Returns (exit code, s).
    `gpu`: the CUDA device the run gets (None: the worker's own, e.g. Slurm's allocation)."""
    start = time.perf_counter()
    with open_log(run) as log:
        # A stop that raises here (submitit's handling of Slurm's signals) makes subprocess.run kill the command;
        # if the worker is killed outright first, the command gets SIGKILL from the kernel (die_with_worker).
        code = subprocess.run([sys.executable, *run.command], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env=run_environment(os.environ, threads, gpu), preexec_fn=die_with_worker()).returncode
    seconds = time.perf_counter() - start
    if code == 0 and run.seal is not None:
        run.seal(seconds)
    return code, seconds


def run_environment(environ, threads, gpu):
    """The environment a run's command gets: `environ` with unbuffered output, OMP_NUM_THREADS=threads where given
    and CUDA_VISIBLE_DEVICES=gpu where given (None: leave it as it is)."""
    env = dict(environ, PYTHONUNBUFFERED='1')
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    if gpu is not None:
        env['CUDA_VISIBLE_DEVICES'] = gpu
    return env


def open_log(run):
    """The run's log, next to its result, opened for writing with the command as its first line."""
    os.makedirs(os.path.dirname(os.path.abspath(run.log)), exist_ok=True)
    log = open(run.log, 'w')
    log.write(f"$ python {' '.join(run.command)}\n")
    log.flush()
    return log


def die_with_worker():
    """The command's preexec_fn: in its process before it starts, ask to be killed when this worker dies
    (Linux's PR_SET_PDEATHSIG), so that a stopped run never leaves its command running. libc is looked up
    here, in the worker; the forked child only calls it. None where there is no prctl (not Linux: the
    launcher's own stop still reaches the command)."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    worker = os.getpid()

    def arm():
        prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != worker:  # the worker died before the line above: do not start
            os._exit(1)
    return arm


# --- a local run: a process forked from a server that has already imported what every run imports ----------

# Imported once, by the forkserver, before it forks the first run: what a new interpreter spends most of its start
# on (`import torch`: 1.3 of the 1.4 s of `import main` on a 2-core CPU, 2.8 s on the H200 box). Third-party code
# only: the repository's own modules are imported by each run, so a run uses the code as it is when it starts,
# even while a long grid goes on. Importing them must neither start CUDA nor run a parallel op (both tested): the
# server forks every run, and neither CUDA nor OpenMP's threads survive a fork.
PRELOAD = ['torch', 'numpy', 'tqdm']


def execute_forked(run, threads, gpu, environ):
    """A local run, in a process the forkserver forked: the command run here as `python` runs it (its argv,
    `__name__`, working directory, environment, random states and exit code; atexit handlers aside), its output in
    its log, its result sealed if it exits 0. The process exits with the command's exit code. `environ`: the
    launcher's environment (the server's may be older); `gpu`: the CUDA device the run gets ('' for none)."""
    import numpy
    import torch                                        # the server's: imported already
    die_with_launcher()
    multiprocessing.set_start_method(None, force=True)  # a run's own processes start as a new interpreter's would
    random.seed()  # the server's random states are every run's: draw new ones, as a new interpreter does
    numpy.random.seed()
    torch.seed()
    os.environ.clear()
    os.environ.update(run_environment(environ, threads, gpu))  # CUDA reads CUDA_VISIBLE_DEVICES when it starts
    threads = os.environ.get('OMP_NUM_THREADS', '')
    if threads.isdigit():  # the server read OMP_NUM_THREADS when it imported torch: set it again
        torch.set_num_threads(int(threads))
    os.chdir(ROOT)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)  # as `python main.py` (the script's folder) and `python -m` (this folder) have it
    with open_log(run) as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
    sys.stdout = open(1, 'w', buffering=1, closefd=False)
    sys.stderr = open(2, 'w', buffering=1, closefd=False)
    start = time.perf_counter()
    code = run_command(run.command)
    if code == 0 and run.seal is not None:
        try:
            run.seal(time.perf_counter() - start)
        except Exception:  # noqa: BLE001 - what the run left cannot be sealed: a failed run, the reason in its log
            traceback.print_exc()
            code = 1
    for stream in (sys.stdout, sys.stderr):
        if not stream.closed:  # a command may close its stdout (json.tool does)
            stream.flush()
    sys.exit(code)


def run_command(command):
    """`python COMMAND` in this process (a script, `-m` and a module, or `-c` and code); returns the exit code the
    interpreter would: a SystemExit's code (its message on stderr and 1 for a message), a traceback and 1 for an
    error."""
    try:
        if command[0] == '-m':
            sys.argv = [command[1], *command[2:]]
            runpy.run_module(command[1], run_name='__main__', alter_sys=True)
        elif command[0] == '-c':
            sys.argv = ['-c', *command[2:]]
            sys.modules['__main__'] = module = types.ModuleType('__main__')  # what its classes pickle by
            exec(compile(command[1], '<string>', 'exec'), module.__dict__)
        else:
            sys.argv = list(command)
            runpy.run_path(os.path.join(ROOT, command[0]), run_name='__main__')
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - an error or Ctrl-C: as the interpreter, the traceback and exit 1
        traceback.print_exc()
        return 1
    return 0


def die_with_launcher():
    """Kill this forked run as soon as the launcher that started it dies, even by SIGKILL: a thread waits on the
    pipe multiprocessing keeps open from the launcher, which closes when it exits. (The run's parent, the
    forkserver, is no help: it lives while any run it forked does.)"""
    launcher = multiprocessing.parent_process()

    def watch():
        launcher.join()
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, daemon=True).start()


# --- launching a batch of runs ------------------------------------------------------------------------------

def check_slurm_client():
    """Slurm's client, before the first array is submitted (a grid whose runs are all stored needs none)."""
    missing = [tool for tool in ('sbatch', 'srun') if shutil.which(tool) is None]
    if missing:
        raise UserError(f"--launcher slurm needs Slurm's client on this machine ({' and '.join(missing)} not found "
                        "on PATH): run on the cluster's login node, or use --launcher local")


def launch(runs, args, on_done=None):
    """Execute `runs` (independent of each other) on args.launcher; returns their Outcomes in order of
    completion, calling on_done(outcome) as each finishes. Never raises for a run that fails; on an error
    or Ctrl-C of its own, the runs still going are cancelled."""
    runs = list(runs)
    if not runs:
        return []
    if args.launcher == 'local':
        threads = args.threads or (None if args.jobs == 1 else max(1, len(os.sched_getaffinity(0)) // args.jobs))
        return local(runs, args.jobs, threads, args.time, on_done)
    import submitit
    check_slurm_client()
    # A run over its time is reported, never requeued. The worker imports this module: put it on its path.
    executor = submitit.AutoExecutor(folder=os.path.join(ROOT, 'logs', 'submitit', '%j'), cluster='slurm',
                                     slurm_max_num_timeout=0)
    executor.update_parameters(timeout_min=math.ceil(args.time or 360),
                               slurm_setup=[f'export PYTHONPATH={shlex.quote(ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}'])
    return slurm(executor, runs, args, args.threads or args.cpus_per_run, on_done)


def local(runs, jobs, threads, minutes=None, on_done=None):
    """At most `jobs` runs at once, each forked from the forkserver (execute_forked); slot k gets visible GPU k
    mod their number, none on a CPU-only machine. A run over `minutes` is killed and reported as stopped."""
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload(PRELOAD)  # read when the server starts: this process's first forked run
    gpus, environ, limit = visible_gpus(), dict(os.environ), 60 * minutes if minutes else math.inf
    queue, running, done = list(runs), {}, []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                slot = min(set(range(jobs)) - set(running))
                run = queue.pop(0)
                print(f"$ python {' '.join(run.command)}", flush=True)
                gpu = gpus[slot % len(gpus)] if gpus else ''
                process = context.Process(target=execute_forked, args=(run, threads, gpu, environ), name=run.name)
                try:
                    process.start()
                except (EOFError, OSError) as e:  # the server died (a preload that fails to import): no run starts
                    raise UserError(f'the runner\'s forkserver did not start {run.name} ({type(e).__name__}: {e}); '
                                    f'its error is printed above') from None
                running[slot] = (run, process, time.monotonic())
            for slot, (run, process, start) in list(running.items()):
                seconds, code = time.monotonic() - start, process.exitcode
                if code is None and seconds <= limit:
                    continue
                del running[slot]
                if code is None:  # over its time
                    stop(process)
                    outcome = Outcome(run, False, seconds, STOPPED)
                else:
                    outcome = Outcome(run, code == 0, seconds, exit_reason(code))
                process.close()
                done.append(announce(outcome, on_done))
            if running:  # until a run ends, or a second passes (for --time)
                multiprocessing.connection.wait([process.sentinel for _, process, _ in running.values()], timeout=1)
    finally:  # an error or Ctrl-C here: the runs still going are stopped
        for _, process, _ in running.values():
            stop(process)
    return done


def stop(process):
    """SIGTERM (utils.cli.run stops the script cleanly: a half-written result is never left), then SIGKILL for
    a run that has not ended within 10 s."""
    process.terminate()
    process.join(10)
    if process.exitcode is None:
        process.kill()
        process.join()


def exit_reason(code):
    """What a command's exit code says, for a report: '' for 0."""
    return '' if code == 0 else f'exit {code}' if code > 0 else f'killed by {signal.Signals(-code).name}'


def slurm(executor, runs, args, threads, on_done=None):
    """One job array for the batch; results are collected as its tasks finish. A task that leaves the queue
    without a result (scancel, a node lost, a hard kill) is reported as stopped."""
    extra = dict(item.split('=', 1) for item in args.slurm)
    executor.update_parameters(cpus_per_task=args.cpus_per_run, slurm_array_parallelism=args.slurm_array_parallelism,
                               slurm_additional_parameters=extra,
                               **({'slurm_partition': args.partition} if args.partition else {}),
                               **({'gpus_per_node': args.gpus_per_run} if args.gpus_per_run else {}))
    try:
        with executor.batch():
            jobs = [executor.submit(execute, run, threads, None) for run in runs]
    except Exception as e:  # noqa: BLE001 - sbatch refused (no Slurm here, a partition's limits): one line
        raise UserError(f"Slurm did not take the runs: {' '.join(str(e).split())[:400]}") from None
    array = jobs[0].job_id.split('_')[0]
    print(f'submitted {len(runs)} runs as Slurm array {array}', flush=True)
    for run in runs:
        print(f"  {run.name}: $ python {' '.join(run.command)}", flush=True)
    pending, done, missing = dict(zip(jobs, runs)), [], {}
    try:
        while pending:
            queued = squeue(array)
            for job in list(pending):
                if job.done():
                    done.append(outcome_of(pending.pop(job), job, on_done))
                    continue
                # Three polls in a row out of the queue and no result (not just between squeue and its pickle):
                # stopped. Its result is not waited for: without Slurm's accounting submitit would wait forever.
                missing[job] = missing.get(job, 0) + 1 if queued is not None and job.job_id not in queued else 0
                if missing[job] > 2:
                    done.append(announce(Outcome(pending.pop(job), False, 0.0, STOPPED + f"; submitit's own log: "
                                                 f'{job.paths.stderr}'), on_done))
            time.sleep(2)
    finally:
        for job in pending:
            job.cancel(check=False)
    return done


def squeue(array):
    """The ids (<array>_<task>) of the array's tasks still in Slurm's queue; None if squeue cannot say."""
    try:
        out = subprocess.run(['squeue', '-h', '-r', '-o', '%i', '-j', array], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:  # an array that has left the queue entirely: Slurm answers "Invalid job id"
        return set() if 'Invalid job id' in out.stderr else None
    return set(out.stdout.split())


STOPPED = 'stopped before it finished: over --time, cancelled, or its worker died'


def outcome_of(run, job, on_done=None):
    from submitit.core.utils import FailedJobError, UncompletedJobError
    try:
        code, seconds = job.result()
        outcome = Outcome(run, code == 0, seconds, exit_reason(code))
    except FailedJobError:  # the job raised, or Slurm stopped it (over its time): its trace's last error says which
        errors = [line.strip() for line in (job.stderr() or '').splitlines()
                  if re.match(r'[\w.]+(Error|Exception|Interrupt)\b', line.strip())]
        outcome = Outcome(run, False, 0.0, f"the job raised {errors[-1] if errors else 'an error'}; "
                                           f"submitit's own log: {job.paths.stderr}")
    except UncompletedJobError:
        outcome = Outcome(run, False, 0.0, STOPPED + f"; submitit's own log: {job.paths.stderr}")
    return announce(outcome, on_done)


def announce(outcome, on_done=None):
    """Print a failure with its log, then tell the caller; a caller that cannot read the run's result makes
    it a failed run too."""
    run = outcome.run
    if not outcome.ok:
        print(f'  {run.name}: FAILED ({outcome.why}); its log: {run.log}', flush=True)
    if on_done is not None:
        try:
            on_done(outcome)
        except Exception as e:  # noqa: BLE001 - the caller could not read what the run left: a failed run
            outcome.ok, outcome.why = False, f'its result could not be read ({type(e).__name__}: {e})'
            print(f'  {run.name}: FAILED ({outcome.why}); its log: {run.log}', flush=True)
    return outcome


def visible_gpus():
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES names them (indices or UUIDs)."""
    try:
        import torch
        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no CUDA build, no driver: no GPU
        return []
    named = [d for d in os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',') if d.strip()]
    return named[:count] if named else [str(i) for i in range(count)]


def report_failures(outcomes):
    """Raise one line naming the failed runs and their logs (the rest of the grid ran)."""
    failed = [o for o in outcomes if not o.ok]
    if failed:
        logs = '; '.join(f'{o.run.name} ({o.why}): {o.run.log}' for o in failed[:5])
        raise UserError(f"{len(failed)} run(s) failed, the others finished; run the same command again to make "
                        f"what is missing. {logs}{' ...' if len(failed) > 5 else ''}")


# --- the skip rule: a stored result counts when it is whole and was made with these flags -------------------

def digest(summary):
    """sha256 of a summary's content (without its own digest): any later edit changes it."""
    body = {k: v for k, v in summary.items() if k != 'digest'}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def seal(summary, path):
    """Record the fingerprints of the run's CSV and model, and the summary's own digest, then write it."""
    summary['csv_sha256'] = file_sha256(os.path.splitext(path)[0] + '.csv')
    model = summary.get('checkpoint')
    summary['checkpoint_sha256'] = file_sha256(os.path.join(ROOT, model)) if model else None
    summary['digest'] = digest(summary)
    write_json(path, summary)


def seal_result(path, flags, seconds):
    """What a run's job does when main.py or train_badnet.py exits 0: add the flags and wall time to the
    summary the script wrote at `path`, and seal it."""
    with open(path) as f:
        summary = json.load(f)
    summary['flags'], summary['wall_seconds'] = flags, seconds
    seal(summary, path)


def stored_run(path, flags, need_model=False, student_recorded=False):
    """(summary, None) when the run stored at `path` is whole and was made with exactly these flags from
    the student checkpoint as it is now (student_recorded: the caller checks the student against the record
    of the run that makes it, the model file being needed only to make a run); else
    (None, why it is not done), why being None when nothing is stored. Never raises: an unreadable, edited
    or inconsistent run is simply made again."""
    if not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError) as e:
        return None, f'is unreadable ({type(e).__name__})'
    if not isinstance(summary, dict):
        return None, f'is not a JSON object (a {type(summary).__name__})'
    result = summary.get('after') or summary.get('final')
    if not isinstance(result, dict) or not all(isinstance(result.get(k), (int, float)) for k in ('acc', 'asr')) \
            or not isinstance(summary.get('config'), dict) or 'digest' not in summary:
        return None, 'lacks keys a finished run has'
    if summary['digest'] != digest(summary):
        return None, 'was edited after it was made'
    if summary.get('csv_sha256') != file_sha256(os.path.splitext(path)[0] + '.csv'):
        return None, 'and its CSV disagree'
    if summary.get('flags') != flags:
        return None, 'was made with other flags'
    if not student_recorded and not same_student(summary):
        return None, 'was made from another student checkpoint'
    teacher = summary.get('teacher_checkpoint')
    if isinstance(teacher, dict) and os.path.isfile(os.path.join(ROOT, str(teacher.get('path')))) and \
            file_sha256(os.path.join(ROOT, str(teacher.get('path')))) != teacher.get('sha256'):
        return None, 'was taught by a teacher that has changed since'
    if need_model and (not summary.get('checkpoint') or summary.get('checkpoint_sha256') is None or
                       file_sha256(os.path.join(ROOT, summary['checkpoint'])) != summary['checkpoint_sha256']):
        return None, f"has no model {summary.get('checkpoint')} here, or another one"
    return summary, None


def same_student(summary):
    """Whether the student checkpoint a main.py summary records is still the one at its path."""
    record = summary.get('student_checkpoint')
    if record is None:  # a train_badnet.py run: its flags say everything
        return True
    if not isinstance(record, dict) or not isinstance(record.get('path'), str):
        return False
    return record.get('sha256') is not None and file_sha256(os.path.join(ROOT, record['path'])) == record['sha256']
