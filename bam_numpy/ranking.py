"""
bam_numpy/ranking.py: full-item ranking (leave-one-out) in the NumPy twin, with a fused numba engine.

Two ways to the same numbers:
  * the plain functions mirror bam_minimal.py's (`model_scorer`, `mask_history`, `target_rank`,
    `top_k`, `metrics_from_ranks`): they materialise a block's (users, items) scores and are the
    readable reference, used by the golden vectors and the tests;
  * `evaluate` is the fast engine. It computes the interests of an encoder block of users (a few
    hundred, on one BLAS thread), then, for each scoring block of it, one BLAS matmul into a reused
    buffer of about 32 MB and one numba kernel (`@njit(parallel=True)`, `prange` over the users)
    that fuses the max over interests, the history mask, the target's rank and the top-K. The
    (users, N, items) score tensor is never materialised; memory does not grow with the number of
    users, apart from the outputs (a rank and K ids per user).

Tie rule, as bam_minimal: an item ranks above another when its score is higher, or equal and its
id lower. A non-finite number never helps: NaN counts as +inf, so another item's NaN or +inf ranks
ABOVE the target (weights whose products overflow cannot push items below it); a target whose own
score is not finite (NaN, +inf, -inf) is a miss (its rank is n_items + 1, the number of columns);
-inf stays the mask and ranks below everything. top-K lists NaN and +inf first (as one value, so
the lower id first among them), then the finite scores, then -inf. The max over interests
propagates NaN, as numpy's and torch's max do. `evaluate` also counts the users with a NaN or
infinite score (before the history mask): metrics["nonfinite_users"].

    from bam_numpy.ranking import evaluate
    metrics, ranks, top20 = evaluate(params, data, "test", cfg, k_top=20)
"""
import numba
import numpy as np
from numba import njit, prange

from bam_numpy import encoders
from bam_numpy.blas import one_blas_thread
from bam_numpy.data import split_targets, windows
from bam_numpy.encoders import routing_noise

# -----------------------------------------------------------------------------
# The plain reference: scores of a block, masking, ranks, top-K, metrics (bam_minimal's functions).


def model_scorer(params, cfg):
    """Scores of every item for a block of histories: an item's best score over the interests."""
    item_emb = params["embeddings.weight"]                                    # (I + 1, d)

    def score(history, mask, noise):
        interests = encoders.forward(params, cfg, history, mask, noise)[0]    # (b, N, d)
        return (interests @ item_emb.T).max(1)                                # (b, I + 1)
    return score


def mask_history(scores, full_history, window, mode):
    """`exclude`: every item before the target gets -inf. `official`: the items of the model's window,
    padding 0 included, get score 0, as the official code does. Padding 0 is never ranked in
    `exclude` or `none`. Works in place on `scores` (b, I + 1)."""
    rows = np.arange(len(scores))[:, None]                                    # (b, 1)
    if mode == "official":
        scores[rows, window] = 0.0
        return scores
    if mode == "exclude":
        scores[rows, full_history] = -np.inf  # full_history is 0-padded: item 0 is masked too
    scores[:, 0] = -np.inf
    return scores


def nan_as_inf(scores):
    """NaN becomes +inf: a score that cannot be compared ranks above every real one, never below."""
    return np.where(np.isnan(scores), np.inf, scores)                         # (b, I + 1)


def target_rank(scores, target):
    """0-based rank of each target (b,): items with a higher score, plus equal ones with a lower id.
    Another item's NaN or +inf ranks above the target; a non-finite target gets the number of
    columns (never a hit); -inf (the mask) ranks below everything."""
    scores = nan_as_inf(scores)                                               # (b, I + 1)
    s = scores[np.arange(len(target)), target][:, None]                      # (b, 1)
    ids = np.arange(scores.shape[1])                                          # (I + 1,)
    rank = ((scores > s) | ((scores == s) & (ids < target[:, None]))).sum(1)  # (b,)
    return np.where(np.isfinite(s[:, 0]), rank, scores.shape[1])


def top_k(scores, k):
    """The top-k item ids per row (b, k) under the same rule: NaN and +inf first (one value), -inf
    last; a stable sort keeps lower ids first among equal scores."""
    return np.argsort(-nan_as_inf(scores), axis=1, kind="stable")[:, :k]


def metrics_from_ranks(rank, ks=(10, 20)):
    """Recall@K (hit rate, one target per user) and nDCG@K = 1 / log2(rank + 2) for a hit."""
    rank = np.asarray(rank, dtype=np.float64)
    out = {}
    for k in ks:
        hit = rank < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(rank + 2), 0.0).mean())
    return out

# -----------------------------------------------------------------------------
# The fused numba kernel: max over interests + mask + rank + top-K, one user per prange iteration.

EXCLUDE, OFFICIAL, NONE = 0, 1, 2
MODES = dict(exclude=EXCLUDE, official=OFFICIAL, none=NONE)
CHUNK = 128  # top-K scans a chunk of items only when one of them beats the current K-th score


@njit(cache=True)
def top_k_row(best, top_ids, top_s):
    """The top-K ids of one row (K = len(top_ids)), best first, lower id first among equal scores.
    Items are visited in increasing id order, so an equal score never displaces an earlier id."""
    K = len(top_ids)
    filled, thr = 0, best[0]  # thr: the K-th score once the list is full (the dtype of the scores)
    for j0 in range(0, len(best), CHUNK):
        seg = best[j0:j0 + CHUNK]  # a view indexed from 0, so that the count below vectorises
        if filled == K:
            above = 0
            for j in range(len(seg)):
                above += np.int32(seg[j] > thr)
            if above == 0:
                continue
        for j in range(len(seg)):
            v = seg[j]
            if filled < K:
                p = filled
                filled += 1
            elif v > thr:
                p = K - 1  # the last one drops out
            else:
                continue
            while p > 0 and v > top_s[p - 1]:
                top_s[p], top_ids[p] = top_s[p - 1], top_ids[p - 1]
                p -= 1
            top_s[p], top_ids[p] = v, j0 + j
            if filled == K:
                thr = top_s[K - 1]


@njit(parallel=True, cache=True)
def rank_block(scores, n_interests, items, start, k, target, mode, width, ranks, tops, bad, n_threads):
    """scores (b * N, I + 1): row u * N + n is interest n of user u. items/start: the dataset's flat
    sequences; start (b,) is each user's first index and k (b,) the target position, so that
    items[start:start + k] is the full history and the last `width` of them the model's window.
    Writes ranks (b,), tops (b, K) and bad (b,): a NaN or an infinity among the user's scores
    (before the mask). No fastmath: comparisons follow IEEE rules, NaN and infinities included
    (fastmath would assume there are none, and drop the checks below)."""
    b, n = len(k), scores.shape[1]
    n_chunks = max(1, min(b, n_threads))
    for c in prange(n_chunks):  # one slice of users per thread, each with its own row buffer
        best = np.empty(n, scores.dtype)                                      # (I + 1,) max over interests
        top_s = np.empty(tops.shape[1], scores.dtype)                         # (K,) best first
        for u in range(c * b // n_chunks, (c + 1) * b // n_chunks):
            row = u * n_interests
            for j in range(n):
                best[j] = scores[row, j]
            for m in range(1, n_interests):
                for j in range(n):
                    v = scores[row + m, j]
                    best[j] = v if (v > best[j]) | (v != v) else best[j]  # NaN propagates, as np.max
            nonfinite = 0
            for j in range(n):  # NaN counts as +inf (x - x is 0 exactly when x is finite; NaN != NaN)
                v = best[j]
                nonfinite += np.int64(v - v != 0)
                best[j] = np.inf if v != v else v
            bad[u] = nonfinite > 0
            s0, kk = start[u], k[u]
            if mode == OFFICIAL:  # the window's items get 0, padding 0 included when there is any
                for t in range(s0 + max(kk - width, 0), s0 + kk):
                    best[items[t]] = 0.0
                if kk < width:
                    best[0] = 0.0
            else:
                if mode == EXCLUDE:
                    for t in range(s0, s0 + kk):
                        best[items[t]] = -np.inf
                best[0] = -np.inf
            tgt = target[u]
            st = best[tgt]
            above = 0
            for j in range(n):
                above += np.int64((best[j] > st) | ((best[j] == st) & (j < tgt)))
            ranks[u] = n if st - st != 0 else above  # a masked or non-finite target is never a hit
            if tops.shape[1]:
                top_k_row(best, tops[u], top_s)

# -----------------------------------------------------------------------------
# The engine.


def default_block(cfg, n_items, dtype, budget=32 << 20):
    """Users per block: a score buffer of about `budget` bytes (b * N * (I + 1) floats). Large enough
    that the BLAS call and the parallel kernel of a block are long compared with waking their
    threads (which takes milliseconds on a busy 2-core machine), small enough to be a fixed cost."""
    per_user = cfg.n_interests * (n_items + 1) * np.dtype(dtype).itemsize
    return int(max(8, min(4096, budget // per_user)))


def encoder_blocks(k, cfg, itemsize, positions=1 << 13, padded=8 << 20):
    """Row ranges [a, b) for the encoder: at most `positions` real positions (the rows of ComiRec-SA's
    MLP) and a padded (b, L, d) history of at most `padded` bytes. Few, large BLAS calls: a small one
    costs milliseconds of thread wake-up on a busy machine, as much as a large one computes."""
    real = np.cumsum(np.minimum(k, cfg.seq_len))                             # (U,) positions so far
    cap = max(1, padded // (cfg.seq_len * cfg.dim * itemsize))
    ranges, a = [], 0
    while a < len(k):
        b = int(np.searchsorted(real, (real[a - 1] if a else 0) + positions, side="right"))
        b = min(max(b, a + 1), a + cap, len(k))
        ranges.append((a, b))
        a = b
    return ranges


def evaluate(params, data, split, cfg, rows=None, k_top=0, block=None, noise=None):
    """Ranks of the `split` targets of `rows` (default: every user), in blocks of users.
    Returns (metrics, ranks (U,), top-k ids (U, k_top) or None), like bam_minimal.evaluate, with
    metrics["nonfinite_users"]. MIND: `noise` is a (U, N, L) array of routing logits for these rows,
    or None for bam_minimal's own: routing_noise, drawn per block, keyed by (cfg.seed, row)."""
    item_emb = np.ascontiguousarray(params["embeddings.weight"])             # (I + 1, d)
    rows = np.arange(len(data.users)) if rows is None else np.asarray(rows)
    k = split_targets(data, split)[rows]                                     # (U,)
    N, d = cfg.n_interests, item_emb.shape[1]
    block = block or default_block(cfg, len(item_emb) - 1, item_emb.dtype)
    buf = np.empty((block * N, len(item_emb)), item_emb.dtype)               # (b * N, I + 1), reused
    ranks = np.empty(len(rows), np.int64)                                    # (U,)
    tops = np.empty((len(rows), k_top), np.int64)                            # (U, K)
    bad = np.zeros(len(rows), np.bool_)                                       # (U,) a NaN or inf score
    mode = MODES[cfg.history_mask]
    for a, b in encoder_blocks(k, cfg, item_emb.itemsize):
        history, mask, target = windows(data, rows[a:b], k[a:b], cfg.seq_len)  # (e, L), (e, L), (e,)
        with one_blas_thread():  # the encoder's matmuls are small: see bam_numpy/blas.py
            nb = noise[a:b] if noise is not None else routing_noise(cfg, rows[a:b]) if cfg.model == "mind" else None
            interests = encoders.forward(params, cfg, history, mask, nb)[0]   # (e, N, d); nb (e, N, L)
        interests = interests.reshape(-1, d)                                 # (e * N, d)
        for i in range(a, b, block):
            j = min(i + block, b)
            out = buf[:(j - i) * N]                                          # (b * N, I + 1)
            np.matmul(interests[(i - a) * N:(j - a) * N], item_emb.T, out=out)
            rank_block(out, N, data.items, data.start[rows[i:j]], k[i:j], target[i - a:j - a], mode,
                       cfg.seq_len, ranks[i:j], tops[i:j], bad[i:j], numba.get_num_threads())
    return dict(metrics_from_ranks(ranks), nonfinite_users=int(bad.sum())), ranks, tops if k_top else None
