#!/usr/bin/env bash
# egs/librispeech_mini: real read speech (251 LibriSpeech speakers, 552 segments, 35 min;
# ../shared/data/librispeech-mini, read in place), every stage on a laptop CPU.
# Parameters and the stage list only; the work is in deepspeaker.bin.
#
#   ./run.sh [--stage N] [--stop-stage M] [--corpus-dir DIR] [--transfer-from ../mini/exp]
#
# Stages: 0 speaker split + data dirs (local/prepare_data.py), then the shared stages of
# utils/stages.sh: 1 fbank + VAD, 2 trials + MFCC-stats reference, 3-5 i-vector +
# PLDA, 6-7 Deep Speaker training, 8-9 embeddings + cosine scores, 10 fusion + report,
# 12 transfer: the egs/mini model as is and fine-tuned here (needs ../mini/exp trained).
# Eval speakers have 2-3 segments, so enrollment lists exist for k = 1, 2 only.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../path.sh
. ../../utils/log.sh

stage=0
stop_stage=100
nj=2
seed=0
corpus_dir=$DS_ROOT/../shared/data/librispeech-mini
eval_fraction=0.4     # of each sex's speakers (with >= 2 segments): 100 eval speakers
dev_fraction=0         # no dev set: 26 dev speakers gave a dev EER too noisy to pick epochs;
                      # every speaker is used, and the last epoch is kept
data=data
exp=exp
feat_conf=conf/fbank_vad.yaml
ivector_conf=conf/ivector.yaml
nnet_conf_dir=conf
nnet_models="rescnn gru"
nnet_strategies="softmax triplet softmax_triplet"
fusion_strategy=softmax_triplet
trials_opts="--enroll-counts 1,2"   # eval speakers have 2-3 segments (paper T8 uses 1-5)
train_fractions=""
transfer_from=../mini/exp           # stage 12; "" to skip
report_title="egs/librispeech_mini: LibriSpeech train-clean-100 segments"
max_failed_fraction=0.05
help_message="Usage: $0 [--stage N] [--stop-stage M] [--nj N] [--corpus-dir DIR] [--data DIR] [--exp DIR]
  [--eval-fraction F] [--dev-fraction F] [--train-fractions \"0.25 0.5\"] [--nnet-models \"rescnn gru\"] [--transfer-from EXP_DIR]"

. ../../utils/parse_options.sh
[ $# -eq 0 ] || { echo "$help_message" >&2; exit 1; }

train_set="train"
dev_set=""
eval_set="eval"
log "$0 $*: stages $stage..$stop_stage, corpus $corpus_dir, data=$data, exp=$exp"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  sig="$corpus_dir seed=$seed eval=$eval_fraction dev=$dev_fraction"
  if [ -f "$data/.prep.done" ] && [ "$(cat "$data/.prep.done")" = "$sig" ]; then
    log "stage 0: data dirs already made ($sig)"
  else
    log "stage 0: speaker split of $corpus_dir -> $data/{train,dev,eval}"
    python local/prepare_data.py --corpus-dir "$corpus_dir" --data-dir "$data" --seed "$seed" \
      --eval-fraction "$eval_fraction" --dev-fraction "$dev_fraction"
    for x in $train_set $dev_set $eval_set; do validate_data_dir.sh "$data/$x"; done
    echo "$sig" > "$data/.prep.done"
  fi
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

log "$0: done (stages $stage..$stop_stage)"
