#!/usr/bin/env bash
# egs/librispeech: LibriSpeech (openslr.org/12) read in place, with the paper-size
# configs of ../../conf/paper.  Parameters and stage 0 only; the shared options are in
# utils/recipe.sh, stages 1-12 in utils/stages.sh, the work in deepspeaker.bin.
#
#   ./run.sh --corpus-dir /data/corpora [--stage N] [--stop-stage M] [--nj 8]
#       [--train-subsets "train-clean-100 train-clean-360 train-other-500"]
#       [--dev-subsets dev-clean] [--eval-subsets test-clean]
#
# Stage 0 makes data/{train,dev,eval} from whole LibriSpeech subsets (here); stages
# 1-12 are those of every recipe (README.md).  Every stage can be rerun: finished work
# is skipped, a crashed run continues.  Relative paths are relative to this directory.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../utils/recipe.sh

corpus_dir=""         # holds LibriSpeech/ (or is the LibriSpeech folder itself)
# Each set is the union of whole subsets; LibriSpeech gives every reader to one
# subset, so the sets share no speaker.  An empty list makes no such set (dev only).
train_subsets="train-clean-100 train-clean-360 train-other-500"   # 2,338 speakers, ~960 h
dev_subsets="dev-clean"     # 40 speakers: early stopping of the networks
eval_subsets="test-clean"   # 40 speakers
paper_size_defaults
nj=8                  # parallel jobs (and threads reading the flac headers in stage 0)
report_title="egs/librispeech: LibriSpeech, paper-size configs"
parse_recipe_options "$@"
[ -n "${dev_subsets//[[:space:]]/}" ] || dev_set=""   # --dev-subsets "": no dev set

if in_stages 0; then
  # Everything is scanned and checked (layout, file names, SPEAKERS.TXT, durations,
  # disjoint speakers) before the sets are written, together; an old dev dir goes
  # when no dev set is asked for, since it may hold speakers of the new train set.
  need corpus_dir "the folder holding LibriSpeech/"
  [ -n "${eval_subsets//[[:space:]]/}" ] || die "--eval-subsets must name at least one subset"
  prepare_data corpus_dir train_subsets dev_subsets eval_subsets -- python local/prepare_data.py \
    --corpus-dir "$corpus_dir" --data-dir "$data" --train-subsets "$train_subsets" \
    --dev-subsets "$dev_subsets" --eval-subsets "$eval_subsets" --nj "$nj"
fi

. ../../utils/stages.sh
