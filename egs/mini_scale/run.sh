#!/usr/bin/env bash
# egs/mini_scale: the training-size study with the i-vector beside it (paper T7, which
# ran the networks only).  The embedded generator of egs/mini makes training sets of
# --sizes speakers (8 utterances each; speaker i is the same voice at every size, so the
# sets are nested) against egs/mini's dev and eval speakers and trial lists; each size
# runs the shared stages 1-10 (i-vector + PLDA, ResCNN and GRU softmax + triplet,
# cosine and PLDA back ends, fusion) with its own confs, conf/spk<N>/.  Parameters and
# the study's own steps only; the shared options are in utils/recipe.sh.
#
#   ./run.sh                                   # 250, 1,000 and 4,000 speakers, then the report
#   ./run.sh --sizes "250 1000 4000 16000"     # the 16,000 point: a bigger machine or a GPU
#   ./run.sh --stage 11                        # the report only, from what has run
#
# Stages, for each size in turn: 0 its training speakers generated (the wavs of the
# sizes before are kept) and its data dirs (data/spk<N>), then the shared 1 fbank + VAD,
# 2 trials + MFCC-stats reference, 3 UBM, 4 T-matrix + i-vectors, 5 PLDA scoring, 6
# softmax, 7 triplet, 8-9 embeddings and scores, 10 fusion + exp/spk<N>/RESULTS.md; each
# step is timed (wall, CPU, peak resident memory: exp/timing.tsv).  11: exp/RESULTS.md,
# the study: the table, the plot, the crossover, the paper's claims, the per-stage costs.
# Every step can be rerun: finished work is skipped, a crashed run continues.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../utils/recipe.sh
_args=("$@")

sizes="250 1000 4000"   # training speakers of each point of the study, ascending
utts_per_spk=8          # training utterances per speaker
size_conf_dir=conf      # the confs of size N: SIZE_CONF_DIR/spk<N>/ (ivector.yaml and the
  # networks' <model>_softmax.yaml, <model>_triplet.yaml)
size=""                 # one point only (what the loop over --sizes runs): its stages 0-10
corpus_opts=""          # more local/make_corpus.py options (dev/eval sizes, durations)
corpus_dir=corpus       # the generated wavs, shared by every size
nnet_strategies=softmax_triplet   # softmax pre-training, then triplet: the study's networks
augment_conf=""         # none: the 4,000 point with augmentation (4x the utterances) does not fit
  # the 90-minute budget on 2 cores; any conf of ../../conf works
asnorm_top_n=0          # no AS-norm (the back ends of the study: cosine and PLDA)
report_title="egs/mini_scale: training-size study"
_shared_confs="$ivector_conf $nnet_conf_dir"
parse_recipe_options "$@"
# Each size reads its own confs; the shared options naming one conf for all would be ignored.
[ "$ivector_conf $nnet_conf_dir" = "$_shared_confs" ] \
  || die "--ivector-conf and --nnet-conf-dir do not apply here: each size reads SIZE_CONF_DIR/spk<N>/ (--size-conf-dir)"

if [ -n "$size" ]; then
  # One point: egs/mini's recipe on N training speakers, in data/spk<N> and exp/spk<N>.
  [[ $size =~ ^[1-9][0-9]*$ ]] || die "--size '$size': a number of training speakers"
  data=$data/spk$size exp=$exp/spk$size nnet_conf_dir=$size_conf_dir/spk$size
  ivector_conf=$nnet_conf_dir/ivector.yaml
  [ -d "$nnet_conf_dir" ] || die "no confs for $size training speakers: $nnet_conf_dir (copy one of conf/spk*)"
  report_title="$report_title, $size training speakers"
  if in_stages 0; then
    # shellcheck disable=SC2086  # corpus_opts holds several options
    prepare_data seed size utts_per_spk corpus_opts corpus_dir -- run_jobs.sh \
      "$exp/log/make_corpus.log" python ../mini/local/make_corpus.py --out-dir "$corpus_dir" \
      --data-dir "$data" --seed "$seed" --nj "$nj" --num-train-spk "$size" \
      --utts-per-train-spk "$utts_per_spk" $corpus_opts
  fi
  . ../../utils/stages.sh
  exit 0
fi

prev=0
for n in $sizes; do
  [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -gt "$prev" ] \
    || die "--sizes '$sizes': numbers of training speakers, ascending"
  [ -d "$size_conf_dir/spk$n" ] || die "no confs for $n training speakers: $size_conf_dir/spk$n"
  prev=$n
done
mkdir -p "$exp"
# Each point's stages as the shared stages run them, one step at a time, timed: 8 and 9
# are one step (each network's embeddings, then its scores).
for n in $sizes; do
  for st in 0 1 2 3 4 5 6 7 8 10; do
    last=$st
    [ "$st" = 8 ] && last=9
    in_stages "$st" "$last" || continue
    log "size $n: stage $st$([ "$last" = "$st" ] || echo "-$last")"
    python -m deepspeaker.bin.time_step --table "$exp/timing.tsv" --size "$n" --step "$st" -- \
      "$0" "${_args[@]}" --size "$n" --stage "$st" --stop-stage "$last" \
      || die "size $n, stage $st failed (the lines above; rerun to continue where it stopped)"
  done
done

if in_stages 11; then
  log "stage 11: the study -> $exp/RESULTS.md"
  # shellcheck disable=SC2086  # one word per size
  python -m deepspeaker.bin.make_scale_report --title "$report_title" --sizes "$sizes" \
    --utts-per-spk "$utts_per_spk" "$exp" "$data"
fi
log "$0: done (stages $stage..$stop_stage)"
