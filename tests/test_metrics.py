"""Ranking metrics on cases computed by hand: ties, and the three history-mask modes."""
import math

import numpy as np
import pytest
import torch

import bam_minimal as bm


def ranks(scores, target, full=None, window=None, mode="none"):
    scores = torch.tensor(scores, dtype=torch.float32)
    full = torch.tensor(full if full is not None else [[0]] * len(scores))
    window = torch.tensor(window if window is not None else [[0]] * len(scores))
    masked = bm.mask_history(scores, full, window, mode)
    return bm.target_rank(masked, torch.tensor(target)).tolist(), masked


def test_rank_counts_higher_scores_and_lower_ids_on_ties():
    #          item: 0    1    2    3    4    5
    scores = [[9.0, 1.0, 5.0, 5.0, 5.0, 2.0]]
    # item 0 is padding: -inf in `none`. Target 3 ties with 2 and 4: only item 2 (lower id) ranks above.
    assert ranks(scores, [3])[0] == [1]
    assert ranks(scores, [2])[0] == [0]
    assert ranks(scores, [4])[0] == [2]
    assert ranks(scores, [1])[0] == [4]


def test_exclude_masks_the_whole_history_and_padding():
    scores = [[0.0, 6.0, 5.0, 4.0, 3.0, 2.0]]
    # full history [1, 2] (0-padded) -> -inf; target 4 then has only item 3 above it
    r, masked = ranks(scores, [4], full=[[1, 2, 0]], mode="exclude")
    assert r == [1]
    assert masked[0, :3].tolist() == [-math.inf] * 3
    # a target that repeats a history item is masked too, and never counts as a hit
    assert ranks(scores, [2], full=[[1, 2]], mode="exclude")[0] == [6]


def test_official_mode_zeroes_the_window_padding_included():
    """As the official code: score[:, window] = 0 before ranking; item 0 keeps its score otherwise."""
    scores = [[-1.0, 6.0, 5.0, -4.0, -3.0, -2.0]]
    r, masked = ranks(scores, [5], window=[[1, 2, 0]], mode="official")
    # window items 1, 2 and padding 0 now score 0 > -2: the target falls to rank 3
    assert masked[0].tolist() == [0.0, 0.0, 0.0, -4.0, -3.0, -2.0]
    assert r == [3]
    # with a full window (no padding) item 0 is ranked with its own score
    r, masked = ranks([[7.0, 6.0, 5.0, 4.0, 3.0, 2.0]], [3], window=[[1, 2]], mode="official")
    assert masked[0].tolist() == [7.0, 0.0, 0.0, 4.0, 3.0, 2.0]
    assert r == [1]


def test_metrics_from_ranks_by_hand():
    m = bm.metrics_from_ranks([0, 3, 9, 10, 19, 20, 500])
    assert m["recall@10"] == pytest.approx(3 / 7)
    assert m["recall@20"] == pytest.approx(5 / 7)
    ndcg10 = (1 + 1 / math.log2(5) + 1 / math.log2(11)) / 7
    assert m["ndcg@10"] == pytest.approx(ndcg10)
    assert m["ndcg@20"] == pytest.approx(ndcg10 + (1 / math.log2(12) + 1 / math.log2(21)) / 7)


def test_top_k_follows_the_same_tie_rule_in_both_dtypes():
    scores = torch.tensor([[1.0, 3.0, 3.0, -0.0, 0.0, 3.0, -math.inf, 2.0]])
    expected = [1, 2, 5, 7, 0, 3, 4]  # -0.0 and 0.0 tie: lower id first
    assert bm.top_k(scores, 7)[0].tolist() == expected
    assert bm.top_k(scores.double(), 7)[0].tolist() == expected


def test_rank_agrees_with_the_top_k_list_on_random_ties():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (64, 40), generator=gen).float()  # many ties
    target = torch.randint(1, 40, (64,), generator=gen)
    order = bm.top_k(scores, 40)
    rank = bm.target_rank(scores, target)
    assert (order[torch.arange(64), rank] == target).all()


def test_evaluate_matches_a_per_user_loop():
    """Batched evaluation (blocks of users) against a one-user-at-a-time reference."""
    rng = np.random.default_rng(0)
    seqs = {u: list(rng.choice(np.arange(1, 60), rng.integers(3, 30), replace=False)) for u in range(1, 80)}
    data = bm.Dataset(seqs)
    cfg = bm.Config(seq_len=10, dim=8, n_interests=3, history_mask="exclude")
    torch.manual_seed(0)
    model = bm.build_model(cfg, data.n_items).eval()
    metrics, rank, top = bm.evaluate(bm.model_scorer(model), data, "test", cfg, k_top=5, block=7)
    emb = model.embeddings.weight.detach()
    for r, u in enumerate(data.users):
        seq = seqs[u]
        hist = seq[-11:-1] + [0] * max(0, 10 - len(seq[:-1]))
        interests, _ = model(torch.tensor([hist]), torch.tensor([[float(i > 0) for i in hist]]))
        s = (interests[0] @ emb.T).max(0).values.detach()
        s[[0] + seq[:-1]] = -math.inf
        order = sorted(range(len(s)), key=lambda i: (-s[i].item(), i))
        assert rank[r] == order.index(seq[-1])
        assert top[r].tolist() == order[:5]
    assert metrics == dict(bm.metrics_from_ranks(rank), nonfinite_users=0)
