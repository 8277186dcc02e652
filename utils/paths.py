"""Where a script may read and write: input files that exist, output folders that can be written, and the
files the repository ships, which a run replaces only on purpose (--replace_shipped). Every entry point checks
its path flags with these before any work; config.check_paths does it for main.py and train_badnet.py."""
import functools
import os
import subprocess
import tempfile

from utils import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # the repository: this folder's parent
SHIPPED = tuple(os.path.join(ROOT, d) for d in ('weight/s_net', 'weight/t_net', 'weight/clean', 'weight/refool',
                                                'triggers', 'results'))


def is_shipped(path):
    """Whether `path` is a file the repository ships: one git tracks (a run's own untracked output is not),
    or, outside a git checkout (an unpacked archive), any file in the folders whose files are shipped."""
    path = os.path.realpath(path)
    if not os.path.isfile(path) or not path.startswith(ROOT + os.sep):
        return False
    if in_git_checkout():
        tracked = git('ls-files', '--error-unmatch', '--', path)
        if tracked is not None and tracked.returncode in (0, 1):  # 1: not tracked
            return tracked.returncode == 0
    return any(path.startswith(d + os.sep) for d in SHIPPED)


def git(*argv):
    """`git -C ROOT ARGV` (paths taken literally, never as patterns), or None where git cannot run."""
    try:
        return subprocess.run(['git', '--literal-pathspecs', '-C', ROOT, *argv], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=None)
def in_git_checkout():
    """Whether ROOT is the top of its own git checkout (not an unpacked archive inside someone else's)."""
    top = git('rev-parse', '--show-toplevel')
    return top is not None and top.returncode == 0 and os.path.realpath(top.stdout.strip()) == ROOT


NAME_MAX = 255     # bytes in one file name on the usual file systems


def writable_dir(path, flag):
    """Create `path` if needed and check that a file can be written in it, or raise one clear UserError."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f'{flag} {path} is not a writable directory ({e.strerror or type(e).__name__})') from None


def input_file(path, flag):
    if path is not None and not os.path.isfile(path):
        raise UserError(f"{flag} {path}: {'a directory, not a file' if os.path.isdir(path) else 'no such file'}")


def output_file(path, flag, args):
    """The folder of an output file must be writable, and a shipped file is replaced only on purpose."""
    if os.path.isdir(path):
        raise UserError(f'{flag} {path} is a directory; give a file path')
    if len(os.path.basename(path).encode()) > NAME_MAX:
        raise UserError(f'{flag}: the file name {os.path.basename(path)[:40]}... is longer than {NAME_MAX} bytes')
    if is_shipped(path) and not args.replace_shipped:
        raise UserError(f'{flag} {path} is a file the repository ships: write elsewhere, or pass --replace_shipped '
                        'to regenerate it on purpose')
    writable_dir(os.path.dirname(os.path.abspath(path)), flag + "'s folder")


def add_replace_shipped(group):
    """The flag output_file reads: a script that writes a shipped file (a documented command) passes it."""
    group.add_argument('--replace_shipped', action='store_true',
                       help='allow this run to replace a file the repository ships (weight/s_net, weight/t_net, '
                            'weight/clean, weight/refool, triggers/, results/): for the documented commands that '
                            'make them')
