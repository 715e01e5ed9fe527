"""The back-end models in Kaldi's own files: LDA transform, global mean and PLDA (issue 14).

A Kaldi user scores our vectors with Kaldi's tools and these three files, as Kaldi's
``egs/voxceleb`` and ``egs/sre16`` recipes do with theirs:

* ``mean.vec``: the global mean of the training vectors (``ivector-mean scp:... mean.vec``
  writes it), subtracted first by ``ivector-subtract-global-mean mean.vec``;
* ``transform.mat``: the LDA as ``ivector-compute-lda`` writes it, a ``Matrix<BaseFloat>``
  of shape (dim, in_dim + 1) applied by ``transform-vec`` as ``y = A x + b`` with the last
  column ``b``.  ``ivector-compute-lda`` subtracts the mean of its own input and folds
  it into ``b = -A mean``; the recipes give it mean-subtracted vectors, so that ``b`` is
  zero (up to rounding) and the mean lives in ``mean.vec``.  We write the same: ``[A, 0]``
  beside ``mean.vec``, so that the recipe's pipeline ``subtract mean -> transform-vec ->
  ivector-normalize-length`` gives exactly :meth:`LdaTransform.apply` followed by
  :func:`length_normalize` (Kaldi's ``--scaleup=true``: norm ``sqrt(dim)``).  The
  matrix is computed as ``ivector-compute-lda`` computes it (:func:`train_lda`:
  covariances normalised by the number of utterances, the within-class one whitened
  with eigenvalues floored at ``--covariance-floor`` times the largest, the whitened
  between-class one diagonalised), so its rows make the projected within-class
  covariance the identity (``--total-covariance-factor=0``) and come in decreasing
  between-class variance.  It is stored in float, as Kaldi stores it: our float64
  matrix rounded, about 1e-7 relative;
* ``plda``: ``Plda::Write``: the token ``<Plda>``, ``mean`` (Vector<double>),
  ``transform`` (Matrix<double>), ``psi`` (Vector<double>), ``</Plda>``.  ``transform``
  makes the within-class covariance the identity and the between-class one
  ``diag(psi)``; this is how :class:`TwoCovPLDA` keeps its model too, so the numbers
  are written as they are (:meth:`TwoCovPLDA.from_kaldi` recovers the covariances).
  The scoring options (length normalisation) are not in a Kaldi PLDA file:
  :func:`plda_scoring_options` gives them as ``ivector-plda-scoring`` flags.  A model
  of k enrollment utterances is, as in ``score_plda``, the average of the utterances'
  vectors after ``ivector-normalize-length`` (``ivector-mean`` with its ``num_utts``
  table), scored with ``--num-utts``.

The encoding (Kaldi's ``base/io-funcs``, ``matrix/kaldi-vector.cc``, ``kaldi-matrix.cc``):

* binary: the header ``\\0B``; a token is its text and one space; a vector is the token
  ``FV`` (float) or ``DV`` (double), its size as Kaldi writes an int32 (the byte ``\\x04``
  then 4 little-endian bytes) and the raw values; a matrix is ``FM``/``DM``, rows, cols
  and the values row by row.  Little-endian, as on every machine Kaldi runs on;
* text: no header; a vector is `` [ 1 2 3 ]`` and a newline, on one line; a matrix is
  `` [``, each row on its own line after two spaces, then ``]`` and a newline.  Kaldi
  writes 7 significant digits; we write the shortest digits that read back to the same
  number, so a text file loses nothing.  Kaldi's readers take either.

Reading accepts what Kaldi writes, float or double, binary or text, and refuses
anything else with a :class:`KaldiFormatError` naming the file and the line (text) or
byte offset (binary); compressed matrices (``CM``) are refused with how to convert them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..utils import DeepSpeakerError, atomic_write
from .lda import LdaTransform
from .model_file import ModelFileError
from .plda import PldaConfig, TwoCovPLDA

BINARY_HEADER = b"\0B"
PLDA_BEGIN, PLDA_END = "<Plda>", "</Plda>"
_INT32_SIZE = b"\x04"
_WHITESPACE = b" \t\n\r\f\v"
_SPEC = {"FV": ("<f4", 1), "DV": ("<f8", 1), "FM": ("<f4", 2), "DM": ("<f8", 2)}


class KaldiFormatError(ModelFileError):
    """A file that is not the Kaldi object it should be (a ``ModelFileError``, so a ValueError)."""


# --------------------------------------------------------------------------------------
# Writing


def _token(name: str) -> bytes:
    """Kaldi's WriteToken, binary and text alike: the token and one space."""
    return f"{name} ".encode()


def _number(x: float, single: bool) -> str:
    """The shortest text that reads back as ``x`` (in float32 when ``single``), Kaldi's style."""
    s = str(np.float32(x) if single else np.float64(x))
    return s.removesuffix(".0")


def _array_bytes(a: np.ndarray, binary: bool, double: bool, ndim: int) -> bytes:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"expected a {'vector' if ndim == 1 else 'matrix'}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("refusing to write NaN or infinite values to a Kaldi file")
    if binary:
        kind = ("D" if double else "F") + ("V" if ndim == 1 else "M")
        sizes = b"".join(_INT32_SIZE + struct.pack("<i", n) for n in a.shape)
        return _token(kind) + sizes + a.astype(_SPEC[kind][0]).tobytes()
    rows = [" ".join(_number(x, not double) for x in row) for row in np.atleast_2d(a)]
    if ndim == 1:
        return (f" [ {rows[0]} ]\n" if a.size else " [ ]\n").encode()
    if a.shape[1] == 0:
        return b" [ ]\n"
    return (" [" + "".join(f"\n  {r} " for r in rows) + "]\n").encode()


def vector_bytes(v, binary: bool = True, double: bool = True) -> bytes:
    """Kaldi's ``Vector::Write`` of ``v`` (no header)."""
    return _array_bytes(v, binary, double, 1)


def matrix_bytes(m, binary: bool = True, double: bool = False) -> bytes:
    """Kaldi's ``Matrix::Write`` of ``m`` (no header)."""
    return _array_bytes(m, binary, double, 2)


def _write_object(path: str | os.PathLike, body: Callable[[], bytes], binary: bool) -> None:
    """``WriteKaldiObject``: the binary header, then the object; atomically.

    A model that cannot be written (NaN values: a broken model) is a KaldiFormatError
    naming the file, and nothing is written.
    """
    try:
        data = body()
    except ValueError as e:
        raise KaldiFormatError(f"{path}: cannot write this model: {e}") from None
    with atomic_write(path, "wb") as f:
        f.write((BINARY_HEADER if binary else b"") + data)


def write_kaldi_vector(path, v, binary: bool = True, double: bool = True) -> None:
    _write_object(path, lambda: vector_bytes(v, binary, double), binary)


def write_kaldi_matrix(path, m, binary: bool = True, double: bool = False) -> None:
    _write_object(path, lambda: matrix_bytes(m, binary, double), binary)


def write_kaldi_lda(lda: LdaTransform, transform_path, mean_path, binary: bool = True) -> None:
    """``transform.mat`` ``[A, 0]`` (float, as ``ivector-compute-lda``) and ``mean.vec`` (double).

    With ``mean.vec`` subtracted first, Kaldi's ``transform-vec`` gives ``lda.apply``.
    """
    affine = np.hstack([lda.matrix, np.zeros((lda.output_dim, 1))])
    write_kaldi_matrix(transform_path, affine, binary, double=False)
    write_kaldi_vector(mean_path, lda.mean, binary, double=True)


def _plda_body(plda: TwoCovPLDA, binary: bool) -> bytes:
    """``Plda::Write``: tokens around mean, transform and psi, all double."""
    return (_token(PLDA_BEGIN) + vector_bytes(plda.mean, binary)
            + matrix_bytes(plda.transform, binary, double=True)
            + vector_bytes(plda.psi, binary) + _token(PLDA_END))


def plda_bytes(plda: TwoCovPLDA, binary: bool = True) -> bytes:
    """The bytes of Kaldi's ``plda`` file of ``plda``: header (when ``binary``) and object."""
    return (BINARY_HEADER if binary else b"") + _plda_body(plda, binary)


def write_kaldi_plda(plda: TwoCovPLDA, path, binary: bool = True) -> None:
    """Kaldi's ``plda`` file (as ``ivector-compute-plda`` writes it) of ``plda``, atomically."""
    _write_object(path, lambda: _plda_body(plda, binary), binary)


def plda_scoring_options(config: PldaConfig) -> list[str]:
    """The ``ivector-plda-scoring`` flags that score as ``config`` does (in a PLDA's ``.conf``)."""
    def flag(b: bool) -> str:
        return "true" if b else "false"
    return [f"--normalize-length={flag(config.normalize_length)}",
            f"--simple-length-normalization={flag(config.simple_length_norm)}"]


# --------------------------------------------------------------------------------------
# Reading


class KaldiReader:
    """Kaldi's ``Read`` functions over the bytes of one file (binary or text by its header)."""

    def __init__(self, data: bytes, path: str | os.PathLike):
        self.data, self.path = data, str(path)
        self.binary = data.startswith(BINARY_HEADER)
        self.pos = len(BINARY_HEADER) if self.binary else 0

    @classmethod
    def open(cls, path: str | os.PathLike) -> KaldiReader:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise KaldiFormatError(f"{path}: Kaldi model file not found") from None
        except IsADirectoryError:
            raise KaldiFormatError(f"{path}: is a directory, not a Kaldi model file") from None
        return cls(data, path)

    def error(self, msg: str, pos: int | None = None) -> KaldiFormatError:
        """``msg`` at ``pos`` (default: here): the line of a text file, the byte of a binary one."""
        pos = self.pos if pos is None else pos
        if self.binary:
            return KaldiFormatError(f"{self.path}: byte {pos}: {msg}")
        return KaldiFormatError(msg, path=self.path, line=self.data.count(b"\n", 0, pos) + 1)

    def _skip_space(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in _WHITESPACE:
            self.pos += 1

    def token(self) -> str:
        """The next whitespace-delimited token (Kaldi's ReadToken; binary: one space after)."""
        self._skip_space()
        start = self.pos
        while self.pos < len(self.data) and self.data[self.pos] not in _WHITESPACE:
            self.pos += 1
        if self.pos == start:
            raise self.error("unexpected end of file")
        tok = self.data[start:self.pos].decode("latin-1")
        if self.binary:
            self.pos += 1  # the one space WriteToken puts after it
        return tok

    def expect(self, want: str) -> None:
        start = self.pos
        got = self.token()
        if got != want:
            raise self.error(f"expected {want}, got {got[:40]!r}", start)

    def end(self) -> None:
        """Only whitespace may follow the object."""
        self._skip_space()
        if self.pos != len(self.data):
            raise self.error(f"unexpected data after the end of the object "
                             f"({len(self.data) - self.pos} bytes)")

    def vector(self) -> np.ndarray:
        return self.binary_array(1) if self.binary else self._text_array(1)

    def matrix(self) -> np.ndarray:
        return self.binary_array(2) if self.binary else self._text_array(2)

    def binary_array(self, ndim: int) -> np.ndarray:
        start = self.pos
        kind = self.token()
        want = "FV or DV (a vector)" if ndim == 1 else "FM or DM (a matrix)"
        if kind.startswith("CM"):
            raise self.error("a compressed matrix; write it uncompressed "
                             "(copy-matrix --binary=true) and try again", start)
        if kind not in _SPEC or _SPEC[kind][1] != ndim:
            raise self.error(f"expected {want}, got {kind[:40]!r}", start)
        shape = tuple(self._int32() for _ in range(ndim))
        if any(n < 0 for n in shape):
            raise self.error(f"negative size {shape}", start)
        dtype = np.dtype(_SPEC[kind][0])
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if self.pos + nbytes > len(self.data):
            raise self.error(f"{kind} of shape {shape} needs {nbytes} bytes but the file ends "
                             f"after {len(self.data) - self.pos} (truncated?)", start)
        a = np.frombuffer(self.data, dtype, int(np.prod(shape)), self.pos).reshape(shape)
        self.pos += nbytes
        return self._finite(a.astype(np.float64), start)

    def _int32(self) -> int:
        chunk = self.data[self.pos:self.pos + 5]
        if len(chunk) < 5 or chunk[:1] != _INT32_SIZE:
            raise self.error("expected a 4-byte integer (a size)")
        self.pos += 5
        return struct.unpack("<i", chunk[1:])[0]

    def _text_array(self, ndim: int) -> np.ndarray:
        self._skip_space()
        start = self.pos
        if self.data.startswith(b"[]", self.pos):
            self.pos += 2
            return np.zeros((0,) * ndim)
        if not self.data.startswith(b"[", self.pos):
            got = self.data[self.pos:self.pos + 10]
            raise self.error(f"expected '[' (a {'vector' if ndim == 1 else 'matrix'}), "
                             f"got {got!r}")
        close = self.data.find(b"]", self.pos)
        if close < 0:
            raise self.error("no closing ']' (truncated?)")
        body_start = self.pos + 1
        lines = self.data[body_start:close].split(b"\n")
        self.pos = close + 1
        rows, line_no = [], []
        offset = body_start
        for line in lines:
            if line.strip():
                rows.append(self._numbers(line, offset))
                line_no.append(offset)
            offset += len(line) + 1
        if ndim == 1:
            if len(rows) > 1:
                raise self.error("a vector spans several lines: is this a matrix?", start)
            return self._finite(np.asarray(rows[0] if rows else [], dtype=np.float64), start)
        for r, at in zip(rows, line_no):
            if len(r) != len(rows[0]):
                raise self.error(f"matrix row has {len(r)} values, the first has "
                                 f"{len(rows[0])}", at)
        return self._finite(np.asarray(rows, dtype=np.float64).reshape(len(rows), -1), start)

    def _numbers(self, line: bytes, at: int) -> list[float]:
        out = []
        for field in line.split():
            try:
                out.append(float(field))
            except ValueError:
                raise self.error(f"not a number: {field[:40].decode('latin-1')!r}", at) from None
        return out

    def _finite(self, a: np.ndarray, start: int) -> np.ndarray:
        if not np.all(np.isfinite(a)):
            raise self.error("holds NaN or infinite values", start)
        return a


def _read_one(path, read: Callable[[KaldiReader], np.ndarray]) -> np.ndarray:
    r = KaldiReader.open(path)
    value = read(r)
    r.end()
    return value


def read_kaldi_vector(path) -> np.ndarray:
    """The vector of a Kaldi vector file (``mean.vec``), float64."""
    return _read_one(path, KaldiReader.vector)


def read_kaldi_matrix(path) -> np.ndarray:
    """The matrix of a Kaldi matrix file (``transform.mat``), float64."""
    return _read_one(path, KaldiReader.matrix)


def read_kaldi_lda(transform_path, mean_path=None) -> LdaTransform:
    """The LDA Kaldi applies as ``ivector-subtract-global-mean mean.vec | transform-vec transform.mat``.

    Without ``mean_path``: ``transform-vec`` alone (an LDA whose offset column holds the
    mean, as ``ivector-compute-lda`` writes it when given raw vectors).
    """
    affine = read_kaldi_matrix(transform_path)
    mean = read_kaldi_vector(mean_path) if mean_path is not None else None
    try:
        return LdaTransform.from_affine(affine, mean, source=str(transform_path))
    except DeepSpeakerError:
        raise  # names the file already
    except ValueError as e:
        raise KaldiFormatError(f"{transform_path}: {e}") from None


def read_kaldi_plda(path, config: PldaConfig | None = None) -> TwoCovPLDA:
    """A Kaldi ``plda`` file as a :class:`TwoCovPLDA` scoring with ``config`` (default Kaldi's)."""
    r = KaldiReader.open(path)
    r.expect(PLDA_BEGIN)
    mean, transform, psi = r.vector(), r.matrix(), r.vector()
    r.expect(PLDA_END)
    r.end()
    try:
        return TwoCovPLDA.from_kaldi(mean, transform, psi, config, source=str(path))
    except DeepSpeakerError:
        raise  # names the file already
    except ValueError as e:
        raise KaldiFormatError(f"{path}: not a usable PLDA: {e}") from None
