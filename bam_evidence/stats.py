"""
bam_evidence/stats.py: is a difference real? Paired comparisons over users and intervals over seeds, all
computed by scipy.stats; this file only lays the arrays out and names the results.

    from bam_evidence import per_user, stats
    a, b = per_user.load("runs/hard/per_user_test.npz"), per_user.load("runs/bam/per_user_test.npz")
    report = stats.compare(a, b)             # {metric: {mean_a, mean_b, diff, ..., p_ttest, p_randomization}}
    stats.t_interval([0.091, 0.094, 0.090])  # (mean, low, high) over seeds

Per metric, with d_u = b_u - a_u the per-user difference (the same users, the same targets):
  diff, rel_diff       mean(d) and mean(d) / mean(a): the effect, which matters more than a p-value when
                       thousands of users make almost any difference "significant"
  ci_low, ci_high      a 95% bootstrap interval of mean(d), resampling users (scipy.stats.bootstrap, percentile)
  p_ttest              the paired t-test (scipy.stats.ttest_rel), two-sided; None where it is undefined
                       (one user, or every user moved by the same non-zero amount)
  p_randomization      the paired randomization test: flip the sign of each d_u at random
                       (scipy.stats.monte_carlo_test, or permutation_test where it is exact: every sign
                       pattern, when at most 13 users' metrics differ), two-sided
  p_randomization_floor  the smallest p that test can give (2 / (R + 1), or 2 / 2^M when exact): a p there
                       is printed "<= floor"
Resampling draws from np.random.default_rng(seed): the same seed, the same numbers.
"""
import warnings

import numpy as np
from scipy import stats as sp

from bam_evidence.per_user import check_paired

CONFIDENCE = 0.95


def paired(x, y, n_resamples=9999, seed=0, confidence=CONFIDENCE):
    """x, y (U,): one metric per user under evaluations A and B -> the statistics of d = y - x."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = y - x                                                                   # (U,)
    out = dict(users=len(d), mean_a=float(x.mean()), mean_b=float(y.mean()), diff=float(d.mean()),
               rel_diff=float(d.mean() / x.mean()) if x.mean() else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if len(d) > 1 and np.ptp(d) > 0:
            low, high = bootstrap_interval(d, n_resamples, seed, confidence)
            out.update(ci_low=low, ci_high=high, p_ttest=float(sp.ttest_rel(y, x).pvalue))
        else:  # every user moved alike (usually: not at all): no spread to resample, no t statistic (None)
            out.update(ci_low=out["diff"], ci_high=out["diff"], p_ttest=1.0 if out["diff"] == 0 else None)
        # Flipping the sign of a zero changes nothing, so the test runs on the users whose metric moved: the
        # same test (mean(d) is their mean times a constant), 5-10x faster on top-K metrics, where most d_u = 0.
        moved = d[d != 0]                                                       # (M,)
        out["p_randomization"] = randomization_p(moved, n_resamples, seed) if len(moved) > 1 else 1.0
        # The smallest p the test can give: 2 / 2^M when it is exact (every sign pattern of M moved users), else
        # 2 / (R + 1) (scipy counts the observed pattern among the R resamples). A p at its floor is printed
        # "<= floor", never as a value beside t-test p-values that go far lower.
        exact = 1 < len(moved) and enumerates(len(moved), n_resamples)
        out["p_randomization_floor"] = 2.0 ** (1 - len(moved)) if exact else 2.0 / (n_resamples + 1)
        # one user moved: its two signs are equally extreme, p = 1 exactly (scipy wants two observations)
    return out


def enumerates(m, n_resamples):
    """Whether the sign-flip test of m moved users is exact: its 2^m patterns are at most R (scipy's rule)."""
    return m <= np.log2(n_resamples)


def randomization_p(moved, n_resamples=9999, seed=0):
    """The two-sided sign-flip p of mean(moved) (moved (M,), M > 1). Exact when the 2^M sign patterns are at most
    R: scipy.stats.permutation_test enumerates them. Else R random patterns through scipy.stats.monte_carlo_test,
    whose null sample is `moved` with random signs: the same test and the same p formula ((count + 1) / (R + 1),
    twice the smaller tail) as permutation_test's, which on one sample loops in Python over every resample (3 s
    against 0.2 s for 4,000 moved users at R = 9,999; the committed-evidence check ran 42 of them)."""
    rng = np.random.default_rng(seed)
    if enumerates(len(moved), n_resamples):
        return float(sp.permutation_test((moved,), np.mean, permutation_type="samples", n_resamples=n_resamples,
                                         vectorized=True, alternative="two-sided", rng=rng).pvalue)

    def flipped(size):                                                          # (batch, M): each sign at random
        return moved * (rng.integers(0, 2, size, dtype=np.int8) * 2 - 1)
    batch = max(1, (1 << 22) // len(moved))  # resamples at a time: memory near 32 MB whatever M is
    return float(sp.monte_carlo_test(moved, flipped, np.mean, vectorized=True, n_resamples=n_resamples, batch=batch,
                                     alternative="two-sided").pvalue)


def bootstrap_interval(d, n_resamples=9999, seed=0, confidence=CONFIDENCE):
    """(low, high): the percentile bootstrap interval of mean(d) over users (d (U,), with some spread)."""
    batch = max(1, (1 << 22) // max(1, len(d)))  # resamples at a time: memory near 32 MB whatever U is
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = sp.bootstrap((np.asarray(d, np.float64),), np.mean, n_resamples=n_resamples, batch=batch,
                          vectorized=True, confidence_level=confidence, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(ci.confidence_interval.low), float(ci.confidence_interval.high)


def compare(a, b, metrics=None, n_resamples=9999, seed=0):
    """Two per_user.PerUser of the same evaluation -> {metric: paired(...)}, B against A."""
    shared = check_paired(a, b)
    return {k: paired(a.metrics[k], b.metrics[k], n_resamples, seed) for k in (metrics or shared)}


def t_interval(values, confidence=CONFIDENCE):
    """(mean, low, high): the t-interval of the mean over seeds; (mean, None, None) for one seed."""
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, None, None
    if np.all(v == v[0]):
        return mean, mean, mean
    low, high = sp.t.interval(confidence, len(v) - 1, loc=mean, scale=sp.sem(v))
    return mean, float(low), float(high)
