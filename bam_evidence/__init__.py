"""
bam_evidence: from faithful numbers to evidence. Every evaluation keeps each user's result (per_user), so
that two evaluations of the same users and targets are compared user by user (stats), and seeds are
reported as intervals, not bare standard deviations.

  metrics   each user's metrics from the ranks of its targets (numpy only, written once), and the published
            NDCGs of ComiRec's and REMI's code, each under its own label
  per_user  the per-user results file (.npz, read without pickle): users, targets, ranks, per-user metrics
            (computed again from the ranks when read), and what identifies the evaluation (data fingerprint,
            protocol, split, history mask)
  stats     paired comparisons over users (bootstrap interval, paired t-test, paired randomization test) and
            t-intervals over seeds, all from scipy.stats
  beyond    beyond accuracy, from the top-N lists: coverage@N, and ComiRec's diversity@N with item categories
  records   the schema of the files a run writes, each defined once with a version (a dataclass, checked on
            reading, one line when it is not one; a file of an older bam, without a schema, read as before), and
            a run's result, metrics.json (Result); bam_runs.records adds the checkpoint and the resume state

    python cli.py compare runs/a runs/b            # two run folders (or two per-user files)

Torch-free: it imports numpy, scipy and the data layer only (docs/architecture.md).
"""
