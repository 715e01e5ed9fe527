#!/usr/bin/env bash
# egs/mini: the embedded synthetic corpus (local/make_corpus.py), end to end on a
# laptop CPU.  Parameters and the stage list only; the work is in deepspeaker.bin.
#
#   ./run.sh [--stage N] [--stop-stage M] [--nj 2] [--corpus-opts "--num-eval-spk 20"]
#
# Stages: 0 corpus + data dirs, 1 fbank + VAD, 2 trials + MFCC-stats reference,
# 3 UBM, 4 i-vector extractor + i-vectors, 5 LDA/PLDA scoring + metrics,
# 6 softmax pre-training, 7 triplet training (conf/<model>_{softmax,triplet}.yaml).
# Every stage can be rerun: finished work is skipped (.done markers, per-job markers).
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
nnet_models="rescnn gru"                    # frame-level networks (paper T1, T2)
nnet_strategies="softmax softmax_triplet"   # of T5's: softmax, triplet, softmax_triplet
max_failed_fraction=0.05
help_message="Usage: $0 [--stage N] [--stop-stage M] [--nj N] [--corpus-opts STR] [--data DIR] [--exp DIR] [--ivector-conf YAML]
  [--nnet-models \"rescnn gru\"] [--nnet-strategies \"softmax triplet softmax_triplet\"]"

. ../../utils/parse_options.sh
[ $# -eq 0 ] || { echo "$help_message" >&2; exit 1; }

sets="train dev eval"
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
    for x in $sets; do validate_data_dir.sh "$data/$x"; done
    echo "$sig" > "$data/.corpus.done"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  # 64-d log mel fbank, 25 ms / 10 ms, and energy VAD (paper §4.3).  Stored raw;
  # per-utterance CMVN on voiced frames is applied when features are read.
  for x in $sets; do
    if [ -f "$data/$x/.fbank_vad.done" ]; then
      log "stage 1: $data/$x already has features"; continue
    fi
    log "stage 1: fbank + VAD for $data/$x ($nj jobs, logs in $exp/make_fbank_vad/$x)"
    python -m deepspeaker.bin.compute_fbank_vad --config "$feat_conf" --nj "$nj" \
      --max-failed-fraction "$max_failed_fraction" "$data/$x" "$exp/make_fbank_vad/$x"
    validate_data_dir.sh --need feats.scp,vad.scp,utt2num_frames "$data/$x"
    touch "$data/$x/.fbank_vad.done"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  # For every eval utterance 1 positive + 99 negatives (paper §4.1), and the same
  # anchors against 1, 2, 3, 5-utterance enrollment models (paper T8).
  if [ ! -f "$data/eval/.trials.done" ]; then
    log "stage 2: trials for $data/eval"
    python -m deepspeaker.bin.make_trials --seed "$seed" "$data/eval"
    touch "$data/eval/.trials.done"
  fi
  # The bar every system must clear: 20-MFCC mean + std, cosine (no training at all).
  # Seed 0: EER 21.55%, minDCF 0.996, ACC 36.53% on `trials`.
  ref=$exp/mfcc_stats
  mkdir -p "$ref/scores"
  python -m deepspeaker.bin.score_mfcc_stats "$data/eval" "$data/eval/trials" "$ref/scores/cosine_trials"
  for k in 1 2 3 5; do
    python -m deepspeaker.bin.score_mfcc_stats --enroll2utt "$data/eval/enroll2utt" \
      "$data/eval" "$data/eval/trials_enroll$k" "$ref/scores/cosine_trials_enroll$k"
  done
  python -m deepspeaker.bin.summarize_scores --title "MFCC-stats reference (egs/mini)" "$ref" "$data/eval"
fi

ivec=$exp/ivector
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  # Diagonal GMM-UBM on MFCC + deltas of voiced frames (paper §4.2).
  log "stage 3: UBM ($ivector_conf) -> $ivec/models/ubm.npz (log: $ivec/log/train_ubm.log)"
  run_jobs.sh "$ivec/log/train_ubm.log" python -m deepspeaker.bin.train_ubm \
    --config "$ivector_conf" "$data/train" "$ivec"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  # Total-variability matrix by EM, then posterior-mean i-vectors for every set.
  log "stage 4: i-vector extractor (log: $ivec/log/train_ivector_extractor.log)"
  run_jobs.sh "$ivec/log/train_ivector_extractor.log" \
    python -m deepspeaker.bin.train_ivector_extractor "$data/train" "$ivec"
  for x in train eval; do
    run_jobs.sh "$ivec/log/extract_ivectors_$x.log" \
      python -m deepspeaker.bin.extract_ivectors "$ivec" "$data/$x"
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # LDA + length norm + two-covariance PLDA; k-utterance enrollment scored as
  # ivector-plda-scoring --num-utts does.  Cosine on the same vectors for comparison.
  # Seed 0, `trials`: PLDA EER 3.11% / ACC 89.53%, cosine 4.63% / 85.63%; PLDA EER with
  # 1, 2, 3, 5 enrollment utterances: 3.23, 1.79, 1.29, 0.79%.
  log "stage 5: LDA/PLDA and scoring"
  run_jobs.sh "$ivec/log/train_plda.log" python -m deepspeaker.bin.train_plda "$ivec" "$data/train"
  mkdir -p "$ivec/scores"
  for method in plda cosine; do
    run_jobs.sh "$ivec/log/score_${method}_trials.log" python -m deepspeaker.bin.score_plda \
      --method "$method" "$ivec" "$data/eval" "$data/eval/trials" "$ivec/scores/${method}_trials"
    for k in 1 2 3 5; do
      run_jobs.sh "$ivec/log/score_${method}_trials_enroll$k.log" python -m deepspeaker.bin.score_plda \
        --method "$method" --enroll2utt "$data/eval/enroll2utt" "$ivec" "$data/eval" \
        "$data/eval/trials_enroll$k" "$ivec/scores/${method}_trials_enroll$k"
    done
  done
  python -m deepspeaker.bin.summarize_scores --title "i-vector baseline (egs/mini)" "$ivec" "$data/eval"
  log "stage 5: results in $ivec/RESULTS.md"
fi

has_strategy() { case " $nnet_strategies " in *" $1 "*) return 0 ;; esac; return 1; }

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  # Softmax pre-training over the training speakers (paper §3.4).  Rerunning the same
  # command resumes from exp/<tag>/last.pt; a finished run does nothing.
  if has_strategy softmax || has_strategy softmax_triplet; then
    for m in $nnet_models; do
      log "stage 6: $m softmax pre-training -> $exp/${m}_softmax (logs in $exp/${m}_softmax/log)"
      python -m deepspeaker.bin.train_embedding --config "conf/${m}_softmax.yaml" \
        "$data/train" "$data/dev" "$exp/${m}_softmax"
    done
  fi
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  # Cosine triplet loss with hard negatives searched over the whole batch on all ranks
  # (paper §3.3), from the softmax model (softmax_triplet) and/or from scratch (triplet).
  for m in $nnet_models; do
    if has_strategy softmax_triplet; then
      log "stage 7: $m triplet training from $exp/${m}_softmax/best.pt -> $exp/${m}_softmax_triplet"
      python -m deepspeaker.bin.train_embedding --config "conf/${m}_triplet.yaml" \
        --init "$exp/${m}_softmax/best.pt" "$data/train" "$data/dev" "$exp/${m}_softmax_triplet"
    fi
    if has_strategy triplet; then
      log "stage 7: $m triplet training from scratch -> $exp/${m}_triplet"
      python -m deepspeaker.bin.train_embedding --config "conf/${m}_triplet_only.yaml" \
        "$data/train" "$data/dev" "$exp/${m}_triplet"
    fi
  done
fi

log "$0: done (stages $stage..$stop_stage)"
