"""Cosine scoring of embeddings, k-utterance enrollment and the two fusions of paper §5.1.3.

* No vector (every scorer: embeddings, i-vectors, MFCC stats): a trial whose test
  utterance or one of whose enrollment utterances has no vector (no voiced frames,
  failed extraction) is left out and listed with the reason in ``<scores>.skipped``
  (:func:`trials_with_vectors`, then ``trials.write_skipped``); the summaries and the
  report exclude and count exactly those.  A trial naming an id that is not in the
  data dir at all is an error instead (``trials.check_trial_ids``).
* A vector that cannot be scored (NaN or infinite values, or all zeros: a cosine or a
  length normalisation of it is NaN or a meaningless 0) counts as no vector: the
  scorers drop it with a warning naming the utterance and the scp
  (:func:`usable_vectors`), so its trials are skipped and listed with that reason, and
  no score file ever holds a NaN (``trials.write_scores`` refuses one as well).
* Enrollment (T8): a model of k utterances is the average of their unit embeddings,
  renormalised; with k = 1 it is the utterance's own embedding.
* Embedding fusion (E3): per utterance, the sum of the systems' unit embeddings,
  renormalised; then scored like any embedding.
* Score fusion (E3): each system's scores are z-normalised with the mean and standard
  deviation of *all its scores on the trial list*, then added.  Systems must score the
  same trials; one left out by any system (no embedding for an utterance) is left out
  of the fusion and listed, like every skipped trial, with the reason.

Everything here works on plain dicts and arrays; the ``bin/`` stages do the I/O.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from ..utils import DeepSpeakerError
from .trials import Trial

logger = logging.getLogger(__name__)

SCORE_BLOCK = 8192  # trials scored per block


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-30)


def fuse_embeddings(systems: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Embedding fusion: ``unit(sum_s unit(e_s(u)))`` for each utterance ``u`` every system has."""
    if not systems:
        raise ValueError("fuse_embeddings: no systems")
    keys = set(systems[0])
    for s in systems[1:]:
        keys &= set(s)
    return {u: unit(sum(unit(s[u]) for s in systems)) for u in sorted(keys)}


def enroll_model(emb: Mapping[str, np.ndarray], utts: Sequence[str]) -> np.ndarray:
    """A k-utterance speaker model: mean of the unit embeddings, renormalised (paper T8)."""
    return unit(np.mean([unit(emb[u]) for u in utts], axis=0))


def vector_problem(v: np.ndarray) -> str | None:
    """Why ``v`` cannot be scored (NaN or infinite values, all zeros), or None."""
    if not np.all(np.isfinite(v)):
        return "NaN or infinite values"
    if not np.any(v):
        return "a vector of zeros"
    return None


def usable_vectors(vectors: Mapping[str, np.ndarray], source: object
                   ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(the vectors that can be scored, {utterance: why not} for the others).

    ``source`` (the scp) is named in the warning and in the reasons, which
    :func:`trials_with_vectors` writes into ``<scores>.skipped``.
    """
    bad = {u: f"{why} in {source}" for u, v in vectors.items()
           if (why := vector_problem(np.asarray(v))) is not None}
    if bad:
        first = next(iter(bad))
        logger.warning("%s: %d vector(s) cannot be scored, counted as no vector (e.g. %s: %s)",
                       source, len(bad), first, bad[first])
    return {u: v for u, v in vectors.items() if u not in bad}, bad


def trials_with_vectors(trials: Sequence[Trial], vectors: Mapping[str, object],
                        enroll2utt: Mapping[str, Sequence[str]] | None = None,
                        unusable: Mapping[str, str] | None = None
                        ) -> tuple[list[Trial], list[tuple[Trial, list[str]]]]:
    """The one "no vector" rule: (trials to score, skipped trials with the utterances
    that have no vector).  An enroll id of ``enroll2utt`` needs a vector for each of
    its utterances: a model short of one is not the model the list asks for.
    ``unusable``: utterances whose vector was dropped (:func:`usable_vectors`) and why;
    the reason follows the utterance in the skipped list."""
    models = enroll2utt or {}
    why = unusable or {}
    kept, skipped = [], []
    for t in trials:
        missing = [u if u not in why else f"{u} ({why[u]})"
                   for u in list(models.get(t.enroll, [t.enroll])) + [t.test] if u not in vectors]
        if missing:
            skipped.append((t, missing))
        else:
            kept.append(t)
    return kept, skipped


def cosine_trials(emb: Mapping[str, np.ndarray], trials: Sequence[Trial],
                  enroll2utt: Mapping[str, Sequence[str]] | None = None,
                  unusable: Mapping[str, str] | None = None
                  ) -> tuple[list[Trial], np.ndarray, list[tuple[Trial, list[str]]]]:
    """Cosine scores of ``trials`` (enroll ids may be models of ``enroll2utt``).

    Returns (scored trials, their scores, skipped trials with the utterances that have
    no embedding).  Whether every id is known at all is the caller's check; ``emb``
    holds only usable vectors (:func:`usable_vectors`, whose reasons are ``unusable``).
    """
    models = enroll2utt or {}
    kept, skipped = trials_with_vectors(trials, emb, models, unusable)
    e_index: dict[str, int] = {}
    t_index: dict[str, int] = {}
    e_vecs, t_vecs, e_rows, t_rows = [], [], [], []
    for t in kept:
        if t.enroll not in e_index:
            e_index[t.enroll] = len(e_vecs)
            e_vecs.append(enroll_model(emb, list(models.get(t.enroll, [t.enroll]))))
        if t.test not in t_index:
            t_index[t.test] = len(t_vecs)
            t_vecs.append(unit(emb[t.test]))
        e_rows.append(e_index[t.enroll])
        t_rows.append(t_index[t.test])
    if not kept:
        return kept, np.zeros(0), skipped
    # Row-wise dot products by index, in blocks: never a (trials x dim) copy of the vectors.
    enroll, test = np.stack(e_vecs), np.stack(t_vecs)
    e_rows, t_rows = np.asarray(e_rows), np.asarray(t_rows)
    scores = np.empty(len(kept))
    for i in range(0, len(kept), SCORE_BLOCK):
        j = slice(i, i + SCORE_BLOCK)
        scores[j] = np.einsum("ij,ij->i", enroll[e_rows[j]], test[t_rows[j]])
    return kept, scores, skipped


def znorm(scores: np.ndarray, where: str = "scores") -> np.ndarray:
    """``(s - mean) / std`` over all of ``scores`` (paper §5.1.3's score normalisation)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size < 2:
        raise DeepSpeakerError(f"{where}: {scores.size} score(s); z-normalisation needs at least 2")
    std = scores.std()
    if not std > 0:
        raise DeepSpeakerError(f"{where}: all {scores.size} scores are equal; cannot z-normalise")
    return (scores - scores.mean()) / std


def fuse_scores(systems: Sequence[Mapping[tuple[str, str], float]], trials: Sequence[Trial],
                names: Sequence[str] | None = None) -> tuple[list[Trial], np.ndarray]:
    """Score fusion over the trials every system scored: sum of per-system z-normalised scores.

    Each system is z-normalised over all of *its own* scores of ``trials`` (before the
    intersection), so a system is normalised the same way whatever it is fused with.
    """
    if len(systems) < 2:
        raise DeepSpeakerError("score fusion needs at least two systems")
    names = list(names) if names is not None else [f"system {i + 1}" for i in range(len(systems))]
    normed = []
    for sys_scores, name in zip(systems, names):
        keys = [(t.enroll, t.test) for t in trials if (t.enroll, t.test) in sys_scores]
        z = znorm(np.array([sys_scores[k] for k in keys]), name)
        normed.append(dict(zip(keys, z)))
    kept = [t for t in trials if all((t.enroll, t.test) in n for n in normed)]
    fused = np.array([sum(n[(t.enroll, t.test)] for n in normed) for t in kept])
    return kept, fused


__all__ = ["cosine_trials", "enroll_model", "fuse_embeddings", "fuse_scores", "trials_with_vectors",
           "unit", "usable_vectors", "vector_problem", "znorm"]
