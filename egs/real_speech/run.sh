#!/usr/bin/env bash
# egs/real_speech: the real speech of this machine together: the training sets of several
# recipes (default: egs/speechocean762 and egs/librispeech_mini, read in place from
# ../shared/data) combined as one, with speakers kept apart by a corpus prefix, and every
# system scored on each corpus' own eval set separately.  Parameters and stage 0 only; the
# shared options are in utils/recipe.sh, stages 1-12 in utils/stages.sh.
#
#   ./run.sh [--stage N] [--stop-stage M] [--corpora "speechocean762 librispeech_mini"]
#            [--transfer-from ../mini/exp]
#
# Stages: 0 each corpus' own stage 0 (its recipe's split, with that recipe's defaults)
# into data/<corpus>, then data/train and data/dev = their union (Kaldi's combine_data.sh
# after copy_data_dir.sh --utt-prefix <corpus>- --spk-prefix <corpus>-) and
# data/eval_<corpus> = each eval set as it is (the same utterances and, from stage 2, the
# same trials as in that corpus' recipe); 1 fbank + VAD, 2 trials + MFCC-stats reference
# per eval set, 3-5 i-vector + PLDA, 6-7 Deep Speaker training, 8-9 embeddings and scores
# on every eval set, 10 fusion + exp/RESULTS.md (the first corpus' eval set is the main
# one, with the tables; "Every eval set" has a column block per corpus), 12 the egs/mini
# models (synthetic voices) as they are and fine-tuned here.  The confs are those of
# egs/speechocean762 (links), the larger part of the union: the same epochs, so ~18% more
# steps on its ~1.2x the utterances.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../utils/recipe.sh

corpora="speechocean762 librispeech_mini"   # recipes under egs/ whose stage 0 gives a train
  # and an eval set (and maybe a dev set); the first one's eval set is the main one
corpus_dirs=""         # "CORPUS=DIR ...": the --corpus-dir of a corpus' recipe (default: its own,
  # in ../shared/data)
nnet_strategies="softmax softmax_triplet"   # T5's rows ("triplet" too: +4 min)
transfer_from=../mini/exp           # stage 12: the synthetic-corpus models; "" to skip
report_title="egs/real_speech: speechocean762 + LibriSpeech segments, one training set"
parse_recipe_options "$@"
eval_sets=""
for _c in $corpora; do
  [[ $_c =~ ^[A-Za-z0-9_]+$ ]] && [ -x "../$_c/run.sh" ] \
    || die "--corpora: '$_c' is not a recipe under egs/ (letters, digits and _)"
  eval_sets="$eval_sets eval_$_c"
done
[ -n "$eval_sets" ] || die "--corpora is empty"
for _d in $corpus_dirs; do
  case " $corpora " in *" ${_d%%=*} "*) ;;
    *) die "--corpus-dirs: '$_d' is not CORPUS=DIR for a corpus of --corpora ($corpora)" ;;
  esac
done
eval_sets=${eval_sets# }
eval_set=${eval_sets%% *}

# Stage 0: each corpus' own data prep, then the unions and the eval sets.
prepare_corpora() {
  local c d train=() dev=() tp=() dp=() opts
  for c in $corpora; do
    opts=()
    for d in $corpus_dirs; do
      [ "${d%%=*}" = "$c" ] && opts=(--corpus-dir "$(abspath "${d#*=}")")
    done
    prepare_corpus "$c" "${opts[@]}"
    train+=("$data/$c/train") tp+=(--prefix "$c-")
    [ -f "$data/$c/dev/utt2spk" ] && dev+=("$data/$c/dev") dp+=(--prefix "$c-")
  done
  python -m deepspeaker.bin.combine_data_dir "${tp[@]}" "$data/$train_set" "${train[@]}"
  if [ "${#dev[@]}" -gt 0 ]; then
    python -m deepspeaker.bin.combine_data_dir "${dp[@]}" "$data/$dev_set" "${dev[@]}"
  else
    rm -rf "${data:?}/$dev_set"
    dev_set=""
  fi
}
if in_stages 0; then
  prepare_data corpora corpus_dirs seed -- prepare_corpora
fi
[ -f "$data/$dev_set/utt2spk" ] || dev_set=""   # no corpus has a dev set

. ../../utils/stages.sh
