"""
bam_evidence/beyond.py: what a top-N list shows beyond accuracy. Both are computed from the top-N lists
that either engine returns (bam_minimal.evaluate or bam_numpy's, with k_top=N), so both engines give them.

  coverage@N   the share of the catalogue (items 1..I) that appears in at least one user's top-N
  diversity@N  ComiRec's (Cen et al., KDD '20, Eq. 12): for each user, the share of the N (N - 1) / 2 pairs of
               recommended items whose categories differ; the mean over users. Items without a category
               take no part in a pair; a user with fewer than two categorised items is left out.

Interest balance (which interest supplies each recommended item) needs the model's interests:
bam_experiments.balance.list_balance gives it for the same lists (`evaluate --top-n`, `table --top-n`).

    from bam_evidence import beyond
    beyond.coverage(tops, n_items), beyond.diversity(tops, codes)   # tops (U, N); codes (I + 1,)
    metrics.update(beyond.list_metrics(tops, n_items, codes))        # {"coverage@N": ..., "diversity@N": ...}
"""
import numpy as np


def coverage(tops, n_items):
    """The share of items 1..I in at least one row of `tops` (U, N)."""
    shown = np.unique(np.asarray(tops))                                        # (S,)
    return float(((shown >= 1) & (shown <= n_items)).sum() / n_items)


def diversity(tops, codes):
    """ComiRec's Diversity@N over `tops` (U, N) with one category code per item id (`codes` (I + 1,), -1: none)."""
    cats = np.asarray(codes)[np.asarray(tops)]                                 # (U, N)
    if not (cats >= 0).any():
        return None
    rows = np.broadcast_to(np.arange(len(cats))[:, None], cats.shape)          # (U, N)
    known = cats >= 0                                                          # (U, N)
    n = known.sum(1).astype(np.float64)                                        # (U,) categorised items per list
    pairs = n * (n - 1) / 2                                                    # (U,)
    # Pairs in one category: sum over the categories c of a row of C(count_c, 2), counted with np.unique.
    keys, counts = np.unique(rows[known] * (cats.max() + 1) + cats[known], return_counts=True)
    same = np.bincount(keys // (cats.max() + 1), weights=counts * (counts - 1) / 2, minlength=len(cats))  # (U,)
    scored = pairs > 0
    return float(((pairs - same)[scored] / pairs[scored]).mean()) if scored.any() else None


def list_metrics(tops, n_items, codes=None):
    """{"coverage@N": ..., "diversity@N": ... (with category codes, when some list holds two categorised items)}."""
    n = np.asarray(tops).shape[1]
    out = {f"coverage@{n}": coverage(tops, n_items)}
    if codes is not None:
        out[f"diversity@{n}"] = diversity(tops, codes)
    return out
