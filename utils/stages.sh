# shellcheck shell=bash disable=SC2154  # the variables below are the recipe's
# The shared stages 1-10 of every recipe (SPEC "Stage list of a full recipe").
#
# Sourced by egs/<corpus>/run.sh after its parameters and its own stage 0 (data prep):
#
#   . ../../utils/stages.sh
#
# It reads these variables of the recipe (all must be set; see egs/mini/run.sh):
#   stage stop_stage nj seed max_failed_fraction data exp
#   train_set dev_set eval_set   data dir names under $data (dev_set may be "")
#   feat_conf ivector_conf       YAML configs
#   nnet_conf_dir                where <model>_softmax.yaml, <model>_triplet.yaml and
#                                <model>_triplet_only.yaml are
#   nnet_models nnet_strategies  e.g. "rescnn gru" and "softmax triplet softmax_triplet"
#   fusion_strategy              which strategy's models are fused (T6) and shown in T8
#   report_title                 title of $exp/RESULTS.md
#
# Optional, with defaults that skip them:
#   trials_opts                  extra make_trials options (e.g. "--enroll-counts 1,2")
#   train_fractions              e.g. "0.25 0.5": stage 11, the training-size study (T7)
#   transfer_from                an exp/ dir of another recipe: stage 12, transfer (T9/T10)
#
# Stages: 1 fbank + VAD, 2 trials + MFCC-stats reference, 3 UBM, 4 T-matrix + i-vectors,
# 5 LDA/PLDA scoring, 6 softmax pre-training, 7 triplet training, 8 embedding
# extraction, 9 cosine scoring + metrics, 10 fusion + $exp/RESULTS.md; 11 training
# on fractions of the training speakers; 12 a model of another corpus, as is and
# fine-tuned with triplet loss here.  Stages 11 and 12 rewrite $exp/RESULTS.md.
# Every stage can be rerun: finished work is skipped (.done markers, per-job markers,
# resumable checkpoints, up-to-date records), so a crashed run continues.

for _v in stage stop_stage nj seed max_failed_fraction data exp train_set dev_set eval_set \
    feat_conf ivector_conf nnet_conf_dir nnet_models nnet_strategies fusion_strategy report_title; do
  [ -n "${!_v+set}" ] || die "utils/stages.sh: the recipe must set \$$_v before sourcing it"
done
unset _v
trials_opts=${trials_opts:-}
train_fractions=${train_fractions:-}
transfer_from=${transfer_from:-}
feature_sets="$train_set $dev_set $eval_set"
eval_dir=$data/$eval_set
dev_dir=-
[ -n "$dev_set" ] && dev_dir=$data/$dev_set

# The trial lists of the eval set: the paper's 1 + 99 list, the k-enrollment lists, then
# any other trials_<name> a data prep wrote (e.g. VoxCeleb1-O as trials_vox1_o).
eval_trials() {
  local t f
  for t in trials trials_enroll1 trials_enroll2 trials_enroll3 trials_enroll5; do
    [ -f "$eval_dir/$t" ] && echo "$t"
  done
  for f in "$eval_dir"/trials_*; do
    t=${f##*/}
    case $t in trials_enroll*) ;; *) [ -f "$f" ] && echo "$t" ;; esac
  done
  return 0
}
# --enroll2utt for the k-enrollment lists, nothing for utterance-level lists.
enroll_opt() { case $1 in trials_enroll*) echo "--enroll2utt $eval_dir/enroll2utt" ;; esac; }
# Stages 8 and 9 for one experiment: embeddings of the eval set, cosine scores, RESULTS.md.
embed_and_score() {
  local tag=$1 t
  run_jobs.sh "$exp/$tag/log/extract_$eval_set.log" \
    python -m deepspeaker.bin.extract_embeddings "$exp/$tag" "$eval_dir"
  for t in $(eval_trials); do
    # shellcheck disable=SC2046  # enroll_opt prints zero or two words
    run_jobs.sh "$exp/$tag/log/score_cosine_$t.log" python -m deepspeaker.bin.score_embeddings \
      $(enroll_opt "$t") "$eval_dir" "$eval_dir/$t" "$exp/$tag/scores/cosine_$t" \
      "$exp/$tag/$eval_set/embedding.scp"
  done
  python -m deepspeaker.bin.summarize_scores --title "$tag ($report_title)" "$exp/$tag" "$eval_dir" > /dev/null
}
make_report() {
  log "report -> $exp/RESULTS.md"
  python -m deepspeaker.bin.make_report --title "$report_title" --eval-set "$eval_set" \
    --strategy "$fusion_strategy" "$exp" "$data"
}
has_strategy() { case " $nnet_strategies " in *" $1 "*) return 0 ;; esac; return 1; }
# The trained embedding experiments, as <model>_<strategy> tags.
nnet_tags() {
  local m s
  for m in $nnet_models; do
    for s in softmax triplet softmax_triplet; do
      has_strategy "$s" && echo "${m}_$s"
    done
  done
  return 0
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  # 64-d log mel fbank, 25 ms / 10 ms, and energy VAD (paper §4.3).  Stored raw;
  # per-utterance CMVN on voiced frames is applied when features are read.
  for x in $feature_sets; do
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
  if [ ! -f "$eval_dir/.trials.done" ]; then
    log "stage 2: trials for $eval_dir"
    # shellcheck disable=SC2086  # trials_opts holds several options
    python -m deepspeaker.bin.make_trials --seed "$seed" $trials_opts "$eval_dir"
    touch "$eval_dir/.trials.done"
  fi
  # The bar every system must clear: 20-MFCC mean + std, cosine (no training at all).
  ref=$exp/mfcc_stats
  mkdir -p "$ref/scores"
  for t in $(eval_trials); do
    # shellcheck disable=SC2046  # enroll_opt prints zero or two words
    python -m deepspeaker.bin.score_mfcc_stats $(enroll_opt "$t") "$eval_dir" "$eval_dir/$t" \
      "$ref/scores/cosine_$t"
  done
  python -m deepspeaker.bin.summarize_scores --title "MFCC-stats reference ($report_title)" \
    "$ref" "$eval_dir"
fi

ivec=$exp/ivector
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  # Diagonal GMM-UBM on MFCC + deltas of voiced frames (paper §4.2).
  log "stage 3: UBM ($ivector_conf) -> $ivec/models/ubm.npz (log: $ivec/log/train_ubm.log)"
  run_jobs.sh "$ivec/log/train_ubm.log" python -m deepspeaker.bin.train_ubm \
    --config "$ivector_conf" "$data/$train_set" "$ivec"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  # Total-variability matrix by EM, then posterior-mean i-vectors for every set.
  log "stage 4: i-vector extractor (log: $ivec/log/train_ivector_extractor.log)"
  run_jobs.sh "$ivec/log/train_ivector_extractor.log" \
    python -m deepspeaker.bin.train_ivector_extractor "$data/$train_set" "$ivec"
  for x in $train_set $eval_set; do
    run_jobs.sh "$ivec/log/extract_ivectors_$x.log" \
      python -m deepspeaker.bin.extract_ivectors "$ivec" "$data/$x"
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # LDA + length norm + two-covariance PLDA; k-utterance enrollment scored as
  # ivector-plda-scoring --num-utts does.  Cosine on the same vectors for comparison.
  log "stage 5: LDA/PLDA and scoring"
  run_jobs.sh "$ivec/log/train_plda.log" python -m deepspeaker.bin.train_plda "$ivec" "$data/$train_set"
  mkdir -p "$ivec/scores"
  for method in plda cosine; do
    for t in $(eval_trials); do
      # shellcheck disable=SC2046
      run_jobs.sh "$ivec/log/score_${method}_$t.log" python -m deepspeaker.bin.score_plda \
        --method "$method" $(enroll_opt "$t") "$ivec" "$eval_dir" "$eval_dir/$t" "$ivec/scores/${method}_$t"
    done
  done
  python -m deepspeaker.bin.summarize_scores --title "i-vector baseline ($report_title)" "$ivec" "$eval_dir"
  log "stage 5: results in $ivec/RESULTS.md"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  # Softmax pre-training over the training speakers (paper §3.4).  Rerunning the same
  # command resumes from exp/<tag>/last.pt; a finished run does nothing.
  if has_strategy softmax || has_strategy softmax_triplet; then
    for m in $nnet_models; do
      log "stage 6: $m softmax pre-training -> $exp/${m}_softmax (logs in $exp/${m}_softmax/log)"
      python -m deepspeaker.bin.train_embedding --config "$nnet_conf_dir/${m}_softmax.yaml" \
        "$data/$train_set" "$dev_dir" "$exp/${m}_softmax"
    done
  fi
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  # Cosine triplet loss with hard negatives searched over the whole batch on all ranks
  # (paper §3.3), from the softmax model (softmax_triplet) and/or from scratch (triplet).
  for m in $nnet_models; do
    if has_strategy softmax_triplet; then
      log "stage 7: $m triplet training from $exp/${m}_softmax/best.pt -> $exp/${m}_softmax_triplet"
      python -m deepspeaker.bin.train_embedding --config "$nnet_conf_dir/${m}_triplet.yaml" \
        --init "$exp/${m}_softmax/best.pt" "$data/$train_set" "$dev_dir" "$exp/${m}_softmax_triplet"
    fi
    if has_strategy triplet; then
      log "stage 7: $m triplet training from scratch -> $exp/${m}_triplet"
      python -m deepspeaker.bin.train_embedding --config "$nnet_conf_dir/${m}_triplet_only.yaml" \
        "$data/$train_set" "$dev_dir" "$exp/${m}_triplet"
    fi
  done
fi

if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 8 ]; then
  # 8: whole-utterance embeddings of the eval set from each experiment's best checkpoint
  # (model settings from its config.yaml; a rerun with nothing changed does nothing).
  # 9: cosine scores of every trial list (k-utterance models: averaged embeddings, T8).
  for tag in $(nnet_tags); do
    log "stages 8-9: embeddings and cosine scores of $eval_dir with $exp/$tag/best.pt"
    embed_and_score "$tag"
  done
fi

if [ "$stage" -le 10 ] && [ "$stop_stage" -ge 10 ]; then
  # Embedding fusion and score fusion of the $fusion_strategy models (paper T6), then
  # the report: T5, T6, T8, the paper's claims, DET curves and score histograms.
  fused=""
  for m in $nnet_models; do
    [ -f "$exp/${m}_$fusion_strategy/$eval_set/embedding.scp" ] && fused="$fused ${m}_$fusion_strategy"
  done
  read -r -a fused <<< "$fused"
  if [ "${#fused[@]}" -ge 2 ]; then
    log "stage 10: fusion of ${fused[*]}"
    mkdir -p "$exp/fusion/scores"
    echo "${fused[*]}" > "$exp/fusion/systems"
    scps=() ; for tag in "${fused[@]}"; do scps+=("$exp/$tag/$eval_set/embedding.scp"); done
    for t in $(eval_trials); do
      scores=() ; for tag in "${fused[@]}"; do scores+=("$exp/$tag/scores/cosine_$t"); done
      # shellcheck disable=SC2046
      run_jobs.sh "$exp/fusion/log/embedding_$t.log" python -m deepspeaker.bin.score_embeddings \
        $(enroll_opt "$t") "$eval_dir" "$eval_dir/$t" "$exp/fusion/scores/embedding_$t" "${scps[@]}"
      run_jobs.sh "$exp/fusion/log/score_$t.log" python -m deepspeaker.bin.fuse_scores \
        "$eval_dir/$t" "$exp/fusion/scores/score_$t" "${scores[@]}"
    done
  else
    log "stage 10: fewer than two $fusion_strategy models have embeddings; no fusion"
  fi
  make_report
fi

if [ "$stage" -le 11 ] && [ "$stop_stage" -ge 11 ] && [ -n "$train_fractions" ]; then
  # Training-size study (paper T7): the $fusion_strategy models trained on nested,
  # seeded fractions of the training speakers (same confs, same dev and eval sets).
  for f in $train_fractions; do
    pct=$(awk -v f="$f" 'BEGIN { printf "%d", f * 100 + 0.5 }')
    sub=$data/${train_set}_spk$pct
    if [ ! -f "$sub/.subset.done" ]; then
      log "stage 11: $pct% of the speakers of $data/$train_set -> $sub"
      python -m deepspeaker.bin.subset_data_dir --seed "$seed" --speaker-fraction "$f" \
        "$data/$train_set" "$sub"
      touch "$sub/.subset.done"
    fi
    for m in $nnet_models; do
      tag=${m}_softmax_spk$pct
      log "stage 11: $m on $pct% of the training speakers -> $exp/${m}_${fusion_strategy}_spk$pct"
      if [ "$fusion_strategy" = softmax_triplet ]; then
        python -m deepspeaker.bin.train_embedding --config "$nnet_conf_dir/${m}_softmax.yaml" \
          "$sub" "$dev_dir" "$exp/$tag"
        python -m deepspeaker.bin.train_embedding --config "$nnet_conf_dir/${m}_triplet.yaml" \
          --init "$exp/$tag/best.pt" "$sub" "$dev_dir" "$exp/${m}_softmax_triplet_spk$pct"
      else
        conf=${m}_$fusion_strategy.yaml
        [ "$fusion_strategy" = triplet ] && conf=${m}_triplet_only.yaml
        python -m deepspeaker.bin.train_embedding --config "$nnet_conf_dir/$conf" \
          "$sub" "$dev_dir" "$exp/${m}_${fusion_strategy}_spk$pct"
      fi
      embed_and_score "${m}_${fusion_strategy}_spk$pct"
    done
  done
  make_report
fi

if [ "$stage" -le 12 ] && [ "$stop_stage" -ge 12 ] && [ -n "$transfer_from" ]; then
  # Transfer (paper T9/T10): the $fusion_strategy model of another recipe, scored here
  # as it is (<model>_source_only), then fine-tuned on our training set with the
  # triplet loss (<model>_transfer, conf <model>_transfer.yaml).
  for m in $nnet_models; do
    src=$transfer_from/${m}_$fusion_strategy
    [ -f "$src/best.pt" ] || die "stage 12: $src/best.pt not found (train that recipe first)"
    mkdir -p "$exp/${m}_source_only"
    # A copy, not a link: this experiment must not change when the source is retrained.
    if [ ! -f "$exp/${m}_source_only/best.pt" ]; then
      cp "$src/config.yaml" "$exp/${m}_source_only/config.yaml"
      cp "$src/best.pt" "$exp/${m}_source_only/.best.pt.tmp"
      mv "$exp/${m}_source_only/.best.pt.tmp" "$exp/${m}_source_only/best.pt"
      echo "$src" > "$exp/${m}_source_only/source"
    fi
    embed_and_score "${m}_source_only"
    log "stage 12: $m fine-tuned from $src -> $exp/${m}_transfer"
    python -m deepspeaker.bin.train_embedding --config "$nnet_conf_dir/${m}_transfer.yaml" \
      --init "$exp/${m}_source_only/best.pt" "$data/$train_set" "$dev_dir" "$exp/${m}_transfer"
    embed_and_score "${m}_transfer"
  done
  make_report
fi
