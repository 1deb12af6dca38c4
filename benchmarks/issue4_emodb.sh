#!/usr/bin/env bash
# Issue 4 table on EmoDB (10-fold leave-one-speaker-out, 7 classes), identical folds and seeds:
# eGeMAPS functionals + RBF-SVM (C/gamma by inner speaker-grouped CV), the SSL-only linear probe,
# and the SSL feature-map CNN, all on Whisper-base layer 3 where an encoder is used.
# The spectrogram transfer CNN (ResNet-18 from scratch: no ImageNet weights offline) is left out of
# the CPU run: ~50 s per epoch per fold on this machine, ~4 h for 10 folds.
set -euo pipefail
L=${LAYER:-3}
emoboost --threads 1 benchmark --corpus "${CORPUS:-emodb}" --upstreams whisper-base --no-progress \
  --out "${OUT:-runs/issue4-emodb}" --methods \
  "svm-egemaps=svm:features=egemaps" \
  "ssl-cnn=ssl_cnn:layer=$L,proj_dim=64,pool=[2,2],head=global,max_epochs=20,patience=8" \
  "ssl-only=linear:layer=$L"
