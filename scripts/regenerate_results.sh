#!/usr/bin/env bash
# Regenerates what depends on the shipped checkpoints, with the project's own commands: results/fig4_snr,
# fig5_cbr, fading, fig6_visual, csi_estimation, snr_mismatch, constellation (each `lrisc-sim run` also rewrites results/README.md) and the Kodak section of
# the LRISC model card with the table in lrisc_sim/checkpoints/lrisc/README.md.
#
#   scripts/regenerate_results.sh                  # resume every experiment (finished points are kept)
#   REDO=deepjscc scripts/regenerate_results.sh    # after retraining DeepJSCC: recompute only its rows
#   REDO=lrisc,deepjscc THREADS=2 scripts/regenerate_results.sh
#
# Rows made with other weights are refused rather than mixed in, so after a retrained checkpoint name its codec
# in REDO. Kodak comes from $LRISC_SIM_KODAK when set, else from the checksummed download cache.
set -euo pipefail
cd "$(dirname "$0")/.."
LRISC_SIM=${LRISC_SIM:-lrisc-sim}
PYTHON=${PYTHON:-python}
THREADS=${THREADS:-2}
REDO=${REDO:-}
EXPERIMENTS=${EXPERIMENTS:-"fig4_snr fig5_cbr fading fig6_visual csi_estimation snr_mismatch constellation"}
EVAL_OUT=${EVAL_OUT:-runs/lrisc/eval}  # the LRISC card's sweep (resumable)
redo=(); [ -n "$REDO" ] && redo=(--redo "$REDO")
for e in $EXPERIMENTS; do
  echo "== $e"
  $LRISC_SIM run "experiments/$e.toml" --threads "$THREADS" "${redo[@]}"
done
echo "== LRISC model card (Kodak, CBR 1/48, AWGN 0/5/10/15 dB, against DeepJSCC)"
$PYTHON -m lrisc_sim.lrisc.evaluate --data "${LRISC_SIM_KODAK:-kodak}" --threads "$THREADS" --out "$EVAL_OUT" \
  --redo "$(tr ',' '\n' <<< "$REDO" | grep -xE 'lrisc|deepjscc' | paste -sd, - || true)" > /dev/null
echo "regenerated results/ and the LRISC card"
