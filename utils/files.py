"""Result files written atomically (a temp file beside each, then renamed), so an interrupted run never
leaves a half-written file, and their sha256 fingerprints. No torch here: the runner's jobs import it."""
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import socket
import tempfile


def atomic_write(path, write):
    """Write one file atomically; `write` is bytes or a function of the open binary file."""
    write_together([(path, write)])


def write_together(items):
    """Write several files as one unit: each to a temp file beside it, then all renamed into place in the
    given order (put the file that marks the unit as done, a run's JSON, last). An error, Ctrl-C or
    SIGTERM before the renames leaves none of them and no temp file; a kill between two renames leaves
    files whose recorded fingerprints disagree, which runner.stored_run treats as a run not done. Temp files
    of killed processes are removed by the next write into the same folder."""
    temps = []
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
        for tmp, (path, _) in zip(temps, items):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


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
