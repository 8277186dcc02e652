"""Build the model zoo of README "The zoo": a clean WRN-16-1, the Trojan trigger reverse-engineered from it,
a robust WRN-16-1 (fast adversarial training) for the clean-label attack's PGD, Refool's reflection
selection, then for each attack a backdoored WRN-16-1 trained from scratch (weight/s_net/) and its
fine-tuned teacher (weight/t_net/).

    python -m zoo.make                            # everything missing, one run at a time
    python -m zoo.make --jobs 4                   # independent steps side by side (e.g. on a GPU box)
    python -m zoo.make --attacks sig cl           # only these attacks' models, and what they need
    python -m zoo.make --launcher slurm --partition gpu --gpus_per_run 1
    python -m zoo.make --dry_run                  # the commands, in order

Resumable: a step whose output exists is not made again (delete a student and its teacher to re-make an
attack). Steps run through the runner (experiments/runner.py) in batches: every step whose needs exist,
side by side (--jobs), then the steps those unblocked; each one's output goes to logs/zoo/<step>.log. Each attack's
recipe (its epochs and any other flag) is its entry in attacks/__init__.py (`zoo`), what `python -m zoo.sweep`
picked (docs/ZOO.md). History: cl (its PGD against the robust model since) and trojan (8 epochs) were
trained on the CPU after the first GPU sweep; refool on a lent H200 in a second one, after Refool's
selection of its reflections; sig, with Cutout, on the CPU after both.
Compute: the shipped models were trained on a lent H100 (about 2 s an epoch alone); on a 2-core CPU an
epoch takes 40-50 s with bfloat16 (AVX512-BF16/AMX) or 90-160 s in float32 (AVX2).
"""
import argparse
import dataclasses
import os

from attacks import zoo_flags
from experiments.runner import ROOT, Run, add_arguments, check_launch_arguments, launch, report_failures
from utils.cli import HelpFormatter, check_finite, run

CLEAN = 'weight/clean/WRN-16-1-clean.pth.tar'
ROBUST = 'weight/clean/WRN-16-1-robust.pth.tar'              # the cl attack's --pgd_model (its default)
CANDIDATES = 'weight/refool/WRN-16-1-refool-candidates.pth.tar'   # Refool poisoned with all candidate reflections
TROJAN_TRIGGER, REFOOL_SELECTION = 'triggers/trojan_WRN-16-1.pt', 'triggers/refool_WRN-16-1.pt'
ZOO_ATTACKS = ('badnets', 'trojan', 'blend', 'cl', 'sig', 'refool', 'refool_pl')
# What a backdoored model needs before it can be trained (its trigger's artefact, or the PGD model).
NEEDS = {'trojan': [TROJAN_TRIGGER], 'cl': [ROBUST], 'refool': [REFOOL_SELECTION], 'refool_pl': [REFOOL_SELECTION]}
# These commands make the files the repository ships: they name every output and pass --replace_shipped.
SHIP = ['--log_root', 'results', '--replace_shipped']


@dataclasses.dataclass
class Step:
    name: str
    output: str
    command: list
    needs: tuple = ()


def steps(attacks):
    """Every step the attacks need, in the order the zoo was built."""
    shared = [
        Step('clean', CLEAN, ['train_badnet.py', '--attack', 'clean', '--epochs', '10', '--seed', '0',
                              '--output', CLEAN, *SHIP]),
        Step('trojan_trigger', TROJAN_TRIGGER, ['-m', 'attacks.trojan', '--replace_shipped'], (CLEAN,)),
        Step('robust', ROBUST, ['train_badnet.py', '--attack', 'clean', '--adv_eps', '0.0314', '--epochs', '5',
                                '--seed', '0', '--output', ROBUST, *SHIP]),
        Step('refool_candidates', CANDIDATES, ['train_badnet.py', '--attack', 'refool', '--trigger_type',
                                               'refoolCandidatesTrigger', '--epochs', '10', '--seed', '0',
                                               '--output', CANDIDATES, *SHIP]),
        Step('refool_selection', REFOOL_SELECTION, ['-m', 'attacks.refool', '--model', CANDIDATES, '--replace_shipped'],
             (CANDIDATES,)),
    ]
    per_attack = []
    for attack in attacks:
        student, teacher = f'weight/s_net/WRN-16-1-{attack}.pth.tar', f'weight/t_net/WRN-16-1-{attack}-T.pth.tar'
        per_attack += [
            Step(attack, student, ['train_badnet.py', *zoo_flags(attack), '--output', student, *SHIP],
                 tuple(NEEDS.get(attack, ()))),
            Step(f'teacher_{attack}', teacher, ['main.py', '--attack', attack, '--make_teacher', '--protocol',
                                                'paper-lr0.01', '--t_model', teacher, *SHIP], (student,))]
    made_by, needed = {s.output: s for s in shared}, set()
    todo = [n for s in per_attack for n in s.needs]
    while todo:  # the shared steps the attacks need, and what those need
        output = todo.pop()
        if output in made_by and output not in needed:
            needed.add(output)
            todo += made_by[output].needs
    return [s for s in shared if s.output in needed] + per_attack


def exists(path):
    return os.path.isfile(os.path.join(ROOT, path))


def get_arguments():
    p = argparse.ArgumentParser(prog='python -m zoo.make', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--attacks', nargs='+', default=list(ZOO_ATTACKS), choices=ZOO_ATTACKS)
    p.add_argument('--dry_run', action='store_true', help='print the commands of the missing steps, run nothing')
    add_arguments(p)
    return p


def main():
    parser = get_arguments()
    args = check_finite(parser, parser.parse_args())
    check_launch_arguments(args)
    plan, failed, outcomes = steps(args.attacks), set(), []
    for s in plan:
        print(f'have {s.output}' if exists(s.output) else f'to make: {s.output}')
    if args.dry_run:
        for s in plan:
            if not exists(s.output):
                print(f"$ python {' '.join(s.command)}")
        return
    while True:  # every step whose needs exist, side by side; then what they unblocked
        ready = [s for s in plan if not exists(s.output) and s.name not in failed and all(map(exists, s.needs))]
        if not ready:
            break
        done = launch([Run(s.name, s.command, os.path.join(ROOT, s.output),
                           os.path.join(ROOT, 'logs', 'zoo', f'{s.name}.log')) for s in ready], args)
        for o in done:
            if o.ok and not os.path.isfile(o.run.result):
                o.ok, o.why = False, f'exited 0 but left no {o.run.result}'
        failed |= {o.run.name for o in done if not o.ok}
        outcomes += done
    report_failures(outcomes)
    missing = [s.output for s in plan if not exists(s.output)]
    made = sum(o.ok for o in outcomes)
    print(f"zoo: {made} steps made; " + (f"missing: {' '.join(missing)}" if missing else 'complete'))


if __name__ == '__main__':
    run(main)
