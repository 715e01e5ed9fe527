#!/usr/bin/env bash
# egs/cnceleb: CN-Celeb1 (+ CN-Celeb2) read in place, with the paper-size configs.
# Parameters and the stage list only; the work is in deepspeaker.bin.
#
#   ./run.sh --cnceleb1-dir /data/cn-celeb [--cnceleb2-dir /data/cn-celeb2]
#       [--stage N] [--stop-stage M] [--nj 8]
#
# Stages: 0 data dirs data/{train,eval} from the release's layout and lists (here;
# the official trials.lst becomes data/eval/trials_cnceleb), then the shared stages
# of utils/stages.sh: 1 fbank + VAD, 2 trials (the paper's 1 + 99 list as
# data/eval/trials) + MFCC-stats reference, 3 UBM, 4 i-vector extractor + i-vectors,
# 5 LDA/PLDA scoring, 6 softmax pre-training, 7 triplet training, 8 embedding
# extraction, 9 cosine scoring, 10 fusion + exp/RESULTS.md; with --train-fractions
# "0.25 0.5", 11: the training-size study (T7); with --transfer-from, 12: another
# recipe's model here (T9/T10).  There is no dev set: the networks train for their
# full epochs and best.pt is the last epoch's model.  Every stage can be rerun:
# finished work is skipped, a crashed run continues.  Relative paths are relative to
# this directory.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../path.sh
. ../../utils/log.sh

stage=0
stop_stage=100
nj=8                  # parallel jobs
seed=0
cnceleb1_dir=""       # holds CN-Celeb_flac/ or CN-Celeb/ (or is that folder)
cnceleb2_dir=""       # CN-Celeb2 (optional, training only): data/<spk>/ or CN-Celeb2_flac/data/
data=data             # Kaldi data dirs
exp=exp               # logs, models, scores
feat_conf=conf/fbank_vad.yaml
ivector_conf=conf/ivector.yaml   # paper §4.2: 1024-component UBM, 400-d i-vectors
nnet_conf_dir=conf    # <model>_softmax.yaml, <model>_triplet.yaml, <model>_triplet_only.yaml
nnet_models="rescnn gru"                            # frame-level networks (paper T1, T2)
nnet_strategies="softmax triplet softmax_triplet"   # T5's rows: any of these three
fusion_strategy=softmax_triplet                     # the models fused in T6 and shown in T8
report_title="egs/cnceleb: CN-Celeb1 eval, paper-size configs"
train_fractions=""    # e.g. "0.25 0.5": stage 11, the training-size study (paper T7)
transfer_from=""      # an exp/ dir of another recipe: stage 12, transfer (paper T9/T10)
max_failed_fraction=0.05
help_message="Usage: $0 --cnceleb1-dir DIR [--cnceleb2-dir DIR] [--stage N] [--stop-stage M] [--nj N]
  [--data DIR] [--exp DIR] [--ivector-conf YAML] [--nnet-conf-dir DIR] [--nnet-models \"rescnn gru\"]
  [--nnet-strategies \"softmax triplet softmax_triplet\"] [--fusion-strategy softmax_triplet]
  [--train-fractions \"0.25 0.5\"] [--transfer-from EXP_DIR]"

log "$0 $*"
. ../../utils/parse_options.sh
[ $# -eq 0 ] || { echo "$help_message" >&2; exit 1; }

train_set="train"
dev_set=""            # the prep makes no dev set
eval_set="eval"       # CN-Celeb1's 200 evaluation speakers: enrollment + test utterances
log "stages $stage..$stop_stage, nj=$nj, data=$data, exp=$exp"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  # Every check (layout, the lists and each file they name, empty speaker folders)
  # comes before anything is written; the two sets are then written together.
  [ -n "$cnceleb1_dir" ] || die "stage 0 needs --cnceleb1-dir DIR (the CN-Celeb1 folder)"
  sig="cnceleb1_dir=$cnceleb1_dir cnceleb2_dir=$cnceleb2_dir"
  if [ -f "$data/.prep.done" ] && [ "$(cat "$data/.prep.done")" = "$sig" ]; then
    log "stage 0: skipped, $data already prepared with these options ($sig)"
  else
    log "stage 0: data dirs from $cnceleb1_dir${cnceleb2_dir:+ and $cnceleb2_dir} into $data"
    rm -f "$data/.prep.done"
    python local/prepare_data.py --cnceleb1-dir "$cnceleb1_dir" \
      ${cnceleb2_dir:+--cnceleb2-dir "$cnceleb2_dir"} --data-dir "$data"
    for x in $train_set $dev_set $eval_set; do validate_data_dir.sh "$data/$x"; done
    echo "$sig" > "$data/.prep.done"
  fi
fi

. ../../utils/stages.sh

log "$0: done (stages $stage..$stop_stage)"
