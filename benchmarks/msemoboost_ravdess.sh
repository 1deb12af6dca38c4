#!/usr/bin/env bash
# Issue 3 on RAVDESS (speech, 1440 files, 8 classes, 6 actor-disjoint gender-stratified folds of 4 actors),
# Whisper-base layer 3, seed 0, identical folds for every row: SSL-only baseline, MS-EmoBoost as in the
# paper (both branches, frozen random AlexNet offline) and with the enhancement-residual fix.
# A smaller epoch budget than EmoDB's (RAVDESS epochs are ~4x larger): max 10 epochs, patience 3.
set -euo pipefail
L=${LAYER:-3}
EP="max_epochs=${EPOCHS:-10},patience=3"
emoboost --threads 1 benchmark --corpus ravdess --upstreams whisper-base --no-progress \
  --out "${OUT:-runs/ravdess-msemoboost}" --methods \
  "ssl-only=linear:layer=$L" \
  "both=msemoboost:guidance=both,layer=$L,freeze_alexnet=true,$EP" \
  "both+enh-residual=msemoboost:guidance=both,layer=$L,freeze_alexnet=true,enh_residual=true,$EP"
