# shellcheck shell=bash disable=SC2154  # the variables below are the recipe's
# The shared stages 1-12 of every recipe (SPEC "Stage list of a full recipe").
#
# Sourced by egs/<corpus>/run.sh after utils/recipe.sh, its parameters and its own
# stage 0 (data prep):
#
#   . ../../utils/stages.sh
#
# It reads the options of utils/recipe.sh (stage stop_stage nj seed data exp feat_conf
# ivector_conf nnet_conf_dir nnet_models nnet_strategies fusion_strategy nnet_backends
# nnet_backend_conf nnet_lda_dim nnet_backend_set nnet_parallel trials_opts train_fractions transfer_from
# max_failed_fraction report_title augment_conf rirs_dir musan_dir ablation asnorm_top_n) and the data dir
# names train_set dev_set eval_set under $data (dev_set may be "") and, optionally,
# eval_sets: several eval sets, the first the main one (it is eval_set then); the eval
# sets of --cross-corpora (eval_<corpus>, prepared here in stage 0) come after them.  Every
# system is scored on each eval set (stages 2, 4-5, 8-10, 11, 12), into scores/ for the
# main one and scores_<set>/ for the others; the main one alone gets the operating points,
# the per-system RESULTS.md and the report's tables, and RESULTS.md a table of every
# eval set.  A set's trial options are $trials_opts_<set> when the recipe sets one.
#
# Stages: 1 fbank + VAD, 2 trials + MFCC-stats reference, 3 UBM, 4 T-matrix + i-vectors,
# 5 LDA/PLDA scoring, 6 softmax pre-training, 7 triplet training, 8 embedding
# extraction, 9 cosine and PLDA scoring + metrics, 10 fusion + $exp/RESULTS.md (each
# system that scores, in 5, 9 and 10, also saves its operating points); 11 training
# on fractions of the training speakers; 12 a model of another corpus, as is and
# fine-tuned with triplet loss here.  Stages 11 and 12 rewrite $exp/RESULTS.md.
#
# Every stage can be rerun, by one rule (deepspeaker/marker.py): each output records the
# signature of what made it (config, inputs, options).  The same signature: the work is
# skipped (a crashed run continues from what finished); another one: it is redone, or,
# for a trained model, refused with the command that forces it (rm -r the experiment
# dir and rerun).  The commands below decide that themselves; the shell only does it
# for the copy of stage 12.

for _v in stage stop_stage nj seed max_failed_fraction data exp train_set dev_set eval_set \
    feat_conf ivector_conf nnet_conf_dir nnet_models nnet_strategies fusion_strategy \
    nnet_backends nnet_backend_conf nnet_lda_dim trials_opts train_fractions transfer_from \
    report_title augment_conf rirs_dir musan_dir ablation nnet_parallel nnet_backend_set asnorm_top_n \
    cmd; do
  [ -n "${!_v+set}" ] || die "utils/stages.sh: the recipe must set \$$_v (utils/recipe.sh)"
done
unset _v
for _s in $nnet_strategies $fusion_strategy; do
  case $_s in softmax|triplet|softmax_triplet) ;;
    *) die "unknown strategy '$_s' (--nnet-strategies, --fusion-strategy): softmax, triplet or softmax_triplet" ;;
  esac
done
for _s in $nnet_backends; do
  case $_s in cosine|plda) ;;
    *) die "unknown back end '$_s' (--nnet-backends): cosine or plda" ;;
  esac
done
[ -n "$nnet_backends" ] || die "--nnet-backends is empty: cosine, plda or both"
case $nnet_backend_set in clean_speed|clean|all) ;;
  *) die "unknown --nnet-backend-set '$nnet_backend_set': clean_speed, clean or all" ;;
esac
unset _s
[[ $asnorm_top_n =~ ^[0-9]+$ ]] && [ "$asnorm_top_n" != 1 ] \
  || die "--asnorm-top-n '$asnorm_top_n': a number >= 2 (the top-N cohort scores), or 0 for no AS-norm"
# One job through the job runner of --cmd (Kaldi's cmd.sh): run_jobs.sh here, slurm_jobs.sh
# on a cluster.  A stage that splits its work into --nj jobs runs as a local run_jobs.sh job
# (for its log) and sends its jobs through the same runner itself ($DS_CMD), so that no
# cluster job waits on others.  --cmd is shell words and may quote its own options: eval.
#   run_cmd LOG COMMAND...
run_cmd() { eval "$cmd" '"$@"'; }
[ -n "${eval_sets:-}" ] || eval_sets=$eval_set
for _e in $(cross_eval_sets); do
  case " $eval_sets " in *" $_e "*) ;; *) eval_sets="$eval_sets $_e" ;; esac
done
if in_stages 0; then
  for _c in $cross_corpora; do prepare_corpus "$_c"; done
fi
read -r -a _evs <<< "$eval_sets"
main_eval_set=${_evs[0]}
unset _evs
# use_eval_set SET: the eval set the scoring functions below work on: eval_set, eval_dir,
# sc (its score dir name: scores for the main set, scores_SET for another, the rule of
# deepspeaker.scoring.experiment.score_dir_name) and ev (_SET or nothing, for log names).
use_eval_set() {
  eval_set=$1 eval_dir=$data/$1 sc=scores ev=""
  [ "$1" = "$main_eval_set" ] || { sc=scores_$1 ev=_$1; }
}
# for_each_eval_set COMMAND...: COMMAND with each eval set in use, then the main one again.
for_each_eval_set() {
  local e
  for e in $eval_sets; do use_eval_set "$e"; "$@"; done
  use_eval_set "$main_eval_set"
}
use_eval_set "$main_eval_set"
# The networks' training set: the clean one, or it combined with its augmented copies
# (stage 1, --augment-conf).  The i-vector system trains on the clean set.
nnet_train_dir=$data/$train_set
[ -n "$augment_conf" ] && nnet_train_dir=$data/${train_set}_combined
# The utterances of the augmented set that the embeddings' PLDA learns from
# (--nnet-backend-set): written by stage 1 (clean_speed: the clean set and its speed
# copies, which are new speakers; the noisy and reverberant copies are left out).
backend_clean_speed=$data/${train_set}_clean_sp
dev_dir=-
[ -n "$dev_set" ] && dev_dir=$data/$dev_set

# The trial lists of the eval set, one name a line (the report's order and answer).
eval_trials() { python -m deepspeaker.bin.trial_lists "$eval_dir"; }
# --enroll2utt for the k-enrollment lists, nothing for utterance-level lists.
enroll_opt() { case $1 in trials_enroll*) echo "--enroll2utt $eval_dir/enroll2utt" ;; esac; }
has_backend() { case " $nnet_backends " in *" $1 "*) return 0 ;; esac; return 1; }
# The data dir the PLDA of a system trained on TRAIN_DIR learns from: TRAIN_DIR, or for
# the augmented set the part of it that --nnet-backend-set names.
#   backend_dir TRAIN_DIR
backend_dir() {
  if [ "$1" != "$nnet_train_dir" ] || [ -z "$augment_conf" ]; then echo "$1"; return; fi
  case $nnet_backend_set in
    all) echo "$1" ;;
    clean) echo "$data/$train_set" ;;
    clean_speed) if [ -f "$backend_clean_speed/utt2spk" ]; then echo "$backend_clean_speed"
                 else echo "$data/$train_set"; fi ;;
  esac
}
# Stage 9's PLDA of one experiment: LDA + length norm + PLDA on the embeddings of (part of)
# the set it was trained on (its system.yaml's train_set, through backend_dir: Kaldi's
# x-vector back end), in $exp/<tag>/backend.  The embeddings of that set are also the
# AS-norm cohort (without PLDA, they are extracted for it alone).
#   train_backend TAG TRAIN_DIR
train_backend() {
  local tag=$1 train_dir
  train_dir=$(backend_dir "$2")
  run_jobs.sh "$exp/$tag/log/extract_${train_dir##*/}.log" \
    python -m deepspeaker.bin.extract_embeddings --nj "$nj" "$exp/$tag" "$train_dir"
  has_backend plda || return 0
  # shellcheck disable=SC2086  # nnet_lda_dim is one number or nothing
  run_cmd "$exp/$tag/log/train_plda.log" python -m deepspeaker.bin.train_plda \
    --vectors "$exp/$tag/${train_dir##*/}/embedding.scp" --config "$nnet_backend_conf" \
    ${nnet_lda_dim:+--lda-dim $nnet_lda_dim} "$exp/$tag" "$train_dir"
}
with_asnorm() { [ "$asnorm_top_n" != 0 ]; }
# The AS-norm options of a scorer whose cohort is the vectors SCP of data dir DATA, saved
# as DIR/asnorm/METHOD.npz for the Python API and verify (score_embeddings, score_plda).
#   asnorm_opts SCP DATA DIR METHOD
asnorm_opts() {
  echo --asnorm-cohort "$1" --asnorm-data "$2" --asnorm-top-n "$asnorm_top_n" \
    --asnorm-save "$3/asnorm/$4.npz"
}
# Stages 8 and 9 for one experiment: its PLDA (plda) and AS-norm cohort from its training
# set's embeddings, then on every eval set the embeddings, the scores of every back end of
# --nnet-backends, and of the main list after AS-norm (<method>_asnorm_trials).
embed_and_score() {
  local tag=$1 train_dir="" bdir=""
  if has_backend plda || with_asnorm; then
    train_dir=$(python -m deepspeaker.bin.describe_system "$exp/$tag" --show train_set)
    if [ -n "$train_dir" ]; then
      train_backend "$tag" "$train_dir"
      bdir=$(backend_dir "$train_dir")
    else  # a model of another corpus, as it is
      log "$tag: no train_set in $exp/$tag/system.yaml, so no PLDA and no AS-norm (cosine only)"
    fi
  fi
  has_backend plda || train_dir=""
  for_each_eval_set score_embeddings_on "$tag" "$train_dir" "$bdir"
  # shellcheck disable=SC2086  # one word per back end
  save_points "$exp/$tag" $nnet_backends
  python -m deepspeaker.bin.summarize_scores --title "$tag ($report_title)" "$exp/$tag" "$eval_dir" > /dev/null
}
# embed_and_score on the eval set in use: TRAIN_DIR (PLDA) and BDIR (AS-norm cohort) may
# be "" for none.
#   score_embeddings_on TAG TRAIN_DIR BDIR
score_embeddings_on() {
  local tag=$1 train_dir=$2 bdir=$3 t lists plda_lists=() enroll=()
  run_jobs.sh "$exp/$tag/log/extract_$eval_set.log" \
    python -m deepspeaker.bin.extract_embeddings --nj "$nj" "$exp/$tag" "$eval_dir"
  lists=$(eval_trials)
  for t in $lists; do
    if has_backend cosine; then
      # shellcheck disable=SC2046  # enroll_opt prints zero or two words
      run_cmd "$exp/$tag/log/score_cosine_$t$ev.log" python -m deepspeaker.bin.score_embeddings \
        $(enroll_opt "$t") "$eval_dir" "$eval_dir/$t" "$exp/$tag/$sc/cosine_$t" \
        "$exp/$tag/$eval_set/embedding.scp"
    fi
    plda_lists+=("$eval_dir/$t" "$exp/$tag/$sc/plda_$t")
  done
  if [ -n "$bdir" ] && with_asnorm && has_backend cosine; then
    # shellcheck disable=SC2046  # asnorm_opts prints options and their values
    run_cmd "$exp/$tag/log/score_cosine_asnorm_trials$ev.log" \
      python -m deepspeaker.bin.score_embeddings $(asnorm_opts \
      "$exp/$tag/${bdir##*/}/embedding.scp" "$bdir" "$exp/$tag" cosine) "$eval_dir" \
      "$eval_dir/trials" "$exp/$tag/$sc/cosine_asnorm_trials" "$exp/$tag/$eval_set/embedding.scp"
  fi
  [ -n "$train_dir" ] || return 0
  # Every list in one run, as each start pays for the imports (k-utterance models as
  # ivector-plda-scoring --num-utts).
  [ -f "$eval_dir/enroll2utt" ] && enroll=(--enroll2utt "$eval_dir/enroll2utt")
  run_cmd "$exp/$tag/log/score_plda$ev.log" python -m deepspeaker.bin.score_plda \
    --vectors "$exp/$tag/$eval_set/embedding.scp" "${enroll[@]}" "$exp/$tag" "$eval_dir" \
    "${plda_lists[@]}"
  with_asnorm || return 0
  # shellcheck disable=SC2046
  run_cmd "$exp/$tag/log/score_plda_asnorm$ev.log" python -m deepspeaker.bin.score_plda \
    $(asnorm_opts "$exp/$tag/${bdir##*/}/embedding.scp" "$bdir" "$exp/$tag" plda) \
    --vectors "$exp/$tag/$eval_set/embedding.scp" "$exp/$tag" "$eval_dir" \
    "$eval_dir/trials" "$exp/$tag/$sc/plda_asnorm_trials"
}
# The operating points of a system: its thresholds (EER, FAR 1% and 0.1%, minDCF) and
# score calibration, fitted on half the anchors of the eval set's main list and measured
# on the other half, in DIR/operating_points/<method>.yaml (what verify decides with;
# deepspeaker/scoring/operating_points.py), for each METHOD DIR has main-list scores of,
# and for its AS-normed scores (<method>_asnorm_trials) where there are some.  Scores
# that have none (constant, a half of the list without targets) are named and the run
# goes on: the system and its metrics stand, RESULTS.md shows its points as not saved.
#   save_points DIR METHOD...
save_points() {
  local dir=$1 m v settings
  shift
  for m in "$@"; do
    for v in "$m" "${m}_asnorm"; do
      [ -f "$dir/scores/${v}_trials" ] || continue
      settings=()
      [ "$v" = "$m" ] || settings=(--asnorm "top_n=$asnorm_top_n")
      [ -f "$dir/asnorm/$m.npz" ] && [ "$v" != "$m" ] && settings+=(--asnorm "cohort=$dir/asnorm/$m.npz")
      run_cmd "$dir/log/operating_points_$v.log" python -m deepspeaker.bin.save_operating_points \
        --method "$v" --trials "$eval_dir/trials" "${settings[@]}" "$dir" \
        || log "WARNING: $dir: no operating points for its $v scores (log: $dir/log/operating_points_$v.log)"
    done
  done
}
make_report() {
  log "report -> $exp/RESULTS.md"
  local e others=()
  for e in $eval_sets; do [ "$e" = "$main_eval_set" ] || others+=(--also-eval-set "$e"); done
  python -m deepspeaker.bin.make_report --title "$report_title" --eval-set "$main_eval_set" \
    "${others[@]}" --strategy "$fusion_strategy" "$exp" "$data"
}
# The ablation: the $fusion_strategy systems also trained on the clean set alone.
with_ablation() { [ -n "$augment_conf" ] && [ "$ablation" = true ]; }
has_strategy() { case " $nnet_strategies " in *" $1 "*) return 0 ;; esac; return 1; }
# The trained embedding experiments of MODELS (default: --nnet-models), as
# <model>_<strategy> tags, each followed by its ablation twin trained without
# augmentation (<model>_<strategy>_noaug) where there is one.
#   nnet_tags [MODELS]
nnet_tags() {
  local m s
  for m in ${1:-$nnet_models}; do
    for s in softmax triplet softmax_triplet; do
      has_strategy "$s" || continue
      echo "${m}_$s"
      [ -f "$exp/${m}_${s}_noaug/system.yaml" ] && echo "${m}_${s}_noaug"
    done
  done
  return 0
}

# Runs FUNC MODEL for every model of --nnet-models: side by side when --nnet-parallel
# (each with DS_NUM_THREADS, its share of the cores, and its output prefixed "[model]"),
# else one after another.  Fails once all have ended when any failed, naming them.
#   for_each_model FUNC
for_each_model() {
  local fn=$1 m n i share pids=() failed="" models=()
  read -r -a models <<< "$nnet_models"
  n=${#models[@]}
  if [ "$nnet_parallel" != true ] || [ "$n" -lt 2 ]; then
    for m in "${models[@]}"; do "$fn" "$m"; done
    return 0
  fi
  share=$(python -c 'from deepspeaker.threads import core_budget; print(core_budget()[0])')
  share=$(( share / n > 0 ? share / n : 1 ))
  log "stages 6-9: ${models[*]} side by side, $share core(s) each"
  # Each in its own process group (set -m): a script's background jobs would ignore
  # Ctrl-C, so the trap passes an interrupt on to every group and exits 130.
  set -m
  for m in "${models[@]}"; do
    ( export DS_NUM_THREADS=$share
      "$fn" "$m" 2>&1 | sed -u "s/^/[$m] /" ) &
    pids+=($!)
  done
  set +m
  _interrupted=""
  # shellcheck disable=SC2064  # the pids are fixed now
  trap "_interrupted=1; for p in ${pids[*]}; do kill -INT -- -\$p 2>/dev/null || true; done" INT TERM
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed="$failed ${models[$i]}"
  done
  trap - INT TERM
  if [ -n "$_interrupted" ]; then
    wait || true
    log "interrupted (stages 6-9 of ${models[*]}); rerun to continue where they stopped"
    exit 130
  fi
  [ -z "$failed" ] || die "stages 6-9 failed for:$failed (see the lines marked [model] above)"
}

# Stages 6-9 of one network: its trainings, then the embeddings and scores of each of
# its systems, the stages of --stage..--stop-stage only.  The networks share nothing
# until fusion (stage 10), so for_each_model may run them side by side.
#   nnet_stages MODEL
nnet_stages() {
  local m=$1 s tag
  if in_stages 6 && { has_strategy softmax || has_strategy softmax_triplet; }; then
    # Softmax pre-training over the training speakers (paper §3.4).
    log "stage 6: $m softmax pre-training"
    train_system "$m" softmax "$nnet_train_dir" ""
    if with_ablation && [ "$fusion_strategy" = softmax_triplet ]; then
      log "stage 6: $m softmax pre-training without augmentation (ablation)"
      train_system "$m" softmax "$data/$train_set" _noaug
    fi
  fi
  if in_stages 7; then
    # Cosine triplet loss with hard negatives searched over the whole batch on all ranks
    # (paper §3.3), from the softmax model (softmax_triplet) and/or from scratch (triplet).
    for s in softmax_triplet triplet; do
      if has_strategy "$s"; then
        log "stage 7: $m triplet training ($s)"
        train_system "$m" "$s" "$nnet_train_dir" ""
      fi
      if with_ablation && [ "$s" = "$fusion_strategy" ] && [ "$s" != softmax ]; then
        log "stage 7: $m triplet training ($s) without augmentation (ablation)"
        train_system "$m" "$s" "$data/$train_set" _noaug
      fi
    done
  fi
  if in_stages 8 9; then
    # 8: whole-utterance embeddings of the eval set from each experiment's best
    # checkpoint (model settings from its config.yaml; a rerun with nothing changed does
    # nothing).  9: the scores of every trial list by each back end of --nnet-backends:
    # cosine (k-utterance models: averaged embeddings, T8) and PLDA (LDA + length norm +
    # PLDA trained on the system's training-set embeddings, as Kaldi's x-vector recipe;
    # stage 8 then embeds that set too).
    for tag in $(nnet_tags "$m"); do
      log "stages 8-9: embeddings and $nnet_backends scores on $eval_sets ($data) with $exp/$tag/best.pt"
      embed_and_score "$tag"
    done
  fi
}

# Where a training runs (utils/recipe.sh: --nproc-per-node, --nnodes, --node-rank, --rdzv-*,
# --train-cmd): one process on one node is the plain python -m of train_embedding, as
# always; more go through deepspeaker.bin.launch_training, which runs torchrun (why each of
# its choices: deepspeaker/nnet/launch.py; the commands per setup: README, Scale out).  The
# options are checked here, before the first stage runs, not after stages 1-5.
for _v in nproc_per_node nnodes node_rank rdzv_endpoint rdzv_id rdzv_timeout train_cmd; do
  [ -n "${!_v+set}" ] || die "utils/stages.sh: the recipe must set \$$_v (utils/recipe.sh)"
done
unset _v
launch_opts=(--nproc-per-node "$nproc_per_node" --nnodes "$nnodes" --node-rank "$node_rank"
  --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "$rdzv_id" --rdzv-timeout "$rdzv_timeout")
one_process() { [ "$nproc_per_node" = 1 ] && [ "$nnodes" = 1 ] && [ "$node_rank" = 0 ]; }
if ! one_process; then
  python -m deepspeaker.bin.launch_training "${launch_opts[@]}" || exit 1
  if [ "$nnodes" -gt 1 ]; then
    # Every node runs the same trainings in the same order; the other stages write shared
    # files, so they run on one node, after the training (README, Scale out).
    [ "$stage" -ge 6 ] && [ "$stop_stage" -le 7 ] || die "--nnodes $nnodes: the nodes train" \
      "together in stages 6-7 only: run ./run.sh --stage 6 --stop-stage 7 --nnodes $nnodes" \
      "--node-rank K --rdzv-endpoint HOST:PORT on every node K, then --stage 8 on one node" \
      "without --nnodes (README, Scale out)"
    # Side by side, two trainings would ask for one rendezvous endpoint.
    if [ "$nnet_parallel" = true ] && [ "$(wc -w <<< "$nnet_models")" -gt 1 ]; then
      log "--nnodes $nnodes: the networks train one after another, each on every node"
      nnet_parallel=false
    fi
  fi
fi

# Runs the training CMD... (python -m deepspeaker.bin.train_embedding ARGS) of the
# experiment DIR in stage STAGE: as it is with one process on one node, else through
# deepspeaker.bin.launch_training (torchrun's output in DIR/log/torchrun.log); with
# --train-cmd as a job of that runner, logged in DIR/log/launch.log (plus --gpu NPROC
# unless train_cmd asks for GPUs itself; run_jobs.sh ignores it).
#   run_training STAGE DIR CMD...
run_training() {
  local st=$1 dir=$2 runner=() words=() w
  shift 2
  if ! one_process; then
    set -- python -m deepspeaker.bin.launch_training "${launch_opts[@]}" --what "stage $st" \
      "$dir" "${@:4}"
  fi
  if [ -z "$train_cmd" ]; then
    "$@"
    return
  fi
  read -r -a runner <<< "$train_cmd"
  case " $train_cmd " in *" --gpu "*|*" --gpu="*) ;; *) runner+=(--gpu "$nproc_per_node") ;; esac
  # A runner joins the words of the command and runs them with bash -c: each word quoted.
  for w in "$@"; do words+=("$(printf '%q' "$w")"); done
  "${runner[@]}" "$dir/log/launch.log" "${words[@]}"
}

# Trains one Deep Speaker system, $exp/<model>_<strategy><suffix>, on TRAIN_DIR and
# describes it (system.yaml; OPTIONS go to describe_system; SUFFIX _noaug: the ablation
# twin trained without augmentation, described as such).  The one place that maps a
# strategy to its conf: softmax_triplet fine-tunes the softmax model trained on the same
# set (<model>_softmax<suffix>/best.pt), transfer the copied model of another corpus.
# Rerunning resumes from last.pt, a finished run does nothing, another conf is refused.
#   train_system MODEL STRATEGY TRAIN_DIR SUFFIX [OPTIONS...]
train_system() {
  local m=$1 s=$2 train_dir=$3 suffix=$4 tag=$1_$2$4 conf init="" st
  shift 4
  case $suffix in *_noaug) set -- "$@" --no-augmentation ;; esac
  case $s in
    softmax) conf=${m}_softmax.yaml ;;
    softmax_triplet) conf=${m}_triplet.yaml init=$exp/${m}_softmax$suffix/best.pt ;;
    triplet) conf=${m}_triplet_only.yaml ;;
    transfer) conf=${m}_transfer.yaml init=$exp/${m}_source_only/best.pt ;;
    *) die "no conf for strategy $s" ;;
  esac
  # The augmented set is several times the clean one: its confs (<conf>_aug.yaml, when
  # the conf dir has them) hold the epochs that give about the same number of steps.
  if [ "$train_dir" = "$nnet_train_dir" ] && [ -n "$augment_conf" ] \
      && [ -f "$nnet_conf_dir/${conf%.yaml}_aug.yaml" ]; then
    conf=${conf%.yaml}_aug.yaml
  fi
  log "$tag: $nnet_conf_dir/$conf${init:+ from $init} on $train_dir -> $exp/$tag (logs in $exp/$tag/log)"
  case $suffix in _spk*) st=11 ;; *) case $s in softmax) st=6 ;; transfer) st=12 ;; *) st=7 ;; esac ;; esac
  run_training "$st" "$exp/$tag" python -m deepspeaker.bin.train_embedding --config \
    "$nnet_conf_dir/$conf" ${init:+--init "$init"} "$train_dir" "$dev_dir" "$exp/$tag"
  # The other nodes of a multi-node training only train; node 0 describes what was trained.
  [ "$node_rank" = 0 ] || return 0
  python -m deepspeaker.bin.describe_system "$exp/$tag" --kind deepspeaker --model "$m" \
    --strategy "$s" --train-set "$train_dir" ${init:+--init "$init"} "$@"
}

# Stage 12's copy of another recipe's model (config.yaml, best.pt) into $exp/<model>_source_only:
# a copy, not a link, so that this experiment is its own; a new source checkpoint (the
# source retrained, another --transfer-from) makes a new copy by the marker's rule.
copy_source_model() {
  local src=$1 dst=$2 marker=$2/.source.done
  if python -m deepspeaker.bin.stage_marker check "$marker" --input "$src/best.pt"; then
    return 0
  fi
  log "stage 12: copying $src/best.pt -> $dst"
  rm -f "$marker"
  mkdir -p "$dst"
  cp "$src/config.yaml" "$dst/config.yaml"
  cp "$src/best.pt" "$dst/.best.pt.tmp"
  mv "$dst/.best.pt.tmp" "$dst/best.pt"
  python -m deepspeaker.bin.stage_marker write "$marker" --input "$src/best.pt"
}

if in_stages 1; then
  # 64-d log mel fbank, 25 ms / 10 ms, and energy VAD (paper §4.3).  Stored raw;
  # per-utterance CMVN on voiced frames is applied when features are read.
  for x in $train_set $dev_set $eval_sets; do
    log "stage 1: fbank + VAD for $data/$x ($nj jobs, logs in $exp/make_fbank_vad/$x)"
    python -m deepspeaker.bin.compute_fbank_vad --config "$feat_conf" --nj "$nj" \
      --max-failed-fraction "$max_failed_fraction" "$data/$x" "$exp/make_fbank_vad/$x"
    validate_data_dir.sh --need feats.scp,vad.scp,utt2num_frames "$data/$x"
  done
  if [ -n "$augment_conf" ]; then
    # Offline augmentation of the networks' training set (Kaldi egs/voxceleb/v2):
    # reverberated, noisy, music and babble copies (and speed copies as new speakers)
    # from measured RIRs / MUSAN when given, simulated / generated ones otherwise.  A
    # copy keeps its clean source's VAD (--vad-from); the copies join the clean set.
    sources=$data/aug_sources
    log "stage 1: augmentation sources -> $sources (${rirs_dir:-simulated RIRs}, ${musan_dir:-generated noise and music})"
    run_cmd "$exp/augment/prepare_aug_sources.log" python -m deepspeaker.bin.prepare_aug_sources \
      ${rirs_dir:+--rirs-dir "$rirs_dir"} ${musan_dir:+--musan-dir "$musan_dir"} --seed "$seed" "$sources"
    log "stage 1: augmented copies of $data/$train_set ($augment_conf, $nj jobs, logs in $exp/augment/$train_set)"
    python -m deepspeaker.bin.augment_data_dir --config "$augment_conf" --sources "$sources" \
      --seed "$seed" --nj "$nj" --max-failed-fraction "$max_failed_fraction" \
      "$data/$train_set" "$data/aug" "$exp/augment/$train_set"
    aug=$data/aug/${train_set}_aug
    log "stage 1: fbank + VAD for $aug (VAD from $data/$train_set)"
    python -m deepspeaker.bin.compute_fbank_vad --config "$feat_conf" --nj "$nj" \
      --max-failed-fraction "$max_failed_fraction" --vad-from "$data/$train_set" \
      "$aug" "$exp/make_fbank_vad/${train_set}_aug"
    validate_data_dir.sh --need feats.scp,vad.scp,utt2num_frames "$aug"
    python -m deepspeaker.bin.combine_data_dir "$nnet_train_dir" "$data/$train_set" "$aug"
    validate_data_dir.sh --need feats.scp,vad.scp,utt2num_frames "$nnet_train_dir"
    # The clean set and its speed copies (--nnet-backend-set clean_speed), if any.
    awk 'NR == FNR { if ($2 != "kind=speed") drop[$1] = 1; next } !($1 in drop) { print $1 }' \
      "$aug/utt2aug" "$nnet_train_dir/utt2spk" > "$exp/augment/clean_speed_utts"
    python -m deepspeaker.bin.subset_data_dir --utt-list "$exp/augment/clean_speed_utts" \
      "$nnet_train_dir" "$backend_clean_speed"
  fi
fi

# Stage 2 on the eval set in use: for every eval utterance 1 positive + 99 negatives
# (paper §4.1), and the same anchors against 1, 2, 3, 5-utterance enrollment models (paper
# T8); then the bar every system must clear: 20-MFCC mean + std, cosine (no training).
trials_and_reference() {
  local t lists opts=$trials_opts own=trials_opts_$eval_set
  [[ $own =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && [ -n "${!own+set}" ] && opts=${!own}
  log "stage 2: trials for $eval_dir"
  # shellcheck disable=SC2086  # the trial options are several words
  python -m deepspeaker.bin.make_trials --seed "$seed" $opts "$eval_dir"
  mkdir -p "$ref/$sc"
  lists=$(eval_trials)
  for t in $lists; do
    # shellcheck disable=SC2046  # enroll_opt prints zero or two words
    python -m deepspeaker.bin.score_mfcc_stats $(enroll_opt "$t") "$eval_dir" "$eval_dir/$t" \
      "$ref/$sc/cosine_$t"
  done
}
ref=$exp/mfcc_stats
if in_stages 2; then
  for_each_eval_set trials_and_reference
  python -m deepspeaker.bin.describe_system "$ref" --kind reference
  python -m deepspeaker.bin.summarize_scores --title "MFCC-stats reference ($report_title)" \
    "$ref" "$eval_dir"
fi

ivec=$exp/ivector
if in_stages 3; then
  # Diagonal GMM-UBM on MFCC + deltas of voiced frames (paper §4.2).
  log "stage 3: UBM ($ivector_conf) -> $ivec/models/ubm.npz (log: $ivec/log/train_ubm.log)"
  run_cmd "$ivec/log/train_ubm.log" python -m deepspeaker.bin.train_ubm \
    --config "$ivector_conf" "$data/$train_set" "$ivec"
fi

if in_stages 4; then
  # Total-variability matrix by EM, then posterior-mean i-vectors for every set.
  log "stage 4: i-vector extractor (log: $ivec/log/train_ivector_extractor.log)"
  # The statistics in --nj jobs (through --cmd), then the EM as one job of --cmd.
  run_jobs.sh "$ivec/log/ivector_stats_$train_set.log" \
    python -m deepspeaker.bin.train_ivector_extractor --nj "$nj" --stats-only "$data/$train_set" "$ivec"
  run_cmd "$ivec/log/train_ivector_extractor.log" \
    python -m deepspeaker.bin.train_ivector_extractor --nj "$nj" "$data/$train_set" "$ivec"
  for x in $train_set $eval_sets; do
    run_jobs.sh "$ivec/log/extract_ivectors_$x.log" \
      python -m deepspeaker.bin.extract_ivectors --nj "$nj" "$ivec" "$data/$x"
  done
fi

# Stage 5's scores on the eval set in use: PLDA and cosine of every list (k-utterance
# enrollment as ivector-plda-scoring --num-utts), and of the main list after AS-norm (the
# cohort: the training set's i-vectors).
ivector_scores() {
  local t lists method pairs enroll=()
  mkdir -p "$ivec/$sc"
  lists=$(eval_trials)
  [ -f "$eval_dir/enroll2utt" ] && enroll=(--enroll2utt "$eval_dir/enroll2utt")
  for method in plda cosine; do
    # Every list in one run (each start pays for the imports and the i-vectors' load).
    pairs=() ; for t in $lists; do pairs+=("$eval_dir/$t" "$ivec/$sc/${method}_$t"); done
    run_cmd "$ivec/log/score_$method$ev.log" python -m deepspeaker.bin.score_plda \
      --method "$method" "${enroll[@]}" "$ivec" "$eval_dir" "${pairs[@]}"
    with_asnorm || continue
    # shellcheck disable=SC2046  # asnorm_opts prints options and their values
    run_cmd "$ivec/log/score_${method}_asnorm$ev.log" python -m deepspeaker.bin.score_plda \
      --method "$method" $(asnorm_opts "$ivec/$train_set/ivector.scp" "$data/$train_set" \
      "$ivec" "$method") "$ivec" "$eval_dir" "$eval_dir/trials" "$ivec/$sc/${method}_asnorm_trials"
  done
}
if in_stages 5; then
  # LDA + length norm + two-covariance PLDA; cosine on the same vectors for comparison.
  log "stage 5: LDA/PLDA and scoring"
  run_cmd "$ivec/log/train_plda.log" python -m deepspeaker.bin.train_plda "$ivec" "$data/$train_set"
  for_each_eval_set ivector_scores
  save_points "$ivec" plda cosine
  python -m deepspeaker.bin.describe_system "$ivec" --kind ivector --train-set "$data/$train_set"
  python -m deepspeaker.bin.summarize_scores --title "i-vector baseline ($report_title)" "$ivec" "$eval_dir"
  log "stage 5: results in $ivec/RESULTS.md"
fi

if in_stages 6 9; then
  for_each_model nnet_stages
fi

# Stage 10's fusions on the eval set in use, of the systems in $fused (and the AS-norm
# cohort options in $fusion_cohort, from data dir $fusion_bdir): the embedding fusion
# (concatenated normalised embeddings, by cosine) and the score fusion of every list;
# after AS-norm, the embedding fusion against the fused cohort and the score fusion of the
# members' AS-normed scores.
fuse_on() {
  local tag t lists scps=() scores=()
  for tag in "${fused[@]}"; do
    [ -f "$exp/$tag/$eval_set/embedding.scp" ] \
      || { log "stage 10: $tag has no embeddings of $eval_dir; no fusion there"; return 0; }
    scps+=("$exp/$tag/$eval_set/embedding.scp")
  done
  mkdir -p "$exp/fusion/$sc"
  lists=$(eval_trials)
  for t in $lists; do
    scores=() ; for tag in "${fused[@]}"; do scores+=("$exp/$tag/$sc/cosine_$t"); done
    # shellcheck disable=SC2046
    run_cmd "$exp/fusion/log/embedding_$t$ev.log" python -m deepspeaker.bin.score_embeddings \
      $(enroll_opt "$t") "$eval_dir" "$eval_dir/$t" "$exp/fusion/$sc/embedding_$t" "${scps[@]}"
    run_cmd "$exp/fusion/log/score_$t$ev.log" python -m deepspeaker.bin.fuse_scores \
      "$eval_dir/$t" "$exp/fusion/$sc/score_$t" "${scores[@]}"
  done
  with_asnorm && [ "${#fusion_cohort[@]}" -gt 0 ] || return 0
  run_cmd "$exp/fusion/log/embedding_asnorm_trials$ev.log" python -m deepspeaker.bin.score_embeddings \
    "${fusion_cohort[@]}" --asnorm-data "$fusion_bdir" --asnorm-top-n "$asnorm_top_n" \
    --asnorm-save "$exp/fusion/asnorm/embedding.npz" "$eval_dir" "$eval_dir/trials" \
    "$exp/fusion/$sc/embedding_asnorm_trials" "${scps[@]}"
  scores=()
  for tag in "${fused[@]}"; do
    [ -f "$exp/$tag/$sc/cosine_asnorm_trials" ] || return 0
    scores+=("$exp/$tag/$sc/cosine_asnorm_trials")
  done
  run_cmd "$exp/fusion/log/score_asnorm_trials$ev.log" python -m deepspeaker.bin.fuse_scores \
    "$eval_dir/trials" "$exp/fusion/$sc/score_asnorm_trials" "${scores[@]}"
}

if in_stages 10; then
  # Embedding fusion and score fusion of the $fusion_strategy models (paper T6), by
  # cosine, then the report: T5, T6, T8, the paper's claims, DET curves and histograms.
  fused=""
  has_backend cosine || log "stage 10: no cosine scores (--nnet-backends $nnet_backends); no fusion"
  for m in $nnet_models; do
    has_backend cosine || break
    [ -f "$exp/${m}_$fusion_strategy/$eval_set/embedding.scp" ] && fused="$fused ${m}_$fusion_strategy"
  done
  read -r -a fused <<< "$fused"
  if [ "${#fused[@]}" -ge 2 ]; then
    log "stage 10: fusion of ${fused[*]}"
    # The AS-norm cohort of the fusion: each member's training-set embeddings, fused.
    fusion_cohort=() fusion_bdir=""
    train_dir=$(python -m deepspeaker.bin.describe_system "$exp/${fused[0]}" --show train_set)
    [ -n "$train_dir" ] && fusion_bdir=$(backend_dir "$train_dir")
    for tag in "${fused[@]}"; do
      [ -n "$fusion_bdir" ] && [ -f "$exp/$tag/${fusion_bdir##*/}/embedding.scp" ] \
        || { fusion_cohort=(); break; }
      fusion_cohort+=(--asnorm-cohort "$exp/$tag/${fusion_bdir##*/}/embedding.scp")
    done
    for_each_eval_set fuse_on
    save_points "$exp/fusion" embedding score
    python -m deepspeaker.bin.describe_system "$exp/fusion" --kind fusion --members "${fused[*]}"
  else
    log "stage 10: fewer than two $fusion_strategy models have embeddings; no fusion"
  fi
  make_report
fi

if in_stages 11 && [ -n "$train_fractions" ]; then
  # Training-size study (paper T7): the $fusion_strategy models trained on nested,
  # seeded fractions of the training speakers (same confs, same dev and eval sets).
  for f in $train_fractions; do
    pct=$(awk -v f="$f" 'BEGIN { printf "%d", f * 100 + 0.5 }')
    sub=$data/${train_set}_spk$pct
    log "stage 11: $pct% of the speakers of $data/$train_set -> $sub"
    python -m deepspeaker.bin.subset_data_dir --seed "$seed" --speaker-fraction "$f" \
      "$data/$train_set" "$sub"
    for m in $nnet_models; do
      log "stage 11: $m on $pct% of the training speakers -> $exp/${m}_${fusion_strategy}_spk$pct"
      if [ "$fusion_strategy" = softmax_triplet ]; then
        train_system "$m" softmax "$sub" "_spk$pct" --fraction "$f"
      fi
      train_system "$m" "$fusion_strategy" "$sub" "_spk$pct" --fraction "$f"
      embed_and_score "${m}_${fusion_strategy}_spk$pct"
    done
  done
  make_report
fi

if in_stages 12 && [ -n "$transfer_from" ]; then
  # Transfer (paper T9/T10): the $fusion_strategy model of another recipe, scored here
  # as it is (<model>_source_only), then fine-tuned on our training set with the
  # triplet loss (<model>_transfer, conf <model>_transfer.yaml).
  for m in $nnet_models; do
    src=$transfer_from/${m}_$fusion_strategy
    [ -f "$src/best.pt" ] || die "stage 12: $src/best.pt not found (train that recipe first)"
    copy_source_model "$src" "$exp/${m}_source_only"
    python -m deepspeaker.bin.describe_system "$exp/${m}_source_only" --kind deepspeaker \
      --model "$m" --strategy source_only --source "$src"
    embed_and_score "${m}_source_only"
    log "stage 12: $m fine-tuned from $src"
    train_system "$m" transfer "$data/$train_set" "" --source "$src"
    embed_and_score "${m}_transfer"
  done
  make_report
fi

log "$0: done (stages $stage..$stop_stage)"
