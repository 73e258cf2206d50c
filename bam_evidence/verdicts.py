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
and the interval is mean(d) +- t(df) sqrt(V), V the variance above, df by Satterthwaite's rule over the
mean squares V is made of (V is a linear combination of m_seed, m_user, m_noise whichever components are
truncated). With 5 seeds and training variance dominant, df is near 4 and the interval is as wide as the
seeds' t-interval; with user variance dominant, df is near U - 1 and it is as narrow as the users'. Its
coverage is checked by simulation in tests/test_verdicts.py.

A table asks many questions (every pair x metric), so the primary p-values of one table are one family,
corrected by Holm's step-down (statsmodels' multipletests). A row's verdict is "B ahead", "A ahead" or
"not shown to differ": ahead only when its Holm-adjusted p is below 0.05. Its corrected interval is the
primary interval at Holm's level for that row, 1 - 0.05 / (m - k + 1), k its place among the family's
p-values sorted; an adjusted p below 0.05 is the same as that interval excluding zero, unless Holm
stopped at a smaller p before it (then "not shown to differ" and the interval may just exclude zero).

What the seeds and users can detect (`power`): from the estimated components, the smallest difference that
a two-sided test at Bonferroni's level 0.05 / m (the strictest level Holm applies: conservative) detects
with 80% power, (t(1 - alpha / 2, df) + t(0.8, df)) sqrt(V) (the usual t approximation of the power of a
t-test), relative to A's mean; and the fewest seeds that would detect a 5% difference with these users
(None: not with any number of seeds, the users' part alone is too wide; more users are needed).

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


def variance_and_df(comp, s, u, df_seed=None, df_user=None):
    """Var(mean d) with S seeds and U users for the components `comp`, and its Satterthwaite degrees of
    freedom. V is written over the expected mean squares, each with its own df:
      both components kept:  V = m_seed / S + m_user / U - m_noise / (S U)
      seed truncated:        V = m_user / U                  user truncated: V = m_seed / S
      both truncated:        V = m_noise / (S U)
    (substitute the truncated estimates into s2_seed / S + s2_user / U + s2_noise / (S U) to see each)."""
    df_seed, df_user, df_noise = df_seed or s - 1, df_user or u - 1, (s - 1) * (u - 1)
    m_seed, m_user, m_noise = comp["seed"] + comp["noise"] / u, comp["user"] + comp["noise"] / s, comp["noise"]
    terms = []                                                                # (coefficient * mean square, df)
    if comp["seed"] > 0:
        terms.append((m_seed / s, df_seed))
    if comp["user"] > 0:
        terms.append((m_user / u, df_user))
    if comp["seed"] > 0 and comp["user"] > 0:
        terms.append((-m_noise / (s * u), df_noise))
    elif comp["seed"] == 0 and comp["user"] == 0:
        terms.append((m_noise / (s * u), df_noise))
    v = sum(t for t, _ in terms)
    denominator = sum(t * t / df for t, df in terms if df > 0)
    df = v * v / denominator if denominator > 0 else float("inf")
    return max(v, 0.0), max(1.0, min(df, float(df_noise + df_seed + df_user)))


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
    if v == 0:  # every seed and user moved alike: no spread, no test (as the paired t-test)
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
    no number of seeds up to max_seeds does it (the users' part alone is too wide: more users are needed)."""
    if size <= 0:
        return None
    if detectable(comp, max_seeds, u, m) > size:
        return None
    low, high = 2, max_seeds                                                   # detectable falls as S grows
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if detectable(comp, mid, u, m) <= size else (mid + 1, high)
    return low


def power(row, mean_a, m, target=TARGET):
    """{"detectable", "detectable_rel", "seeds_for_target"}: what the table's seeds and users can detect
    (absolute, and relative to A's mean), and the seeds that would detect a `target` (5%) relative difference."""
    comp = row.get("components")
    if comp is None or not mean_a:
        return dict(detectable=None, detectable_rel=None, seeds_for_target=None)
    size = detectable(comp, row["seeds"], row["users"], m)
    return dict(detectable=size, detectable_rel=size / abs(mean_a),
                seeds_for_target=seeds_needed(comp, row["users"], m, target * abs(mean_a)))
