"""
bam_numpy/data.py: per-user sequences, the leave-one-out split and vectorised batches, without torch.

The same functions as bam_minimal.py's Data section, under the same names: given the same numpy
Generator, `train_batch` here and there returns the same arrays (tests/test_twin_agreement.py).
A bam_minimal.Dataset can be passed wherever a Dataset is expected: both have the same fields.

    from bam_numpy.data import load_data, train_batch
    data = load_data("data.txt")                   # official format: one `user item` per line
    history, mask, target = train_batch(data, np.random.default_rng(0), 128, 50)
"""
import os

import numpy as np

from bam_numpy.config import InputError

# -----------------------------------------------------------------------------
# Reading: the official format.


def read_official(path):
    """One `user item` pair per line, 1-indexed, each user's items in time order. Extra fields are
    ignored, as the official reader does. Returns {user: [items]} in file order."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file (fix: check the path)")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise InputError(f"{path}: the file is empty (fix: pass a file with one `user item` pair per line)")
    if b"\0" in raw[:65536]:
        raise InputError(f"{path}:1: binary data, not text (fix: pass a text file with one `user item` pair per line)")
    seqs = {}
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise InputError(f"{path}:{n}: one field, expected `user item` (fix: write one pair per line)")
        try:
            user, item = int(parts[0]), int(parts[1])
        except ValueError:
            raise InputError(f"{path}:{n}: `{line.strip()[:40]}` is not two integer ids "
                             "(fix: map string ids to integers, e.g. with `cli.py prepare`)") from None
        if user < 0 or item < 0:
            raise InputError(f"{path}:{n}: negative id in `{line.strip()}` (fix: ids are 1-indexed, 0 and up)")
        if item == 0:
            raise InputError(f"{path}:{n}: item id 0 is reserved for padding (fix: items are 1-indexed; "
                             "add 1 to every item id)")
        seqs.setdefault(user, []).append(item)
    return seqs

def read_per_user(path):
    """One line per user, `user item1 item2 ...` in time order (S3-Rec's Beauty.txt and others).
    0-indexed items are shifted by one, since 0 is padding (as bam_tools.formats does)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file (fix: check the path)")
    seqs = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = [int(x) for x in parts]
            except ValueError:
                raise InputError(f"{path}:{n}: `{line.strip()[:40]}` holds a non-integer id "
                                 "(fix: map string ids to integers)") from None
            if len(ids) < 2 or min(ids) < 0:
                raise InputError(f"{path}:{n}: expected `user item1 item2 ...` with ids >= 0 "
                                 "(fix: one line per user)")
            seqs[ids[0]] = ids[1:]
    if any(0 in s for s in seqs.values()):
        seqs = {u: [i + 1 for i in s] for u, s in seqs.items()}
    return seqs


def read_any(path):
    """read_per_user when a line among the first 100 has more than 3 fields, else read_official."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file (fix: check the path)")
    with open(path, encoding="utf-8", errors="replace") as f:
        head = [line.split() for _, line in zip(range(100), f)]
    return read_per_user(path) if any(len(p) > 3 for p in head) else read_official(path)

# -----------------------------------------------------------------------------
# The flat dataset, windows and batches.


class Dataset:
    """All sequences in one flat array: user row r owns items[start[r]:start[r + 1]], in time order.
    Item ids are kept as they are; 0 is padding. Users with fewer than 3 items are skipped."""

    def __init__(self, seqs, n_items=None, name="data"):
        kept = {u: s for u, s in seqs.items() if len(s) >= 3}
        if not kept:
            raise InputError(f"{name}: no user has 3 or more interactions (fix: leave-one-out needs a train, "
                             "a validation and a test item per user)")
        self.name, self.skipped = name, len(seqs) - len(kept)
        self.users = np.array(sorted(kept), dtype=np.int64)                     # (U,)
        self.lengths = np.array([len(kept[u]) for u in self.users], dtype=np.int64)  # (U,)
        self.start = np.concatenate([[0], np.cumsum(self.lengths)])            # (U + 1,)
        self.items = np.concatenate([kept[u] for u in self.users]).astype(np.int64)  # (T,)
        self.n_items = int(n_items or max(max(s) for s in seqs.values()))      # the official item_count
        self.trainable = np.flatnonzero(self.lengths - 2 >= 2)                # rows with a train target k >= 1
        self.n_interactions = int(self.lengths.sum())


def load_data(path):
    """The official format, or one line per user (read_any)."""
    return Dataset(read_any(path), name=str(path))


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


def train_counts(data):
    """How often each item occurs in the training part (seq[:-2]) of every sequence."""
    position = np.arange(len(data.items)) - np.repeat(data.start[:-1], data.lengths)   # (T,)
    keep = position < np.repeat(data.lengths - 2, data.lengths)                         # (T,)
    return np.bincount(data.items[keep], minlength=data.n_items + 1)                    # (I + 1,)
