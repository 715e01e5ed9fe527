#!/usr/bin/env bash
# egs/voxceleb: VoxCeleb1 (+ VoxCeleb2 dev) read in place, with the paper-size configs
# of ../../conf/paper.  Parameters and stage 0 only; the shared options are in
# utils/recipe.sh, stages 1-12 in utils/stages.sh, the work in deepspeaker.bin.
#
#   ./run.sh --vox1-dir /data/voxceleb1 [--vox2-dir /data/voxceleb2] [--trial-lists DIR]
#       [--train-vox1 dev|none] [--stage N] [--stop-stage M] [--nj 8]
#
# Stage 0 makes data/{train,vox1_test} (+ data/vox1_all with the Vox1-E/H lists) from
# the corpus' own layout (here); stages 1-12 are those of every recipe (README.md), on
# train and vox1_test, whose lists are the paper's 1 + 99 `trials` beside Vox1-O
# (`trials_vox1_o`).  There is no dev set: the networks train for their full epochs and
# best.pt is the last epoch's model.  Relative paths are relative to this directory.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../utils/recipe.sh

vox1_dir=""           # VoxCeleb1: wav/<spk>/<youtube_id>/<nnnnn>.wav, or dev/wav + test/wav
vox2_dir=""           # VoxCeleb2 (optional): dev/aac/<spk>/... or aac/<spk>/... (m4a, ffmpeg)
trial_lists=""        # dir of veri_test2.txt, list_test_all2.txt, list_test_hard2.txt
                      # (default: --vox1-dir)
train_vox1=dev        # VoxCeleb1 speakers in data/train: dev (all but the test ones) or none
paper_size_defaults
report_title="egs/voxceleb: VoxCeleb1 test, paper-size configs"
parse_recipe_options "$@"
dev_set=""            # the prep makes no dev set
eval_set="vox1_test"  # the 40 VoxCeleb1 test speakers

if in_stages 0; then
  # Every check (layout, each trial line and the file it names, ffmpeg for m4a) comes
  # before anything is written; the sets are then written together.
  need vox1_dir "the VoxCeleb1 folder"
  prepare_data vox1_dir vox2_dir trial_lists train_vox1 -- python local/prepare_data.py \
    --vox1-dir "$vox1_dir" ${vox2_dir:+--vox2-dir "$vox2_dir"} \
    ${trial_lists:+--trial-lists "$trial_lists"} --train-vox1 "$train_vox1" --data-dir "$data"
fi

. ../../utils/stages.sh
