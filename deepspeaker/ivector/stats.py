"""Zeroth- and first-order Baum-Welch statistics of utterances against the UBM.

For utterance u with frames x_t and UBM component posteriors gamma_tc:

    N[u, c] = sum_t gamma_tc            F[u, c] = sum_t gamma_tc x_t    (uncentered)

They are all the i-vector extractor needs (SPEC B2). Frames of many utterances go
through the GMM together in chunks of ``chunk_frames`` (one pair of GEMMs per
chunk for the log-likelihoods), and each frame's contribution is added to its own
utterance's row with ``index_add_``.

``top_k`` mimics Kaldi's gselect (sid/ recipes: ``gmm-gselect --n=20``): only the k
best-scoring components of each frame keep a posterior, renormalised over those k.
Besides being what Kaldi does, it makes the first-order accumulation cheap: the
per-frame outer products are (k, F) instead of (C, F).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from deepspeaker.devices import to_device
from deepspeaker.ivector.ubm import DiagGmm
from deepspeaker.utils import SizeMismatchError

DEFAULT_CHUNK_FRAMES = 8192


def _pieces(lengths: Sequence[int], chunk_frames: int):
    """Yield chunks as lists of (utt, start, end) pieces with at most chunk_frames frames.

    Utterances are kept whole where they fit; a longer one is cut into pieces.
    """
    chunk, size = [], 0
    for u, n in enumerate(lengths):
        start = 0
        while start < n:
            take = min(n - start, chunk_frames - size)
            chunk.append((u, start, start + take))
            size += take
            start += take
            if size == chunk_frames:
                yield chunk
                chunk, size = [], 0
    if chunk:
        yield chunk


def frame_posteriors(gmm: DiagGmm, x: torch.Tensor, top_k: int | None = None, params=None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Posteriors of frames ``x`` (T, F): (T, C) dense, or (T, k) with their (T, k) indices.

    ``params``: ``gmm.log_likelihood_params()`` already on ``x``'s device (made once per
    batch by :func:`compute_stats_batch`); None computes them here, on the CPU.
    """
    if params is None:
        ll = gmm.log_likelihoods(x)
    else:
        a, b, const = params
        ll = torch.addmm(const, x * x, a).addmm_(x, b)     # as DiagGmm.log_likelihoods
    if top_k is None or top_k >= gmm.num_components:
        return torch.softmax(ll, dim=1), None
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    best, idx = torch.topk(ll, top_k, dim=1, sorted=False)
    return torch.softmax(best, dim=1), idx


def compute_stats_batch(gmm: DiagGmm, utterances: Sequence[np.ndarray], top_k: int | None = None,
                        *, chunk_frames: int = DEFAULT_CHUNK_FRAMES, dtype=np.float64,
                        second_order: bool = False, device: torch.device | str = "cpu",
                        scatter: bool | None = None):
    """Statistics of many utterances: N (U, C) and F (U, C, D), in ``dtype``.

    With ``second_order=True`` also returns S (C, D) = sum over all utterances and frames
    of gamma_tc * x_t**2, which the extractor needs only to re-estimate its variances.

    Posteriors are computed in float64 (see ``DiagGmm.log_likelihoods``). Memory per
    chunk is a few (chunk_frames, C) float64 arrays (8192 x 1024: 64 MB each); the
    result holds U x C x D values (1000 utterances x 1024 x 60: 0.5 GB in float64), so
    callers pass utterances in batches of hundreds to a few thousand.
    The first-order sums use ``index_add_`` of per-frame (k, D) outer products when
    ``top_k`` is set; with dense posteriors those products would be (C, D) per frame,
    so each utterance piece of a chunk instead gets one (C, T_u) @ (T_u, D) GEMM (a
    loop over utterances, hundreds of frames each, never over frames).

    ``device``: where the work runs.  The batch's frames go there in one copy and N, F
    (and S) come back in one; a CPU computes exactly what it always did.  ``scatter``
    (default: on a CPU only) is the ``index_add_`` of the top-k sums: on a GPU it is made
    of atomic adds, whose order, and so whose rounding, changes from run to run, so there
    the top-k posteriors are spread into a dense (T, C) matrix and summed per utterance
    piece by GEMM as in the dense case: reproducible bits whatever the run or ``--nj``.
    """
    device = torch.device(device)
    scatter = device.type == "cpu" if scatter is None else scatter
    num_c, dim = gmm.num_components, gmm.dim
    utts = []
    for i, u in enumerate(utterances):
        u = np.asarray(u)
        if u.ndim != 2 or u.shape[1] != dim:
            raise SizeMismatchError(f"utterance {i}: frames of shape {u.shape} do not match "
                                    f"the UBM's feature dim {dim}")
        utts.append(u)
    num_u = len(utts)
    f64 = torch.float64
    n_acc = torch.zeros(num_u * num_c, dtype=f64, device=device)
    f_acc = torch.zeros(num_u * num_c, dim, dtype=f64, device=device)
    s_acc = torch.zeros(num_c, dim, dtype=f64, device=device)
    params = tuple(p.to(device) for p in gmm.log_likelihood_params())
    lengths = [u.shape[0] for u in utts]
    # The chunks are consecutive slices of the batch's frames in utterance order.
    frames = to_device(np.concatenate(utts) if utts else np.zeros((0, dim)), device)
    start = 0
    for chunk in _pieces(lengths, chunk_frames):
        piece_len = [e - s for _, s, e in chunk]
        x = frames[start:start + sum(piece_len)].to(f64)
        start += sum(piece_len)
        post, idx = frame_posteriors(gmm, x, top_k, params)
        if idx is not None and not scatter:
            post = torch.zeros(x.shape[0], num_c, dtype=f64, device=device).scatter_(1, idx, post)
            idx = None
        if idx is None:
            _add_per_piece(n_acc.view(num_u, num_c), f_acc.view(num_u, num_c, dim), chunk,
                           post, x, scatter)
            if second_order:
                s_acc.addmm_(post.T, x * x)
        else:
            utt_of_frame = torch.repeat_interleave(
                torch.tensor([u for u, _, _ in chunk], device=device),
                torch.tensor(piece_len, device=device))
            flat = (utt_of_frame[:, None] * num_c + idx).reshape(-1)     # (T*k,)
            n_acc.index_add_(0, flat, post.reshape(-1))
            outer = post[:, :, None] * x[:, None, :]                        # (T, k, D)
            f_acc.index_add_(0, flat, outer.reshape(-1, dim))
            if second_order:
                s_acc.index_add_(0, idx.reshape(-1),
                                 (post[:, :, None] * (x * x)[:, None, :]).reshape(-1, dim))
    n_out = n_acc.view(num_u, num_c).cpu().numpy().astype(dtype, copy=False)
    f_out = f_acc.view(num_u, num_c, dim).cpu().numpy().astype(dtype, copy=False)
    if second_order:
        return n_out, f_out, s_acc.cpu().numpy().astype(dtype, copy=False)
    return n_out, f_out


def _add_per_piece(n_view: torch.Tensor, f_view: torch.Tensor, chunk, post: torch.Tensor,
                   x: torch.Tensor, scatter: bool) -> None:
    """N and F of dense posteriors ``post`` (T, C): one GEMM per utterance piece.

    N by ``index_add_`` where that is a plain loop (``scatter``, the CPU), else by a sum
    per piece (no atomic adds).
    """
    if scatter:
        piece_len = torch.tensor([e - s for _, s, e in chunk])
        utt_of_frame = torch.repeat_interleave(torch.tensor([u for u, _, _ in chunk]), piece_len)
        n_view.index_add_(0, utt_of_frame, post)
    offset = 0
    for (u, s, e) in chunk:
        n = e - s
        if not scatter:
            n_view[u].add_(post[offset:offset + n].sum(0))
        f_view[u].addmm_(post[offset:offset + n].T, x[offset:offset + n])
        offset += n


def compute_stats(gmm: DiagGmm, frames: np.ndarray, top_k: int | None = None,
                  *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of one utterance: N (C,) and F (C, D), float64."""
    n, f = compute_stats_batch(gmm, [frames], top_k, chunk_frames=chunk_frames)
    return n[0], f[0]


def stats_of_utterances(gmm: DiagGmm, utterances: Iterable[tuple[str, np.ndarray]],
                        top_k: int | None = None, batch_utts: int = 64
                        ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, N, F) of a stream of ``(utt, frames)``, computed ``batch_utts`` at a time.

    Only one batch of frames is held at once, so a set of any size fits; the keys keep
    the stream's order.  N is (U, C), F (U, C, D), float64; with no utterance at all
    both are empty (0 rows).
    """
    keys: list[str] = []
    n_all, f_all = [], []
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if batch:
            n, f = compute_stats_batch(gmm, [x for _, x in batch], top_k=top_k)
            keys.extend(u for u, _ in batch)
            n_all.append(n)
            f_all.append(f)
            batch.clear()

    for utt, x in utterances:
        batch.append((utt, x))
        if len(batch) >= batch_utts:
            flush()
    flush()
    if not keys:
        c, d = gmm.num_components, gmm.dim
        return keys, np.zeros((0, c)), np.zeros((0, c, d))
    return keys, np.concatenate(n_all), np.concatenate(f_all)
