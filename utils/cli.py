"""What every entry point does the same way: error handling, interruption, epoch lines, timing."""
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


def epoch_line(epoch, lr, loss, metrics, seconds):
    def text(value, form):
        return '-' if value is None else format(value, form)
    return (f"epoch {epoch:3d} | lr {lr:.5f} | loss {text(loss, '.4f')} | ACC {text(metrics['acc'], '6.2f'):>6} | "
            f"ASR {text(metrics['asr'], '6.2f'):>6} | RA {text(metrics.get('ra'), '6.2f'):>6} | {seconds:5.1f}s")


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
