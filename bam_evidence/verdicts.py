"""
bam_evidence/verdicts.py: is B ahead of A, counting both sources of chance, and every question asked?

A table trains each method with S seeds and scores every run on the same U test users. Its evidence for a
pair (B, A) and a metric is the (S, U) array d[s, u] = b[s, u] - a[s, u], paired by seed and user. Two
sources of chance move mean(d): the training (another seed gives another model) and the test users
(another sample of users from the same population). The two intervals bam reported before leave one out
each, and both are kept as secondary columns, labelled:
  over seeds only   the t-interval of the S seed means: the users are fixed (every seed is scored on the
                    same users), so it leaves out the sampling of users
  over users only   the bootstrap over the U users of each user's mean over the seeds: the S models are
                    fixed, so it leaves out the training's variance

The primary interval covers both: the two-way crossed random-effects model (Searle, Casella and
McCulloch, *Variance Components*, ch. 4; the design of Bouthillier et al., MLSys 2021)
    d[s, u] = delta + a_s + b_u + e_su,   a_s ~ (0, s2_seed), b_u ~ (0, s2_user), e_su ~ (0, s2_noise)
whose grand mean has
    Var(mean d) = s2_seed / S + s2_user / U + s2_noise / (S U).
The components are the ANOVA (method-of-moments) estimates, each truncated at zero:
    m_seed  = var(row means, ddof 1)            E = s2_seed + s2_noise / U        df S - 1
    m_user  = var(column means, ddof 1)         E = s2_user + s2_noise / S        df U - 1
    m_noise = residual mean square              E = s2_noise                      df (S - 1)(U - 1)
    s2_seed = max(0, m_seed - m_noise / U),  s2_user = max(0, m_user - m_noise / S),  s2_noise = m_noise
and the interval is mean(d) +- t(df) sqrt(V) with V = m_seed / S + m_user / U (Var(mean d) plus
s2_noise / (S U): conservative by the noise's share) and df by Satterthwaite's rule over its two terms
(variance_and_df says why not the unbiased V). With 5 seeds and training variance dominant, df is near 4 and
the interval is as wide as the seeds' t-interval; with user variance dominant, df is near U - 1 and it is as
narrow as the users'. Its coverage is checked by simulation in tests/test_verdicts.py.

A table asks many questions (every pair x metric), so the primary p-values of one table are one family,
corrected by Holm's step-down (statsmodels' multipletests). A row's verdict is "B ahead", "A ahead" or
"not shown to differ": ahead only when its Holm-adjusted p is below 0.05. Its corrected interval is the
primary interval at Holm's level for that row, 1 - 0.05 / (m - k + 1), k its place among the family's
p-values sorted: an "ahead" row's excludes zero; one may exclude zero and still be "not shown to differ"
where Holm stopped at a smaller or equal p before it. These intervals are not simultaneous.

What the seeds and users can detect (`power`): from the estimated components, the smallest difference that
a two-sided test at Bonferroni's level 0.05 / m (the strictest level Holm applies: conservative) detects
with 80% power, (t(1 - alpha / 2, df) + t(0.8, df)) sqrt(V) (the usual t approximation of the power of a
t-test), relative to A's mean; and the fewest seeds that would detect a 5% difference with these users
(None, with the reason: the users' part alone is wider than that, so more users are needed; or more than
1,000 seeds).

    from bam_evidence import verdicts
    row = verdicts.two_way(d)                       # d (S, U): primary interval, p, components
    rows = verdicts.family(rows)                    # adds p_holm, level, corrected interval, verdict
    verdicts.power(row, m=24)                       # detectable difference, seeds for 5%
"""
import math

import numpy as np
from scipy import stats as sp

ALPHA = 0.05
POWER = 0.8
TARGET = 0.05          # the relative difference that `power` asks the seeds for: 5%
MAX_SEEDS = 1000       # beyond this, "more seeds" is no answer


# -----------------------------------------------------------------------------
# The variance components of an (S, U) table of paired differences


def mean_squares(d):
    """d (S, U) -> (m_seed, m_user, m_noise): the variance of the row means, of the column means (ddof 1) and
    the residual mean square of the two-way layout. Each None where its degrees of freedom are zero."""
    d = np.asarray(d, np.float64)
    s, u = d.shape
    rows, cols, grand = d.mean(1), d.mean(0), d.mean()                        # (S,), (U,), ()
    m_seed = float(rows.var(ddof=1)) if s > 1 else None
    m_user = float(cols.var(ddof=1)) if u > 1 else None
    resid = d - rows[:, None] - cols[None, :] + grand                        # (S, U)
    m_noise = float((resid ** 2).sum() / ((s - 1) * (u - 1))) if s > 1 and u > 1 else None
    return m_seed, m_user, m_noise


def components(d):
    """{"seed", "user", "noise"}: the ANOVA estimates of the three variances, truncated at zero."""
    s, u = np.shape(d)
    m_seed, m_user, m_noise = mean_squares(d)
    if m_noise is None:
        return None
    return dict(seed=max(0.0, m_seed - m_noise / u), user=max(0.0, m_user - m_noise / s), noise=m_noise)


def variance_and_df(comp, s, u):
    """The variance of mean(d) that the interval uses with S seeds and U users, and its degrees of freedom:
        V = m_seed / S + m_user / U,    E[m_seed] = s2_seed + s2_noise / U,   E[m_user] = s2_user + s2_noise / S
    (each mean square rebuilt from the components `comp`), with Satterthwaite's df over its two terms. V is
    Var(mean d) plus s2_noise / (S U): conservative by the noise's share, small whenever S U is large. The
    unbiased V (minus m_noise / (S U)) with the components truncated at zero was tried first and rejected: when
    the seed component truncates to zero, its df jumps from about S - 1 to U - 1 on the strength of one
    (S - 1)-df mean square, and the test rejected a true null about 20 times too often at Holm's strictest
    levels (a review's simulation: 6.4% of the tables where the seed component truncated, at 0.05 / 18)."""
    m_seed, m_user = comp["seed"] + comp["noise"] / u, comp["user"] + comp["noise"] / s
    terms = [(m_seed / s, s - 1), (m_user / u, u - 1)]                      # (coefficient * mean square, df)
    v = sum(t for t, _ in terms)
    denominator = sum(t * t / df for t, df in terms if df > 0)
    df = v * v / denominator if denominator > 0 else float("inf")
    return max(v, 0.0), max(1.0, min(df, float(s - 1 + u - 1)))


# -----------------------------------------------------------------------------
# One difference: the primary interval and the two it replaces


def two_way(d, confidence=1 - ALPHA):
    """d (S, U): B - A per seed (rows, paired by seed) and user (columns, paired by user) ->
    {diff, low, high, p, se, df, components, seeds, users}. With one seed or one user the training's (or the
    users') variance cannot be estimated: low, high and p are None, and `note` says why."""
    d = np.asarray(d, np.float64)
    s, u = d.shape
    out = dict(diff=float(d.mean()), seeds=s, users=u, low=None, high=None, p=None, se=None, df=None,
               components=None)
    if s < 2 or u < 2:
        out["note"] = ("one seed: the training's variance is unknown, so no interval covers it" if s < 2 else
                       "one user: the users' variance is unknown")
        return out
    comp = components(d)
    v, df = variance_and_df(comp, s, u)
    out.update(components=comp, se=math.sqrt(v), df=df)
    if np.ptp(d) == 0:  # every seed and user moved alike: no spread, no test (as the paired t-test); exact, since
        # a constant d leaves v at rounding noise (1e-35), which would make any constant difference "significant"
        out.update(low=out["diff"], high=out["diff"], p=1.0 if out["diff"] == 0 else None,
                   note="no spread: every seed and user moved alike")
        return out
    half = sp.t.ppf(0.5 + confidence / 2, df) * out["se"]
    out.update(low=out["diff"] - half, high=out["diff"] + half,
               p=float(2 * sp.t.sf(abs(out["diff"]) / out["se"], df)))
    return out


def interval_at(row, confidence):
    """The primary interval of `row` (two_way's) at another confidence level, e.g. a corrected one."""
    if row.get("se") is None or row["se"] == 0:
        return row.get("low"), row.get("high")
    half = sp.t.ppf(0.5 + confidence / 2, row["df"]) * row["se"]
    return row["diff"] - half, row["diff"] + half


# -----------------------------------------------------------------------------
# A family of questions: Holm's correction and the verdicts


def holm(pvalues):
    """Holm's step-down adjusted p-values (statsmodels), for a list in which None (not tested) is kept."""
    from statsmodels.stats.multitest import multipletests  # imported here: statsmodels loads pandas (1 s)
    tested = [i for i, p in enumerate(pvalues) if p is not None]
    out = [None] * len(pvalues)
    if tested:
        adjusted = multipletests([pvalues[i] for i in tested], alpha=ALPHA, method="holm")[1]
        for i, p in zip(tested, adjusted):
            out[i] = float(p)
    return out


def holm_levels(pvalues, alpha=ALPHA):
    """Each tested row's Holm level alpha / (m - k + 1), k its 1-based place among the sorted p-values."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out = [None] * len(pvalues)
    for k, (_, i) in enumerate(tested, 1):
        out[i] = alpha / (len(tested) - k + 1)
    return out


def verdict(row, a="A", b="B"):
    """"B ahead", "A ahead" or "not shown to differ", from the Holm-adjusted p of the primary test."""
    if row.get("p_holm") is None or row["p_holm"] >= ALPHA:
        return "not shown to differ"
    return f"{b} ahead" if row["diff"] > 0 else f"{a} ahead"


def family(rows, names=None):
    """rows: [two_way(...) result] of one table (every pair x metric) -> the same dicts with `family` (m, the
    number of tests), `p_holm`, `holm_level`, `corrected_low/high` and `verdict`. `names`: [(A, B)] per row,
    for the verdict's words (default "A", "B")."""
    p = [r.get("p") for r in rows]
    adjusted, levels = holm(p), holm_levels(p)
    m = sum(x is not None for x in p)
    for i, r in enumerate(rows):
        r.update(family=m, p_holm=adjusted[i], holm_level=levels[i])
        r["corrected_low"], r["corrected_high"] = interval_at(r, 1 - levels[i]) if levels[i] else (None, None)
        r["verdict"] = verdict(r, *(names[i] if names else ("A", "B")))
    return rows


# -----------------------------------------------------------------------------
# What the seeds and users can detect


def detectable(comp, s, u, m, alpha=ALPHA, power=POWER):
    """The smallest |difference| that S seeds and U users detect with `power` at Bonferroni's alpha / m
    (two-sided), under the variance components `comp`: (t(1 - a/2, df) + t(power, df)) sqrt(V)."""
    v, df = variance_and_df(comp, s, u)
    level = alpha / max(1, m)
    return (sp.t.ppf(1 - level / 2, df) + sp.t.ppf(power, df)) * math.sqrt(v)


def seeds_needed(comp, u, m, size, max_seeds=MAX_SEEDS):
    """The fewest seeds (2 or more) with which `detectable` is at most `size` with these U users, or None when
    no number up to max_seeds does it. A plain scan: `detectable` need not fall monotonically with S when U is
    small (its df drifts towards U - 1 as the users' term takes over), so a bisection could skip the answer."""
    if size <= 0 or max_seeds < 2:
        return None
    n = np.arange(2, max_seeds + 1)                                             # (K,) every seed count
    v, df = np.array([variance_and_df(comp, s, u) for s in n]).T              # (K,), (K,)
    level = ALPHA / max(1, m)
    sizes = (sp.t.ppf(1 - level / 2, df) + sp.t.ppf(POWER, df)) * np.sqrt(v)  # (K,) `detectable`, in one call
    hits = np.flatnonzero(sizes <= size)
    return int(n[hits[0]]) if len(hits) else None


def users_part(comp, u, m, alpha=ALPHA, power=POWER):
    """What the users alone leave detectable, however many seeds: (z(1 - a/2) + z(power)) sqrt(s2_user / U)."""
    level = alpha / max(1, m)
    return (sp.norm.ppf(1 - level / 2) + sp.norm.ppf(power)) * math.sqrt(comp["user"] / u)


def power(row, mean_a, m, target=TARGET):
    """{"detectable", "detectable_rel", "seeds_for_target", "seeds_why"}: what the table's seeds and users can
    detect (absolute, and relative to A's mean), the seeds that would detect a `target` (5%) relative difference
    with these users, and, when none up to MAX_SEEDS would, why: "users" (the users' part alone is wider than
    the target: more users are needed, more seeds alone cannot do it) or "seeds" (more than MAX_SEEDS)."""
    comp = row.get("components")
    if comp is None or not mean_a:
        return dict(detectable=None, detectable_rel=None, seeds_for_target=None, seeds_why="n/a")
    size = detectable(comp, row["seeds"], row["users"], m)
    need = seeds_needed(comp, row["users"], m, target * abs(mean_a))
    why = None if need else "users" if users_part(comp, row["users"], m) > target * abs(mean_a) else "seeds"
    return dict(detectable=size, detectable_rel=size / abs(mean_a), seeds_for_target=need, seeds_why=why)
