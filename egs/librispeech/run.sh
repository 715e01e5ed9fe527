#!/usr/bin/env bash
# egs/librispeech: LibriSpeech (openslr.org/12) read in place, with the paper-size
# configs.  Parameters and the stage list only; the work is in deepspeaker.bin.
#
#   ./run.sh --corpus-dir /data/corpora [--stage N] [--stop-stage M] [--nj 8]
#       [--train-subsets "train-clean-100 train-clean-360 train-other-500"]
#       [--dev-subsets dev-clean] [--eval-subsets test-clean]
#
# Stages: 0 data dirs data/{train,dev,eval} from whole LibriSpeech subsets (here), then
# the shared stages of utils/stages.sh: 1 fbank + VAD, 2 trials + MFCC-stats reference,
# 3 UBM, 4 i-vector extractor + i-vectors, 5 LDA/PLDA scoring, 6 softmax pre-training,
# 7 triplet training, 8 embedding extraction, 9 cosine scoring, 10 fusion +
# exp/RESULTS.md; with --train-fractions "0.25 0.5", 11: the training-size study
# (T7); with --transfer-from, 12: another recipe's model here (T9/T10).  Every stage
# can be rerun: finished work is skipped, a crashed run continues.  Relative paths are
# relative to this directory.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../path.sh
. ../../utils/log.sh

stage=0
stop_stage=100
nj=8                  # parallel jobs (and threads reading the flac headers in stage 0)
seed=0
corpus_dir=""         # holds LibriSpeech/ (or is the LibriSpeech folder itself)
# Each set is the union of whole subsets; LibriSpeech gives every reader to one
# subset, so the sets share no speaker.  An empty list makes no such set (dev only).
train_subsets="train-clean-100 train-clean-360 train-other-500"   # 2,338 speakers, ~960 h
dev_subsets="dev-clean"     # 40 speakers: early stopping of the networks
eval_subsets="test-clean"   # 40 speakers
data=data             # Kaldi data dirs
exp=exp               # logs, models, scores
feat_conf=conf/fbank_vad.yaml
ivector_conf=conf/ivector.yaml   # paper §4.2: 1024-component UBM, 400-d i-vectors
nnet_conf_dir=conf    # <model>_softmax.yaml, <model>_triplet.yaml, <model>_triplet_only.yaml
nnet_models="rescnn gru"                            # frame-level networks (paper T1, T2)
nnet_strategies="softmax triplet softmax_triplet"   # T5's rows: any of these three
fusion_strategy=softmax_triplet                     # the models fused in T6 and shown in T8
report_title="egs/librispeech: LibriSpeech, paper-size configs"
train_fractions=""    # e.g. "0.25 0.5": stage 11, the training-size study (paper T7)
transfer_from=""      # an exp/ dir of another recipe: stage 12, transfer (paper T9/T10)
max_failed_fraction=0.05
help_message="Usage: $0 --corpus-dir DIR [--stage N] [--stop-stage M] [--nj N] [--data DIR] [--exp DIR]
  [--train-subsets \"train-clean-100 train-clean-360 train-other-500\"] [--dev-subsets dev-clean]
  [--eval-subsets test-clean] [--ivector-conf YAML] [--nnet-conf-dir DIR]
  [--nnet-models \"rescnn gru\"] [--nnet-strategies \"softmax triplet softmax_triplet\"]
  [--fusion-strategy softmax_triplet] [--train-fractions \"0.25 0.5\"] [--transfer-from EXP_DIR]"

log "$0 $*"
. ../../utils/parse_options.sh
[ $# -eq 0 ] || { echo "$help_message" >&2; exit 1; }

train_set="train"
dev_set="dev"
[ -n "${dev_subsets//[[:space:]]/}" ] || dev_set=""   # --dev-subsets "": no dev set
eval_set="eval"
log "stages $stage..$stop_stage, nj=$nj, data=$data, exp=$exp"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  # Everything is scanned and checked (layout, file names, SPEAKERS.TXT, durations,
  # disjoint speakers) before the sets are written, together; an old dev dir goes
  # when no dev set is asked for, since it may hold speakers of the new train set.
  [ -n "$corpus_dir" ] || die "stage 0 needs --corpus-dir DIR (the folder holding LibriSpeech/)"
  [ -n "${eval_subsets//[[:space:]]/}" ] || die "--eval-subsets must name at least one subset"
  sig="corpus_dir=$corpus_dir train=$train_subsets dev=$dev_subsets eval=$eval_subsets"
  if [ -f "$data/.prep.done" ] && [ "$(cat "$data/.prep.done")" = "$sig" ]; then
    log "stage 0: skipped, $data already prepared with these options ($sig)"
  else
    log "stage 0: data dirs from $corpus_dir into $data"
    rm -f "$data/.prep.done"
    python local/prepare_data.py --corpus-dir "$corpus_dir" --data-dir "$data" \
      --train-subsets "$train_subsets" --dev-subsets "$dev_subsets" \
      --eval-subsets "$eval_subsets" --nj "$nj"
    for x in $train_set $dev_set $eval_set; do validate_data_dir.sh "$data/$x"; done
    echo "$sig" > "$data/.prep.done"
  fi
fi

. ../../utils/stages.sh

log "$0: done (stages $stage..$stop_stage)"
