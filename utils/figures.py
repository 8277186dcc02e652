"""Figures: matplotlib without a display (servers, CI), saved atomically like every other result file."""
from utils.files import atomic_write


def pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, dpi=120):
    """Write `fig` as a PNG at `path` (never half-written) and free it."""
    atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=dpi, bbox_inches='tight'))
    pyplot().close(fig)
