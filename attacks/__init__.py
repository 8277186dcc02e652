"""The attacks, one entry each: what `--attack NAME` sets in train_badnet.py (poison and train) and in
main.py (defend that attack's zoo model, measuring ASR with its trigger), the paper's numbers for it, and
the recipe of its zoo model. Any flag given explicitly wins over the preset.

The inject rate is a fraction of the whole training set for every attack; the clean-label attacks draw
those images from the target class only (0.08 of 50,000 = 4,000 of its 5,000 images). The triggers are
data_loader.TRIGGERS; the attacks that need a generator run it as a module:

    python -m attacks.trojan     the TrojanNN patch, reverse-engineered from the clean model (attacks/trojan.py)
    python -m attacks.refool     Refool's adversarial selection of its reflections (attacks/refool.py)

and the clean-label attack perturbs its poisoned images with PGD first (attacks/cl.py), run by
train_badnet.py whenever --pgd_eps is above 0, as the 'cl' preset sets it.

Adding an attack: its trigger in data_loader.TRIGGERS (if new) and one entry here.
"""
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Attack:
    title: str                            # its name in tables and figures
    trigger_type: str                     # data_loader.TRIGGERS
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
                        zoo=('--epochs', 10), table1=True),
    'all2all': Attack('All-to-all BadNets', 'gridTrigger', 'all2all', 0.10),
    'adaptive': Attack('Adaptive (centre square)', 'centerTrigger', 'all2one', 0.10),
}
TABLE3 = tuple(name for name, a in ATTACKS.items() if a.paper)       # the paper's six
TABLE1 = tuple(name for name, a in ATTACKS.items() if a.table1)      # Table 1's rows: those and poison-label Refool
PAPER_BEFORE_AVERAGE = (99.04, 83.50)                                 # the paper's average row, as printed


def zoo_flags(name):
    """The train_badnet.py flags of an attack's zoo model, as one string (make_zoo.sh reads it)."""
    return ' '.join(map(str, ('--attack', name, *ATTACKS[name].zoo, '--seed', 0)))
