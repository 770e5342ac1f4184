#!/usr/bin/env bash
# Trains the shipped LRISC model (small preset) with the whole recipe in one call, on a CPU or a CUDA GPU,
# evaluates it on Kodak and, with SHIP=1, copies it into lrisc_sim/checkpoints/lrisc/ with its model card.
#
#   scripts/train_lrisc.sh                                   # CPU, one thread, state under $RUNS
#   DEVICE=cuda BATCH=16 scripts/train_lrisc.sh              # a GPU (bf16 autocast), the same recipe
#   DEVICE=cuda BATCH=16 MINUTES=2 scripts/train_lrisc.sh    # at most 2 minutes per stage (a time-boxed GPU call)
#
# The recipe (benchmarks/lrisc_stage1_rd.py and benchmarks/results/lrisc_stage1_pilots.md say why):
#   1a  g_e + hyperprior + g_d without a channel on 256 x 256 crops, every sample at the last step n = N (the plain
#       MSE decoder path that sets the first DDIM estimate), no LPIPS, rate weight ramped 0.002 -> 0.02 over the
#       first half (a high-rate warm-up against the grey-image collapse of x0-prediction decoders);
#   1b  the same modules with the paper's diffusion loss over all steps (a quarter of each batch still at n = N)
#       and the perceptual term, from 1a's weights;
#   2   f_e / f_d (variable-length JSCC, rate tokens, SNR modules) through AWGN, the source model frozen;
#   3   everything fine-tuned together through the channel (eta 0.5);
#   3b-3d  short fine-tunes of stage 3 with eta 0.25, 0.10, 0.05: 3d is the shipped model; then the Kodak
#       evaluation against DeepJSCC.
#   Stages 2 and 3 keep a quarter of each batch at n = N too, where g_d depends on the received latent alone.
# The small preset's U-Net runs at patch 4 (levels at H/4 .. H/32). Stage 1a continues the run whose weights are
# committed in training/lrisc/ (--continue-from: its step, validation history and CPU-hours; that run
# built the patch-4 U-Net fresh and took g_e, the hyperprior and f_e / f_d from an earlier patch-2 run with
# --init-partial). It was started with 20000 steps and a ramp over 30%; from step 3750 it runs 12000 steps with
# the ramp over 50%, which keeps the rate-weight schedule (0.02 reached at step 6000) and ends sooner: the
# validation PSNR rose 0.3 dB per 1000 steps after step 3750, against about 1.1 dB per 1000 from step 1000 to 3750.
# Every stage is resumable: its state lives in $RUNS/<run>/stageS/state.safetensors (tensors + JSON, no pickle)
# and is saved every few minutes, at each validation and on Ctrl-C / SIGTERM, so re-running the same command
# after an interruption continues where it stopped; a finished stage is skipped. On a new machine without the
# states, each stage continues from its export committed in training/lrisc/ (lrisc_small_stage{1a,1b,2,3}.*,
# copies of $RUNS/<run>/stageS/export.*): commit the running stage's export before a machine goes.
# Both cores of a CPU: LRISC_SIM="torchrun --nproc-per-node 2 -m lrisc_sim.cli" (DDP over gloo, the same
# global batch split over the processes).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cpu}
DATA=${DATA:-../shared/data/train,../shared/data/train_extra}
KODAK=${KODAK:-../shared/data/kodak}
RUNS=${RUNS:-$HOME/.cache/lrisc-sim/train/lrisc}   # outside the work tree
BATCH=${BATCH:-4}
CROP=${CROP:-256}
THREADS=${THREADS:-1}
STEPS1A=${STEPS1A:-12000}
STEPS1B=${STEPS1B:-6000}
STEPS2=${STEPS2:-4000}
STEPS3=${STEPS3:-2000}
STEPS3B=${STEPS3B:-600}
STEPS3C=${STEPS3C:-500}
STEPS3D=${STEPS3D:-800}
COMMITTED=${COMMITTED:-training/lrisc}   # exports committed from earlier machines: lrisc_small_stage{1a,1b,2,3}.*
SAMPLE_STEPS=${SAMPLE_STEPS:-4}   # DDIM steps of the shipped model (benchmarks/results/lrisc_decode_time.md)
SHIP=${SHIP:-0}
LRISC_SIM=${LRISC_SIM:-lrisc-sim}
limit=(); [ -n "${MINUTES:-}" ] && limit=(--max-minutes "$MINUTES")
common=(--preset small --data "$DATA" --val 4 --batch-size "$BATCH" --crop "$CROP" --device "$DEVICE"
        --threads "$THREADS" --val-every 250 --save-minutes 10 "${limit[@]}")
final() { [ -f "$1" ] && python -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("status") != "final")' \
            "${1%.safetensors}.json"; }

# stage NAME RUN S [options]: stage S of $RUNS/RUN from the weights that ${init[@]} names (--init ...), unless
# it has finished here or its committed export ($COMMITTED/lrisc_small_stageNAME.*) is final; an export in
# progress there is continued (--continue-from; the trainer takes whichever of it and the state here is further
# along). Sets $w to the stage's weights.
stage() {
  local name=$1 run=$2 s=$3; shift 3
  local c="$COMMITTED/lrisc_small_stage$name.safetensors" from=("${init[@]}")
  w="$RUNS/$run/stage$s/lrisc_small_stage$s.safetensors"  # a stage writes it only when it has finished
  [ -f "$w" ] && return 0
  if final "$c"; then w=$c; echo "stage $name: the committed export $c is final"; return 0; fi
  [ -f "$c" ] && from=(--continue-from "$c")
  $LRISC_SIM train lrisc --stage "$s" "${common[@]}" --out "$RUNS/$run" "${from[@]}" "$@"
  [ -f "$w" ] || { echo "stage $name is not finished yet: run the same command again" >&2; exit 3; }
}

# 1a continues the committed run; without it, a first run takes what fits from INIT1A (the shipped model)
init=(--init "${INIT1A:-lrisc_sim/checkpoints/lrisc/lrisc_small.safetensors}" --init-partial)
stage 1a a4 1 \
  --steps "$STEPS1A" --lr 2e-4 --eta 0 --no-lpips --t-max-share 1.0 --lam 0.02 --lam-start 0.002 --lam-ramp 0.5 \
  --warmup-steps 0 --aux-weight 0 --val-steps 1
init=(--init "$w"); stage 1b b4 1 --steps "$STEPS1B" --lr 1e-4 --t-max-share 0.25 --lam 0.02 --warmup-steps 0 --aux-weight 0
init=(--init "$w"); stage 2 b4 2 --steps "$STEPS2" --t-max-share 0.25
init=(--init "$w"); stage 3 b4 3 --steps "$STEPS3" --t-max-share 0.25 --sample-steps "$SAMPLE_STEPS"
# 3b-3d: short fine-tunes of everything through the channel, each from the one before, with a smaller perceptual
# weight eta each time (0.5 in stage 3): PSNR rises and LPIPS gives a little back (training/README.md has the
# curves). A faster EMA (0.995) suits runs of a few hundred steps; each draws a new crop and noise stream (seed).
ft=(--t-max-share 0.25 --sample-steps "$SAMPLE_STEPS" --ema 0.995)
d3=(--steps "$STEPS3D" --eta 0.05 --seed 3)
# 3d's weights are committed once, as the shipped checkpoint (not again in training/lrisc/): when the shipped card
# is 3d's (a stage-3 command with 3d's options), 3b-3d are done and the shipped weights are the result
SHIPPED=${SHIPPED:-lrisc_sim/checkpoints/lrisc/lrisc_small.safetensors}
# card_has CARD --opt value ...: the card's command is a stage-3 run with these options
card_has() {
  python - "$@" 2>/dev/null <<'PY'
import json, sys
words = json.load(open(sys.argv[1])).get("command", "").split()
opts = {w: v for w, v in zip(words, words[1:]) if w.startswith("--")}
want = dict(zip(sys.argv[2::2], sys.argv[3::2]), **{"--stage": "3"})
sys.exit(any(opts.get(k) != v for k, v in want.items()))
PY
}
if [ ! -f "$RUNS/e4/stage3/lrisc_small_stage3.safetensors" ] && card_has "${SHIPPED%.safetensors}.json" "${d3[@]}"; then
  w=$SHIPPED; echo "stage 3d: the shipped checkpoint $w is 3d's"
else
  init=(--init "$w"); stage 3b c4 3 --steps "$STEPS3B" --eta 0.25 --seed 1 "${ft[@]}"
  init=(--init "$w"); stage 3c d4 3 --steps "$STEPS3C" --eta 0.10 --seed 2 "${ft[@]}"
  init=(--init "$w"); stage 3d e4 3 "${d3[@]}" "${ft[@]}"
  if [ "$SHIP" = 1 ]; then
    w=$(python -c 'import sys; from pathlib import Path; from lrisc_sim.lrisc.train import ship
print(ship(Path(sys.argv[1])))' "$w")
    echo "shipped as $w"
  fi
fi
if [ -d "$KODAK" ]; then
  python -m lrisc_sim.lrisc.evaluate --checkpoint "$w" --data "$KODAK" --device "$DEVICE" --out "$RUNS/eval"
fi
echo "LRISC trained: $w (card ${w%.safetensors}.json)"
