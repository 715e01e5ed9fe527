"""One i-vector EM iteration: deepspeaker's batched torch code against a per-utterance loop.

Synthetic statistics at the paper's extractor size per Gaussian (C=256 components of
60-d features, rank R=400; paper §4.2 uses C=1024, R=400) for 2000 utterances of
~300 frames: N comes from random frame posteriors, F is consistent with a random
total-variability model (N_uc (m_c + T_c w_u) + sqrt(N_uc) noise).

The reference is the textbook numpy float64 implementation of the same iteration
(U_c precomputed once; then per utterance: build the precision, Cholesky, solve,
inverse, accumulate A_c += N_uc E[ww'] and C_c += F~_uc phi'; then the M-step and the
minimum-divergence step). It is timed on a subset of utterances and its per-utterance
loop scaled linearly to the full set (stated in the output). Both are also run on that
subset and the updated T compared.

    python bench/bench_ivector.py [--num-utts 2000] [--ref-utts 100] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepspeaker.ivector.extractor import IvectorExtractor, absorb_prior, em_iteration  # noqa: E402


def synthetic_stats(rng: np.random.Generator, ext: IvectorExtractor, num_utts: int,
                    frames_per_utt: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    C, D, R = ext.T.shape
    T_true = rng.standard_normal((C, D, R)) * np.sqrt(ext.sigma)[:, :, None] * (0.5 / np.sqrt(R))
    N = np.empty((num_utts, C))
    F = np.empty((num_utts, C, D))
    for u in range(num_utts):
        n_frames = int(rng.integers(int(frames_per_utt * 0.5), int(frames_per_utt * 1.5) + 1))
        # Frame posteriors: each frame spreads over a few components, as real ones do.
        logits = rng.standard_normal((n_frames, C)) * 3.0 + np.log(ext.weights)
        post = np.exp(logits - logits.max(1, keepdims=True))
        post /= post.sum(1, keepdims=True)
        N[u] = post.sum(0)
        w = rng.standard_normal(R)
        centre = ext.means + T_true @ w
        F[u] = N[u][:, None] * centre + np.sqrt(N[u])[:, None] * np.sqrt(ext.sigma) \
            * rng.standard_normal((C, D))
    return N, F


def reference_iteration(ext: IvectorExtractor, N: np.ndarray, F: np.ndarray
                        ) -> tuple[IvectorExtractor, float]:
    """Per-utterance numpy float64 EM iteration; returns the new extractor and loop seconds."""
    C, D, R = ext.T.shape
    T_sinv = ext.T / ext.sigma[:, :, None]
    U = np.einsum("cfr,cfs->crs", T_sinv, ext.T)
    A = np.zeros((C, R, R))
    Cs = np.zeros((C, D, R))
    sum_phi = np.zeros(R)
    sum_eww = np.zeros((R, R))
    eye = np.eye(R)
    t0 = time.perf_counter()
    for u in range(N.shape[0]):
        Ft = F[u] - N[u][:, None] * ext.means
        P = eye + np.tensordot(N[u], U, axes=1)
        b = np.einsum("cfr,cf->r", T_sinv, Ft)
        cf = scipy.linalg.cho_factor(P, lower=True)
        phi = scipy.linalg.cho_solve(cf, b)
        eww = scipy.linalg.cho_solve(cf, eye) + np.outer(phi, phi)
        A += N[u][:, None, None] * eww
        Cs += Ft[:, :, None] * phi
        sum_phi += phi
        sum_eww += eww
    loop_s = time.perf_counter() - t0
    T_new = np.empty_like(ext.T)
    for c in range(C):
        T_new[c] = np.linalg.solve(A[c], Cs[c].T).T
    new = IvectorExtractor(T_new, ext.sigma.copy(), ext.means.copy(), ext.weights.copy())
    mean = sum_phi / N.shape[0]
    new = absorb_prior(new, mean, sum_eww / N.shape[0] - np.outer(mean, mean))
    return new, loop_s


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-utts", type=int, default=2000)
    p.add_argument("--ref-utts", type=int, default=100)
    p.add_argument("--components", type=int, default=256)
    p.add_argument("--feat-dim", type=int, default=60)
    p.add_argument("--rank", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--float64", action="store_true",
                   help="also time the float64 variant of ours")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torch threads: {torch.get_num_threads()}; "
          f"C={args.components} F={args.feat_dim} R={args.rank}, {args.num_utts} utterances")
    rng = np.random.default_rng(0)
    C, D, R = args.components, args.feat_dim, args.rank
    weights = rng.dirichlet(np.full(C, 2.0))
    ext = IvectorExtractor(T=rng.standard_normal((C, D, R)), sigma=rng.uniform(0.5, 2.0, (C, D)),
                           means=rng.standard_normal((C, D)) * 3, weights=weights)
    t0 = time.perf_counter()
    N, F = synthetic_stats(rng, ext, args.num_utts)
    print(f"synthetic stats: {N.sum(1).mean():.0f} frames per utterance on average "
          f"({time.perf_counter() - t0:.1f} s to make)")

    # Correctness on the subset (min_count=0: every Gaussian updated, as the reference does).
    sub = slice(0, args.ref_utts)
    ref_ext, ref_loop_s = reference_iteration(ext, N[sub], F[sub])
    ours_sub, _ = em_iteration(ext, N[sub], F[sub], min_count=0.0, batch_size=args.batch_size)
    rel = np.abs(ours_sub.T - ref_ext.T).max() / np.abs(ref_ext.T).max()
    rel_m = np.abs(ours_sub.means - ref_ext.means).max() / np.abs(ref_ext.means).max()
    print(f"updated T on the {args.ref_utts}-utterance subset: max |ours - ref| / max |ref| = "
          f"{rel:.2e} (means: {rel_m:.2e})")

    variants = [("float32", torch.float32)] + ([("float64", torch.float64)] if args.float64 else [])
    times = {}
    for name, dtype in variants:
        t0 = time.perf_counter()
        _, obj = em_iteration(ext, N, F, batch_size=args.batch_size, dtype=dtype)
        times[name] = time.perf_counter() - t0
        print(f"ours ({name}), {args.num_utts} utterances, E-step + M-step + min-divergence: "
              f"{times[name]:.2f} s (objective of the old model {obj:.4f} per frame)")
    scaled = ref_loop_s * args.num_utts / args.ref_utts
    print(f"reference (numpy float64 per-utterance loop): {ref_loop_s:.2f} s for "
          f"{args.ref_utts} utterances, scaled linearly to {args.num_utts}: {scaled:.1f} s "
          "(its M-step is not counted; ours is)")
    for name, t in times.items():
        print(f"speed-up ({name}): {scaled / t:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
