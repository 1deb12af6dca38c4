#!/usr/bin/env bash
# Hand-crafted baselines on RAVDESS (8 classes, 6 actor-disjoint gender-stratified folds, seed 0):
# eGeMAPSv02 functionals and MFCC statistics + RBF-SVM, with and without per-speaker z-normalisation.
# (ComParE is in benchmarks/svm_emodb.sh; on RAVDESS its 6373-dim SVM grid is ~1 h on this CPU.)
set -euo pipefail
emoboost --threads 1 benchmark --corpus ravdess --no-progress --out "${OUT:-runs/svm-ravdess}" --methods \
  "egemaps=svm:features=egemaps" \
  "egemaps+spk-norm=svm:features=egemaps,speaker_norm=speaker" \
  "mfcc-stats=svm:features=mfcc_stats" \
  "mfcc-stats+spk-norm=svm:features=mfcc_stats,speaker_norm=speaker"
