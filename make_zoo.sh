#!/usr/bin/env bash
# Build the model zoo of README "Model zoo": a clean WRN-16-1, the Trojan trigger reverse-engineered
# from it, then for each of the paper's six Table 3 attacks a backdoored WRN-16-1 (weight/s_net/) and its
# fine-tuned teacher (weight/t_net/). Resumable: a model that exists is not made again.
# Compute (2-core CPU, float32): badnets, trojan, blend, cl and refool start from the clean model and
# train 3 epochs (cl: 8, refool: 4) on their poisoned set; sig trains from scratch for 8 epochs. The paper
# trains every model from scratch for longer. cl, sig and refool stay below the 95% ASR target here
# (README, "The zoo"). Logs: logs/.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p logs
CLEAN=weight/clean/WRN-16-1-clean.pth.tar
INJECT="--init $CLEAN --lr 0.05 --warmup_epochs 0.2 --seed 0"

step() {  # step OUTPUT LOG COMMAND...: run COMMAND unless OUTPUT exists
    local out=$1 log=$2; shift 2
    if [ -f "$out" ]; then echo "have $out"; return; fi
    echo "$(date +%T) $*"; "$@" > "logs/$log.log" 2>&1; tail -n 1 "logs/$log.log"
}

step $CLEAN clean python train_badnet.py --attack clean --epochs 10 --seed 0
step triggers/trojan_WRN-16-1.pt trojan_trigger python make_trojan_trigger.py
for attack in ${ATTACKS:-badnets trojan blend cl sig refool}; do
    case $attack in
        sig) how="--epochs 8 --seed 0" ;;   # from scratch
        cl) how="--epochs 8 $INJECT" ;;
        refool) how="--epochs 4 $INJECT" ;;
        *) how="--epochs 3 $INJECT" ;;
    esac
    step weight/s_net/WRN-16-1-$attack.pth.tar $attack python train_badnet.py --attack $attack $how
    step weight/t_net/WRN-16-1-$attack-T.pth.tar teacher_$attack python main.py --attack $attack --make_teacher
done
