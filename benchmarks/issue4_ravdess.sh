#!/usr/bin/env bash
# Issue 4 table on RAVDESS (speech, 1440 files, 8 classes, 6 actor-disjoint folds of 4 actors,
# gender-stratified): same methods and settings as benchmarks/issue4_emodb.sh, identical folds and seeds.
set -euo pipefail
CORPUS=ravdess OUT="${OUT:-runs/issue4-ravdess}" exec "$(dirname "$0")/issue4_emodb.sh"
