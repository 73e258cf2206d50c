"""
The most-popular baseline that `cli.py train` prints beside every run: each item scored by how often
it occurs in the training part of the sequences, ranked by bam_minimal.evaluate like a model.

    from bam_tools.baselines import popularity_scorer
    metrics = bm.evaluate(popularity_scorer(data, "cpu"), data, "test", cfg)[0]
"""
import numpy as np
import torch


def train_counts(data):
    """How often each item occurs in the training part (seq[:-2]) of every sequence."""
    position = np.arange(len(data.items)) - np.repeat(data.start[:-1], data.lengths)   # (T,)
    keep = position < np.repeat(data.lengths - 2, data.lengths)                         # (T,)
    return np.bincount(data.items[keep], minlength=data.n_items + 1)                    # (I + 1,)


def popularity_scorer(data, device):
    """A scorer for bam_minimal.evaluate: the same training counts for every user."""
    counts = torch.as_tensor(train_counts(data), dtype=torch.float32, device=device)  # (I + 1,)
    return lambda history, mask, noise: counts.repeat(len(history), 1)                 # (b, I + 1)
