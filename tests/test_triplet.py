"""Triplet loss (paper Eq. 6) and hard-negative mining (paper §3.3) in one process.

Hand-computed values on unit vectors in the plane, constructed batches where the
right negative is known, and brute-force references on random batches.  The
multi-rank behaviour (global search across ranks, DDP equivalence) is in
tests/test_distributed.py.
"""

import pytest
import torch
import torch.nn.functional as F

from deepspeaker.nnet.distributed import DistInfo
from deepspeaker.nnet.triplet import (MARGIN, GlobalTripletLoss, HardNegativeMiner, MiningError,
                                      triplet_loss)

ONE_RANK = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)


def unit(*xy):
    return torch.tensor(xy, dtype=torch.float64)


def random_batch(seed, n=12, dim=6, num_spk=5):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    p = F.normalize(a + 0.8 * torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    spk = torch.randint(num_spk, (n,), generator=g)
    return a, p, spk


def test_margin_is_the_papers():
    assert MARGIN == 0.1


def test_triplet_loss_by_hand():
    # s_ap, s_an = (1, 0), (0.6, 0.8), (0.8, 0.96): terms [0 - 1 + .1]+ = 0,
    # [.8 - .6 + .1]+ = .3, [.96 - .8 + .1]+ = .26.
    a = torch.stack([unit(1, 0), unit(1, 0), unit(0, 1)])
    p = torch.stack([unit(1, 0), unit(0.6, 0.8), unit(0.6, 0.8)])
    n = torch.stack([unit(0, 1), unit(0.8, 0.6), unit(0.28, 0.96)])
    terms = triplet_loss(a, p, n, reduction="none")
    torch.testing.assert_close(terms, unit(0.0, 0.3, 0.26), rtol=0, atol=1e-12)
    assert triplet_loss(a, p, n).item() == pytest.approx(0.56, abs=1e-12)      # "sum" is Eq. 6
    assert triplet_loss(a, p, n, reduction="mean").item() == pytest.approx(0.56 / 3, abs=1e-12)
    # A larger margin turns the first triplet on too: [0 - 1 + 1.2]+ = 0.2.
    torch.testing.assert_close(triplet_loss(a, p, n, margin=1.2, reduction="none"),
                               unit(0.2, 1.4, 1.36), rtol=0, atol=1e-12)
    # Margin 0: only the two whose negative beats the positive count.
    torch.testing.assert_close(triplet_loss(a, p, n, margin=0.0, reduction="none"),
                               unit(0.0, 0.2, 0.16), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        triplet_loss(a, p, n, reduction="max")


def test_margin_boundary_and_gradient():
    # Margin 0.5, s_ap = 0.75 (binary-exact numbers): a negative at s_an = 0.25 meets the margin
    # exactly, so no loss and no gradient.  One at s_an = 0.8 is active: d/da = n - p,
    # d/dp = -a, d/dn = a.
    a = unit(1, 0).requires_grad_()
    p = unit(0.75, (1 - 0.75 ** 2) ** 0.5).requires_grad_()
    n_on = unit(0.25, (1 - 0.25 ** 2) ** 0.5).requires_grad_()
    loss = triplet_loss(a[None], p[None], n_on[None], margin=0.5)
    loss.backward()
    assert loss.item() == 0.0
    assert a.grad.abs().max() == 0 and p.grad.abs().max() == 0 and n_on.grad.abs().max() == 0
    a.grad = p.grad = None
    n_active = unit(0.8, 0.6).requires_grad_()
    loss = triplet_loss(a[None], p[None], n_active[None], margin=0.5)
    assert loss.item() == pytest.approx(0.8 - 0.75 + 0.5)
    loss.backward()
    torch.testing.assert_close(a.grad, (n_active - p).detach())
    torch.testing.assert_close(p.grad, -a.detach())
    torch.testing.assert_close(n_active.grad, a.detach())


def test_miner_excludes_same_speaker():
    # Pool row 1 is the anchor's own speaker and identical to the anchor; it must not be picked.
    a = torch.stack([unit(1, 0)])
    p = torch.stack([unit(0.6, 0.8)])
    pool = torch.stack([unit(1, 0), unit(1, 0), unit(0.8, 0.6), unit(0, 1)])
    pool_spk = torch.tensor([7, 7, 8, 9])
    res = HardNegativeMiner().mine(a, p, pool, pool_spk, torch.tensor([7]))
    assert res.negative_index.tolist() == [2]
    assert res.s_an.item() == pytest.approx(0.8)
    assert res.s_ap.item() == pytest.approx(0.6)
    assert res.hard.tolist() == [True]


@pytest.mark.parametrize("seed", range(5))
def test_hardest_is_argmax_over_other_speakers(seed):
    a, p, spk = random_batch(seed)
    pool, pool_spk = torch.cat([a, p]), torch.cat([spk, spk])
    res = HardNegativeMiner(selection="hardest").mine(a, p, pool, pool_spk, spk)
    for i in range(len(a)):
        cands = [j for j in range(len(pool)) if pool_spk[j] != spk[i]]
        sims = {j: float(a[i] @ pool[j]) for j in cands}
        best = max(cands, key=sims.get)
        assert res.negative_index[i].item() == best
        assert res.s_an[i].item() == pytest.approx(sims[best], abs=1e-12)
        assert res.hard[i].item() == (sims[best] > float(a[i] @ p[i]) - MARGIN)


def test_random_hard_picks_only_violators_uniformly():
    a, p, spk = random_batch(0, n=16, num_spk=8)
    pool, pool_spk = torch.cat([a, p]), torch.cat([spk, spk])
    s_ap = (a * p).sum(1)
    sims = a @ pool.T
    violating = (pool_spk[None] != spk[:, None]) & (sims > (s_ap - MARGIN)[:, None])
    counts = violating.sum(1)
    assert (counts >= 3).any() and (counts == 0).any(), "the batch should have both cases"
    hardest = HardNegativeMiner(selection="hardest").mine(a, p, pool, pool_spk, spk)
    miner = HardNegativeMiner(selection="random_hard", generator=torch.Generator().manual_seed(1))
    draws = 600
    picks = torch.stack([miner.mine(a, p, pool, pool_spk, spk).negative_index for _ in range(draws)])
    for i in range(len(a)):
        if counts[i] == 0:
            # Fallback: the hardest negative, every time.
            assert (picks[:, i] == hardest.negative_index[i]).all()
            continue
        assert violating[i, picks[:, i]].all(), f"anchor {i}: picked a negative that does not violate"
        # Uniform among the violators: each one ~ draws / k (loose, ~5 sigma).
        freq = torch.bincount(picks[:, i], minlength=len(pool))[violating[i]].double()
        k = int(counts[i])
        expected = draws / k
        assert len(freq) == k and (freq - expected).abs().max() <= 5 * (expected * (1 - 1 / k)) ** 0.5


def test_prob_hard_on_constructed_batch():
    # Anchors e0..e3 (speakers 0..3), each with s_ap = 0.8 (positive e_i + 0.75 e_{4+i}).
    # The pool is the anchors themselves (similarity 0 to each other, own row excluded) plus,
    # for each anchor, one speaker-9 row at similarity c_i to it and 0 to the others.
    # Hard means c_i > 0.8 - 0.1: c = 0.75 and 0.71 are, 0.6 and 0.69 are not.
    e = torch.eye(8, dtype=torch.float64)
    a = e[:4]
    p = F.normalize(e[:4] + 0.75 * e[4:], dim=1)
    c = unit(0.75, 0.6, 0.71, 0.69)
    negs = c[:, None] * e[:4] + (1 - c[:, None] ** 2).sqrt() * e[4:]
    spk = torch.tensor([0, 1, 2, 3])
    pool, pool_spk = torch.cat([a, negs]), torch.tensor([0, 1, 2, 3, 9, 9, 9, 9])
    res = HardNegativeMiner().mine(a, p, pool, pool_spk, spk)
    torch.testing.assert_close(res.s_ap, torch.full((4,), 0.8, dtype=torch.float64))
    assert res.negative_index.tolist() == [4, 5, 6, 7]
    torch.testing.assert_close(res.s_an, c)
    assert res.hard.tolist() == [True, False, True, False]
    assert res.prob_hard == 0.5


def test_global_scope_finds_negative_in_other_half_local_does_not():
    # Rank 0 would hold pairs 0, 1 and rank 1 pairs 2, 3.  Anchor 0's only violating negative
    # is anchor 2 (nearly parallel to it); within rank 0's half nothing violates.
    e = torch.eye(4, dtype=torch.float64)
    a = torch.stack([e[0], e[1], F.normalize(e[0] + 0.2 * e[2], dim=0), e[3]])
    p = torch.stack([F.normalize(e[0] + 0.3 * e[3], dim=0), F.normalize(e[1] + 0.3 * e[3], dim=0),
                     F.normalize(e[2] + 0.5 * e[0], dim=0), F.normalize(e[3] + 0.3 * e[1], dim=0)])
    spk = torch.tensor([0, 1, 2, 3])
    glob = HardNegativeMiner(scope="global").mine(a[:1], p[:1], torch.cat([a, p]),
                                                  torch.cat([spk, spk]), spk[:1])
    assert glob.negative_index.tolist() == [2] and glob.hard.tolist() == [True]
    local = HardNegativeMiner(scope="local").mine(a[:1], p[:1], torch.cat([a[:2], p[:2]]),
                                                  torch.cat([spk[:2], spk[:2]]), spk[:1])
    assert local.hard.tolist() == [False]
    assert local.s_an.item() < glob.s_an.item()


def test_global_triplet_loss_one_rank_is_eq6_with_hardest_negatives():
    a, p, spk = random_batch(3)
    crit = GlobalTripletLoss()
    loss, stats = crit(a, p, spk, ONE_RANK)
    pool, pool_spk = torch.cat([a, p]), torch.cat([spk, spk])
    ref = 0.0
    for i in range(len(a)):
        s_an = max(float(a[i] @ pool[j]) for j in range(len(pool)) if pool_spk[j] != spk[i])
        ref += max(s_an - float(a[i] @ p[i]) + MARGIN, 0.0)
    assert loss.item() == pytest.approx(ref, abs=1e-12)
    assert stats["loss"] == pytest.approx(ref, abs=1e-12)
    assert stats["num_anchors"] == len(a) and stats["remote_negative_frac"] == 0.0
    assert 0 < stats["prob_hard"] <= 1
    # With one rank the local search is the same search.
    loss_local, stats_local = GlobalTripletLoss(scope="local")(a, p, spk, ONE_RANK)
    assert loss_local.item() == loss.item() and stats_local == stats


def test_global_triplet_loss_gradcheck():
    a, p, spk = random_batch(4, n=6, dim=4, num_spk=3)
    crit = GlobalTripletLoss()
    a, p = a.requires_grad_(), p.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: crit(x, y, spk, ONE_RANK)[0], (a, p))


def test_errors_name_the_problem():
    a, p, _ = random_batch(0, n=3)
    with pytest.raises(MiningError, match="anchor 0 .speaker 4.*two speakers"):
        GlobalTripletLoss()(a, p, torch.tensor([4, 4, 4]), ONE_RANK)
    with pytest.raises(ValueError, match="scope"):
        HardNegativeMiner(scope="gpu")
    with pytest.raises(ValueError, match="selection"):
        HardNegativeMiner(selection="semi_hard")
    with pytest.raises(ValueError, match="speakers"):
        GlobalTripletLoss()(a, p, torch.tensor([0, 1]), ONE_RANK)
