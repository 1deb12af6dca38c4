#!/usr/bin/env bash
# Issue 4 short-segment study: SSL feature-map CNN on EmoDB (10-fold LOSO, 7 classes, Whisper-base
# layer 3) with 2 s and 1 s segments (3 s is in benchmarks/issue4_emodb.sh); utterance = mean segment posterior.
set -euo pipefail
L=${LAYER:-3}
for SEG in ${SEGMENTS:-2 1}; do
  emoboost --threads 1 run --corpus emodb --upstream whisper-base --method ssl_cnn --no-progress \
    -p layer=$L -p proj_dim=64 -p "pool=[2,2]" -p head=global -p max_epochs=20 -p patience=8 \
    --segment-length "$SEG" --out "runs/short-segments/ssl_cnn-${SEG}s"
done
