"""Enrolled speakers on disk, in Kaldi's formats, tied to the system that made them.

A store the user names ``speakers`` (or ``speakers.scp`` / ``speakers.ark``) is

=====================  ==========================================================
``speakers.ark/.scp``  one speaker model per speaker (float64 vectors; Kaldi's
                       ``copy-vector`` and kaldiio read them)
``speakers.num_utts``  ``speaker k``: how many utterances each model averages, the
                       file ``ivector-plda-scoring --num-utts`` reads
``speakers.yaml``      which system made it: the ``system_id`` (a hash of the model
                       files and the scoring method), the exp dir, the method
=====================  ==========================================================

A model is only comparable with test vectors of the system and back end that made it,
so a store of another system (another checkpoint, another method) is refused with a
message naming both, never scored.  Every file is rewritten atomically; the sidecar
last, so a store whose sidecar is missing was never finished and is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data import read_kaldi_map, write_kaldi_map
from ..data.ark import load_scp_table, write_ark_scp
from ..utils import DeepSpeakerError, load_yaml, save_yaml

SUFFIXES = (".scp", ".ark", ".yaml", ".num_utts")


class StoreError(DeepSpeakerError):
    """An enrolled-speaker store that cannot be used with this system."""


def store_stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in SUFFIXES else p


class SpeakerStore:
    """Speaker models ``{name: (vector, k)}`` of one system, kept in :attr:`stem`.* files."""

    def __init__(self, path: str | os.PathLike, system_id: str, describe: dict):
        self.stem = store_stem(path)
        self.system_id, self.describe = system_id, describe
        self.models: dict[str, tuple[np.ndarray, int]] = {}
        if self.sidecar.is_file():
            self._read()
        elif self.scp.exists():
            raise StoreError(f"no {self.sidecar.name} beside it: not an "
                             f"enrolled-speaker store of deepspeaker (or one never finished)",
                             path=self.scp)

    @property
    def scp(self) -> Path:
        return self.stem.with_name(self.stem.name + ".scp")

    @property
    def sidecar(self) -> Path:
        return self.stem.with_name(self.stem.name + ".yaml")

    def _file(self, suffix: str) -> Path:
        return self.stem.with_name(self.stem.name + suffix)

    def _read(self) -> None:
        meta = load_yaml(self.sidecar)
        if meta.get("system_id") != self.system_id:
            raise StoreError(f"enrolled with another system ({meta.get('exp_dir', '?')}, method "
                             f"{meta.get('method', '?')}, id {meta.get('system_id', '?')}); this "
                             f"system is {self.describe['exp_dir']}, method "
                             f"{self.describe['method']}, id {self.system_id}: enroll the "
                             f"speakers again with it or use another store", path=self.sidecar)
        if not meta.get("speakers"):
            return
        counts = read_kaldi_map(self._file(".num_utts"))
        table = load_scp_table(self.scp)
        for name in table:
            if name not in counts:
                raise StoreError(f"{name}: no count in {self._file('.num_utts')}", path=self.scp)
            self.models[name] = (np.asarray(table[name], dtype=np.float64), int(counts[name]))

    def add(self, name: str, vector: np.ndarray, count: int) -> None:
        if not name or any(c.isspace() for c in name):
            raise StoreError(f"speaker name {name!r}: must be non-empty without whitespace "
                             f"(a Kaldi key)")
        self.models[name] = (np.asarray(vector, dtype=np.float64), int(count))

    def save(self) -> None:
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        write_ark_scp(self._file(".ark"), self.scp,
                      {k: v for k, (v, _) in self.models.items()})
        write_kaldi_map(self._file(".num_utts"), {k: str(n) for k, (_, n) in self.models.items()})
        save_yaml(self.sidecar, {"system_id": self.system_id, **self.describe,
                                 "speakers": len(self.models)})


__all__ = ["SpeakerStore", "StoreError", "store_stem"]
