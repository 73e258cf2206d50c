"""
bam_numpy/data.py: per-user sequences, the leave-one-out split and vectorised batches, without torch.

The same functions as bam_minimal.py's Data section, under the same names: given the same numpy
Generator, `train_batch` here and there returns the same arrays (tests/test_twin_agreement.py), and
`windows` and `train_batch` are the same text (tests/test_twin_source.py). A bam_minimal.Dataset
can be passed wherever a Dataset is expected: both have the same fields. Files are read by
bam_data.formats.read, the one reader of every format, as cli.py reads them.

    from bam_numpy.data import load_data, train_batch
    data = load_data("data.txt")                   # any format cli.py reads (docs/formats.md)
    history, mask, target = train_batch(data, np.random.default_rng(0), 128, 50)
"""
import numpy as np

from bam_data.formats import MAX_ID, read
from bam_numpy.config import InputError

# -----------------------------------------------------------------------------
# The flat dataset, windows and batches.


class Dataset:
    """All sequences in one flat array: user row r owns items[start[r]:start[r + 1]], in time order.
    Item ids are kept as they are; 0 is padding. Users with fewer than 3 items are skipped."""

    def __init__(self, seqs, n_items=None, name="data"):
        kept = {u: seqs[u] for u in sorted(seqs) if len(seqs[u]) >= 3}          # in user order
        if not kept:
            raise InputError(f"{name}: no user has 3 or more interactions (fix: 3 per user; one line per user: cli.py)")
        self.name, self.skipped = name, len(seqs) - len(kept)
        self.users = np.array(list(kept), dtype=np.int64)                       # (U,)
        self.lengths = np.array([len(s) for s in kept.values()], dtype=np.int64)  # (U,)
        self.start = np.concatenate([[0], np.cumsum(self.lengths)])            # (U + 1,)
        self.items = np.fromiter((i for s in kept.values() for i in s), np.int64, self.start[-1])  # (T,)
        self.n_items = int(n_items or max(max(s) for s in seqs.values()))      # the official item_count
        if self.n_items >= MAX_ID:  # before anything allocates an (I + 1, d) table
            raise InputError(f"{name}: item id {self.n_items} is too large, ids must be below 2^31 "
                             "(fix: map ids to 1..n, e.g. with `cli.py prepare`)")
        self.trainable = np.flatnonzero(self.lengths - 2 >= 2)                # rows with a train target k >= 1
        self.n_interactions = int(self.lengths.sum())


def load_data(path, fmt="auto"):
    """A data file in any format bam_data.formats.read reads (the format is detected by default)."""
    return Dataset(read(path, fmt)[0], name=str(path))


def windows(data, rows, k, width):
    """Examples (row, k): target items[k]; history the last `width` items before k, right-padded with 0."""
    lo = np.maximum(k - width, 0)                                              # (B,)
    pos = lo[:, None] + np.arange(width)                                       # (B, W)
    mask = pos < k[:, None]                                                    # (B, W)
    flat = data.start[rows][:, None] + np.minimum(pos, k[:, None] - 1)         # (B, W)
    history = np.where(mask, data.items[flat], 0)                              # (B, W)
    target = data.items[data.start[rows] + k]                                  # (B,)
    return history, mask.astype(np.float32), target


def train_batch(data, rng, batch_size, seq_len):
    """The official sampler: a user uniformly with replacement, then a target k >= 1 in seq[:-2]."""
    rows = data.trainable[rng.integers(0, len(data.trainable), batch_size)]   # (B,)
    k = rng.integers(1, data.lengths[rows] - 2)                                # (B,) in [1, len - 3]
    return windows(data, rows, k, seq_len)


def split_targets(data, split):
    """Leave-one-out: validation predicts seq[-2] from seq[:-2], test predicts seq[-1] from seq[:-1]."""
    return data.lengths - (2 if split == "valid" else 1)                       # (U,) target positions
