"""Trial lists as the paper builds them (paper §4.1, T8), and Kaldi trial/score files.

Formats (Kaldi's):

* trials: ``enroll test target|nontarget`` one per line, or ``enroll test`` (Kaldi
  accepts both; an unlabelled list can be scored but gives no metrics: a reader that
  needs labels, ``read_trials(path)``, says so naming the file);
* scores: ``enroll test score``; or ``enroll test score label`` with the label
  ``target|nontarget`` or ``1|0`` (the form many tools write), which metrics read
  without a trials file (:func:`read_labelled_scores`);
* ``enroll2utt``: ``model utt1 utt2 ...`` for enrollment models built from k
  utterances (the same layout as ``spk2utt``).

Every id must be valid UTF-8 (``deepspeaker.data.table``, the one line reader).  A
score is a plain decimal number (``-1.25``, ``3e-05``): ``nan``, ``inf``, ``-inf``, a
number too large for a float, or any other text is refused naming ``file:line`` by
:func:`read_scores`, the one score reader of every command (compute_metrics,
fuse_scores, summarize_scores, make_report), and :func:`write_scores` never writes
one.  A NaN in a score file would otherwise pass through every comparison as
"false" and give an EER that is silently wrong.

The *anchor* of the paper's protocol is always the **test** column: for each
anchor utterance we pick one positive (a same-speaker utterance, or that
speaker's k-utterance model) and 99 negatives (other speakers' utterances or
models).  Keeping the anchor in one column means ACC is computed the same way for
the utterance-level list and for the k-enrollment lists.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from ..data.table import iter_lines
from ..utils import atomic_write
from .metrics import ScoringError

logger = logging.getLogger(__name__)

# Plain decimals only: float() would also take "nan", "inf", "infinity" and "1_000".
_SCORE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

NUM_NEGATIVES = 99  # paper §4.1: 1 positive + 99 negatives per anchor
ENROLL_COUNTS = (1, 2, 3, 5)  # paper T8


class Trial(NamedTuple):
    """One trial; a named tuple, as a list of 190,000 is read for every score file.

    ``target`` is None for a trial of an unlabelled (2-column) list.
    """

    enroll: str
    test: str
    target: bool | None


def _rng(seed: int, *tags: str) -> np.random.Generator:
    """A generator that depends only on the seed and the tags (e.g. the anchor id).

    Seeding per anchor keeps each anchor's trials the same when other utterances are
    added or removed (say a corrupt file is dropped), so lists stay comparable.
    """
    import zlib

    key = [seed] + [zlib.crc32(t.encode()) for t in tags]
    return np.random.default_rng(key)


def _by_speaker(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return spk2utt


def make_trials(utt2spk: Mapping[str, str], num_negatives: int = NUM_NEGATIVES,
                seed: int = 0) -> list[Trial]:
    """Utterance-level trials: every utterance is an anchor with 1 positive and N negatives.

    The positive is another utterance of the anchor's speaker; negatives are drawn
    uniformly, without replacement, from the utterances of all other speakers.
    Anchors whose speaker has a single utterance have no positive and are skipped
    (logged).  If fewer than ``num_negatives`` other-speaker utterances exist, all of
    them are used and a warning says so.
    """
    spk2utt = _by_speaker(utt2spk)
    utts = sorted(utt2spk)
    spk_of = np.array([utt2spk[u] for u in utts])
    trials: list[Trial] = []
    skipped = []
    short = 0
    for i, anchor in enumerate(utts):
        spk = utt2spk[anchor]
        others = [u for u in spk2utt[spk] if u != anchor]
        if not others:
            skipped.append(anchor)
            continue
        rng = _rng(seed, "utt", anchor)
        pos = others[rng.integers(len(others))]
        neg_pool = np.flatnonzero(spk_of != spk)
        n = min(num_negatives, len(neg_pool))
        short += n < num_negatives
        negs = sorted(utts[j] for j in rng.choice(neg_pool, size=n, replace=False))
        trials.append(Trial(pos, anchor, True))
        trials.extend(Trial(u, anchor, False) for u in negs)
    if skipped:
        logger.warning("%d anchors skipped: their speaker has one utterance (e.g. %s)",
                       len(skipped), skipped[0])
    if short:
        logger.warning("%d anchors got fewer than %d negatives: not enough other-speaker "
                       "utterances", short, num_negatives)
    return trials


def make_enroll_trials(utt2spk: Mapping[str, str], enroll_counts: Sequence[int] = ENROLL_COUNTS,
                       num_negatives: int = NUM_NEGATIVES, seed: int = 0
                       ) -> tuple[dict[str, list[str]], dict[int, list[Trial]]]:
    """Trials against k-utterance enrollment models (paper T8).

    Per speaker, ``max(enroll_counts)`` utterances are drawn as its enrollment pool;
    the model for k uses the first k of them, so the models are nested and the
    comparison across k is paired.  The remaining utterances are the anchors, the
    same for every k, and never part of any model.  Each anchor is tried against its
    own speaker's model and the models of ``num_negatives`` other speakers.

    Returns ``(enroll2utt, {k: trials})``, model ids ``<spk>-enroll<k>``.
    """
    counts = sorted({int(k) for k in enroll_counts})
    if not counts or counts[0] < 1:
        raise ScoringError(f"enroll counts must be >= 1, got {list(enroll_counts)}")
    pool_size = counts[-1]
    spk2utt = _by_speaker(utt2spk)
    pools: dict[str, list[str]] = {}
    anchors: dict[str, list[str]] = {}
    for spk, utts in spk2utt.items():
        if len(utts) < pool_size + 1:
            logger.warning("speaker %s has %d utterances; needs %d (%d to enroll + 1 test): "
                           "left out of the enrollment trials", spk, len(utts), pool_size + 1,
                           pool_size)
            continue
        rng = _rng(seed, "enroll", spk)
        perm = rng.permutation(len(utts))
        pools[spk] = [utts[j] for j in perm[:pool_size]]
        anchors[spk] = sorted(utts[j] for j in perm[pool_size:])
    speakers = sorted(pools)
    if len(speakers) < 2:
        raise ScoringError("enrollment trials need at least 2 speakers with enough utterances")
    n = min(num_negatives, len(speakers) - 1)
    if n < num_negatives:
        logger.warning("only %d other speakers: each anchor gets %d negative models, not %d",
                       len(speakers) - 1, n, num_negatives)
    enroll2utt = {f"{spk}-enroll{k}": pools[spk][:k] for spk in speakers for k in counts}
    trials: dict[int, list[Trial]] = {k: [] for k in counts}
    spk_arr = np.array(speakers)
    for spk in speakers:
        others = spk_arr[spk_arr != spk]
        for anchor in anchors[spk]:
            rng = _rng(seed, "enroll-anchor", anchor)
            negs = sorted(rng.choice(others, size=n, replace=False))
            for k in counts:
                trials[k].append(Trial(f"{spk}-enroll{k}", anchor, True))
                trials[k].extend(Trial(f"{o}-enroll{k}", anchor, False) for o in negs)
    return enroll2utt, trials


def write_trials(path, trials: Iterable[Trial]) -> None:
    """Kaldi's trials file; trials without a label (``target=None``) as ``enroll test``.

    A list must be all labelled or all unlabelled (one file is one form): a missing
    label is never written as "nontarget".
    """
    trials = list(trials)
    unlabelled = {t.target is None for t in trials}
    if len(unlabelled) > 1:
        raise ValueError(f"{path}: some trials have a label and some do not")
    with atomic_write(path) as f:
        for t in trials:
            f.write(f"{t.enroll} {t.test}\n" if t.target is None
                    else f"{t.enroll} {t.test} {'target' if t.target else 'nontarget'}\n")


# Whitespace that str.split() splits on but the table reader (spaces and tabs) does not.
_OTHER_SPACE = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def _plain_table(path) -> list[list[str]] | None:
    """The columns of a file whose every line has the same number of fields, at C speed, or None.

    A report reads some 70 files of 190,000 lines; line by line (``iter_lines``) that is
    1.3 s a file, this 0.15 s.  Anything unusual (not ASCII, a CR, a blank line or lines
    of different field counts, a file that cannot be read) gives None, and the
    line-by-line reader, which says which line is wrong, reads the file instead.
    """
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None
    if any(c in text for c in _OTHER_SPACE):
        return None
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()  # the file's last newline
    counts = set(map(len, map(str.split, lines)))
    if len(counts) != 1 or 0 in counts:
        return None
    ncols = counts.pop()
    tokens = text.split()
    return [tokens[i::ncols] for i in range(ncols)]


def _plain_columns(path, ncols: int) -> list[list[str]] | None:
    """:func:`_plain_table` of a file of exactly ``ncols`` fields a line, or None."""
    cols = _plain_table(path)
    return cols if cols is not None and len(cols) == ncols else None


def _no_labels(path, purpose: str, line: int = 1) -> ScoringError:
    return ScoringError(f"'enroll test' trials have no target/nontarget labels, and {purpose} "
                        "needs them: give a 3-column list 'enroll test target|nontarget' (or, to "
                        "compute_metrics, a 4-column score file 'enroll test score "
                        "target|nontarget' alone)", path=path, line=line)


def _read_trials_fast(path, need_labels: bool, purpose: str) -> list[Trial] | None:
    cols = _plain_table(path)
    if cols is None or len(cols) not in (2, 3):
        return None
    enrolls, tests = cols[0], cols[1]
    if len(cols) == 2:
        if need_labels:
            raise _no_labels(path, purpose)
        labels = [None] * len(tests)
    elif not set(cols[2]) <= {"target", "nontarget"}:
        return None
    else:
        labels = [lab == "target" for lab in cols[2]]
    if len(set(zip(enrolls, tests))) != len(tests):
        return None
    return list(map(Trial, enrolls, tests, labels))


def read_trials(path, need_labels: bool = True, purpose: str = "computing metrics") -> list[Trial]:
    """Read a Kaldi trials file; malformed lines and duplicate trials name file and line.

    ``enroll test target|nontarget`` lines, or with ``need_labels=False`` (the scorers)
    also ``enroll test`` lines, whose trials have ``target=None``; one file is one form.
    With ``need_labels`` a 2-column list is refused saying that ``purpose`` needs labels.
    """
    fast = _read_trials_fast(path, need_labels, purpose)
    if fast is not None:
        return fast
    trials: list[Trial] = []
    seen: dict[tuple[str, str], int] = {}
    form: tuple[int, int] | None = None  # (field count, first line)
    for ln in iter_lines(path):
        lineno, line, fields = ln.lineno, ln.text, ln.fields()
        if form is None and len(fields) in (2, 3):
            form = (len(fields), lineno)
            if len(fields) == 2 and need_labels:
                raise _no_labels(path, purpose, lineno)
        if form is None or len(fields) != form[0]:
            want = "'enroll test target|nontarget'" + ("" if need_labels else " or 'enroll test'")
            if form is not None:
                want = (f"'enroll test target|nontarget' as on line {form[1]}" if form[0] == 3
                        else f"'enroll test' as on line {form[1]}")
            raise ScoringError(f"{path}:{lineno}: expected {want}, got {line.rstrip()!r}")
        enroll, test = fields[0], fields[1]
        label = fields[2] if len(fields) == 3 else None
        if label is not None and label not in ("target", "nontarget"):
            raise ScoringError(f"{path}:{lineno}: label must be target or nontarget, got {label!r}")
        if (enroll, test) in seen:
            raise ScoringError(f"{path}:{lineno}: trial '{enroll} {test}' repeats line "
                               f"{seen[(enroll, test)]}")
        seen[(enroll, test)] = lineno
        trials.append(Trial(enroll, test, None if label is None else label == "target"))
    if not trials:
        raise ScoringError(f"{path}: no trials")
    return trials


def write_scores(path, trials: Sequence[Trial], scores: Sequence[float]) -> None:
    """Kaldi's ``enroll test score`` lines, atomically; a score that is not finite is refused.

    A NaN or infinite score means the scorer (or its model) is broken, not that the
    trial is hard: ScoringError names the trial and nothing is written.  Trials whose
    vectors cannot be scored are left out before this (``embedding.usable_vectors``).
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(values) != len(trials):
        raise ValueError(f"{len(trials)} trials but {len(values)} scores")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        t = trials[bad[0]]
        raise ScoringError(f"{path}: refusing to write score {values[bad[0]]} for trial "
                           f"'{t.enroll} {t.test}' ({bad.size} of {len(values)} scores are NaN "
                           "or infinite: is the model or a vector broken?); nothing written")
    with atomic_write(path) as f:
        for t, s in zip(trials, values):
            f.write(f"{t.enroll} {t.test} {float(s):.6f}\n")


def parse_score(text: str) -> float:
    """A score field as a finite float; ValueError saying why not (the caller adds file:line)."""
    if not _SCORE.fullmatch(text):
        raise ValueError(f"score {text!r} is not a number")
    value = float(text)
    if not np.isfinite(value):  # "1e999"
        raise ValueError(f"score {text!r} is too large for a float")
    return value


def _read_scores_fast(path) -> dict[tuple[str, str], float] | None:
    """read_scores of a plain file (``_plain_columns``) whose scores are all plain finite
    numbers and whose trials are all different; None otherwise."""
    cols = _plain_columns(path, 3)
    if cols is None or not all(map(_SCORE.fullmatch, cols[2])):
        return None
    values = np.array(cols[2], dtype=np.float64)
    scores = dict(zip(zip(cols[0], cols[1]), values.tolist()))
    if len(scores) != len(values) or not np.isfinite(values).all():
        return None
    return scores


def _score_of(pair: tuple[str, str], field: str, path, lineno: int) -> float:
    """The score column of a score-file line, or the error naming the trial and file:line."""
    try:
        return parse_score(field)
    except ValueError as e:
        raise ScoringError(f"trial '{pair[0]} {pair[1]}': {e}; scores must be finite "
                           "numbers", path=path, line=lineno) from None


def _first_time(pair: tuple[str, str], lines: dict, path, lineno: int) -> None:
    """Record where ``pair`` is scored; a second score for it is an error naming both lines."""
    if pair in lines:
        raise ScoringError(f"trial '{pair[0]} {pair[1]}' is scored twice (first on line "
                           f"{lines[pair]})", path=path, line=lineno)
    lines[pair] = lineno


def read_scores(path) -> dict[tuple[str, str], float]:
    """``{(enroll, test): score}`` of a Kaldi score file; every bad line names ``file:line``.

    Refused: a line without exactly 3 fields, a score that is not a plain finite number
    (``nan``, ``inf``, ``abc``), a trial scored twice.
    """
    fast = _read_scores_fast(path)
    if fast is not None:
        return fast
    scores: dict[tuple[str, str], float] = {}
    lines: dict[tuple[str, str], int] = {}
    for ln in iter_lines(path):
        lineno, line, fields = ln.lineno, ln.text, ln.fields()
        if len(fields) != 3:
            hint = ("; a 4-column 'enroll test score label' file is read by compute_metrics"
                    if len(fields) == 4 else "")
            raise ScoringError(f"expected 'enroll test score', got {line.rstrip()!r}{hint}",
                               path=path, line=lineno)
        pair = (fields[0], fields[1])
        value = _score_of(pair, fields[2], path, lineno)
        _first_time(pair, lines, path, lineno)
        scores[pair] = value
    return scores


# The label column of a 4-column score file: Kaldi's words, or the 1/0 of many tools.
SCORE_LABELS = {"target": True, "nontarget": False, "1": True, "0": False}


def _read_labelled_scores_fast(path) -> tuple[list[Trial], np.ndarray] | None:
    cols = _plain_columns(path, 4)
    if cols is None or not all(map(_SCORE.fullmatch, cols[2])) \
            or not set(cols[3]) <= SCORE_LABELS.keys():
        return None
    values = np.array(cols[2], dtype=np.float64)
    if not np.isfinite(values).all() or len(set(zip(cols[0], cols[1]))) != len(values):
        return None
    return list(map(Trial, cols[0], cols[1], [SCORE_LABELS[x] for x in cols[3]])), values


def read_labelled_scores(path) -> tuple[list[Trial], np.ndarray]:
    """(labelled trials, scores) of a 4-column ``enroll test score label`` file.

    The label is ``target|nontarget`` or ``1|0``.  Every bad line names ``file:line``:
    another field count (a 3-column file needs its trials list), a score that is not a
    plain finite number, another label, a trial scored twice.
    """
    fast = _read_labelled_scores_fast(path)
    if fast is not None:
        return fast
    trials: list[Trial] = []
    values: list[float] = []
    lines: dict[tuple[str, str], int] = {}
    for ln in iter_lines(path):
        lineno, line, fields = ln.lineno, ln.text, ln.fields()
        if len(fields) != 4:
            hint = (": 'enroll test score' lines have no labels; give the trials list too "
                    "(compute_metrics TRIALS SCORES)" if len(fields) == 3 else "")
            raise ScoringError(f"expected 'enroll test score target|nontarget', got "
                               f"{line.rstrip()!r}{hint}", path=path, line=lineno)
        pair = (fields[0], fields[1])
        value = _score_of(pair, fields[2], path, lineno)
        if fields[3] not in SCORE_LABELS:
            raise ScoringError(f"trial '{pair[0]} {pair[1]}': label must be target, nontarget, "
                               f"1 or 0, got {fields[3]!r}", path=path, line=lineno)
        _first_time(pair, lines, path, lineno)
        trials.append(Trial(pair[0], pair[1], SCORE_LABELS[fields[3]]))
        values.append(value)
    if not trials:
        raise ScoringError(f"{path}: no scores")
    return trials, np.array(values)


def score_columns(path) -> int:
    """The field count of the first non-blank line of a score file (0 if it has none)."""
    for ln in iter_lines(path):
        if ln.stripped:
            return len(ln.fields())
    return 0


def scores_for_trials(trials: Sequence[Trial], scores: Mapping[tuple[str, str], float],
                      trials_path="trials", scores_path="scores") -> np.ndarray:
    """Scores in trial order; a trial without a score is an error naming it."""
    out = np.empty(len(trials))
    missing = []
    for i, t in enumerate(trials):
        s = scores.get((t.enroll, t.test))
        if s is None:
            missing.append(i)
        else:
            out[i] = s
    if missing:
        t = trials[missing[0]]
        raise ScoringError(f"{scores_path}: no score for trial '{t.enroll} {t.test}' "
                           f"({trials_path}:{missing[0] + 1}); {len(missing)} of {len(trials)} "
                           f"trials have no score")
    return out


def write_enroll2utt(path, enroll2utt: Mapping[str, Sequence[str]]) -> None:
    with atomic_write(path) as f:
        for model in sorted(enroll2utt):
            f.write(f"{model} {' '.join(enroll2utt[model])}\n")


def read_enroll2utt(path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ln in iter_lines(path):
        lineno, line, fields = ln.lineno, ln.text, ln.fields()
        if len(fields) < 2:
            raise ScoringError(f"{path}:{lineno}: expected 'model utt1 [utt2 ...]', got {line.rstrip()!r}")
        if fields[0] in out:
            raise ScoringError(f"{path}:{lineno}: model {fields[0]} listed twice")
        out[fields[0]] = fields[1:]
    return out


def check_trial_ids(trials: Sequence[Trial], trials_path, known_utts, data_dir,
                    models: Mapping[str, Sequence[str]] | None = None, enroll2utt_path=None) -> None:
    """Every id a trial list (and its enrollment models) names must exist in the data dir.

    An unknown id is a user error naming the file and line: it means the trial list
    and the data dir do not belong together, so no score is written at all.
    """
    models = models or {}
    known = known_utts if isinstance(known_utts, (set, frozenset, dict)) else set(known_utts)
    for model, utts in models.items():
        bad = [u for u in utts if u not in known]
        if bad:
            raise ScoringError(f"{enroll2utt_path}: model {model} names {bad[0]}, not an "
                               f"utterance of {data_dir}")
    for lineno, t in enumerate(trials, 1):
        for side, x in (("enroll", t.enroll), ("test", t.test)):
            if x not in known and not (side == "enroll" and x in models):
                raise ScoringError(f"{trials_path}:{lineno}: {side} id {x} is not an utterance of "
                                   f"{data_dir}" + (f" nor a model of {enroll2utt_path}"
                                                    if side == "enroll" and models else ""))


def write_skipped(scores_path, skipped: Sequence[tuple[Trial, Sequence[str]]], what: str) -> None:
    """``<scores>.skipped``: trials left out because utterances have no ``what``; removed if none.

    summarize_scores and the report exclude (and count) exactly these trials.
    """
    from pathlib import Path

    path = Path(f"{scores_path}.skipped")
    if not skipped:
        path.unlink(missing_ok=True)
        return
    with atomic_write(path) as f:
        for t, missing in skipped:
            f.write(f"{t.enroll} {t.test} no {what} for {','.join(missing)}\n")
    logger.warning("%d trials left out (utterances without %s), listed in %s", len(skipped), what, path)


def read_skipped(scores_path) -> set[tuple[str, str]]:
    """The (enroll, test) pairs listed in ``<scores>.skipped`` (empty when there is none)."""
    from pathlib import Path

    path = Path(f"{scores_path}.skipped")
    if not path.is_file():
        return set()
    return {tuple(ln.fields()[:2]) for ln in iter_lines(path) if ln.stripped}
