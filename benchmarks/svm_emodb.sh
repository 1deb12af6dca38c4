#!/usr/bin/env bash
# Classic hand-crafted baselines on EmoDB (10-fold leave-one-speaker-out, 7 classes, seed 0), one table:
# eGeMAPSv02 (88) and ComParE_2016 (6373) functionals via opensmile, MFCC statistics via librosa;
# RBF-SVM with C/gamma by inner speaker-grouped CV on training speakers; with and without per-speaker
# z-normalisation (test speakers normalised with their own unlabelled statistics).
set -euo pipefail
emoboost --threads 1 benchmark --corpus "${CORPUS:-emodb}" --no-progress \
  --out "${OUT:-runs/svm-emodb}" --methods \
  "egemaps=svm:features=egemaps" \
  "egemaps+spk-norm=svm:features=egemaps,speaker_norm=speaker" \
  "compare=svm:features=compare" \
  "compare+spk-norm=svm:features=compare,speaker_norm=speaker" \
  "mfcc-stats=svm:features=mfcc_stats" \
  "mfcc-stats+spk-norm=svm:features=mfcc_stats,speaker_norm=speaker"
