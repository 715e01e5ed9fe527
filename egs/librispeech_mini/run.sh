#!/usr/bin/env bash
# egs/librispeech_mini: real read speech (251 LibriSpeech speakers, 552 segments, 35 min;
# ../shared/data/librispeech-mini, read in place), every stage on a laptop CPU.
# Parameters and stage 0 only; the shared options are in utils/recipe.sh, stages 1-12
# in utils/stages.sh, the work in deepspeaker.bin.
#
#   ./run.sh [--stage N] [--stop-stage M] [--corpus-dir DIR] [--transfer-from ../mini/exp]
#
# Stages: 0 speaker split + data dirs (local/prepare_data.py), then 1 fbank + VAD, 2
# trials + MFCC-stats reference, 3-5 i-vector + PLDA, 6-7 Deep Speaker training, 8-9
# embeddings + cosine scores, 10 fusion + report, 12 transfer: the egs/mini model as is
# and fine-tuned here (needs ../mini/exp trained).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../utils/recipe.sh

corpus_dir=$DS_ROOT/../shared/data/librispeech-mini   # the corpus folder, read in place
eval_fraction=0.4     # of each sex's speakers (with >= 2 segments): 100 eval speakers
dev_fraction=0        # no dev set: 26 dev speakers gave a dev EER too noisy to pick epochs;
                      # every speaker is used, and the last epoch is kept
trials_opts="--enroll-counts 1,2"   # eval speakers have 2-3 segments (paper T8 uses 1-5)
transfer_from=../mini/exp           # stage 12; "" to skip
cross_corpora=speechocean762   # every system is also scored on egs/speechocean762's eval set
report_title="egs/librispeech_mini: LibriSpeech train-clean-100 segments"
parse_recipe_options "$@"
dev_set=""

if in_stages 0; then
  prepare_data corpus_dir seed eval_fraction dev_fraction -- python local/prepare_data.py \
    --corpus-dir "$corpus_dir" --data-dir "$data" --seed "$seed" \
    --eval-fraction "$eval_fraction" --dev-fraction "$dev_fraction"
fi

. ../../utils/stages.sh
# Results, seed 0, eval `trials` (224 anchors x (1 + 99)), EER / ACC; all in exp/RESULTS.md:
#   stage 2  MFCC-stats cosine                         8.20% / 73.66%
#   stage 5  i-vector PLDA (UBM 64, rank 100, LDA 64)   6.30% / 67.41%
#   stage 9  ResCNN softmax / triplet / both          21.43 / 20.54 / 20.54%
#            GRU    softmax / triplet / both          13.51 / 13.87 / 12.50%
#   stage 10 score fusion                             11.46% / 45.09%
#   stage 12 egs/mini model as is / fine-tuned here: ResCNN 20.30 / 16.75%,
#            GRU 17.69 / 12.05% (trained here only: 20.54, 12.50%)
