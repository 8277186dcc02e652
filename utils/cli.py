"""What every entry point does the same way: error handling, set-up, test loaders, epoch lines."""
import signal
import sys
import time

from data_loader import DATA_ROOT, BatchLoader, DatasetBD, load_dataset
from utils import UserError
from utils.runtime import autocast_dtype, resolve_device, seed_everything


def run(main):
    """Call main(); bad input, Ctrl-C or SIGTERM ends with one line on stderr and a non-zero exit, after
    the pending writes have cleaned up their temp files."""
    signal.signal(signal.SIGTERM, _interrupt)  # a cluster's or a runner's stop: clean up as for Ctrl-C
    try:
        main()
    except UserError as e:
        sys.exit(f'error: {e}')
    except KeyboardInterrupt:
        sys.exit('interrupted: no partial checkpoint or result file was written')


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def setup(args):
    """Seed, pick the device and precision, load the dataset. Returns (device, amp_dtype, data)."""
    seed_everything(args.seed)
    device = resolve_device(args.device)
    amp_dtype = autocast_dtype(device, args.amp)
    data, num_classes = load_dataset(args.dataset, args.data_root or DATA_ROOT)
    if num_classes != args.num_classes:
        raise UserError(f'--num_classes {args.num_classes} does not match {args.dataset} ({num_classes} classes)')
    print(f'device {device}, precision {amp_dtype or "float32"}, seed {args.seed}', flush=True)
    return device, amp_dtype, data


def test_loaders(args, data, device):
    """The full clean test set (ACC) and the triggered non-target test set (ASR, and RA by its true labels)."""
    x, y = data['test']
    backdoor = DatasetBD(x, y, args.trigger_type, args.target_type, args.target_label, mode='test',
                         num_classes=args.num_classes, trigger_alpha=getattr(args, 'trigger_alpha', None))
    clean_loader = BatchLoader(x, y, args.eval_batch_size, device)
    backdoor_loader = BatchLoader(backdoor.x, backdoor.y, args.eval_batch_size, device, true_y=backdoor.true_y)
    return clean_loader, backdoor_loader


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
