#!/usr/bin/env bash
# Produce the pretrained MM-Net models shipped in mne_mmnet/data/models/:
#   sereega.pt  (SEREEGA-like extended sources, 64 samples at 512 Hz, 5 dB)
#   nmm.pt      (Jansen-Rit neural mass spikes, 500 samples at 500 Hz, 5 dB)
#
# Sized for about one hour of CPU per model (one thread each, so both can run
# side by side on a 2-core machine). Every step is seeded, so rerunning the
# script gives the same data and the same weights (on the same torch build).
# Rerunning also resumes: `simulate` keeps finished shards and `train
# --resume` continues from OUT/checkpoint.pt.
#
#   tools/train_pretrained.sh            # both models, in parallel
#   tools/train_pretrained.sh sereega    # one model
#   BOUND=none tools/train_pretrained.sh # R-MM-Net: the same models without
#                                        # projection or descent safeguard,
#                                        # installed as <name>-unprojected
#
# Environment overrides: WORK (scratch dir, default ./pretrained_work),
# MINUTES (training budget per model, default 60), MAX_STEPS (stop after this
# many steps instead, for runs that must match another run's step count), N_TRAIN_SEREEGA (3000),
# N_TRAIN_NMM (1000), THREADS (default 1),
# BOUND (analytic = MM-Net, none = R-MM-Net; default analytic),
# INIT (start of the solver: random = the paper's 1e-3 N(0,1), sloreta, mne;
# default sloreta, see the note below), STEP (diagonal = the paper's step,
# directional = 1-D MM step along the learned direction; default directional),
# LR (Adam learning rate, default 1e-4), SAFEGUARD (on/off; default on, off
# with BOUND=none), SUFFIX (appended to the run folder and the installed
# name; default empty, '-unprojected' with BOUND=none), PRECONDITIONER (step
# metric: leadfield or diagonal; default leadfield, as the default model).
# The model with the lowest validation global LE (AUC breaks ties; checked
# every 50 steps) is the one installed. Replicas shipped before 2026-12-03 were
# selected by validation meta-loss with the diagonal metric (their model cards
# say which).
#
# Note on INIT: from the paper's random start the certified bound allows only
# tiny steps (nu_up is ~2% of ||x||/||g|| on the template), so 10 projected MM
# iterations barely leave the start; the sLORETA start puts the iterate near
# the source and the projected steps refine it. Use INIT=random to follow the
# paper exactly.
set -euo pipefail

WORK=${WORK:-pretrained_work}
MINUTES=${MINUTES:-60}
MAX_STEPS=${MAX_STEPS:-}
THREADS=${THREADS:-1}
BOUND=${BOUND:-analytic}
INIT=${INIT:-sloreta}
STEP=${STEP:-directional}
LR=${LR:-1e-4}
PRECONDITIONER=${PRECONDITIONER:-leadfield}
if [ "$BOUND" = none ]; then
    SAFEGUARD=${SAFEGUARD:-off}
    SUFFIX=${SUFFIX--unprojected}
else
    SAFEGUARD=${SAFEGUARD:-on}
    SUFFIX=${SUFFIX:-}
fi
STEP_ARGS=()
[ -n "$MAX_STEPS" ] && STEP_ARGS=(--max-steps "$MAX_STEPS")
GUARD_ARGS=()
[ "$SAFEGUARD" = off ] && GUARD_ARGS=(--no-safeguard)
MODELS=${*:-sereega nmm}
# NMM simulation costs ~0.7 s per sample on one CPU core
N_TRAIN_SEREEGA=${N_TRAIN_SEREEGA:-3000}
N_TRAIN_NMM=${N_TRAIN_NMM:-1000}
mkdir -p "$WORK"

simulate() {  # kind n seed out [extra...]
    local kind=$1 n=$2 seed=$3 out=$4
    shift 4
    mne-mmnet simulate --kind "$kind" --n "$n" --seed "$seed" --snr 5 \
        --noise white --shard-size 500 --out "$out" --quiet "$@"
}

train_one() {  # name train_dir val_dir seed [extra...]
    local name=$1$SUFFIX data=$2 val=$3 seed=$4
    shift 4
    OMP_NUM_THREADS=$THREADS mne-mmnet train \
        --data "$data" --val-data "$val" --out "$WORK/run-$name" \
        --bound "$BOUND" "${GUARD_ARGS[@]}" --init "$INIT" --step "$STEP" --n-iter 10 \
        --preconditioner "$PRECONDITIONER" \
        --prior-hidden 256,128 --curvature-embed 64 --curvature-hidden 64 \
        --gradient jfb --jfb-last 2 --batch-size 8 --lr "$LR" \
        --prior-steps 300 --epochs 50 --max-minutes "$MINUTES" "${STEP_ARGS[@]}" \
        --checkpoint-every 50 --seed "$seed" --threads "$THREADS" \
        --no-progress --resume "$@" \
        > "$WORK/train-$name.log" 2>&1
    python -c "from mne_mmnet.pretrained import _install_shipped_model as f; \
print(f('$WORK/run-$name/model_best.pt', '$name', data_dirs=['$data', '$val']))"
}

run_sereega() {
    simulate sereega "$N_TRAIN_SEREEGA" 101 "$WORK/sereega-train"
    simulate sereega 256 102 "$WORK/sereega-val"
    train_one sereega "$WORK/sereega-train" "$WORK/sereega-val" 103 \
        --val-samples 64 --val-every 50
}

run_nmm() {
    simulate nmm "$N_TRAIN_NMM" 201 "$WORK/nmm-train"
    simulate nmm 256 202 "$WORK/nmm-val"
    # 500-sample clips: train on 64-sample windows around each spike (the
    # networks are length agnostic), validate on whole clips
    train_one nmm "$WORK/nmm-train" "$WORK/nmm-val" 203 \
        --crop 64 --val-samples 32 --val-every 75
}

pids=()
for name in $MODELS; do
    case $name in
        sereega) run_sereega & pids+=($!) ;;
        nmm) run_nmm & pids+=($!) ;;
        *) echo "unknown model $name (sereega, nmm)" >&2; exit 2 ;;
    esac
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
