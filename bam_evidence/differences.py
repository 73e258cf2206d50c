"""
bam_evidence/differences.py: the differences B - A of a table (or of `compare` over seeds), each with the
primary interval over seeds and users, the two intervals it replaces, Holm's correction over the table's
family, a verdict and what the seeds and users can detect; and their Markdown. Torch-free.

    from bam_evidence import differences
    rows = differences.family({("ComiRec", "BaM"): (runs_a, runs_b)}, ["recall@20", "ndcg@20"])
    print(differences.markdown(rows))

runs_a, runs_b: lists of per_user.PerUser, one per seed, paired by seed (the i-th of each side is the same
seed), every one ranking the same users' same targets (checked). A row's numbers (bam_evidence.verdicts):
  diff, low, high, p        the mean of d[s, u] = b - a over seeds and users, its primary 95% interval (two-way
                            random effects, Satterthwaite's t) and p-value
  p_holm, verdict           Holm's adjusted p over the family (every pair x metric of the table), the verdict
  corrected_low/high        the primary interval at the row's Holm level
  seeds_low/high            over seeds only: the t-interval of the per-seed differences (users held fixed)
  by_users                  over users only: stats.paired on each user's mean over the seeds (the S models
                            held fixed): bootstrap interval, paired t-test, randomization test
  detectable, seeds_for_5%  the smallest difference these seeds and users detect (80% power, Bonferroni's
                            0.05 / m), relative to A's mean; the seeds that would detect 5%
"""
import numpy as np

from bam_evidence import metrics as formulas
from bam_evidence import per_user, stats, verdicts

# The differences a table reports, as (B, A): B against A, whenever both are in the table.
PAIRS = (("BaM", "ComiRec"), ("BaM", "REMI"), ("BaM+REMI", "REMI"), ("BaM-l", "ComiRec"), ("MIND+BaM", "MIND"))
# The metrics each protocol reports and tests: bam_evidence.metrics holds them (a light module: registering a
# protocol must not import scipy into every training run); the same dict, so that a registered protocol's show here.
PROTOCOL_COLUMNS = formulas.PROTOCOL_COLUMNS


def seed_user(runs_a, runs_b, metric):
    """(S, U): b - a for each seed (paired by position) and user."""
    return np.stack([b.metrics[metric] - a.metrics[metric] for a, b in zip(runs_a, runs_b)])   # (S, U)


def check(runs):
    """Every run ranks the same users' same targets the same way as the first (per_user.check_paired)."""
    for r in runs[1:]:
        per_user.check_paired(runs[0], r)


def row(runs_a, runs_b, metric, n_resamples=9999, seed=0):
    """One difference: the primary (two-way) statistics and the two secondary intervals."""
    d = seed_user(runs_a, runs_b, metric)                                     # (S, U)
    out = verdicts.two_way(d)
    mean_a = float(np.mean([a.metrics[metric].mean() for a in runs_a]))
    _, seeds_low, seeds_high = stats.t_interval(d.mean(1))
    users = stats.paired(np.mean([a.metrics[metric] for a in runs_a], 0),
                         np.mean([b.metrics[metric] for b in runs_b], 0), n_resamples, seed)
    out.update(metric=metric, mean_a=mean_a, mean_b=mean_a + out["diff"],
               rel_diff=out["diff"] / mean_a if mean_a else None,
               seeds_low=seeds_low, seeds_high=seeds_high, by_users=users)
    return out


def family(pairs, metrics, n_resamples=9999, seed=0):
    """pairs: {(A, B): (runs_a, runs_b)} -> [row], every pair x metric, corrected as one family (Holm)."""
    rows, names = [], []
    for (a, b), (runs_a, runs_b) in pairs.items():
        if len(runs_a) != len(runs_b) or not runs_a:
            raise ValueError(f"{a} and {b}: {len(runs_a)} against {len(runs_b)} seeds")
        seeds_a, seeds_b = ([getattr(r, "seed", None) for r in runs] for runs in (runs_a, runs_b))
        if seeds_a != seeds_b:  # paired by position: the i-th run of each side must be the same seed
            raise ValueError(f"{a} and {b}: seeds {seeds_a} against {seeds_b}, not paired")
        check(list(runs_a) + list(runs_b))
        for metric in metrics:
            rows.append(dict(row(runs_a, runs_b, metric, n_resamples, seed), a=a, b=b))
            names.append((a, b))
    verdicts.family(rows, names)
    for r in rows:
        r.update(verdicts.power(r, r["mean_a"], r["family"]))
    return rows


# -----------------------------------------------------------------------------
# Printing


def label(metric):
    return metric.replace("ndcg", "nDCG").replace("recall", "Recall").replace("hitrate", "HitRate")


def p_text(p, floor=None):
    """A p-value for a table: 2 significant digits; "<= floor" where a resampling test sits at its floor."""
    if p is None:
        return "n/a"
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"<= {floor:.2g}"
    return f"{p:.2g}"


def interval(low, high):
    return "n/a" if low is None else f"[{low:+.4f}, {high:+.4f}]"


def seeds_text(n, current, why=None):
    if n is None:
        return {"users": "more users", "seeds": f"> {verdicts.MAX_SEEDS:,}"}.get(why, "n/a")
    return f"{n}" if n > current else f"{n} (have {current})"


LEGEND = (
    "Each row is a difference B - A over {seeds} seeds and {users:,} test users. *Primary*: the mean "
    "difference over seeds and users and its 95% interval from the two-way random-effects model, which counts "
    "both the training's variance (another seed, another model) and the users' (another sample of users); "
    "*p*: its test. *Holm*: the p-value adjusted over this table's {m} tests (every pair x metric), and the "
    "verdict: ahead only when it is below 0.05. *Corrected*: the primary interval at the row's Holm level. "
    "The two secondary intervals leave one source out each: *seeds only* (the t-interval of the per-seed "
    "differences) holds the users fixed; *users only* (the bootstrap over users of each user's mean over the "
    "seeds, with the paired t-test and randomization test) holds the trained models fixed. *Detectable*: the "
    "smallest difference these seeds and users detect with 80% power at 0.05 / {m}, as a share of A's mean; "
    "*seeds for 5%*: the seeds that would detect a 5% difference with these users (\"more users\": the users' part "
    "alone is wider than 5%, so no number of seeds would). docs/statistics.md has the formulas.")


def markdown(rows, n_resamples=9999):
    """The rows as a Markdown table with its legend."""
    if not rows:
        return ""
    first = rows[0]
    lines = [LEGEND.format(seeds=first["seeds"], users=first["users"], m=first["family"]), "",
             "| B - A | metric | difference | primary 95% interval | p | p (Holm) | verdict | corrected interval "
             "| seeds only | users only | p (users, t) | p (users, rand.) | detectable | seeds for 5% |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        u = r["by_users"]
        rel = f" ({r['rel_diff']:+.1%})" if r["rel_diff"] is not None else ""
        detect = "n/a" if r["detectable_rel"] is None else f"{r['detectable_rel']:.1%}"
        lines.append(
            f"| {r['b']} - {r['a']} | {label(r['metric'])} | {r['diff']:+.4f}{rel} | {interval(r['low'], r['high'])} "
            f"| {p_text(r['p'])} | {p_text(r['p_holm'])} | {r['verdict']} | "
            f"{interval(r['corrected_low'], r['corrected_high'])} | {interval(r['seeds_low'], r['seeds_high'])} | "
            f"{interval(u.get('ci_low'), u.get('ci_high'))} | {p_text(u.get('p_ttest'))} | "
            f"{p_text(u.get('p_randomization'), u.get('p_randomization_floor'))} | {detect} | "
            f"{seeds_text(r['seeds_for_target'], r['seeds'], r['seeds_why'])} |")
    return "\n".join(lines) + "\n"
