"""
The most-popular baseline that `cli.py train` prints beside every run: each item scored by how often
it occurs in the training part of the sequences, ranked by bam_minimal.evaluate like a model.

    from bam_experiments.baselines import popularity_scorer
    metrics = bm.evaluate(popularity_scorer(data, "cpu"), data, "test", cfg)[0]
"""
import torch

from bam_data.dataset_stats import train_counts


def popularity_scorer(data, device, counts=None):
    """A scorer for bam_minimal.evaluate: the same training counts for every user (`counts` (I + 1,): another
    protocol's `popularity_counts`, e.g. ComiRec's training users'; default leave-one-out's, seq[:-2] of every user)."""
    counts = torch.as_tensor(train_counts(data) if counts is None else counts, dtype=torch.float32,
                             device=device)                                   # (I + 1,)
    return lambda history, mask, routing: counts.repeat(len(history), 1)                 # (b, I + 1)
