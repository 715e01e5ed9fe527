#!/usr/bin/env bash
# egs/cnceleb: CN-Celeb1 (+ CN-Celeb2) read in place, with the paper-size configs of
# ../../conf/paper.  Parameters and stage 0 only; the shared options are in
# utils/recipe.sh, stages 1-12 in utils/stages.sh, the work in deepspeaker.bin.
#
#   ./run.sh --cnceleb1-dir /data/cn-celeb [--cnceleb2-dir /data/cn-celeb2]
#       [--stage N] [--stop-stage M] [--nj 8]
#
# Stage 0 makes data/{train,eval} from the release's layout and lists (here; the
# official trials.lst becomes data/eval/trials_cnceleb); stages 1-12 are those of every
# recipe (README.md), stage 2 writing the paper's 1 + 99 list as data/eval/trials.
# There is no dev set: the networks train for their full epochs and best.pt is the last
# epoch's model.  Relative paths are relative to this directory.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../utils/recipe.sh

cnceleb1_dir=""       # holds CN-Celeb_flac/ or CN-Celeb/ (or is that folder)
cnceleb2_dir=""       # CN-Celeb2 (optional, training only): data/<spk>/ or CN-Celeb2_flac/data/
paper_size_defaults
report_title="egs/cnceleb: CN-Celeb1 eval, paper-size configs"
parse_recipe_options "$@"
dev_set=""            # the prep makes no dev set; eval: CN-Celeb1's 200 evaluation speakers

if in_stages 0; then
  # Every check (layout, the lists and each file they name, empty speaker folders)
  # comes before anything is written; the two sets are then written together.
  need cnceleb1_dir "the CN-Celeb1 folder"
  prepare_data cnceleb1_dir cnceleb2_dir -- python local/prepare_data.py \
    --cnceleb1-dir "$cnceleb1_dir" ${cnceleb2_dir:+--cnceleb2-dir "$cnceleb2_dir"} --data-dir "$data"
fi

. ../../utils/stages.sh
