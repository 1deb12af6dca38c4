#!/usr/bin/env bash
# Issue 3, second principled fix (same folds/seed as msemoboost_emodb.sh): a learned softmax-weighted sum
# of all Whisper-base hidden states as X_w instead of the single layer 3, with the enhancement residual.
# The layer weights are trained with the rest on training speakers; nothing is chosen on test folds.
set -euo pipefail
EP="max_epochs=15,patience=4"
emoboost --threads 1 benchmark --corpus emodb --upstreams whisper-base --no-progress \
  --out "${OUT:-runs/emodb-msemoboost-weighted}" --methods \
  "both+enh-residual+weighted=msemoboost:guidance=both,layer=weighted,freeze_alexnet=true,enh_residual=true,$EP"
