#!/usr/bin/env bash
# egs/mini: the embedded synthetic corpus (local/make_corpus.py), end to end on a
# laptop CPU.  Parameters and the stage list only; the work is in deepspeaker.bin.
#
#   ./run.sh [--stage N] [--stop-stage M] [--nj 2] [--corpus-opts "--num-eval-spk 20"]
#
# Stages: 0 corpus + data dirs (here), then the shared stages of utils/stages.sh:
# 1 fbank + VAD, 2 trials + MFCC-stats reference, 3 UBM, 4 i-vector extractor +
# i-vectors, 5 LDA/PLDA scoring, 6 softmax pre-training, 7 triplet training,
# 8 embedding extraction, 9 cosine scoring, 10 fusion + exp/RESULTS.md; with
# --train-fractions "0.25 0.5", 11: the same models on 25% and 50% of the training
# speakers (T7); with --transfer-from, 12: another recipe's model here (T9/T10).
# Every stage can be rerun: finished work is skipped, a crashed run continues.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../path.sh
. ../../utils/log.sh

stage=0
stop_stage=100
nj=2                  # parallel jobs; the default machine has 2 cores
seed=0
corpus_opts=""        # extra options for local/make_corpus.py (sizes, durations)
corpus_dir=corpus     # generated wav files
data=data             # Kaldi data dirs
exp=exp               # logs, models, scores
feat_conf=conf/fbank_vad.yaml
ivector_conf=conf/ivector.yaml
nnet_conf_dir=conf    # <model>_softmax.yaml, <model>_triplet.yaml, <model>_triplet_only.yaml
nnet_models="rescnn gru"                            # frame-level networks (paper T1, T2)
nnet_strategies="softmax triplet softmax_triplet"   # T5's rows: any of these three
fusion_strategy=softmax_triplet                     # the models fused in T6 and shown in T8
report_title="egs/mini: synthetic corpus"
train_fractions=""    # e.g. "0.25 0.5": stage 11, the training-size study (paper T7)
transfer_from=""      # an exp/ dir of another recipe: stage 12, transfer (paper T9/T10)
max_failed_fraction=0.05
help_message="Usage: $0 [--stage N] [--stop-stage M] [--nj N] [--corpus-opts STR] [--data DIR] [--exp DIR]
  [--ivector-conf YAML] [--nnet-conf-dir DIR] [--nnet-models \"rescnn gru\"]
  [--nnet-strategies \"softmax triplet softmax_triplet\"] [--fusion-strategy softmax_triplet]
  [--train-fractions \"0.25 0.5\"] [--transfer-from EXP_DIR]"

. ../../utils/parse_options.sh
[ $# -eq 0 ] || { echo "$help_message" >&2; exit 1; }

train_set="train"
dev_set="dev"
eval_set="eval"
log "$0 $*: stages $stage..$stop_stage, nj=$nj, data=$data, exp=$exp"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  # Disjoint train / dev / eval speakers; eval has 19 utterances per speaker like the
  # paper's Eva200 (paper §4.1).  Generation is seeded and skips finished wavs.
  sig="seed=$seed $corpus_opts"
  if [ -f "$data/.corpus.done" ] && [ "$(cat "$data/.corpus.done")" = "$sig" ]; then
    log "stage 0: corpus already made ($sig)"
  else
    log "stage 0: generating the synthetic corpus into $corpus_dir (log: $exp/log/make_corpus.log)"
    # shellcheck disable=SC2086  # corpus_opts holds several options
    run_jobs.sh "$exp/log/make_corpus.log" python local/make_corpus.py --out-dir "$corpus_dir" \
      --data-dir "$data" --seed "$seed" --nj "$nj" $corpus_opts
    for x in $train_set $dev_set $eval_set; do validate_data_dir.sh "$data/$x"; done
    echo "$sig" > "$data/.corpus.done"
  fi
fi

. ../../utils/stages.sh
# Results, seed 0, eval `trials` (1,900 anchors x (1 + 99)), EER / ACC; all in exp/RESULTS.md:
#   stage 2  MFCC-stats cosine                        21.55% / 36.53%
#   stage 5  i-vector PLDA (cosine)                    3.11% / 89.53%  (4.63% / 85.63%)
#            PLDA with k = 1, 2, 3, 5 enrollment utts  3.23, 1.79, 1.29, 0.79%
#   stage 9  ResCNN softmax / triplet / both          16.79 / 16.32 / 13.52%
#            GRU    softmax / triplet / both           8.20 /  9.63 /  8.00%
#   stage 10 embedding / score fusion of both          7.74 /  7.44%
#   stage 11 (--train-fractions "0.25 0.5") GRU 25 / 50 / 100% of the speakers:
#            14.95 / 10.79 / 8.00%; ResCNN 24.88 / 18.62 / 13.52%

log "$0: done (stages $stage..$stop_stage)"
