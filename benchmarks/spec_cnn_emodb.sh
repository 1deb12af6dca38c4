#!/usr/bin/env bash
# Issue 4, transfer-learning spectrogram CNN row on EmoDB (10-fold leave-one-speaker-out, 7 classes, seed 0;
# CORPUS=ravdess OUT=runs/spec-cnn-ravdess for the RAVDESS row):
# ResNet-18 on the 3 s log-mel image. Offline there are no ImageNet weights, so it trains FROM SCRATCH
# (pass -p pretrained_weights=imagenet or a torchvision resnet18 .pth where available). CPU budget:
# the image is resampled to 64 x 40 (frames x mel bins) and training stops after 12 epochs (patience 4),
# ~4x cheaper than the default 128 x 80; a GPU run should use the defaults.
set -euo pipefail
emoboost --threads 1 benchmark --corpus "${CORPUS:-emodb}" --no-progress --out "${OUT:-runs/spec-cnn-emodb}" \
  --methods "${SPEC:-resnet18-scratch=spec_cnn:arch=resnet18,image_size=[64,40],max_epochs=12,patience=4}"
