# shellcheck shell=bash disable=SC2034  # the options are read by the recipe and utils/stages.sh
# What every recipe shares before its stages: the options with their defaults and
# comments, the help text made from them, option parsing and stage 0's rerun rule.
#
# A recipe (egs/<corpus>/run.sh) is its parameters and its stage 0:
#
#   cd "$(dirname "${BASH_SOURCE[0]}")"
#   . ../../utils/recipe.sh        # path.sh, log.sh, the shared options below
#   corpus_dir=""      # where the corpus is      <- an option of this recipe
#   nj=4                                          <- another default for a shared one
#   paper_size_defaults                           <- or those of a full-size corpus
#   parse_recipe_options "$@"
#   eval_set=test                                 <- settings that are not options
#   if in_stages 0; then
#     need corpus_dir "the folder holding the corpus"
#     prepare_data corpus_dir -- python local/prepare_data.py --corpus-dir "$corpus_dir" ...
#   fi
#   . ../../utils/stages.sh        # stages 1-12
#
# An option is a line `name=default  # comment` at the start of a line, here (the
# shared ones, at the end of this file) or in the recipe before parse_recipe_options;
# indented comment-only lines just below continue its comment.  `--name VALUE` sets it
# (utils/parse_options.sh); no other variable is an option.  `--help` prints the
# recipe's header comment and every option with its current default and comment, so
# the help cannot leave one out.  A recipe line without a comment only changes a
# default.  Relative paths are relative to the recipe's folder.

# shellcheck source=path.sh
. ../../path.sh
# shellcheck source=utils/log.sh
. ../../utils/log.sh

_recipe_lib=$DS_ROOT/utils/recipe.sh
_recipe_file=$(pwd)/${BASH_SOURCE[1]##*/}
# The paper-size configs, one copy for every corpus (not an option: no comment here).
paper_conf=../../conf/paper

# The declared options as "name<TAB>comment", the shared ones first; a comment written
# in the recipe replaces the shared one.
recipe_options() {
  awk '
    FNR == 1 { flush(); stop = 0 }
    stop { next }
    /^parse_recipe_options([[:space:]]|$)/ { flush(); stop = 1; next }
    name != "" && /^[[:space:]]+#/ { sub(/^[[:space:]]+#[[:space:]]*/, ""); text = text " " $0; next }
    { flush() }
    /^[a-z_][a-z0-9_]*=/ && !/shellcheck/ {
      rest = substr($0, index($0, "=") + 1)
      if (match(rest, /[[:space:]]#[[:space:]]/)) {
        name = substr($0, 1, index($0, "=") - 1)
        text = substr(rest, RSTART + RLENGTH)
      }
    }
    function flush() {
      if (name == "") return
      if (!(name in comment)) order[n++] = name
      comment[name] = text; name = ""
    }
    END { flush(); for (i = 0; i < n; i++) print order[i] "\t" comment[order[i]] }
  ' "$_recipe_lib" "$_recipe_file"
}

# The recipe's header comment, then every option with its current default and comment.
recipe_help() {
  local name comment value
  awk 'NR == 1 { next } !/^#/ { exit } !/shellcheck/ { sub(/^# ?/, ""); print }' "$_recipe_file"
  echo
  echo "Options (--name VALUE or --name=VALUE), with their defaults:"
  while IFS=$'\t' read -r name comment; do
    value=${!name}
    [[ $value =~ ^[^[:space:]\"\']+$ ]] || value="\"$value\""
    printf '  --%s %s\n      %s\n' "${name//_/-}" "$value" "$comment"
  done < <(recipe_options)
  printf '  --config FILE\n      a file of name=value lines, read where it stands among the options\n'
  printf '  --help\n      this text\n'
}

# The defaults of a recipe for a full-size corpus: the paper-size configs, 8 jobs.
paper_size_defaults() {
  nj=8
  ivector_conf=$paper_conf/ivector.yaml
  nnet_conf_dir=$paper_conf
  nnet_lda_dim=200    # Kaldi's egs/voxceleb/v2 for 512-d x-vectors
}

# Parses the recipe's command line into its options, logs the command line as it was
# typed, and sets the data dir names (a recipe may change them after this call).
parse_recipe_options() {
  local _cmdline
  _cmdline="$0$(printf ' %q' "$@")"
  option_names=$(recipe_options | cut -f1 | tr '\n' ' ')
  help_message=$(recipe_help)
  # shellcheck source=utils/parse_options.sh
  . "$DS_ROOT/utils/parse_options.sh"
  [ $# -eq 0 ] || die "$0: unexpected argument '$1' (options are --name VALUE; $0 --help lists them)"
  log "$_cmdline"
  log "stages $stage..$stop_stage, nj=$nj, data=$data, exp=$exp"
  # The runner of every job a stage starts, its own or inside a Python stage (deepspeaker/jobs.py).
  [ -n "$cmd" ] || die "--cmd is empty: run_jobs.sh, slurm_jobs.sh [OPTIONS] or your own runner"
  export DS_CMD=$cmd
  train_set=train
  dev_set=dev
  eval_set="eval"
  eval_sets=""   # several eval sets, the first the main one (utils/stages.sh); "": eval_set
  cross_eval_sets > /dev/null   # a bad --cross-corpora fails here, before any stage
}

# True when stage FIRST (or any stage of FIRST..LAST) is in --stage..--stop-stage.
in_stages() { [ "$stage" -le "${2:-$1}" ] && [ "$stop_stage" -ge "$1" ]; }

# Dies unless option NAME is set: "stage 0 needs --name DIR (WHAT)".
need() { [ -n "${!1}" ] || die "stage 0 needs --${1//_/-} DIR ($2)"; }

# Stage 0: runs COMMAND (the data prep) unless $data/.prep.done holds the signature of
# the options NAME... (their values now); then validates the sets it made and writes
# the marker.  A prep that fails leaves no marker, so the next run tries again.
#   prepare_data NAME... -- COMMAND [ARGS...]
prepare_data() {
  local marker=$data/.prep.done sig=() x
  while [ "$1" != -- ]; do sig+=(--option "$1=${!1}"); shift; done
  shift
  if python -m deepspeaker.bin.stage_marker check "$marker" "${sig[@]}"; then
    log "stage 0: skipped, $data already prepared with these options (${sig[*]})"
    return 0
  fi
  log "stage 0: $* (data dirs in $data)"
  rm -f "$marker"
  "$@"
  for x in $train_set $dev_set ${eval_sets:-$eval_set}; do validate_data_dir.sh "$data/$x"; done
  python -m deepspeaker.bin.stage_marker write "$marker" "${sig[@]}"
}

# An absolute path of PATH (another recipe runs in its own folder).
abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

# Stage 0 of the recipe egs/CORPUS (its own split, with its defaults and OPTIONS...) into
# $data/CORPUS, logged under $exp/prep/CORPUS, then its eval set as $data/eval_CORPUS (the
# same utterances and ids; from stage 2 the same trials, by $trials_opts_eval_CORPUS).
# That recipe's marker skips a prep already made; the copy is redone (it is cheap).  Its
# own --cross-corpora are not prepared (two recipes naming each other would never end).
#   prepare_corpus CORPUS [OPTIONS...]
prepare_corpus() {
  local c=$1
  shift
  log "stage 0: egs/$c's stage 0 $* (data dirs in $data/$c)"
  "$DS_ROOT/egs/$c/run.sh" --stage 0 --stop-stage 0 --seed "$seed" --data "$(abspath "$data/$c")" \
    --exp "$(abspath "$exp/prep/$c")" --cross-corpora "" "$@"
  python -m deepspeaker.bin.combine_data_dir "$data/eval_$c" "$data/$c/eval"
}
# The trial options of each real corpus' eval set, as its own recipe sets --trials-opts
# (its speakers' utterance counts; tests/test_recipe_real_speech.py checks they agree).
trials_opts_eval_speechocean762="--enroll-counts 1,2,3,5"
trials_opts_eval_librispeech_mini="--enroll-counts 1,2"

# The eval sets of --cross-corpora, after the recipe's own (stage 0 prepares them).
cross_eval_sets() {
  local c
  for c in $cross_corpora; do
    [[ $c =~ ^[A-Za-z0-9_]+$ ]] && [ -x "$DS_ROOT/egs/$c/run.sh" ] \
      || die "--cross-corpora: '$c' is not a recipe under egs/ (letters, digits and _)"
    echo "eval_$c"
  done
}

# The shared options (see the top of this file for the rule).
stage=0               # first stage to run
stop_stage=100        # last stage to run (12 is the last there is)
nj=2                  # parallel jobs; the default machine has 2 cores
cmd=${DS_CMD:-run_jobs.sh}   # how the stages' jobs run (Kaldi's cmd.sh): run_jobs.sh on this
  # machine, e.g. "slurm_jobs.sh --mem 4G" on a Slurm cluster (utils/slurm_jobs.sh; README)
seed=0                # of every sampled choice: the data prep's, the trials (stage 2),
                      # the speaker subsets (stage 11)
data=data             # Kaldi data dirs
exp=exp               # logs, models, scores
feat_conf=$paper_conf/fbank_vad.yaml   # 64-d fbank + energy VAD (paper §4.3), one for every corpus
ivector_conf=conf/ivector.yaml   # UBM, T-matrix, LDA/PLDA sizes (paper §4.2: ../../conf/paper/ivector.yaml)
nnet_conf_dir=conf    # <model>_softmax.yaml, <model>_triplet.yaml (from the softmax model),
                      # <model>_triplet_only.yaml, <model>_transfer.yaml (stage 12)
nnet_models="rescnn gru"                            # frame-level networks (paper T1, T2)
nnet_strategies="softmax triplet softmax_triplet"   # T5's rows: any of these three
fusion_strategy=softmax_triplet                     # the models fused in T6 and shown in T8
nnet_parallel=true    # stages 6-9: the networks of --nnet-models side by side, each with its
  # share of the cores (a narrow net leaves cores idle); false: one after another
nnet_backends="cosine plda"   # how the Deep Speaker systems are scored (stage 9): cosine and/or
                              # plda (LDA + PLDA trained on the system's training-set embeddings)
nnet_backend_conf=../../conf/embedding_backend.yaml   # the embeddings' LDA dim and PLDA (plda)
nnet_lda_dim=""       # overrides lda_dim of --nnet-backend-conf (Kaldi's x-vectors: 200)
nnet_backend_set=clean_speed   # with augmentation, the utterances plda is trained on:
  # clean_speed (the clean set and its speed copies, 3x the speakers), clean (Kaldi v2), all
asnorm_top_n=300      # AS-norm of every system's main-list scores (stages 5, 9, 10): the top-N
  # cohort scores of each side, the cohort from the training speakers (WeSpeaker's 300); 0: none
trials_opts=""        # more make_trials options, e.g. "--enroll-counts 1,2" (stage 2)
train_fractions=""    # e.g. "0.25 0.5": stage 11, the training-size study (paper T7)
transfer_from=""      # an exp/ dir of another recipe: stage 12, transfer (paper T9/T10)
cross_corpora=""      # recipes under egs/ (e.g. "speechocean762") whose eval sets every system is
  # also scored on, as eval_<corpus> (stage 0 runs their stage 0): training on one corpus,
  # testing on another
augment_conf=../../conf/augment_quick.yaml     # offline augmentation of the networks' training
  # set (stage 1; the full Kaldi v2 setting: $DS_ROOT/conf/augment.yaml); "" for none
rirs_dir=""           # a RIRS_NOISES folder (measured and simulated RIRs); "": simulated here
musan_dir=""          # a MUSAN folder (noise, music, speech); "": generated noise and music,
  # babble from the training speakers
ablation=false        # with augmentation, also train the $fusion_strategy systems without it
  # (<tag>_noaug), the ablation rows of RESULTS.md
max_failed_fraction=0.05   # stage 1 fails when more of a set's utterances than this fail
report_title="egs/${PWD##*/}"   # the title of $exp/RESULTS.md
# Where the networks train (stages 6-7, 11, 12; deepspeaker/nnet/launch.py, README, Scale out):
nproc_per_node=1      # training processes on this node: its GPUs, or CPU processes (gloo); 1 with
  # --nnodes 1: the plain python -m of one process, no torchrun
nnodes=1              # nodes training together; each runs ./run.sh --stage 6 --stop-stage 7 with
  # its own --node-rank (README, Scale out; utils/slurm_train.sbatch under Slurm)
node_rank=0           # this node's number, 0..nnodes-1; node 0 serves the rendezvous and alone
  # writes system.yaml (the other nodes only train)
rdzv_endpoint=""      # HOST:PORT of node 0's c10d rendezvous, the same on every node; "": one
  # node, 127.0.0.1 and a port the kernel picks (trainings side by side never collide)
rdzv_id=""            # put in front of each training's rendezvous id (default: the experiment's
  # name and a hash of its path, the same on every node), e.g. the Slurm job id
rdzv_timeout=900      # seconds the rendezvous waits for every node (torchrun's join and
  # store timeouts); a node missing by then fails the training with that message
train_cmd=""          # how a training runs: "" in the foreground; else a job runner called as
  # $train_cmd [--gpu NPROC] LOG COMMAND..., e.g. "slurm_jobs.sh --time 24:00:00" (its log:
  # $exp/<tag>/log/launch.log; --gpu is added unless train_cmd has one)
