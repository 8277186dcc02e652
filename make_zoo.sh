#!/usr/bin/env bash
# Build the model zoo of README "The zoo": a clean WRN-16-1, the Trojan trigger reverse-engineered
# from it, a robust WRN-16-1 (fast adversarial training) for the clean-label attack's PGD, then for
# each of the paper's six Table 3 attacks a backdoored WRN-16-1 trained from scratch (weight/s_net/)
# and its fine-tuned teacher (weight/t_net/). Resumable: a model that exists is not made
# again (delete a student and its teacher to re-make an attack).
# The epochs (and SIG's weight decay and Cutout) are what `python zoo_sweep.py --install` picked (docs/ZOO.md).
# cl (its PGD against the robust model since) and trojan (8 epochs) were trained on the CPU after the
# first GPU sweep; refool on a lent H200 in a second one, after Refool's selection of its reflections
# (a model poisoned with all 200 candidate reflections, then python -m attacks.refool); sig, with Cutout, on the
# CPU after both.
# Compute: the shipped models were trained on a lent H100 (about 2 s an epoch alone); on the 2-core CPU
# an epoch takes 40-50 s with bfloat16 (AMX) or 90-160 s in float32 (AVX2). Logs: logs/.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p logs
CLEAN=weight/clean/WRN-16-1-clean.pth.tar
ROBUST=weight/clean/WRN-16-1-robust.pth.tar   # the cl attack's --pgd_model (its default)
CANDIDATES=weight/refool/WRN-16-1-refool-candidates.pth.tar   # Refool with all candidate reflections

# These commands make the files the repository ships: they name every output and pass --replace_shipped.
SHIP=(--log_root results --replace_shipped)

step() {  # step OUTPUT LOG COMMAND...: run COMMAND unless OUTPUT exists
    local out=$1 log=$2; shift 2
    if [ -f "$out" ]; then echo "have $out"; return; fi
    echo "$(date +%T) $*"; "$@" > "logs/$log.log" 2>&1; tail -n 1 "logs/$log.log"
}

step $CLEAN clean python train_badnet.py --attack clean --epochs 10 --seed 0 --output $CLEAN "${SHIP[@]}"
step triggers/trojan_WRN-16-1.pt trojan_trigger python -m attacks.trojan --replace_shipped
step $ROBUST robust python train_badnet.py --attack clean --adv_eps 0.0314 --epochs 5 --seed 0 --output $ROBUST "${SHIP[@]}"
step $CANDIDATES refool_candidates python train_badnet.py --attack refool --trigger_type refoolCandidatesTrigger \
    --epochs 10 --seed 0 --output $CANDIDATES "${SHIP[@]}"
step triggers/refool_WRN-16-1.pt refool_selection python -m attacks.refool --model $CANDIDATES --replace_shipped
# Each attack's recipe (its epochs and any other flag) is its entry in attacks/__init__.py (`zoo`).
for attack in ${ATTACKS:-badnets trojan blend cl sig refool refool_pl}; do
    student=weight/s_net/WRN-16-1-$attack.pth.tar teacher=weight/t_net/WRN-16-1-$attack-T.pth.tar
    step $student $attack python train_badnet.py $(python -c "import attacks; print(attacks.zoo_flags('$attack'))") \
        --output $student "${SHIP[@]}"
    step $teacher teacher_$attack python main.py --attack $attack --make_teacher --protocol paper-lr0.01 --t_model $teacher "${SHIP[@]}"
done
