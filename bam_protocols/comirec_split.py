"""
bam_protocols/comirec_split.py: the evaluation protocol of ComiRec (Cen et al., KDD '20), which REMI (Xie et al.,
RecSys '23) inherits and the multi-interest papers use when they compare with them, beside bam_minimal.py's
leave-one-out ([KDD24]), as a Protocol object (bam_protocols/protocol.py). Importing bam_protocols registers
it into bam_minimal.PROTOCOLS, so that `Config(protocol="comirec")` trains, validates and tests under it with
bam_minimal's own loop:

    import bam_protocols
    model, result = bam_minimal.train(Config(protocol="comirec", history_mask="none"), data)
    bam_protocols.get("comirec").evaluate(scorer, data, "test", cfg)   # every target of the test users

The protocol (THUDM/ComiRec, preprocess/data.py and src/data_iterator.py):
  * users, not interactions, are split: shuffled once, the first 80% train, the next 10% validate, the
    last 10% test. Here the shuffle is numpy's, seeded with SPLIT_SEED (ComiRec's preprocessing seed), and
    depends on nothing but the number of users: every seed and every method of a table tests the same users.
  * a training example is a training user and a target position k >= 4 (k uniform in [4, len - 1]);
    its history is seq[:k], of which the model sees the last `seq_len`.
  * a validation or test user's history is its first 80% (k = int(0.8 * len)), and ALL of the remaining
    items are its targets, ranked against the full catalogue by the best interest's score.
  * metrics at N = 10, 20, 50 (ComiRec reports 20 and 50): Recall@N = hits / targets, HitRate@N = any hit,
    NDCG@N = DCG / IDCG, IDCG over min(N, targets) (the correct one). They are bam_evidence.metrics'
    `user_metrics`, written once in the torch-free layer, where per_user.load computes them again from a file's
    ranks. The published NDCGs (`ndcg@N (comirec-paper)`, `(comirec-master)`, `(remi)`: ComiRec's original code,
    ComiRec's code after its issue #6, REMI's code) are there too, each under its own label, for comparison with
    the tables that used them only; bam_evidence/metrics.py says which code computes which.
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

import bam_minimal as bm
from bam_evidence.metrics import PROTOCOL_COLUMNS
from bam_evidence.metrics import FROM_RANKS, VARIANTS
from bam_protocols.protocol import Protocol

SPLIT_SEED = 1230          # ComiRec's preprocess/data.py: random.seed(1230)
SPLITS = ("train", "valid", "test")
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
    """The protocol's `users`: the rows of a split of `data`. An empty split (5 users or fewer) is
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
# The protocol: the functions above, and its metrics (evaluate is Protocol's: every target of a user ranked)


class ComiRecSplit(Protocol):
    """ComiRec's protocol as an object: its users split 80/10/10 (hence the module's and the class's name: in code,
    "comirec" is the model, ComiRecSA, and "comirec_split" this protocol). Its registered name stays "comirec",
    the value every run's metrics.json and checkpoint already record (docs/architecture.md)."""
    name, title = "comirec", "ComiRec's protocol: 10% test users, their last 20% as targets"
    columns = PROTOCOL_COLUMNS["comirec"]  # the ComiRec and REMI papers' (N = 20, 50)
    variants = VARIANTS                    # the published NDCGs are for this protocol's tables
    variant_columns = tuple(f"ndcg@{n} ({v})" for v in FROM_RANKS for n in (20, 50))  # those the ranks give

    def users(self, data, split):
        return split_users(data, split)

    def batch(self, data, rng, batch_size, seq_len):
        return train_batch(data, rng, batch_size, seq_len)

    def targets(self, data, split, rows):
        return target_lists(data, rows)

    def popularity_counts(self, data):
        return train_counts(data)  # the validation and test users are not trained on

    def twin(self, params, data, split, ncfg, rows=None, k_top=0):
        from bam_numpy import comirec_split  # numba: only for --engine numpy and the cross-check
        return comirec_split.evaluate(params, data, split, ncfg, rows=rows, k_top=k_top)


PROTOCOL = ComiRecSplit()
