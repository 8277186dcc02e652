"""The attacks, one entry each: what `--attack NAME` sets in train_badnet.py (poison and train) and in
main.py (defend that attack's zoo model, measuring ASR with its trigger), the paper's numbers for it, and
the recipe of its zoo model. Any flag given explicitly wins over the preset.

The inject rate is a fraction of the whole training set for every attack; the clean-label attacks draw
those images from the target class only (0.08 of 50,000 = 4,000 of its 5,000 images). The triggers are
data_loader.TRIGGERS and those made from an artefact (ARTEFACT_TRIGGERS); `build_trigger` makes any of
them. The attacks that need a generator run it as a module:

    python -m attacks.trojan     the TrojanNN patch, reverse-engineered from the clean model (attacks/trojan.py)
    python -m attacks.refool     Refool's adversarial selection of its reflections (attacks/refool.py)

and the clean-label attack perturbs its poisoned images with PGD first (attacks/cl.py), run by
train_badnet.py whenever --pgd_eps is above 0, as the 'cl' preset sets it.

Adding an attack: its trigger in data_loader.TRIGGERS, or a builder in ARTEFACT_TRIGGERS if it is made from a
file (if new), and one entry here.
"""
from dataclasses import dataclass, field
from typing import Optional

from data_loader import DATA_ROOT, TRIGGERS, get_trigger
from utils import UserError
from utils.checkpoint import add_trust_checkpoint
from utils.paths import add_replace_shipped


@dataclass(frozen=True)
class Attack:
    title: str                            # its name in tables and figures
    trigger_type: str                     # TRIGGER_NAMES
    target_type: str                      # all2one, all2all or cleanLabel
    inject_portion: float                 # of the whole training set
    flags: dict = field(default_factory=dict)  # other train_badnet.py defaults it sets (cl: its PGD)
    zoo: tuple = ()                       # train_badnet.py flags that made its zoo model (with --attack, --seed 0)
    paper: Optional[tuple] = None         # the paper's Table 1 "Before" (ASR, ACC): the Table 3 attacks
    table1: bool = False                  # a row of reproduce.py's Table 1

    def preset(self):
        """The flag defaults `--attack` sets (target label 0, as in the paper's Table 3)."""
        return {'trigger_type': self.trigger_type, 'target_type': self.target_type,
                'inject_portion': self.inject_portion, 'target_label': 0, **self.flags}


ATTACKS = {
    'badnets': Attack('BadNets', 'gridTrigger', 'all2one', 0.10, zoo=('--epochs', 15),
                      paper=(100, 85.65), table1=True),
    'trojan': Attack('Trojan', 'trojanNNTrigger', 'all2one', 0.05, zoo=('--epochs', 8),
                     paper=(100, 81.24), table1=True),
    'blend': Attack('Blend', 'randomPixelTrigger', 'all2one', 0.10, zoo=('--epochs', 20),
                    paper=(99.97, 84.95), table1=True),
    # The grid at all four corners, as Turner et al. do so that the trigger survives horizontal flips
    # (nearly: in the original layout a flipped grid lands one pixel off; docs/ZOO.md).
    'cl': Attack('CL', 'fourCornerTrigger', 'cleanLabel', 0.08, flags={'pgd_eps': 0.15}, zoo=('--epochs', 10),
                 paper=(99.21, 82.43), table1=True),
    'sig': Attack('SIG', 'sigTrigger', 'cleanLabel', 0.08,
                  zoo=('--epochs', 15, '--weight_decay', 1e-4, '--cutout_length', 16), paper=(99.91, 84.36), table1=True),
    'refool': Attack('Refool (clean-label)', 'refoolTrigger', 'cleanLabel', 0.08, zoo=('--epochs', 10),
                     paper=(95.16, 82.38), table1=True),
    # Refool with poisoned labels, as BackdoorBench and BackdoorBox run it on CIFAR-10 (clean-label Refool
    # implants only 25-33% here): 8% of the whole training set, any class, reflected and relabelled.
    'refool_pl': Attack('Refool (poison-label; not in the paper)', 'refoolTrigger', 'all2one', 0.08,
                        zoo=('--epochs', 20), table1=True),
    'all2all': Attack('All-to-all BadNets', 'gridTrigger', 'all2all', 0.10),
    'adaptive': Attack('Adaptive (centre square)', 'centerTrigger', 'all2one', 0.10),
}
TABLE3 = tuple(name for name, a in ATTACKS.items() if a.paper)       # the paper's six
TABLE1 = tuple(name for name, a in ATTACKS.items() if a.table1)      # Table 1's rows: those and poison-label Refool
PAPER_BEFORE_AVERAGE = (99.04, 83.50)                                 # the paper's average row, as printed


def zoo_flags(name):
    """The train_badnet.py flags of an attack's zoo model (`python -m zoo.make` runs them)."""
    return [str(f) for f in ('--attack', name, *ATTACKS[name].zoo, '--seed', 0)]


# Triggers made from an artefact, read once when the trigger is built (from the data root given). The
# modules are imported only then: `python -m attacks.<name>` must not find itself already imported.
def _trojan_nn(data_root):
    from attacks import trojan
    return trojan.nn_trigger()                       # the patch in triggers/trojan_WRN-16-1.pt


def _refool_selected(data_root):
    from attacks import refool
    return refool.selected_trigger(data_root)       # triggers/refool_WRN-16-1.pt picks among CIFAR-10 images


def _refool_candidates(data_root):
    from attacks import refool
    return refool.candidates_trigger(data_root)


ARTEFACT_TRIGGERS = {'trojanNNTrigger': _trojan_nn, 'refoolTrigger': _refool_selected,
                     'refoolCandidatesTrigger': _refool_candidates}
TRIGGER_NAMES = (*TRIGGERS, *ARTEFACT_TRIGGERS)


def check_trigger_name(name):
    """A UserError unless `name` is a trigger (config checks the flags with it before any work)."""
    if name not in TRIGGER_NAMES:
        raise UserError(f"unknown trigger '{name}' (choose from {', '.join(TRIGGER_NAMES)})")


def build_trigger(name, alpha=None, data_root=None):
    """The trigger function `name` (uint8 NCHW batch -> triggered batch). `alpha` overrides the blend ratio of
    the triggers that blend; Refool's reflections are CIFAR-10 images read from `data_root`."""
    check_trigger_name(name)
    if name in ARTEFACT_TRIGGERS:
        return ARTEFACT_TRIGGERS[name](data_root or DATA_ROOT)
    return get_trigger(name, alpha)


def trigger_for(args):
    """The trigger a run's flags name (--trigger_type, --trigger_alpha, --data_root)."""
    return build_trigger(args.trigger_type, getattr(args, 'trigger_alpha', None), getattr(args, 'data_root', None))


def add_generator_arguments(p):
    """The flags the two artefact generators share (python -m attacks.trojan, python -m attacks.refool)."""
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--dataset', default='CIFAR10', choices=['CIFAR10'])
    p.add_argument('--data_root', default=None, help='dataset cache folder (default: ./data)')
    p.add_argument('--num_classes', type=int, default=10)
    add_trust_checkpoint(p)
    add_replace_shipped(p)
    return p
