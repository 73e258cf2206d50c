"""
bam_protocols/comirec.py: the evaluation protocol of ComiRec (Cen et al., KDD '20), which REMI (Xie et al.,
RecSys '23) inherits and the multi-interest papers use when they compare with them, beside bam_minimal.py's
leave-one-out ([KDD24]). `register()` adds it to bam_minimal.PROTOCOLS, so that `Config(protocol="comirec")`
trains, validates and tests under it with bam_minimal's own loop:

    from bam_protocols import comirec
    comirec.register()
    model, result = bam_minimal.train(Config(protocol="comirec", history_mask="none"), data)

The protocol (THUDM/ComiRec, preprocess/data.py and src/data_iterator.py):
  * users, not interactions, are split: shuffled once, the first 80% train, the next 10% validate, the
    last 10% test. Here the shuffle is numpy's, seeded with SPLIT_SEED (ComiRec's preprocessing seed), and
    depends on nothing but the number of users: every seed and every method of a table tests the same users.
  * a training example is a training user and a target position k >= 4 (k uniform in [4, len - 1]);
    its history is seq[:k], of which the model sees the last `seq_len`.
  * a validation or test user's history is its first 80% (k = int(0.8 * len)), and ALL of the remaining
    items are its targets, ranked against the full catalogue by the best interest's score.
  * metrics at N = 10, 20, 50 (ComiRec reports 20 and 50): Recall@N = hits / targets, HitRate@N = any hit,
    NDCG@N = DCG / IDCG, IDCG over min(N, targets) (the correct one). `ndcg@N (comirec)` is the formula of
    ComiRec's code, for comparison with its tables only: DCG by the target's position in time, IDCG over the
    hits (ComiRec issues #6 and #25); see `user_metrics`.
  * a target is an item; one the user took twice counts once (hits and targets both count distinct items).
    ComiRec divides by the targets with repeats; the two agree when no user repeats an item in its last 20%.
  * masking: ComiRec and REMI rank every item but padding 0, the history included: `--history-mask none`.
    bam's default `exclude` masks the history; the run's config records which was used.

Where bam differs from ComiRec's code, on purpose: the split's shuffle (numpy's, not Python's `random`);
training users are drawn with replacement (ComiRec: without, within a batch); model selection is on Recall@10
like the rest of bam (ComiRec: Recall@50); ranks follow bam's tie rule (a higher score, or an equal score and
a lower id), not faiss's or a Python set's order.
"""
import functools

import numpy as np
import torch

import bam_minimal as bm

SPLIT_SEED = 1230          # ComiRec's preprocess/data.py: random.seed(1230)
SPLITS = ("train", "valid", "test")
KS = (10, 20, 50)
FIRST_TARGET = 4           # a training target's position: k >= 4 (ComiRec: random.choice(range(4, len)))


# -----------------------------------------------------------------------------
# The split: users, history ends, targets.


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


def split_users(data, split):
    """bam_minimal.PROTOCOLS' `users`: the rows of a split of `data`. An empty split (5 users or fewer) is
    refused: its metrics would be the mean of nothing."""
    rows = split_rows(len(data.users), split)
    if not len(rows):
        raise bm.InputError(f"{data.name}: {len(data.users)} users leave ComiRec's {split} split empty (10% of "
                            "them; fix: 6 users or more, or --protocol loo)")
    return rows


def target_lists(data, rows):
    """-> (k (U,), counts (U,), targets (T,)): each user's history end, number of targets, and the targets
    seq[k:] of every user, one after another, in time order (repeats kept, so that ComiRec's formula can be
    computed; the correct metrics count each item once)."""
    rows = np.asarray(rows, np.int64)
    k = history_end(data.lengths[rows])                                        # (U,)
    counts = data.lengths[rows] - k                                            # (U,) at least 1
    first = np.repeat(data.start[rows] + k - np.cumsum(counts) + counts, counts)  # (T,) each user's first target
    return k, counts, data.items[first + np.arange(counts.sum())]              # (U,), (U,), (T,)


def train_counts(data):
    """How often each item occurs in the training users' sequences (I + 1,): what the most-popular
    baseline counts under this protocol (the validation and test users are not trained on)."""
    rows = split_rows(len(data.users), "train")                                # (P,)
    keep = np.repeat(np.isin(np.arange(len(data.users)), rows), data.lengths)  # (T,) items of training users
    return np.bincount(data.items[keep], minlength=data.n_items + 1)           # (I + 1,)


# -----------------------------------------------------------------------------
# Training examples.


def train_batch(data, rng, batch_size, seq_len):
    """ComiRec's sampler: a training user uniformly (with replacement), then a target k uniform in [4, len - 1]."""
    pool = split_rows(len(data.users), "train")                                # (P,)
    pool = pool[data.lengths[pool] > FIRST_TARGET]                             # users with a target k >= 4
    if not len(pool):
        raise bm.InputError(f"{data.name}: no training user has {FIRST_TARGET + 1} or more interactions, so the "
                            "comirec protocol has nothing to train on (fix: --protocol loo, or more data)")
    rows = pool[rng.integers(0, len(pool), batch_size)]                        # (B,)
    k = rng.integers(FIRST_TARGET, data.lengths[rows])                         # (B,) in [4, len - 1]
    return bm.windows(data, rows, k, seq_len)


# -----------------------------------------------------------------------------
# Evaluation: every target of a user ranked against the full catalogue.


@torch.no_grad()
def evaluate(scorer, data, split, cfg, rows=None, k_top=0, block=None):
    """bam_minimal.evaluate's steps (windows -> score -> mask -> rank, a block of users at a time) with every
    target of a user: -> (metrics, ranks (T,) of the targets of target_lists(data, rows), top-k ids or None).
    `rows`: default every user of `split`. metrics["nonfinite_users"] as in bam_minimal.evaluate."""
    device = bm.resolve_device(cfg)
    rows = split_users(data, split) if rows is None else np.asarray(rows, np.int64)
    k, counts, targets = target_lists(data, rows)                             # (U,), (U,), (T,)
    offsets = np.concatenate([[0], np.cumsum(counts)])                        # (U + 1,)
    ranks, tops, bad = [np.zeros(0, np.int64)], [np.zeros((0, min(k_top, data.n_items + 1)), np.int64)], [[]]
    for at, kb in bm.user_blocks(cfg, data, np.arange(len(rows)), k, block):  # positions in `rows`, this process's
        r, i = rows[at], at[0]                                                 # (b,) the block's rows
        history, mask, _ = (torch.as_tensor(a, device=device) for a in bm.windows(data, r, kb, cfg.seq_len))
        full = torch.as_tensor(bm.windows(data, r, kb, int(kb.max()))[0], device=device)  # (b, max k)
        scores = scorer(history, mask, bm.routing_noise(cfg, r) if cfg.model == "mind" else None)  # (b, I + 1)
        bad.append(bm.nonfinite_rows(scores))                                  # (b,)
        scores = bm.mask_history(scores, full, history, cfg.history_mask)     # (b, I + 1)
        ranks.append(rank_targets(scores, targets[offsets[i]:offsets[i + len(r)]], counts[i:i + len(r)]))
        if k_top:
            tops.append(bm.top_k(scores, k_top).cpu().numpy())                # (b, k_top)
    ranks, tops, bad = bm.gather_users(ranks, tops, bad)  # (T,), (U, k_top), (U,) in user order
    metrics = {name: float(v.mean()) for name, v in user_metrics(ranks, counts, targets).items()}
    return dict(metrics, nonfinite_users=int(bad.sum())), ranks, tops if k_top else None


def rank_targets(scores, targets, counts):
    """The rank (bam_minimal.target_rank's rule) of each target of a block of users: targets (T_b,) one user
    after another, counts (b,) -> ranks (T_b,). Each target is ranked on a copy of its user's row, at most
    2^22 scores at a time: the work follows the number of targets, not the longest user's."""
    user = torch.as_tensor(np.repeat(np.arange(len(counts)), counts), device=scores.device)  # (T_b,)
    targets = torch.as_tensor(np.asarray(targets, np.int64), device=scores.device)           # (T_b,)
    step = max(1, (1 << 22) // scores.shape[1])
    return torch.cat([bm.target_rank(scores[user[i:i + step]], targets[i:i + step])          # (c,) each
                      for i in range(0, len(targets), step)]).cpu().numpy()                   # (T_b,)


# -----------------------------------------------------------------------------
# Metrics of many targets per user.


def user_metrics(ranks, counts, targets, ks=KS, comirec_ndcg=False):
    """{name: (U,) float64}: each user's metrics from the 0-based ranks of its targets (ranks, targets (T,),
    one user after another in time order; counts (U,)). Each distinct item counts once:
      Recall@N  = hits / targets;  HitRate@N = 1 if any hit;
      NDCG@N    = sum over hits of 1 / log2(rank + 2), over IDCG = sum_{i < min(N, targets)} 1 / log2(i + 2).
    With one target per user they are bam_minimal.metrics_from_ranks' Recall@N and nDCG@N (tested).
    comirec_ndcg adds `ndcg@N (comirec)`, ComiRec's code (src/train.py, evaluate_full): every target, repeats
    included, that is in the top N adds 1 / log2(j + 2), j its position among the user's targets in TIME
    order, not its rank; IDCG sums over the number of hits, not min(N, targets); no hit gives 0."""
    ranks, counts, targets = (np.asarray(a, np.int64) for a in (ranks, counts, targets))
    user = np.repeat(np.arange(len(counts)), counts)                          # (T,) each target's user
    first = np.zeros(len(targets), bool)                                      # (T,) an item's first time
    first[np.unique(np.stack([user, targets], 1), axis=0, return_index=True)[1] if len(targets) else []] = True
    distinct = np.bincount(user, first, len(counts))                          # (U,)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(int(counts.max(initial=1))) + 2))])
    gain = 1.0 / np.log2(ranks + 2.0)                                         # (T,)
    out = {}
    for n in ks:
        hit = ranks < n                                                       # (T,)
        hits = np.bincount(user, hit & first, len(counts))                    # (U,) distinct items hit
        out[f"recall@{n}"] = hits / distinct
        out[f"ndcg@{n}"] = np.bincount(user, np.where(hit & first, gain, 0.0), len(counts)) / ideal[
            np.minimum(n, distinct).astype(np.int64)]
        out[f"hitrate@{n}"] = (hits > 0).astype(np.float64)
        if comirec_ndcg:
            position = np.arange(len(targets)) - np.repeat(np.cumsum(counts) - counts, counts)  # (T,) in time
            found = np.bincount(user, hit, len(counts)).astype(np.int64)     # (U,) repeats included
            dcg = np.bincount(user, np.where(hit, 1.0 / np.log2(position + 2.0), 0.0), len(counts))
            out[f"ndcg@{n} (comirec)"] = np.where(found > 0, dcg / np.maximum(ideal[found], 1e-300), 0.0)
    return out


# -----------------------------------------------------------------------------


def register():
    """Add the protocol to bam_minimal.PROTOCOLS (idempotent)."""
    bm.PROTOCOLS["comirec"] = dict(users=split_users, batch=train_batch, evaluate=evaluate)
