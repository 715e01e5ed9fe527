#!/usr/bin/env bash
# egs/speechocean762: real read English of 125 Mandarin-L1 speakers, children and adults,
# 20 utterances each (2,500, 2.88 h; ../shared/data/speechocean762, read in place), every
# stage on a laptop CPU.  Parameters and stage 0 only; the shared options are in
# utils/recipe.sh, stages 1-12 in utils/stages.sh, the work in deepspeaker.bin.
#
#   ./run.sh [--stage N] [--stop-stage M] [--corpus-dir DIR] [--transfer-from ../mini/exp]
#
# Stages: 0 speaker split + data dirs (local/prepare_data.py; the official test split is
# the eval set when DIR/test exists), then 1 fbank + VAD, 2 trials (k = 1, 2, 3, 5
# enrollment) + MFCC-stats reference, 3-5 i-vector + PLDA, 6-7 Deep Speaker training, 8-9
# embeddings + cosine scores, 10 fusion + report, 12 transfer: the egs/mini model as is
# and fine-tuned here (needs ../mini/exp trained).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../utils/recipe.sh

corpus_dir=$DS_ROOT/../shared/data/speechocean762   # the corpus folder, read in place
eval_fraction=0.2     # of each age group x gender stratum of the train split: 25 of 125
                      # speakers, 500 utterances as trial anchors; unused with DIR/test
dev_fraction=0.08     # 10 of 125 speakers (200 utterances) for the dev EER, leaving 90 to
                      # train: fewer training speakers cost more than a noisier dev EER
trials_opts="--enroll-counts 1,2,3,5"   # 20 utterances per speaker: the paper's T8
transfer_from=../mini/exp           # stage 12; "" to skip
cross_corpora=librispeech_mini   # every system is also scored on egs/librispeech_mini's eval set
report_title="egs/speechocean762: speechocean762 read speech, children and adults"
parse_recipe_options "$@"
[[ ! $dev_fraction =~ ^0*\.?0*$ ]] || dev_set=""   # 0: no dev set

if in_stages 0; then
  prepare_data corpus_dir seed eval_fraction dev_fraction -- python local/prepare_data.py \
    --corpus-dir "$corpus_dir" --data-dir "$data" --seed "$seed" \
    --eval-fraction "$eval_fraction" --dev-fraction "$dev_fraction"
fi

. ../../utils/stages.sh
