"""
The fused numba ranking kernel against the plain NumPy reference (max over interests, history mask,
rank, top-K), on scores built to have exact ties, masked targets and lists that reach -inf; the
engine's independence from its block sizes; its peak memory against the number of users; and the
BaM sampler's frequencies (chi-square). numpy only.

    python -m pytest tests/test_numpy_ranking.py
"""
import os

import numba
import numpy as np
import pytest

import bam_numpy as bn
from bam_bench import numba_engine as bench
from bam_numpy import ranking
from bam_data import synth


def small_data(users=60, items=40, seed=0):
    rng = np.random.default_rng(seed)
    seqs = {u: list(rng.choice(np.arange(1, items + 1), rng.integers(3, 16), replace=False))
            for u in range(1, users + 1)}
    return bn.Dataset(seqs, n_items=items)


@pytest.mark.parametrize("mode", ["exclude", "official", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_equals_reference_with_ties(mode, dtype):
    data, N, L, K = small_data(), 3, 6, 20
    rows = np.arange(len(data.users))
    k = bn.split_targets(data, "test")
    history, mask, target = bn.windows(data, rows, k, L)
    full = bn.windows(data, rows, k, int(k.max()))[0]
    rng = np.random.default_rng(1)
    # Scores on a coarse grid: many exact ties, between items and between interests.
    scores = rng.integers(-3, 4, (len(rows) * N, data.n_items + 1)).astype(dtype)   # (U * N, I + 1)
    scores[::7] = 0.0
    target[5] = full[5, 0]  # a target inside the history: masked (-inf) under `exclude`
    ranks, tops = np.empty(len(rows), np.int64), np.empty((len(rows), K), np.int64)
    bad = np.empty(len(rows), np.bool_)
    ranking.rank_block(scores, N, data.items, data.start[rows], k, target, ranking.MODES[mode], L, ranks, tops,
                       bad, numba.get_num_threads())
    assert not bad.any()
    best = ranking.mask_history(scores.reshape(len(rows), N, -1).max(1), full, history, mode)  # (U, I + 1)
    assert (ranks == ranking.target_rank(best, target)).all()
    assert (tops == ranking.top_k(best, K)).all()
    if mode == "exclude":
        assert ranks[5] == data.n_items + 1  # never a hit
    # the reference itself: lower id first among equal scores
    row = best[0]
    order = ranking.top_k(best[:1], data.n_items + 1)[0]
    assert all((row[a] > row[b]) or (row[a] == row[b] and a < b) for a, b in zip(order, order[1:]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_scores_never_help(dtype):
    """A NaN target used to be rank 0 (nothing compares above NaN): a hit. Then NaN and +inf counted as
    -inf, so an item whose score overflowed fell below the target, and the target climbed. Now (issue
    14) another item's NaN or +inf ranks above the target, a non-finite target is never a hit, -inf
    (the mask) ranks below everything, and top-K lists NaN and +inf first (as one value: lower id
    first), then the finite scores, then -inf; the kernel agrees with the reference."""
    nan, inf = np.nan, np.inf
    best = np.array([[-inf, 1.0, 2.0, 0.5, 3.0, 0.0],     # target 2, finite: rank 1 (item 4 above)
                     [-inf, nan, 2.0, inf, 1.0, 2.0],     # NaN (1) and +inf (3) above; the tie (5) is after 2
                     [-inf, 1.0, nan, 0.5, 3.0, 0.0],     # NaN target: never a hit
                     [-inf, 1.0, inf, 0.5, 3.0, 0.0],     # +inf target: never a hit
                     [-inf, 1.0, -inf, 0.5, 3.0, 0.0],    # -inf target (masked): never a hit
                     [-inf, nan, nan, nan, nan, nan]], dtype)  # NaN everywhere (diverged weights)
    target = np.array([2, 2, 2, 2, 2, 3])
    assert ranking.target_rank(best, target).tolist() == [1, 2, 6, 6, 6, 6]
    tops = ranking.top_k(best, 6)
    assert tops[1].tolist() == [1, 3, 2, 5, 4, 0]  # NaN and +inf in id order, then finite, then -inf
    assert tops[3].tolist() == [2, 4, 1, 3, 5, 0]
    assert tops[5].tolist() == [1, 2, 3, 4, 5, 0]
    # the kernel, one interest per user (mode `none` only sets item 0 to -inf)
    data = bn.Dataset({u: [1, 2, 3] for u in range(len(best))}, n_items=5)
    ranks, ids, bad = np.empty(len(best), np.int64), np.empty((len(best), 6), np.int64), np.empty(len(best), bool)
    ranking.rank_block(best.copy(), 1, data.items, data.start[:-1], np.full(len(best), 2), target,
                       ranking.NONE, 5, ranks, ids, bad, numba.get_num_threads())
    assert ranks.tolist() == [1, 2, 6, 6, 6, 6]
    assert (ids == tops).all()
    assert bad.tolist() == [True] * 6  # column 0 is -inf in every row, before the mask too
    for K in (1, 2, 3):  # shorter lists, where the K-th score is the threshold
        short = np.empty((len(best), K), np.int64)
        ranking.rank_block(best.copy(), 1, data.items, data.start[:-1], np.full(len(best), 2), target,
                           ranking.NONE, 5, ranks, short, bad, numba.get_num_threads())
        assert (short == tops[:, :K]).all()


def test_the_max_over_interests_propagates_nan_in_the_kernel_and_the_reference():
    """One NaN interest makes the item's score NaN (as np.max and torch.max do), whichever interest it is."""
    scores = np.array([[0.0, 1.0, np.nan, 3.0, 0.5],    # user 0, interest 0
                       [0.0, 2.0, 5.0, np.nan, 0.5],    # user 0, interest 1
                       [0.0, 2.0, 5.0, 1.0, 0.5],       # user 1, interest 0
                       [0.0, 1.0, np.nan, 1.0, 4.0]])   # user 1, interest 1
    data = bn.Dataset({1: [1, 4, 1], 2: [1, 4, 3]}, n_items=4)
    target, k = np.array([2, 3]), np.array([2, 2])
    ranks, tops, bad = np.empty(2, np.int64), np.empty((2, 5), np.int64), np.empty(2, bool)
    ranking.rank_block(scores.copy(), 2, data.items, data.start[:-1], k, target, ranking.NONE, 5, ranks, tops,
                       bad, numba.get_num_threads())
    best = ranking.mask_history(scores.reshape(2, 2, -1).max(1), None, None, "none")   # (2, I + 1)
    assert ranks.tolist() == ranking.target_rank(best, target).tolist() == [5, 3]  # NaN items rank above
    assert (tops == ranking.top_k(best, 5)).all()
    assert tops.tolist() == [[2, 3, 1, 4, 0], [2, 4, 1, 3, 0]]
    assert bad.tolist() == [True, True]


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_nan_weights_are_not_a_perfect_score():
    """item_emb full of NaN used to give recall 1.0: every target ranked first."""
    data = small_data()
    for model in ("comirec", "mind"):
        cfg = bn.Config(model=model, dim=8, seq_len=6)
        params = bn.init_params(cfg, data.n_items, np.random.default_rng(0), np.float32)
        params["embeddings.weight"][:] = np.nan
        metrics, ranks, tops = bn.evaluate(params, data, "test", cfg, k_top=5)
        assert metrics["recall@10"] == 0.0 and (ranks == data.n_items + 1).all()
        assert metrics["nonfinite_users"] == len(data.users)
        # two items diverged, to NaN and to +inf: they rank above the target, never below; neither is a hit
        cfg = bn.Config(model=model, dim=8, seq_len=6, history_mask="none")  # only item 0 is masked
        params = bn.init_params(cfg, data.n_items, np.random.default_rng(0), np.float32)
        before = bn.evaluate(params, data, "test", cfg)[1]
        params["embeddings.weight"][7] = np.nan
        params["embeddings.weight"][3] = np.abs(params["embeddings.weight"][3]) * np.inf
        metrics, ranks, tops = bn.evaluate(params, data, "test", cfg, k_top=data.n_items + 1)
        assert metrics["nonfinite_users"] == len(data.users)  # item 7 is NaN for everyone
        rows, k = np.arange(len(data.users)), bn.split_targets(data, "test")
        history, _, target = bn.windows(data, rows, k, cfg.seq_len)
        clean = ~np.isin(history, [3, 7]).any(1)  # a NaN item in the window makes every interest NaN
        assert clean.sum() > 10 and (~clean).sum() > 0
        assert (ranks[~clean] == data.n_items + 1).all()
        assert (tops[clean, :2] == 7).any(1).all()  # NaN first (with 3 when its score is NaN or +inf)
        assert (tops[clean, -1] == 0).all()  # the mask last
        assert (ranks >= before).all()  # raising two items never helped any target
        assert (target[clean] == 7).any() and (ranks[np.isin(target, [3, 7])] == data.n_items + 1).all()


def test_top_k_reaches_minus_infinity_in_id_order():
    """More slots than finite scores: the -inf items follow, lowest id first (a stable sort's order)."""
    best = np.full(12, -np.inf)
    best[[3, 7]] = [1.0, 2.0]
    ids, s = np.empty(5, np.int64), np.empty(5)
    ranking.top_k_row(best, ids, s)
    assert ids.tolist() == [7, 3, 0, 1, 2]


def test_engine_is_independent_of_block_sizes():
    data = bn.Dataset(synth.generate(synth.SynthConfig(users=300, items=200, seed=3))[0])
    for model in ("comirec", "mind"):
        cfg = bn.Config(model=model, dim=16, seq_len=20)
        params = bn.init_params(cfg, data.n_items, np.random.default_rng(0), np.float64)
        m1, r1, t1 = bn.evaluate(params, data, "test", cfg, k_top=20)
        m2, r2, t2 = bn.evaluate(params, data, "test", cfg, k_top=20, block=7)
        assert (r1 == r2).all() and (t1 == t2).all() and m1 == m2
        # and equal to the plain reference on materialised scores
        rows, k = np.arange(len(data.users)), bn.split_targets(data, "test")
        history, mask, target = bn.windows(data, rows, k, cfg.seq_len)
        full = bn.windows(data, rows, k, int(k.max()))[0]
        noise = bn.encoders.routing_noise(cfg, rows) if model == "mind" else None
        scores = bn.mask_history(bn.model_scorer(params, cfg)(history, mask, noise), full, history, "exclude")
        assert (bn.target_rank(scores, target) == r1).all()
        assert (bn.top_k(scores, 20) == t1).all()


def test_encoder_blocks_respect_their_budgets():
    cfg = bn.Config(seq_len=50, dim=64)
    k = np.random.default_rng(0).integers(1, 200, 5000)
    ranges = ranking.encoder_blocks(k, cfg, 8, positions=4000, padded=1 << 20)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(k)
    assert all(a < b and b == c for (a, b), (c, _) in zip(ranges, ranges[1:]))
    for a, b in ranges:
        assert b - a == 1 or np.minimum(k[a:b], 50).sum() <= 4000
        assert (b - a) * 50 * 64 * 8 <= 1 << 20


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_does_not_grow_with_users(tmp_path):
    """Peak RSS of the engine in fresh processes, 2,000 against 20,000 users: the (users, N, items) score
    tensor would be 20,000 x 4 x 3,001 x 4 bytes = 960 MB; the blocks keep it at a fixed size."""
    rng = np.random.default_rng(0)
    path = tmp_path / "many.txt"
    lines = [f"{u} " + " ".join(map(str, rng.integers(1, 3001, rng.integers(4, 20)))) for u in range(1, 20001)]
    path.write_text("\n".join(lines) + "\n")
    small = bench.peak_memory(path, 2000, "float32")
    large = bench.peak_memory(path, 20000, "float32")
    assert large["users"] == 20000 and small["users"] == 2000
    # the outputs (rank and top-20 per user) grow by 18,000 x 21 x 8 bytes = 3 MB; allow 12 MB in all
    assert large["extra_mb"] - small["extra_mb"] < 12, (small, large)
    assert large["extra_mb"] < 200, large


def test_bam_sampler_frequencies_match_probabilities():
    """Chi-square goodness of fit of index = #{n : cumsum(probs)_n <= u} at uniform u, fixed seed."""
    rng = np.random.default_rng(2021)
    logits = np.array([[1.2, -0.3, 0.4, 2.0, -1.5]])
    draws = 200_000
    for tau in (1.0, 0.5):
        index, probs = bn.select_interest(np.repeat(logits, draws, 0), "bam", tau, rng.random(draws))
        observed = np.bincount(index, minlength=logits.shape[1])
        expected = probs[0] * draws
        chi2 = ((observed - expected) ** 2 / expected).sum()
        assert chi2 < 18.47, (tau, chi2, observed, expected)  # chi-square 0.999 quantile, 4 degrees of freedom
    # able to fail: the argmax is far from these frequencies
    hard = bn.select_interest(np.repeat(logits, draws, 0), "hard", 1.0, rng.random(draws))[0]
    observed = np.bincount(hard, minlength=logits.shape[1])
    assert ((observed - expected) ** 2 / expected).sum() > 1000


def test_select_interest_rules():
    probs_logits = np.log(np.array([[0.25, 0.25, 0.5], [0.5, 0.5, 0.0 + 1e-300]]))
    u = np.array([0.25, 0.999999])  # exactly on a step: the next interest; beyond the last step: clamped
    index, _ = bn.select_interest(probs_logits, "bam", 1.0, u)
    assert index.tolist() == [1, 1]
    index, _ = bn.select_interest(np.array([[1.0, 3.0, 3.0]]), "hard", 1.0, None)
    assert index.tolist() == [1]  # the first of the tied maxima
    index, _ = bn.select_interest(np.zeros((1, 4)), "bam", 1.0, np.array([1.0]))
    assert index.tolist() == [3]  # u = 1 (or cumsum rounding below 1): clamped to N - 1
