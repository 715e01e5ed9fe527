#!/usr/bin/env bash
# egs/mini: the embedded synthetic corpus (local/make_corpus.py), end to end on a
# laptop CPU.  Parameters and stage 0 only; the shared options are in utils/recipe.sh,
# stages 1-12 in utils/stages.sh, the work in deepspeaker.bin.
#
#   ./run.sh [--stage N] [--stop-stage M] [--nj 2] [--corpus-opts "--num-eval-spk 20"]
#   ./run.sh --nnet-conf-dir ../../conf/paper --ivector-conf ../../conf/paper/ivector.yaml
#       (the paper-size configs; they need a GPU)
#
# Stages: 0 corpus + data dirs (here), then 1 fbank + VAD, 2 trials + MFCC-stats
# reference, 3 UBM, 4 i-vector extractor + i-vectors, 5 LDA/PLDA scoring, 6 softmax
# pre-training, 7 triplet training, 8 embedding extraction, 9 cosine scoring, 10 fusion +
# exp/RESULTS.md; with --train-fractions "0.25 0.5", 11: the same models on 25% and 50%
# of the training speakers (T7); with --transfer-from, 12: another recipe's model here
# (T9/T10).  Every stage can be rerun: finished work is skipped, a crashed run continues.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../utils/recipe.sh

corpus_opts=""        # extra options for local/make_corpus.py (sizes, durations)
corpus_dir=corpus     # generated wav files
report_title="egs/mini: synthetic corpus"
nnet_strategies="softmax softmax_triplet"   # T5 rows; add "triplet" (from scratch, +3 min) for all three
parse_recipe_options "$@"

if in_stages 0; then
  # Disjoint train / dev / eval speakers; eval has 19 utterances per speaker like the
  # paper's Eva200 (paper §4.1).  Generation is seeded and skips finished wavs.
  # shellcheck disable=SC2086  # corpus_opts holds several options
  prepare_data seed corpus_opts corpus_dir -- run_jobs.sh "$exp/log/make_corpus.log" \
    python local/make_corpus.py --out-dir "$corpus_dir" --data-dir "$data" --seed "$seed" \
    --nj "$nj" $corpus_opts
fi

. ../../utils/stages.sh
# Results with augmentation (conf/augment_quick.yaml) and PLDA, AMD EPYC (Zen 3),
# 2026-12-02 (README): GRU softmax + triplet 5.95% cosine / 4.74% PLDA (no augmentation
# 7.97 / 6.85%); ResCNN 19.05 / 19.03% (no augmentation 12.93 / 13.79%); i-vector 3.37%.
# On the previous session's EPYC the same code gave GRU 5.80 / 4.68%, ResCNN 13.65 / 13.58%.
# Without augmentation (--augment-conf ""), seed 0, eval `trials` (1,900 anchors x (1 + 99)), EER / ACC, on the earlier
# development machine (they depend on the CPU: see README); all in exp/RESULTS.md:
#   stage 2  MFCC-stats cosine                        21.55% / 36.53%
#   stage 5  i-vector PLDA (cosine)                    3.11% / 89.53%  (4.63% / 85.63%)
#            PLDA with k = 1, 2, 3, 5 enrollment utts  3.23, 1.79, 1.29, 0.79%
#   stage 9  ResCNN softmax / triplet / both          16.79 / 16.32 / 13.52%
#            GRU    softmax / triplet / both           8.20 /  9.63 /  8.00%
#   stage 10 embedding / score fusion of both          7.74 /  7.44%
#   stage 11 (--train-fractions "0.25 0.5") GRU 25 / 50 / 100% of the speakers:
#            14.95 / 10.79 / 8.00%; ResCNN 24.88 / 18.62 / 13.52%
