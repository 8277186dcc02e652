"""What every entry point does the same way: error handling, interruption, --help, checks every flag list
passes, epoch lines, timing."""
import argparse
import copy
import math
import shlex
import signal
import sys
import time

from utils import UserError


def run(main):
    """Call main(); bad input ends with one line on stderr and exit code 2 (as argparse's own errors), Ctrl-C
    or SIGTERM with one line and exit code 1, after the pending writes have cleaned up their temp files."""
    signal.signal(signal.SIGTERM, _interrupt)  # a cluster's or a runner's stop: clean up as for Ctrl-C
    try:
        main()
    except UserError as e:
        print(f'error: {e}', file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit('interrupted: no partial checkpoint or result file was written')


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help of every script: the description as written, and each option's default shown once, added where
    its help does not already say it. Nothing is added for a switch (store_true) or a default of None: the
    help says what happens then."""

    def _format_action(self, action):
        value = action.default
        shown = value is not None and value is not False and value != [] and value != argparse.SUPPRESS
        if action.option_strings and action.nargs != 0 and shown and 'default' not in (action.help or '').lower():
            value = ' '.join(map(str, value)) if isinstance(value, (list, tuple)) else value
            action = copy.copy(action)
            action.help = f"{action.help + ' ' if action.help else ''}(default: {str(value).replace('%', '%%')})"
        return super()._format_action(action)


SEED_MAX = 2 ** 32 - 1  # numpy's seeds are 32-bit


def check_seed(seed, flag='--seed'):
    if not 0 <= seed <= SEED_MAX:
        raise UserError(f'{flag} {seed} must be in 0..{SEED_MAX}')


def check_finite(parser, args):
    """Refuse NaN and infinity in every float flag (argparse's float() accepts 'nan' and 'inf'), and seeds
    numpy cannot take (--seed, --seeds: 0..2**32-1). Every script's flags pass through here."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        for v in value if isinstance(value, list) else [value]:
            if action.type is float and v is not None and not math.isfinite(v):
                raise UserError(f'--{action.dest} {v} must be a finite number')
            if action.dest in ('seed', 'seeds') and v is not None:
                check_seed(v, f'--{action.dest}')
    return args


def plural(n, noun):
    """'1 epoch', '20 epochs': a count with its noun."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def epoch_line(epoch, lr, loss, metrics, seconds):
    """One line per epoch (epoch 0, before training, has no lr or loss: None). The lr in exponent form,
    always 8 wide: a fixed-point column rounded small rates (a cosine's or a warm-up's tail, 1e-6) to 0.00000."""
    def text(value, form):
        return '-' if value is None else format(value, form)
    return (f"epoch {epoch:3d} | lr {text(lr, '.2e'):>8} | loss {text(loss, '.4f')} | "
            f"ACC {text(metrics['acc'], '6.2f'):>6} | ASR {text(metrics['asr'], '6.2f'):>6} | "
            f"RA {text(metrics.get('ra'), '6.2f'):>6} | {seconds:5.1f}s")


def command_line(module):
    """The command that ran this process, as a user types it again: `python -m MODULE FLAGS` (under -m,
    sys.argv[0] is the module's file path). Recorded with what a generator makes."""
    return shlex.join(['python', '-m', module, *sys.argv[1:]])


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
