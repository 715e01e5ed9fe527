"""One interface to every trained system: ``deepspeaker.load(exp_dir)``.

    import deepspeaker
    system = deepspeaker.load("egs/mini/exp/ivector")      # or a network, or exp/fusion
    result = system.verify("a.wav", "b.wav")               # score, llr, decision

What ``load`` reads (``exp/<tag>/system.yaml`` says which kind it is):

===============  =================================================================
``deepspeaker``  ``config.yaml`` + ``best.pt`` (the network), ``backend/{lda,plda}.npz``
                 for method ``plda``; embeddings as stage 8 writes them
``ivector``      ``config.yaml`` + ``models/{ubm,extractor,lda,plda}.npz``; i-vectors as
                 stage 4b writes them
``fusion``       its ``members`` (exp dirs beside it): the embedding fusion, scored by
                 cosine (method ``embedding``; see ``system.backends``)
===============  =================================================================

Methods: ``plda`` where the system has a PLDA back end (the default there), else
``cosine``; and ``<method>_asnorm`` where the scoring stage saved that method's AS-norm
cohort (``exp/<tag>/asnorm/<method>.npz``): the same scores AS-normalised, decided with
the operating points fitted on the normalised scores.  Features are stage 1's fbank +
VAD with the recipe's own config
(``system.features``); audio is read as stage 1 reads it (``system.audio``: files,
``(array, rate)``, resampling of higher rates, refusal of lower ones).

Decisions (``verify``, ``identify``) use the operating points evaluation saved beside
the model (``exp/<tag>/operating_points/<method>.yaml``,
:mod:`deepspeaker.scoring.operating_points`): the threshold ``far_1pct`` by default
(the score at which 1% of the eval impostor trials were accepted), or ``eer``,
``far_0.1pct``, ``min_dcf``, or a number; the calibrated log-likelihood ratio where a
calibration was fitted.  Without that file a decision is refused, naming the stage
that writes it: a threshold guessed here would be a silent wrong decision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np

from ..marker import file_digest
from ..scoring.experiment import SYSTEM_FILE, read_system_info
from ..scoring.operating_points import (ASNORM_SUFFIX, DEFAULT_THRESHOLD,
                                        load_operating_points, operating_points_path)
from ..utils import ConfigError, DeepSpeakerError
from .audio import Audio, AudioInputError, at_rate, audio_from_array, read_audio
from .backends import (AsNormScorer, BackendScorer, CosineScorer, FusionEmbedder,
                       IvectorEmbedder, NetworkEmbedder, cohort_path, has_backend)
from .features import compute_features, find_feature_config
from .store import SpeakerStore, StoreError

logger = logging.getLogger(__name__)

AudioLike = str | os.PathLike | tuple | Audio
FUSION_METHOD = "embedding"
ASNORM = ASNORM_SUFFIX  # method suffix: the scores AS-normalised against the saved cohort
EMBED_BLOCK = 32  # utterances embedded in one batch
WRITER_STAGE = ("the end of evaluation (python -m deepspeaker.bin.save_operating_points, "
                "run by the recipe's scoring stages)")


class NotASystemError(DeepSpeakerError):
    """An exp dir that is not a usable trained system."""


@dataclass
class SpeakerModel:
    """An enrolled speaker: the model vector of ``count`` utterances, in scoring space."""

    name: str
    vector: np.ndarray = field(repr=False)
    count: int


@dataclass
class Verification:
    """One trial's answer.  ``llr`` is None when the system has no calibration."""

    score: float
    llr: float | None
    accept: bool
    threshold: str
    threshold_value: float
    method: str

    @property
    def decision(self) -> str:
        return "accept" if self.accept else "reject"

    def to_dict(self) -> dict:
        return {**asdict(self), "decision": self.decision}


@dataclass
class Identification:
    """Enrolled speakers ranked by score; ``speaker`` is None (a reject) when none passes."""

    speaker: str | None
    ranked: list          # [(name, score), ...], best first
    threshold: str
    threshold_value: float
    method: str

    @property
    def reject(self) -> bool:
        return self.speaker is None

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "reject": self.reject,
                "ranked": [{"speaker": n, "score": s} for n, s in self.ranked],
                "threshold": self.threshold, "threshold_value": self.threshold_value,
                "method": self.method}


def _method_choices(kind: str, exp_dir: Path) -> tuple[str, ...]:
    """The methods of a system: its back ends, then each one's AS-norm where its cohort is saved."""
    if kind == "fusion":
        base: tuple[str, ...] = (FUSION_METHOD,)
    else:
        models = exp_dir / ("models" if kind == "ivector" else "backend")
        base = ("plda", "cosine") if has_backend(models) else ("cosine",)
    return base + tuple(f"{m}{ASNORM}" for m in base if cohort_path(exp_dir, m).is_file())


class System:
    """A trained system of ``exp_dir``: embed, score, verify, enroll, identify.

    Build it with :func:`load`.  ``speakers`` holds the enrolled speakers (of the store
    opened with :meth:`open_speakers`, and those enrolled since).
    """

    def __init__(self, exp_dir: str | os.PathLike, method: str | None = None,
                 device: str = "cpu", feature_config=None, asnorm: bool = False):
        self.exp_dir = Path(exp_dir)
        info = _read_info(self.exp_dir)
        self.kind = info.kind
        choices = _method_choices(self.kind, self.exp_dir)
        self.method = method or choices[0]
        if asnorm and not self.method.endswith(ASNORM):
            self.method += ASNORM
        if self.kind == "fusion" and self.method == "score":
            raise ConfigError(f"{self.exp_dir}: a score fusion z-normalises each member over all "
                              f"the scores of a trial list, which one trial does not have; "
                              f"use the embedding fusion (method {FUSION_METHOD!r})")
        if self.method not in choices:
            raise ConfigError(f"{self.exp_dir}: method {self.method!r} is not available for this "
                              f"{self.kind} system (available: {', '.join(choices)})")
        self.embedder, train_set = self._embedder(info, device)
        self.features, self.feature_source = self._feature_config(info, train_set, feature_config)
        self.sample_rate = self.features.fbank.sample_rate
        base = self.method.removesuffix(ASNORM)
        if self.kind == "fusion" or (self.kind == "deepspeaker" and base == "cosine"):
            self.scorer = CosineScorer()
        else:
            models = self.exp_dir / ("models" if self.kind == "ivector" else "backend")
            self.scorer = BackendScorer(models, base)
        if self.method.endswith(ASNORM):
            self.scorer = AsNormScorer(self.scorer, cohort_path(self.exp_dir, base))
        self.system_id = self._system_id()
        self.speakers: dict[str, SpeakerModel] = {}
        self._store: SpeakerStore | None = None
        self._points = None

    # -- building ------------------------------------------------------------------------

    def _embedder(self, info, device: str):
        if self.kind == "deepspeaker":
            return NetworkEmbedder(self.exp_dir, device), info.train_set
        if self.kind == "ivector":
            return IvectorEmbedder(self.exp_dir), info.train_set
        if self.kind == "fusion":
            members = []
            for tag in info.members:
                member = self.exp_dir.parent / tag
                m_info = _read_info(member)
                if m_info.kind != "deepspeaker":
                    raise NotASystemError(f"fusion member {member} is a {m_info.kind} system; "
                                          f"embedding fusion needs networks",
                                          path=self.exp_dir / SYSTEM_FILE)
                members.append((NetworkEmbedder(member, device), m_info.train_set))
            return FusionEmbedder([m for m, _ in members]), members[0][1]
        raise NotASystemError(f"a {self.kind} system has no model to embed audio with",
                              path=self.exp_dir / SYSTEM_FILE)

    def _feature_config(self, info, train_set, given):
        if self.kind != "fusion" or given is not None:
            return find_feature_config(self.exp_dir, train_set, given)
        found = [find_feature_config(self.exp_dir.parent / tag, _read_info(
            self.exp_dir.parent / tag).train_set) for tag in info.members]
        if any(cfg.to_dict() != found[0][0].to_dict() for cfg, _ in found):
            raise ConfigError(f"{self.exp_dir}: the fusion members were trained on different "
                              f"features ({', '.join(src for _, src in found)})")
        return found[0]

    def _system_id(self) -> str:
        """A hash of the model files' contents and the method: what a store is tied to."""
        files = self.embedder.files + getattr(self.scorer, "files", [])
        text = json.dumps({"method": self.method, "kind": self.kind,
                           "files": [[Path(f).name, file_digest(f)] for f in files]})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"System({str(self.exp_dir)!r}, kind={self.kind!r}, method={self.method!r}, "
                f"dim={self.embedder.dim})")

    # -- vectors -------------------------------------------------------------------------

    def _audio(self, audio: AudioLike) -> Audio:
        if isinstance(audio, Audio):
            return audio
        if isinstance(audio, (str, os.PathLike)):
            return read_audio(audio)
        if isinstance(audio, tuple) and len(audio) == 2:
            return audio_from_array(*audio)
        raise AudioInputError(f"expected a file name, an (array, rate) pair or a list of them, "
                              f"got {type(audio).__name__}")

    def features_of(self, audio: Audio) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1's (fbank, vad) of one :class:`Audio`; a DeepSpeakerError names it."""
        return compute_features(at_rate(audio, self.sample_rate), self.features, audio.name)

    def embed_features(self, items: list[tuple[np.ndarray, np.ndarray, str]]) -> list[np.ndarray]:
        """Vectors of ``(fbank, vad, name)`` items, batched as the extraction stages batch."""
        return self.embedder.embed_many(items) if items else []

    def embed_audio(self, audio: Audio) -> np.ndarray:
        """(D,) float32 vector of one :class:`Audio` (int16 scale, any rate)."""
        return self.embed_features([(*self.features_of(audio), audio.name)])[0]

    def embed(self, audio: AudioLike | Sequence[AudioLike]) -> np.ndarray:
        """The vector stage 8 (network) or 4b (i-vector) writes: (D,) for one, (N, D) for a list.

        A list is embedded :data:`EMBED_BLOCK` utterances at a time, batched as the stages
        batch (which changes a vector only by float rounding, as in the stages).
        """
        if not isinstance(audio, list):
            return self.embed_audio(self._audio(audio))
        out: list[np.ndarray] = []
        for i in range(0, len(audio), EMBED_BLOCK):
            block = [self._audio(a) for a in audio[i:i + EMBED_BLOCK]]
            out += self.embed_features([(*self.features_of(a), a.name) for a in block])
        return np.stack(out) if out else np.zeros((0, self.embedder.dim), dtype=np.float32)

    def model_of(self, vectors: np.ndarray, name: str = "") -> SpeakerModel:
        """The k-utterance speaker model of ``vectors`` (k, D), as the scorers build it."""
        vectors = np.atleast_2d(vectors)
        return SpeakerModel(name, self.scorer.model(self.scorer.project(vectors)), len(vectors))

    def _model(self, a) -> SpeakerModel:
        if isinstance(a, SpeakerModel):
            return a
        return self.model_of(self.embed(a if isinstance(a, list) else [a]))

    def score_vectors(self, model: SpeakerModel, tests: np.ndarray) -> np.ndarray:
        """Scores of ``model`` against test vectors (N, D) of this system."""
        return self.scorer.score(model.vector, model.count, self.scorer.project(tests))

    def score(self, a, b: AudioLike) -> float:
        """Score of enrollment ``a`` (audio, a list: k utterances, or a SpeakerModel) vs ``b``."""
        return float(self.score_vectors(self._model(a), self.embed([b]))[0])

    # -- decisions -----------------------------------------------------------------------

    def operating_points(self):
        if self._points is None:
            self._points = load_operating_points(self.exp_dir, self.method)
        if self._points is None:
            path = operating_points_path(self.exp_dir, self.method)
            raise DeepSpeakerError(f"no operating points saved for the {self.method} scores of "
                                   f"{self.exp_dir}: they are written at {WRITER_STAGE}; or give "
                                   f"a threshold score (threshold=<score>, --threshold <score>)", path=path)
        return self._points

    def threshold(self, threshold: str | float = DEFAULT_THRESHOLD) -> tuple[str, float]:
        """(name, score value) of a saved threshold, or of a number given as is."""
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
            return "given", float(threshold)
        return str(threshold), self.operating_points().threshold(str(threshold))

    def llr(self, score: float) -> float | None:
        points = load_operating_points(self.exp_dir, self.method) if self._points is None \
            else self._points
        if points is None or points.calibration is None:
            return None
        return points.calibration.llr(score)

    def verify(self, a, b: AudioLike, threshold: str | float = DEFAULT_THRESHOLD) -> Verification:
        """Score, calibrated LLR and accept/reject of ``a`` vs ``b`` at ``threshold``."""
        name, value = self.threshold(threshold)
        s = self.score(a, b)
        return Verification(s, self.llr(s), s >= value, name, value, self.method)

    # -- enrolled speakers ---------------------------------------------------------------

    def open_speakers(self, path: str | os.PathLike) -> dict[str, SpeakerModel]:
        """Use the store ``path`` (created on the first enroll): its speakers, and where
        :meth:`enroll` saves.  A store of another system is a StoreError."""
        self._store = SpeakerStore(path, self.system_id, {
            "exp_dir": str(self.exp_dir.resolve()), "kind": self.kind, "method": self.method})
        self.speakers = {n: SpeakerModel(n, v, k) for n, (v, k) in self._store.models.items()}
        return self.speakers

    def enroll(self, name: str, audios: Sequence[AudioLike]) -> SpeakerModel:
        """Enroll ``name`` from k utterances (saved in the open store, if any)."""
        audios = audios if isinstance(audios, list) else [audios]
        if not audios:
            raise DeepSpeakerError(f"{name}: no utterances to enroll")
        model = self.enroll_vectors(name, self.embed(audios))
        self.save_speakers()
        return model

    def enroll_vectors(self, name: str, vectors: np.ndarray) -> SpeakerModel:
        """Enroll ``name`` from its k vectors (:meth:`embed`); :meth:`save_speakers` writes."""
        model = self.model_of(vectors, name)
        if self._store is not None:
            self._store.add(name, model.vector, model.count)
        self.speakers[name] = model
        return model

    def save_speakers(self) -> None:
        """Write the open store (atomically); nothing without one."""
        if self._store is not None:
            self._store.save()

    def identify(self, audio: AudioLike, top: int = 5,
                 threshold: str | float = DEFAULT_THRESHOLD) -> Identification:
        """The enrolled speakers ranked against ``audio``; a reject when none passes."""
        return self.identify_vector(self.embed(audio), top, threshold)

    def identify_vector(self, vector: np.ndarray, top: int = 5,
                        threshold: str | float = DEFAULT_THRESHOLD) -> Identification:
        """:meth:`identify` of a vector of this system (:meth:`embed`)."""
        if not self.speakers:
            raise DeepSpeakerError("no enrolled speakers: enroll some first (or open a store)")
        name, value = self.threshold(threshold)
        test = self.scorer.project(np.atleast_2d(vector))
        scores = [(n, float(self.scorer.score(m.vector, m.count, test)[0]))
                  for n, m in self.speakers.items()]
        scores.sort(key=lambda ns: (-ns[1], ns[0]))
        best = scores[0][0] if scores[0][1] >= value else None
        return Identification(best, scores[:max(1, top)], name, value, self.method)


def _read_info(exp_dir: Path):
    if not exp_dir.is_dir():
        raise NotASystemError(f"{exp_dir}: no such experiment dir")
    try:
        info = read_system_info(exp_dir)
    except ValueError as e:
        raise NotASystemError(str(e), path=exp_dir / SYSTEM_FILE) from None
    if info is None:
        raise NotASystemError(f"{exp_dir} is not a trained system: no {SYSTEM_FILE} (the "
                           f"training stages write it; give an exp/<tag> dir of a recipe)")
    return info


def load(exp_dir: str | os.PathLike, method: str | None = None, device: str = "cpu",
         feature_config: str | os.PathLike | Mapping | None = None,
         asnorm: bool = False) -> System:
    """The trained system of ``exp_dir`` (see the module docstring); ``asnorm``: its
    ``method`` (default: the system's default) with AS-norm, ``<method>_asnorm``."""
    return System(exp_dir, method=method, device=device, feature_config=feature_config,
                  asnorm=asnorm)


__all__ = ["Identification", "SpeakerModel", "StoreError", "System", "Verification", "load"]
