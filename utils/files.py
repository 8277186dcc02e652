"""Result files written atomically (a temp file beside each, then renamed), so an interrupted run never
leaves a half-written file, and their sha256 fingerprints. No torch here: the runner's jobs import it."""
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import signal
import socket
import tempfile
import threading

try:
    import fcntl
except ImportError:  # Windows: no flock; the renames are still ordered, only not locked
    fcntl = None

from utils import UserError


def atomic_write(path, write):
    """Write one file atomically; `write` is bytes or a function of the open binary file."""
    write_together([(path, write)])


def write_together(items):
    """Write several files as one unit: each to a temp file beside it (a unique name per writer), then all
    renamed into place in the given order (put the file that marks the unit as done, a run's JSON, last).
    The renames run under one guard: Ctrl-C and SIGTERM wait until they are done, and a lock on each folder
    keeps two writers of the same files from interleaving theirs, so the unit lands whole or not at all.
    An error, Ctrl-C or SIGTERM before the renames leaves none of the files and no temp file; a failed
    rename takes back the ones already made. An OS error (a full disk, a folder that became read-only) is
    one UserError naming the file. Only a SIGKILL between two renames can leave a mix, whose recorded
    fingerprints disagree: runner.stored_run treats it as a run not done. Temp files of killed processes
    are removed by the next write into the same folder."""
    temps, path = [], None
    try:
        for path, write in items:
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            remove_stale_temps(folder)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.tmp-{HOST}-{os.getpid()}-')
            temps.append(tmp)
            with os.fdopen(fd, 'wb') as f:
                f.write(write) if isinstance(write, bytes) else write(f)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        path = None
        rename_all(temps, [p for p, _ in items])
    except OSError as e:
        path = path or e.filename2 or e.filename  # os.replace names its source and target
        raise UserError(f'could not write {path} ({e.strerror or type(e).__name__}): nothing was saved') from None
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def rename_all(temps, paths):
    """os.replace each temp file onto its path, every folder locked first (taken in one order, so two writers
    never wait on each other; Ctrl-C still works while waiting), then with Ctrl-C and SIGTERM held back. A
    failed rename removes the files already renamed; their earlier versions, if any, are gone with them."""
    existed = any(os.path.exists(p) for p in paths)
    with contextlib.ExitStack() as locks:
        for folder in sorted({os.path.realpath(os.path.dirname(os.path.abspath(p))) for p in paths}):
            locks.enter_context(folder_lock(folder))
        with signals_held():
            done = []
            try:
                for tmp, path in zip(temps, paths):
                    os.replace(tmp, path)
                    done.append(path)
            except OSError as e:
                for path in done:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                if existed:
                    e.strerror = f"{e.strerror}; earlier files of this run's names were replaced and are gone too"
                raise


@contextlib.contextmanager
def signals_held():
    """Hold back Ctrl-C and SIGTERM: their handlers run when the block ends. (A signal mask would not do:
    it is per thread, and torch's threads would still take the signal and make Python raise at once.)"""
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: one set outside Python
        for s in caught:
            if callable(previous[s]):
                previous[s](s, None)
            elif previous[s] == signal.SIG_DFL:
                os.kill(os.getpid(), s)


@contextlib.contextmanager
def folder_lock(folder):
    """An exclusive flock on the folder itself (no lock file left behind), where the platform and the file
    system allow one; where they do not (no flock, a folder that cannot be opened for reading, a network file
    system without locks), the files are still renamed, unlocked: a lock must never cost a finished run."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        fd = None
    try:
        if fcntl is not None and fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def write_run(model_path, model, stem, rows, summary):
    """A finished run's files as one unit: the model (checkpoint bytes), <stem>.csv (rows) and <stem>.json
    (summary, with the sha256 of the other two), the JSON last: it marks the run as done."""
    table = csv_bytes(rows)
    summary = {**summary, 'checkpoint': model_path, 'checkpoint_sha256': sha256(model), 'csv_sha256': sha256(table)}
    write_together([(model_path, model), (stem + '.csv', table), (stem + '.json', json_bytes(summary))])


# Temp files are named for their writer, so that a later write can tell a dead writer's from a live one's
# (only on this host: on a shared file system another node's process ids mean nothing here).
HOST = re.sub(r'[^A-Za-z0-9]', '', socket.gethostname()) or 'host'


def remove_stale_temps(folder):
    """Delete `.tmp-<host>-<pid>-*` files of this host's processes that no longer run (a SIGKILL skips
    every cleanup)."""
    for name in os.listdir(folder):
        match = re.fullmatch(rf'\.tmp-{HOST}-(\d+)-.+', name)
        if match and not process_alive(int(match[1])):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def json_bytes(obj):
    return (json.dumps(obj, indent=2, default=str) + '\n').encode()


def csv_bytes(rows):
    """A list of dicts as CSV; the columns are every key met, in order (missing cells empty)."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def write_json(path, obj):
    atomic_write(path, json_bytes(obj))


def write_csv(path, rows):
    atomic_write(path, csv_bytes(rows))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    """sha256 of a file's bytes (a checkpoint's or result's fingerprint), or None if it cannot be read."""
    try:
        with open(path, 'rb') as f:
            return hashlib.file_digest(f, 'sha256').hexdigest()
    except OSError:
        return None
