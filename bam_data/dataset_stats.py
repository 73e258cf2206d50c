"""
bam_data/dataset_stats.py: figures of a dataset that both engines need, without torch.

  table1            the paper's Table 1 figures of a dataset (`cli.py data stats`, `cli.py prepare`)
  train_counts      how often each item occurs in the training part (the most-popular baseline)
  repeated_targets  a warning when most test targets are already in their user's history

    from bam_data.dataset_stats import table1, train_counts, repeated_targets
    figures = table1(seqs)                 # users, items, interactions, density, lengths
    counts = train_counts(data)            # data: bam_minimal.Dataset or bam_numpy.Dataset
    warning = repeated_targets(seqs)       # None, or one line to print as `warning: ...`
"""
import numpy as np

SHARE = 0.5  # above this share of users, repeated targets are a data problem, not a habit


def table1(seqs):
    """Users, distinct items, interactions, density (interactions / (users x items)) and sequence lengths of
    {user: [item, ...]}. `max_item_id` beside `items` shows gaps in the ids (the item table has one row per id
    up to the largest); `users_under_3` are the users that leave-one-out skips. Rounded as printed."""
    if not seqs:
        return dict(users=0, items=0, max_item_id=0, interactions=0, avg_len=0.0, median_len=0.0, max_len=0,
                    users_under_3=0, density=0.0)
    lengths = np.array([len(s) for s in seqs.values()])                          # (U,)
    out = dict(users=len(seqs), items=len({i for s in seqs.values() for i in s}),
               max_item_id=max(max(s) for s in seqs.values()), interactions=int(lengths.sum()),
               avg_len=round(float(lengths.mean()), 2), median_len=float(np.median(lengths)),
               max_len=int(lengths.max()), users_under_3=int((lengths < 3).sum()))
    out["density"] = round(out["interactions"] / (out["users"] * out["items"]), 6)
    return out


def train_counts(data):
    """How often each item occurs in the training part (seq[:-2]) of every sequence."""
    position = np.arange(len(data.items)) - np.repeat(data.start[:-1], data.lengths)   # (T,)
    keep = position < np.repeat(data.lengths - 2, data.lengths)                         # (T,)
    return np.bincount(data.items[keep], minlength=data.n_items + 1)                    # (I + 1,)


def repeated_targets(seqs, share=SHARE):
    """One line when more than `share` of the evaluated users (3 or more items) have their test target,
    the last item, earlier in their own sequence, else None. The `exclude` history mask then removes
    the target from the ranking and every metric is near 0, without any error: a file concatenated
    twice, or duplicate rows, look exactly like that."""
    users = [s for s in seqs.values() if len(s) >= 3]
    if not users:
        return None
    repeated = sum(s[-1] in s[:-1] for s in users)
    if repeated <= share * len(users):
        return None
    return (f"{repeated / len(users):.0%} of users ({repeated:,} of {len(users):,}) have their test item "
            "(the last one) earlier in their own sequence, so the default history mask `exclude` hides it "
            "and every metric will be near 0; likely cause: the file concatenated twice, or duplicate rows "
            "(fix: dedupe the file, or pass --history-mask none to rank repeats)")
