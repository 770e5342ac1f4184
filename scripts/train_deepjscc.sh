#!/usr/bin/env bash
# Trains the five shipped DeepJSCC checkpoints (CBR 1/64 .. 1/16, complex AWGN at 10 dB, MSE) in one call, on a
# CPU or a CUDA GPU, and copies the results into lrisc_sim/checkpoints/deepjscc/ with their model cards.
#
#   scripts/train_deepjscc.sh                       # all five, CPU, one thread each, state in ~/.cache
#   DEVICE=cuda BATCH=64 CROP=256 scripts/train_deepjscc.sh
#   CBRS="1/24" STEPS=20000 scripts/train_deepjscc.sh   # one of them
#
# The order is the recipe. 1/24 first (the main model, warm-started from the shipped 1/24 when one exists). A CBR
# with more channels at the same depth starts from the trained model with fewer channels, with the overlap of the
# c-channel layers, so it starts as that model's decoder: 1/16 from 1/24, 1/32 from 1/48. A 200-step pilot of 1/16
# gave 27.19 dB on Kodak, against 25.76 from the shipped 1/16. The others start from their own shipped model (the
# whole model): 1/48 and 1/64. A 300-step pilot at 1/48 gave 23.99 dB, against 22.34 from 1/24's trunk with a new
# head and 20.76 for d = 4, c = 2 from 1/24's first two channels. Fewer channels lose too much. Without a shipped
# model, a CBR starts from 1/24's trunk. The pilots are in training/README.md.
# Every run is resumable: the state (weights, EMA, Adam, RNG; no pickle) lives in ~/.cache/lrisc-sim/train and
# the EMA weights + model card are exported to $OUT at every validation, so re-running the same command after
# an interruption, or on a new machine from the committed weights, continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cpu}
DATA=${DATA:-../shared/data/train,../shared/data/train_extra}
KODAK=${KODAK:-../shared/data/kodak}
OUT=${OUT:-training/deepjscc}  # committed: a new machine continues from these weights
SHIP=${SHIP:-lrisc_sim/checkpoints/deepjscc}
CBRS=${CBRS:-"1/24 1/16 1/48 1/32 1/64"}
STEPS=${STEPS:-20000}        # steps of the main model (1/24)
STEPS48=${STEPS48:-20000}    # steps of 1/48, the other model with a Kodak target (from the shipped 1/48)
FT_STEPS=${FT_STEPS:-8000}   # steps of 1/16, from the trained 1/24 (channel overlap); it only has to stay above 1/24
STEPS32=${STEPS32:-3000}     # steps of 1/32, from the trained 1/48 (channel overlap); it starts at 1/48's PSNR
                             # and only has to rise above it (1/16 gained 0.5 dB over its start in 4000 steps)
STEPS64=${STEPS64:-3000}     # steps of 1/64, from its own shipped model; it only has to stay below 1/48
BATCH=${BATCH:-16}
CROP=${CROP:-96}             # d = 4 models
CROP8=${CROP8:-128}          # d = 8 models (1/64, 1/48, 1/32): larger crops for the smaller latent
THREADS=${THREADS:-1}
LRISC_SIM=${LRISC_SIM:-lrisc-sim}
mkdir -p "$OUT"
name() { echo "deepjscc_cbr${1/\//-}_snr10"; }
main=$(name 1/24)
for cbr in $CBRS; do
  n=$(name "$cbr")
  case "$cbr" in 1/24|1/16) arch="--levels 2 --extra 2"; crop=$CROP ;; *) arch="--levels 3 --extra 1"; crop=$CROP8 ;; esac
  if [ "$cbr" = 1/24 ]; then
    steps=$STEPS; lr=5e-4
    init=""; [ -f "$SHIP/$main.safetensors" ] && [ ! -f "$OUT/$main.safetensors" ] && init="--init $SHIP/$main.safetensors"
  else
    case "$cbr" in 1/48) steps=$STEPS48 ;; 1/32) steps=$STEPS32 ;; 1/64) steps=$STEPS64 ;; *) steps=$FT_STEPS ;; esac; lr=5e-4
    case "$cbr" in 1/16) from=$OUT/$main.safetensors ;; 1/32) from=$OUT/$(name 1/48).safetensors ;; *) from="" ;; esac
    if [ -z "$from" ] && [ -f "$SHIP/$n.safetensors" ]; then
      from=$SHIP/$n.safetensors
    elif [ -z "$from" ]; then
      from=$OUT/$main.safetensors
    fi
    [ -f "$from" ] || { echo "$cbr starts from $from: train that CBR first" >&2; exit 2; }
    init="--init $from"
  fi
  kodak=""; [ -d "$KODAK" ] && kodak="--eval-kodak $KODAK --kodak-every 2000"
  $LRISC_SIM train deepjscc --cbr "$cbr" --snr 10 --data "$DATA" --val 4 --steps "$steps" --batch-size "$BATCH" \
    --crop "$crop" --lr "$lr" --lr-final 1e-5 --warmup 200 $arch --width 32,64 --val-every 500 --device "$DEVICE" \
    --threads "$THREADS" --out "$OUT" --resume $init $kodak
  if grep -q '"status": "final"' "$OUT/$n.json"; then
    cp "$OUT/$n.safetensors" "$OUT/$n.json" "$SHIP/"
  fi
done
python -c "from baselines.deepjscc_train import write_summary; print(write_summary('$SHIP'))"
