#!/usr/bin/env bash
# Issue 3 ablation table: MS-EmoBoost vs the SSL-only baseline on EmoDB, identical folds and seeds.
# 10-fold leave-one-speaker-out, 7 classes, Whisper-base encoder layer 3 (best layer of the linear sweep).
# CPU budget: AlexNet is frozen (random init: no ImageNet weights offline) and its tokens computed once
# per segment; MS-EmoBoost trains at most 15 epochs with patience 4 on a held-out training speaker.
set -euo pipefail
L=${LAYER:-3}
EP="max_epochs=15,patience=4"
emoboost --threads 1 benchmark --corpus emodb --upstreams whisper-base --no-progress \
  --out "${OUT:-runs/emodb-msemoboost}" --methods \
  "ssl-only=linear:layer=$L" \
  "both=msemoboost:guidance=both,layer=$L,freeze_alexnet=true,$EP" \
  "mfcc-only=msemoboost:guidance=mfcc,layer=$L,$EP" \
  "both-no-attention=msemoboost:guidance=both,attention=false,layer=$L,freeze_alexnet=true,$EP" \
  "spec-only=msemoboost:guidance=spec,layer=$L,freeze_alexnet=true,$EP"
