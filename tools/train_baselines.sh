#!/usr/bin/env bash
# Train the learned baselines of the benchmark (4DVarNet, Meta-Curvature,
# ModGrad, OPTEnet, EUnet) on the data the shipped MM-Net models were trained
# on, with the same recipe: batch 8, Adam lr 1e-4, 10 unrolled iterations from
# the sLORETA start, gradients through the last 2 (JFB), 300 prior-pretraining
# steps (models with an autoencoder prior), validation every 50 (SEREEGA) /
# 75 (NMM) steps keeping the best model, and the same number of steps as
# MM-Net (818 SEREEGA, 576 NMM), capped at MINUTES (18) of wall time per
# model, whichever comes first (the log records how many steps each got).
#
#   tools/train_pretrained.sh            # first: simulates the training data
#   tools/train_baselines.sh             # both domains, one chain per domain
#   tools/train_baselines.sh sereega     # one domain
#
# Models land in $WORK/baselines/<method>-<domain>.pt (not shipped: run
# `mne-mmnet benchmark --baselines-dir $WORK/baselines` to score them).
# Every run is seeded and resumes from its checkpoint when rerun.
#
# Environment: WORK (default ./pretrained_work), METHODS (default all five),
# MINUTES (cap per model, default 18), THREADS (per chain, default 1),
# STEPS_SEREEGA (818), STEPS_NMM (576).
set -euo pipefail

WORK=${WORK:-pretrained_work}
METHODS=${METHODS:-optenet eunet meta-curvature modgrad 4dvarnet}
MINUTES=${MINUTES:-18}
THREADS=${THREADS:-1}
STEPS_SEREEGA=${STEPS_SEREEGA:-818}
STEPS_NMM=${STEPS_NMM:-576}
DOMAINS=${*:-sereega nmm}
OUT=$WORK/baselines
mkdir -p "$OUT"

train_one() {  # method domain seed steps [extra...]
    local method=$1 domain=$2 seed=$3 steps=$4
    shift 4
    local run=$OUT/run-$method-$domain
    OMP_NUM_THREADS=$THREADS mne-mmnet train --architecture "$method" \
        --data "$WORK/$domain-train" --val-data "$WORK/$domain-val" --out "$run" \
        --init sloreta --n-iter 10 --prior-hidden 256,128 \
        --gradient jfb --jfb-last 2 --batch-size 8 --lr 1e-4 \
        --prior-steps 300 --epochs 50 --max-steps "$steps" \
        --max-minutes "$MINUTES" --checkpoint-every 50 --seed "$seed" \
        --threads "$THREADS" --no-progress --resume "$@" \
        > "$OUT/train-$method-$domain.log" 2>&1
    cp "$run/model_best.pt" "$OUT/$method-$domain.pt"
}

run_domain() {  # domain
    local domain=$1 seed=300
    for method in $METHODS; do
        seed=$((seed + 1))
        if [ "$domain" = sereega ]; then
            train_one "$method" sereega "$seed" "$STEPS_SEREEGA" \
                --val-samples 64 --val-every 50
        else
            case $method in
                # their learned maps span the whole window: train on 500 samples
                meta-curvature | modgrad)
                    train_one "$method" nmm "$seed" "$STEPS_NMM" \
                        --val-samples 32 --val-every 75 ;;
                *)
                    train_one "$method" nmm "$seed" "$STEPS_NMM" \
                        --crop 64 --val-samples 32 --val-every 75 ;;
            esac
        fi
    done
}

pids=()
for domain in $DOMAINS; do
    case $domain in
        sereega | nmm) run_domain "$domain" & pids+=($!) ;;
        *) echo "unknown domain $domain (sereega, nmm)" >&2; exit 2 ;;
    esac
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
