"""Adaptive symmetric score normalisation (AS-norm, Matejka et al. 2017; WeSpeaker's stage 6).

A raw score means different things for different speakers: a voice that resembles
many others scores high against everybody.  AS-norm measures, for each side of a
trial, how that side scores against a cohort of impostors, and rescales:

    s' = 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)

where ``mu_e, sd_e`` are the mean and (population) standard deviation of the
``top_n`` highest scores of the enrollment side against the cohort, and ``mu_t,
sd_t`` the same for the test side.  "Adaptive" is the top-N: only the impostors most
like this side count, which is where the decision threshold lies.

* The cohort (:func:`build_cohort`) comes from the *training* speakers, never eval
  speakers, so no member is the trial's own speaker.  For cosine it is one vector per
  speaker: the mean of the speaker's unit embeddings, renormalised (the k-utterance
  model of ``embedding.enroll_model``), as WeSpeaker builds it.  For PLDA it is every
  training utterance in the back end's space (after LDA and length normalisation),
  scored as one vector: measured on egs/mini, speaker means lower PLDA's minDCF
  (i-vector 0.334 -> 0.51, GRU 0.592 -> 0.76, scored as one vector or as an
  n-utterance model alike: to PLDA an average of n vectors is no single-utterance
  impostor), while utterances keep or improve it (0.334, GRU 0.550).  Either level can
  be asked for (``level``).
* Cohort scores are one matrix per side (unique enrollment models x cohort, unique
  test utterances x cohort), never one row per trial: a list of 190,000 trials over
  1,900 utterances costs two matrix products (egs/mini, 2 busy cores: 0.3 s for cosine
  over 750 speakers, 0.7 s for PLDA over 2,000 i-vectors, 2.1 s over 6,000 embeddings).
* Effect on egs/mini (EER / minDCF of the 190,000 utterance trials, top 300): i-vector
  cosine 4.95% / 0.512 -> 3.74% / 0.410, i-vector PLDA 3.37% / 0.334 -> 3.68% / 0.334,
  GRU cosine 5.80% / 0.668 -> 5.58% / 0.604, GRU PLDA 4.68% / 0.592 -> 4.72% / 0.550.
* ``top_n`` larger than the cohort uses the whole cohort (logged); a side whose top-N
  scores are all equal has no spread to normalise by and is an error naming it.

Everything is numpy on arrays and dicts; the scorers (``bin/score_embeddings``,
``bin/score_plda``) and the Python API call the same functions.  Results depend only
on the vectors (no randomness; ``np.partition`` selects the same set whatever the
order of the ties).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import DeepSpeakerError
from .embedding import enroll_model, unit
from .trials import Trial

logger = logging.getLogger(__name__)

LEVELS = ("speaker", "utterance")
# Measured on egs/mini (see the module docstring): cosine gains from either cohort; PLDA
# loses with speaker means (an average of n vectors is no single-utterance impostor to
# it, scored with n=1 or as an n-utterance model alike) and keeps or gains with utterances.
DEFAULT_LEVEL = {"cosine": "speaker", "plda": "utterance"}
DEFAULT_TOP_N = 300  # WeSpeaker's default for VoxCeleb (its cohort: ~6,000 speakers)


class AsNormError(DeepSpeakerError, ValueError):
    """A cohort or a side that cannot normalise (too few speakers, no spread)."""


@dataclass(frozen=True)
class Cohort:
    """The cohort: ``vectors[i]`` is member ``members[i]`` (a speaker, or an utterance)."""

    members: tuple[str, ...]
    vectors: np.ndarray  # (C, D) float64
    source: str = "cohort"  # named in messages
    top_n: int | None = None  # the top-N the scores were normalised with, when saved

    def __len__(self) -> int:
        return len(self.members)

    def save(self, path) -> None:
        """An ``.npz`` (members, vectors, source, top_n), atomically: a system keeps its
        cohort beside its model (``exp/<tag>/asnorm/<method>.npz``, in the space its
        scorer compares vectors in), so ``verify`` normalises as the scorer did without
        the training set's scp."""
        from ..utils import atomic_write

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(f, members=np.array(self.members, dtype=str), vectors=self.vectors,
                     source=np.array(self.source),
                     top_n=np.array(-1 if self.top_n is None else self.top_n))

    @classmethod
    def load(cls, path) -> Cohort:
        """A cohort :meth:`save` wrote; anything else is an AsNormError naming the file."""
        try:
            with np.load(path, allow_pickle=False) as z:
                members, vectors, source = z["members"], z["vectors"], str(z["source"])
                top_n = int(z["top_n"]) if "top_n" in z.files else -1
        except (OSError, KeyError, ValueError) as e:
            raise AsNormError(f"not an AS-norm cohort file ({e})", path=path) from None
        if vectors.ndim != 2 or len(members) != len(vectors) or len(members) < 2:
            raise AsNormError(f"not an AS-norm cohort file ({len(members)} members, vectors "
                              f"{vectors.shape})", path=path)
        return cls(tuple(members.tolist()), vectors.astype(np.float64), source,
                   top_n if top_n > 0 else None)


def build_cohort(vectors: Mapping[str, np.ndarray], utt2spk: Mapping[str, str],
                 unit_length: bool = True, source: object = "cohort",
                 level: str = "speaker", top_n: int | None = None) -> Cohort:
    """The cohort of the training speakers of ``utt2spk``.

    ``level="speaker"``: one vector per speaker.  With ``unit_length`` (cosine scoring)
    it is the mean of the speaker's unit vectors, renormalised, as a k-utterance
    enrollment model is built; without it, the plain mean of the given vectors (which
    the caller has already put in the back end's space).  ``level="utterance"``: every
    training utterance is a member, its own vector (unit length with ``unit_length``);
    PLDA needs this (:data:`DEFAULT_LEVEL`).  Utterances of ``utt2spk`` without a
    vector are left out (a speaker with none is no cohort member); vectors of
    utterances ``utt2spk`` does not know are ignored with a warning, and if none is
    known the two do not belong together: an error.  Members are in sorted order, so
    the cohort is the same whatever the order of the files.  ``top_n`` is recorded
    with it (what :meth:`Cohort.save` keeps for the scorers' users).
    """
    if level not in LEVELS:
        raise ValueError(f"cohort level must be one of {LEVELS}, got {level!r}")
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(vectors):
        spk = utt2spk.get(utt)
        if spk is not None:
            spk2utt.setdefault(spk, []).append(utt)
    unknown = [u for u in vectors if u not in utt2spk]
    if unknown and len(unknown) == len(vectors):
        raise AsNormError(f"{source}: none of its {len(vectors)} vectors is an utterance of the "
                          f"cohort's utt2spk (e.g. {unknown[0]}): are the scp and the data dir of "
                          "the same set?")
    if unknown:
        logger.warning("%s: %d vectors of utterances not in the cohort's utt2spk are ignored "
                       "(e.g. %s)", source, len(unknown), unknown[0])
    speakers = sorted(spk2utt)
    if len(speakers) < 2:
        raise AsNormError(f"{source}: {len(speakers)} cohort speaker(s); AS-norm needs at least 2")
    num_utts = sum(map(len, spk2utt.values()))
    logger.info("%s: AS-norm cohort of %d %s (%d speakers, %d utterances)", source,
                len(speakers) if level == "speaker" else num_utts, f"{level}s", len(speakers),
                num_utts)
    if level == "utterance":
        members = sorted(u for utts in spk2utt.values() for u in utts)
        rows = np.stack([np.asarray(vectors[u], dtype=np.float64) for u in members])
        return Cohort(tuple(members), unit(rows) if unit_length else rows, str(source), top_n)
    if unit_length:
        rows = [enroll_model(vectors, spk2utt[s]) for s in speakers]
    else:
        rows = [np.mean([np.asarray(vectors[u], dtype=np.float64) for u in spk2utt[s]], axis=0)
                for s in speakers]
    return Cohort(tuple(speakers), np.stack(rows), str(source), top_n)


def effective_top_n(top_n: int, cohort_size: int) -> int:
    """``top_n``, or the whole cohort when it is smaller; at least 2 (a spread needs 2)."""
    if top_n < 2:
        raise AsNormError(f"AS-norm top-N must be >= 2 (a standard deviation needs 2 scores), "
                          f"got {top_n}")
    return min(top_n, cohort_size)


def top_n_stats(cohort_scores, top_n: int = DEFAULT_TOP_N,
                names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of each row's ``top_n`` highest scores.

    ``cohort_scores``: (N, C) (or (C,) for one side: then scalars come back as 0-d
    arrays).  ``np.partition`` finds the top N in O(C) per row; which of several equal
    scores are taken does not change the mean or the spread.  A row whose top N are
    all equal is an AsNormError naming it (``names[i]``, when given).
    """
    s = np.asarray(cohort_scores, dtype=np.float64)
    one = s.ndim == 1
    s = np.atleast_2d(s)
    n = effective_top_n(top_n, s.shape[1])
    top = np.partition(s, s.shape[1] - n, axis=1)[:, s.shape[1] - n:]
    mean, std = top.mean(axis=1), top.std(axis=1)
    flat = np.flatnonzero(~(std > 0))
    if flat.size:
        who = names[flat[0]] if names is not None else f"row {flat[0]}"
        raise AsNormError(f"AS-norm: the top {n} cohort scores of {who} are all equal "
                          f"({top[flat[0], 0]:g}): no spread to normalise by (a constant or "
                          "broken vector?)")
    return (mean[0], std[0]) if one else (mean, std)


def normalize(scores, mu_e, sd_e, mu_t, sd_t) -> np.ndarray:
    """The AS-norm formula, elementwise: ``0.5 * ((s - mu_e)/sd_e + (s - mu_t)/sd_t)``."""
    s = np.asarray(scores, dtype=np.float64)
    return 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)


def asnorm_scores(scores, enroll_cohort_scores, test_cohort_scores,
                  top_n: int = DEFAULT_TOP_N) -> np.ndarray:
    """AS-norm of trial scores given each trial's two rows of cohort scores.

    For one trial (the Python API's ``verify``): ``scores`` a number, the cohort scores
    two (C,) arrays.  For N trials: (N,) and two (N, C).  (The scorers compute the
    statistics once per unique side instead: :func:`asnorm_trials`.)
    """
    def side(rows, name):
        return top_n_stats(rows, top_n, [name] if np.ndim(rows) == 1 else None)

    mu_e, sd_e = side(enroll_cohort_scores, "the enrollment side")
    mu_t, sd_t = side(test_cohort_scores, "the test side")
    return normalize(scores, mu_e, sd_e, mu_t, sd_t)


def cosine_cohort_scores(x: np.ndarray, cohort: Cohort) -> np.ndarray:
    """(N, C) cosines of the rows of ``x`` with the (unit) cohort vectors."""
    x = unit(np.atleast_2d(x))
    if x.shape[1] != cohort.vectors.shape[1]:
        raise AsNormError(f"{cohort.source}: cohort vectors are {cohort.vectors.shape[1]}-dim but "
                          f"the scored vectors are {x.shape[1]}-dim (another system's cohort?)")
    return x @ unit(cohort.vectors).T


def plda_score_matrix(plda, enroll_t: np.ndarray, test_t: np.ndarray,
                      num_enroll_utts=1) -> np.ndarray:
    """(E, T) PLDA log-likelihood ratios of every enrollment row against every test row.

    ``TwoCovPLDA.log_likelihood_ratio``'s formula (rows already transformed with
    ``transform_ivectors``) expanded into matrix products, one per distinct count:
    with ``a = n psi / (n psi + 1)``, ``v_s = 1 + psi / (n psi + 1)``, ``v_d = 1 + psi``,

        llr(e, t) = c(n) - 0.5 * (t^2 . (1/v_s - 1/v_d) - 2 t . (a e / v_s) + e^2 . (a^2 / v_s))

    so the cohort of 6,000 utterances against 1,900 costs a BLAS product instead of a
    (6,000 x 1,900 x dim) array (25 times faster; equal to ``log_likelihood_ratio``
    to 1e-9, a test).
    """
    enroll_t = np.atleast_2d(np.asarray(enroll_t, dtype=np.float64))
    test_t = np.atleast_2d(np.asarray(test_t, dtype=np.float64))
    plda._check_dim(enroll_t, "enrollment vectors")
    plda._check_dim(test_t, "test vectors")
    counts = np.broadcast_to(np.asarray(num_enroll_utts, dtype=np.float64), (len(enroll_t),))
    if np.any(counts <= 0):
        raise ValueError(f"num_enroll_utts must be > 0, got {num_enroll_utts}")
    psi = plda.psi
    var_diff = 1.0 + psi
    test_sq = test_t * test_t
    out = np.empty((len(enroll_t), len(test_t)))
    for n in np.unique(counts):
        rows = np.flatnonzero(counts == n)
        e = enroll_t[rows]
        a = n * psi / (n * psi + 1.0)
        var_same = 1.0 + psi / (n * psi + 1.0)
        const = -0.5 * (np.sum(np.log(var_same)) - np.sum(np.log(var_diff)))
        t_term = test_sq @ (1.0 / var_same - 1.0 / var_diff)          # (T,)
        cross = (e * (a / var_same)) @ test_t.T                       # (E, T)
        e_term = (e * e) @ (a * a / var_same)                         # (E,)
        out[rows] = const - 0.5 * (t_term[None, :] - 2.0 * cross + e_term[:, None])
    return out


def _index(items: Sequence[str]) -> tuple[list[str], np.ndarray]:
    keys: dict[str, int] = {}
    rows = np.array([keys.setdefault(x, len(keys)) for x in items], dtype=np.int64)
    return list(keys), rows


def asnorm_trials(trials: Sequence[Trial], scores, enroll_cohort, test_cohort,
                  top_n: int = DEFAULT_TOP_N) -> np.ndarray:
    """AS-norm of scored ``trials`` with one cohort-score row per unique side.

    ``enroll_cohort(ids) -> (len(ids), C)`` and ``test_cohort(ids)`` score the unique
    enrollment ids and test ids against the cohort (cosine or PLDA, as the trial
    scores were made); each is called once per list.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(trials):
        raise ValueError(f"{len(trials)} trials but {len(scores)} scores")
    if not len(trials):
        return scores
    e_ids, e_rows = _index([t.enroll for t in trials])
    t_ids, t_rows = _index([t.test for t in trials])
    mu_e, sd_e = top_n_stats(enroll_cohort(e_ids), top_n, [f"enrollment {e}" for e in e_ids])
    mu_t, sd_t = top_n_stats(test_cohort(t_ids), top_n, [f"test {t}" for t in t_ids])
    return normalize(scores, mu_e[e_rows], sd_e[e_rows], mu_t[t_rows], sd_t[t_rows])


def asnorm_cosine_trials(emb: Mapping[str, np.ndarray], trials: Sequence[Trial], scores,
                         cohort: Cohort, enroll2utt: Mapping[str, Sequence[str]] | None = None,
                         top_n: int = DEFAULT_TOP_N) -> np.ndarray:
    """AS-norm of cosine trial scores (``embedding.cosine_trials``' models and vectors)."""
    models = enroll2utt or {}

    def enroll_side(ids):
        return cosine_cohort_scores(np.stack([enroll_model(emb, list(models.get(e, [e])))
                                              for e in ids]), cohort)

    def test_side(ids):
        return cosine_cohort_scores(np.stack([emb[t] for t in ids]), cohort)

    return asnorm_trials(trials, scores, enroll_side, test_side, top_n)


def asnorm_plda_trials(plda, vectors: Mapping[str, np.ndarray], trials: Sequence[Trial], scores,
                       cohort: Cohort, enroll2utt: Mapping[str, Sequence[str]] | None = None,
                       top_n: int = DEFAULT_TOP_N) -> np.ndarray:
    """AS-norm of PLDA trial scores; ``vectors`` and the cohort in the back end's space.

    Each side is scored against the cohort the way ``TwoCovPLDA.score`` scores a trial:
    an enrollment model of k utterances is their mean, transformed with ``num_utts=k``
    and scored with k; a cohort member is one vector on either side (as enrollment
    against a test utterance, as test against an enrollment model).
    """
    models = enroll2utt or {}
    cohort_t = plda.transform_ivectors(cohort.vectors, 1)

    def enroll_side(ids):
        utts = [list(models.get(e, [e])) for e in ids]
        counts = np.array([len(u) for u in utts], dtype=np.float64)
        means = np.stack([np.mean([vectors[u] for u in us], axis=0) for us in utts])
        return plda_score_matrix(plda, plda.transform_ivectors(means, counts), cohort_t, counts)

    def test_side(ids):
        test_t = plda.transform_ivectors(np.stack([vectors[t] for t in ids]), 1)
        return plda_score_matrix(plda, cohort_t, test_t, 1).T

    return asnorm_trials(trials, scores, enroll_side, test_side, top_n)


def read_cohort_vectors(scp, data) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(usable vectors of ``scp``, utt2spk of the data dir ``data``): a cohort's inputs.

    The scorers' ``--asnorm-cohort SCP --asnorm-data DATA``; a vector that cannot be
    scored (NaN, zeros) is dropped with a warning, as for the trials.
    """
    from ..data import DataDir
    from ..data.ark import read_vectors
    from .embedding import usable_vectors

    vectors, _ = usable_vectors(read_vectors(scp), scp)
    return vectors, dict(DataDir.load(data).utt2spk)


def add_asnorm_options(p, several: bool = False) -> None:
    """The AS-norm options of a scorer (``several``: one cohort scp per fused system)."""
    g = p.add_argument_group("AS-norm (adaptive symmetric score normalisation)")
    g.add_argument("--asnorm-cohort", type=Path, action="append" if several else "store",
                   metavar="SCP",
                   help="the training set's vectors (exp/<tag>/<train>/embedding.scp, "
                        "exp/ivector/train/ivector.scp)" + ("; once per EMBEDDING_SCP, in "
                                                            "the same order" if several else "")
                        + "; the scores written are then AS-normalised")
    g.add_argument("--asnorm-data", type=Path, metavar="DATA",
                   help="the cohort's data dir (its utt2spk groups the vectors by speaker)")
    g.add_argument("--asnorm-level", choices=LEVELS, default=None,
                   help="cohort members: one per speaker, or every utterance (default: "
                        + ", ".join(f"{k} for {m}" for m, k in DEFAULT_LEVEL.items()) + ")")
    g.add_argument("--asnorm-top-n", type=int, default=DEFAULT_TOP_N, metavar="N",
                   help=f"the N highest cohort scores of each side (default {DEFAULT_TOP_N}; "
                        "all if the cohort is smaller)")
    g.add_argument("--asnorm-save", type=Path, metavar="NPZ",
                   help="also save the cohort, in the scorer's space and with its top-N, "
                        "where the Python API and deepspeaker verify find it "
                        "(exp/<tag>/asnorm/<method>.npz)")


def check_asnorm_options(parser, args, num_systems: int = 1) -> None:
    """Parser errors for AS-norm options that do not go together."""
    cohort = args.asnorm_cohort
    if cohort is None:
        if args.asnorm_data is not None or args.asnorm_level is not None \
                or args.asnorm_save is not None:
            parser.error("--asnorm-data, --asnorm-level and --asnorm-save need --asnorm-cohort")
        return
    if args.asnorm_data is None:
        parser.error("--asnorm-cohort needs --asnorm-data (the cohort's data dir, for its utt2spk)")
    if isinstance(cohort, list) and len(cohort) != num_systems:
        parser.error(f"{len(cohort)} --asnorm-cohort scp(s) for {num_systems} embedding scp(s): "
                     "give one per system, in the same order")
    if args.asnorm_top_n < 2:
        parser.error(f"--asnorm-top-n must be >= 2, got {args.asnorm_top_n}")


__all__ = ["DEFAULT_LEVEL", "DEFAULT_TOP_N", "LEVELS", "AsNormError", "Cohort",
           "add_asnorm_options", "asnorm_cosine_trials", "asnorm_plda_trials", "asnorm_scores",
           "asnorm_trials", "build_cohort", "check_asnorm_options", "cosine_cohort_scores",
           "effective_top_n", "normalize", "plda_score_matrix", "read_cohort_vectors",
           "top_n_stats"]
