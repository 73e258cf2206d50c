"""
bam_numpy/comirec_split.py: ComiRec's evaluation protocol (Cen et al., KDD '20; REMI's too) in the NumPy twin,
without torch: the twin's side of bam_protocols/comirec_split.py.

The split and the targets are the same text as bam_protocols/comirec_split.py's, the metrics (user_metrics, KS) the
same text as bam_evidence/metrics.py's (tests/test_twin_source.py): the twin imports neither. The ranking is the
twin's own: the plain functions of bam_numpy.ranking (model_scorer, mask_history, target_rank, top_k), a block
of users at a time. `python cli.py crosscheck`
and tests/test_protocols.py check that the two engines give the same ranks and metrics.

    from bam_numpy import comirec_split
    metrics, ranks, top50 = comirec_split.evaluate(params, data, "test", cfg, k_top=50)
"""
import functools

import numpy as np

from bam_numpy.data import windows
from bam_numpy.encoders import routing_noise
from bam_numpy.ranking import mask_history, model_scorer, target_rank, top_k

SPLIT_SEED = 1230          # ComiRec's preprocess/data.py: random.seed(1230)
SPLITS = ("train", "valid", "test")
KS = (10, 20, 50)

# -----------------------------------------------------------------------------
# The split and the targets (bam_protocols/comirec_split.py's, word for word), the metrics (bam_evidence/metrics.py's).


@functools.lru_cache(maxsize=16)
def split_rows(n_users, split):
    """The rows (sorted) of `split`: the users shuffled with SPLIT_SEED, then 80% / 10% / 10%, cut as ComiRec
    cuts (int(0.8 U), int(0.9 U)). Read-only: the training sampler asks for it at every step."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n_users)            # (U,)
    part = np.split(order, [int(n_users * 0.8), int(n_users * 0.9)])[SPLITS.index(split)]
    part = np.sort(part)                                                       # (P,)
    part.setflags(write=False)
    return part


def history_end(lengths):
    """k = int(0.8 * len) for each user: seq[:k] is the history, seq[k:] the targets (ComiRec's rule)."""
    return (np.asarray(lengths, np.int64) * 0.8).astype(np.int64)             # (U,)


def target_lists(data, rows):
    """-> (k (U,), counts (U,), targets (T,)): each user's history end, number of targets, and the targets
    seq[k:] of every user, one after another, in time order (repeats kept, so that ComiRec's formula can be
    computed; the correct metrics count each item once)."""
    rows = np.asarray(rows, np.int64)
    k = history_end(data.lengths[rows])                                        # (U,)
    counts = data.lengths[rows] - k                                            # (U,) at least 1
    first = np.repeat(data.start[rows] + k - np.cumsum(counts) + counts, counts)  # (T,) each user's first target
    return k, counts, data.items[first + np.arange(counts.sum())]              # (U,), (U,), (T,)


def user_metrics(ranks, counts, targets, ks=KS, published=False):
    """{name: (U,) float64}: each user's metrics from the 0-based ranks of its targets (ranks, targets (T,),
    one user after another in time order; counts (U,)). Each distinct item counts once:
      Recall@N  = hits / targets;  HitRate@N = 1 if any hit;
      NDCG@N    = sum over hits of 1 / log2(rank + 2), over IDCG = sum_{i < min(N, targets)} 1 / log2(i + 2).
    With one target per user they are bam_minimal.metrics_from_ranks' Recall@N and nDCG@N (tested).
    `published` adds ComiRec's two published NDCGs (bam_evidence/metrics.py says where each is from). Both
    divide by the IDCG of their number of hits, not of min(N, targets); a user without a hit scores 0:
      `ndcg@N (comirec-paper)`  each target in TIME order, repeats included, that is in the top N adds
                                1 / log2(j + 2), j its position among the user's targets, not its rank;
      `ndcg@N (comirec-master)` each distinct target item in the top N adds 1 / log2(rank + 2)."""
    ranks, counts, targets = (np.asarray(a, np.int64) for a in (ranks, counts, targets))
    user = np.repeat(np.arange(len(counts)), counts)                          # (T,) each target's user
    first = np.zeros(len(targets), bool)                                      # (T,) an item's first time
    first[np.unique(np.stack([user, targets], 1), axis=0, return_index=True)[1] if len(targets) else []] = True
    distinct = np.bincount(user, first, len(counts))                          # (U,)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(int(counts.max(initial=1))) + 2))])
    gain = 1.0 / np.log2(ranks + 2.0)                                         # (T,)
    position = np.arange(len(targets)) - np.repeat(np.cumsum(counts) - counts, counts)  # (T,) in time order
    out = {}
    for n in ks:
        hit = ranks < n                                                       # (T,)
        hits = np.bincount(user, hit & first, len(counts))                    # (U,) distinct items hit
        dcg = np.bincount(user, np.where(hit & first, gain, 0.0), len(counts))  # (U,)
        out[f"recall@{n}"] = hits / distinct
        out[f"ndcg@{n}"] = dcg / ideal[np.minimum(n, distinct).astype(np.int64)]
        out[f"hitrate@{n}"] = (hits > 0).astype(np.float64)
        if published:  # ideal[0] is 0: a user without a hit is set to 0, never divided by it
            found = np.bincount(user, hit, len(counts)).astype(np.int64)     # (U,) repeats included
            in_time = np.bincount(user, np.where(hit, 1.0 / np.log2(position + 2.0), 0.0), len(counts))  # (U,)
            out[f"ndcg@{n} (comirec-paper)"] = np.where(found > 0, in_time / np.maximum(ideal[found], 1e-300), 0.0)
            out[f"ndcg@{n} (comirec-master)"] = np.where(
                hits > 0, dcg / np.maximum(ideal[hits.astype(np.int64)], 1e-300), 0.0)
    return out

# -----------------------------------------------------------------------------
# Evaluation: every target of a user ranked against the full catalogue.


def evaluate(params, data, split, cfg, rows=None, k_top=0, block=None, noise=None):
    """bam_protocols.comirec_split.evaluate's numbers: -> (metrics, ranks (T,), top-k ids (U, k_top) or None).
    MIND: `noise` (U, N, L) routing logits for these rows, or None for routing_noise's (keyed by seed and row).
    A block holds at most 2^22 (target, item) scores."""
    rows = split_rows(len(data.users), split) if rows is None else np.asarray(rows, np.int64)
    k, counts, targets = target_lists(data, rows)                             # (U,), (U,), (T,)
    offsets = np.concatenate([[0], np.cumsum(counts)])                        # (U + 1,)
    score = model_scorer(params, cfg)
    block = block or max(1, (1 << 22) // ((data.n_items + 1) * max(1, int(counts.max(initial=1)))))
    ranks, tops, bad = [np.zeros(0, np.int64)], [np.zeros((0, k_top), np.int64)], [np.zeros(0, bool)]
    for i in range(0, len(rows), block):
        r, kb = rows[i:i + block], k[i:i + block]                             # (b,), (b,)
        history, mask, _ = windows(data, r, kb, cfg.seq_len)                  # (b, L), (b, L)
        full = windows(data, r, kb, int(kb.max()))[0]                         # (b, max k)
        nb = noise[i:i + block] if noise is not None else routing_noise(cfg, r) if cfg.model == "mind" else None
        scores = score(history, mask, nb)                                     # (b, I + 1)
        bad.append(~np.isfinite(scores).all(1))                               # (b,)
        scores = mask_history(scores, full, history, cfg.history_mask)       # (b, I + 1)
        user = np.repeat(np.arange(len(r)), counts[i:i + block])              # (T_b,) each target's user
        ranks.append(target_rank(scores[user], targets[offsets[i]:offsets[i + len(r)]]))  # (T_b,)
        if k_top:
            tops.append(top_k(scores, k_top))                                 # (b, k_top)
    ranks, tops, bad = np.concatenate(ranks), np.concatenate(tops), np.concatenate(bad)
    metrics = {name: float(v.mean()) for name, v in user_metrics(ranks, counts, targets).items()}
    return dict(metrics, nonfinite_users=int(bad.sum())), ranks, tops if k_top else None
