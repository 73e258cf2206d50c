"""
bam_evidence/metrics.py: each user's metrics from the ranks of its targets, written once and numpy only.
ComiRec's protocol (bam_protocols/comirec_split.py) computes them as it evaluates; per_user.load computes them again
from the ranks a per-user file holds, and refuses a file whose stored metrics are not its ranks'. With one
target per user they are bam_minimal.metrics_from_ranks' Recall@N and nDCG@N (tests/test_protocols.py).

    from bam_evidence import metrics
    metrics.user_metrics(ranks, counts, targets)                  # {name: (U,)}: recall, ndcg, hitrate @10, 20, 50
    metrics.published(("comirec-paper",), ranks, counts, targets) # {"ndcg@N (comirec-paper)": (U,)}
    metrics.remi_ndcg(tops, counts, targets, 50)                  # (U,) REMI's, from each user's top-50 list
    metrics.recompute(["recall@20", "ndcg@50 (comirec-paper)"], ranks, counts, targets)

The correct metrics (rank r is 0-based; each distinct target item counts once):
  Recall@N = hits / targets;  HitRate@N = 1 if any hit;
  NDCG@N   = sum over the hits of 1 / log2(r + 2), over IDCG = sum_{i < min(N, targets)} 1 / log2(i + 2).

The published NDCGs. Each is computed on request only, beside the correct one and under its own label, for
comparison with the tables that used it. Each was read in the code named below, and is written here anew (that
code is under a research-only licence). All three divide by an IDCG summed over the number of HITS, not over
min(N, targets), and give 0 to a user without a hit (so one hit out of three targets can score a perfect 1.0):

  ndcg@N (comirec-paper)   THUDM/ComiRec, src/train.py, evaluate_full, at commit 6eca936 (the original code,
      behind the tables of ComiRec's KDD '20 paper). The loop runs over the user's targets `iid_list` in TIME
      order, repeats included. Target number j (0-based) that is in the set of the top-N ids adds 1 / log2(j + 2)
      and counts as one hit. The discount is the target's position in time, never its rank.
  ndcg@N (comirec-master)  the same function after commit a3489df (ComiRec issue #6, Dec. 2020: "pushed to the
      dev branch"). The loop runs over the merged top-N list `item_cor_list`, best first (the interests' lists
      merged by score, repeats and item 0 dropped). An item at position r that is one of the targets (a set, so
      each distinct item once) adds 1 / log2(r + 2) and counts as one hit. Position r is bam's rank r.
  ndcg@N (remi)            Tokkiu/REMI, src/evalution.py, evaluate (as ShiningCosmos/pytorch_ComiRec's
      evalution.py): the top-N ids, merged over the interests by score with item 0 skipped, are added best first
      to a Python `set`, and the loop runs over `enumerate` of that set. An item at position j of the SET's
      iteration order that is one of the targets adds 1 / log2(j + 2) and counts as one hit (distinct items).
      CPython orders a set of ints by hash slot (the id, modulo the table size) and by the order of insertion
      when slots collide, which is neither rank nor time; remi_ndcg builds a real set, in the same order, to get
      the same order (numpy ints hash as Python ints do, so REMI's set of numpy ids iterates alike). It needs
      each user's top-N list, not just the ranks: `cli.py evaluate --ndcg-as remi` only.

Branches. The index of public code we searched keeps two versions of ComiRec's src/train.py, 6eca936 and a3489df,
without branch names. ComiRec's README (commit 65cc26b) and its issues #6 (2020) and #21 (2021) say the original
code is the time-order loop and that the fix (a3489df) went to the `dev` branch. A review of ComiRec's repository today
reports that its `master` branch runs a3489df's loop and that a `paper` branch keeps the original, which its README
names for reproducing the paper; we could not see that README. Hence the labels: `comirec-paper` is 6eca936's
formula, `comirec-master` is a3489df's. bam before these labels wrote `ndcg@N (comirec)`, which is 6eca936's
formula: current_name reads it as `ndcg@N (comirec-paper)`.

Lists and ties. ComiRec and REMI take the top N from faiss (ties in faiss's order); bam ranks by its own rule (a
higher score, then a lower id). Item ids are bam's: REMI's set order is reproduced for REMI's ids when the data
file numbers the items as REMI's preprocessing did.
"""
import re

import numpy as np

# The metrics each protocol reports and tests: leave-one-out's are the BaM paper's Table 2; ComiRec's protocol's
# are the ComiRec and REMI papers' (N = 20, 50). The published NDCG variants are shown, never tested.
# bam_protocols.register adds a new protocol's (bam_evidence.differences and bam_tune read them here).
PROTOCOL_COLUMNS = dict(loo=("ndcg@10", "ndcg@20", "recall@10", "recall@20"),
                        comirec=("recall@20", "recall@50", "ndcg@20", "ndcg@50", "hitrate@20", "hitrate@50"))

KS = (10, 20, 50)
VARIANTS = ("comirec-paper", "comirec-master", "remi")    # the published NDCGs, in the order they are listed
FROM_RANKS = VARIANTS[:2]                                 # the ones the ranks give; REMI's needs the top-N lists
ALIASES = dict(comirec=FROM_RANKS)                        # `--ndcg-as comirec`: both of ComiRec's
LEGACY = dict(comirec="comirec-paper")                    # bam's label before there were three: 6eca936's formula
NAME = re.compile(r"(recall|hitrate|ndcg)@([1-9][0-9]{0,6})(?: \(([a-z-]+)\))?")

# -----------------------------------------------------------------------------
# From the ranks: the correct metrics and ComiRec's two published NDCGs


def user_metrics(ranks, counts, targets, ks=KS, published=False):
    """{name: (U,) float64}: each user's metrics from the 0-based ranks of its targets (ranks, targets (T,),
    one user after another in time order; counts (U,)). Each distinct item counts once:
      Recall@N  = hits / targets;  HitRate@N = 1 if any hit;
      NDCG@N    = sum over hits of 1 / log2(rank + 2), over IDCG = sum_{i < min(N, targets)} 1 / log2(i + 2).
    With one target per user they are bam_minimal.metrics_from_ranks' Recall@N and nDCG@N (tested).
    `published` adds ComiRec's two published NDCGs (bam_evidence/metrics.py says where each is from). Both
    divide by the IDCG of their number of hits, not of min(N, targets); a user without a hit scores 0:
      `ndcg@N (comirec-paper)`  each target in TIME order, repeats included, that is in the top N adds
                                1 / log2(j + 2), j its position among the user's targets, not its rank;
      `ndcg@N (comirec-master)` each distinct target item in the top N adds 1 / log2(rank + 2)."""
    ranks, counts, targets = (np.asarray(a, np.int64) for a in (ranks, counts, targets))
    user = np.repeat(np.arange(len(counts)), counts)                          # (T,) each target's user
    first = np.zeros(len(targets), bool)                                      # (T,) an item's first time
    first[np.unique(np.stack([user, targets], 1), axis=0, return_index=True)[1] if len(targets) else []] = True
    distinct = np.bincount(user, first, len(counts))                          # (U,)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(int(counts.max(initial=1))) + 2))])
    gain = 1.0 / np.log2(ranks + 2.0)                                         # (T,)
    position = np.arange(len(targets)) - np.repeat(np.cumsum(counts) - counts, counts)  # (T,) in time order
    out = {}
    for n in ks:
        hit = ranks < n                                                       # (T,)
        hits = np.bincount(user, hit & first, len(counts))                    # (U,) distinct items hit
        dcg = np.bincount(user, np.where(hit & first, gain, 0.0), len(counts))  # (U,)
        out[f"recall@{n}"] = hits / distinct
        out[f"ndcg@{n}"] = dcg / ideal[np.minimum(n, distinct).astype(np.int64)]
        out[f"hitrate@{n}"] = (hits > 0).astype(np.float64)
        if published:  # ideal[0] is 0: a user without a hit is set to 0, never divided by it
            found = np.bincount(user, hit, len(counts)).astype(np.int64)     # (U,) repeats included
            in_time = np.bincount(user, np.where(hit, 1.0 / np.log2(position + 2.0), 0.0), len(counts))  # (U,)
            out[f"ndcg@{n} (comirec-paper)"] = np.where(found > 0, in_time / np.maximum(ideal[found], 1e-300), 0.0)
            out[f"ndcg@{n} (comirec-master)"] = np.where(
                hits > 0, dcg / np.maximum(ideal[hits.astype(np.int64)], 1e-300), 0.0)
    return out

# -----------------------------------------------------------------------------
# From the top-N lists: REMI's published NDCG


def remi_ndcg(tops, counts, targets, n):
    """(U,) REMI's published NDCG@n (bam_evidence/metrics.py): each user's top-n ids, `tops` (U, >= n) best first,
    go one by one into a Python set (item 0, padding, skipped as REMI skips it); an item at position j of the
    set's iteration order that is one of the user's targets (T,) adds 1 / log2(j + 2); IDCG over those hits."""
    tops, targets = np.asarray(tops, np.int64), np.asarray(targets, np.int64)
    if tops.ndim != 2 or tops.shape[0] != len(counts) or tops.shape[1] < n:
        raise ValueError(f"REMI's NDCG@{n} needs each user's top-{n} list, got lists of shape {tops.shape}")
    ends = np.cumsum(np.asarray(counts, np.int64))                            # (U,)
    out = np.zeros(len(ends))                                                 # (U,)
    for u, (listed, end) in enumerate(zip(tops[:, :n].tolist(), ends.tolist())):
        shown = set()
        for item in listed:  # best first: the order of insertion decides where colliding ids sit
            if item != 0:
                shown.add(item)
        wanted = set(targets[end - int(counts[u]):end].tolist())              # distinct target items
        hit = [j for j, item in enumerate(shown) if item in wanted]           # positions in the set's order
        if hit:
            out[u] = sum(1.0 / np.log2(j + 2.0) for j in hit) / sum(1.0 / np.log2(i + 2.0) for i in range(len(hit)))
    return out


def published(variants, ranks, counts, targets, tops=None, ks=KS):
    """{`ndcg@N (variant)`: (U,)} for each variant of `variants` (VARIANTS' names) and each N of ks, variant by
    variant. ComiRec's come from the ranks; REMI's needs `tops` (U, >= max(ks)), each user's list, best first."""
    out = {}
    if set(variants) & set(FROM_RANKS):
        got = user_metrics(ranks, counts, targets, ks, published=True)
        out.update({f"ndcg@{n} ({v})": got[f"ndcg@{n} ({v})"] for v in FROM_RANKS if v in variants for n in ks})
    if "remi" in variants:
        out.update({f"ndcg@{n} (remi)": remi_ndcg(tops, counts, targets, n) for n in ks})
    return out

# -----------------------------------------------------------------------------
# Names: what `--ndcg-as` accepts, and which stored metric the ranks give again


def variants(values):
    """`--ndcg-as` values, each a variant, an alias (`comirec`: both of ComiRec's) or a comma list of them ->
    the variants named, in VARIANTS' order; ValueError naming the first unknown one."""
    named = [v.strip() for value in values for v in str(value).split(",") if v.strip()]
    unknown = [v for v in named if v not in VARIANTS and v not in ALIASES]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a published NDCG (choose from {', '.join(VARIANTS + tuple(ALIASES))})")
    chosen = {c for v in named for c in ALIASES.get(v, (v,))}
    return tuple(v for v in VARIANTS if v in chosen)


def current_name(name):
    """A metric's name today: `ndcg@N (comirec)`, in the files and metrics.json of bam before the three labels,
    is ComiRec's original formula and reads as `ndcg@N (comirec-paper)`; any other name is itself."""
    m = NAME.fullmatch(name)
    return f"ndcg@{m[2]} ({LEGACY[m[3]]})" if m and m[1] == "ndcg" and m[3] in LEGACY else name


def recompute(names, ranks, counts, targets):
    """{name: (U,)}: each named metric (e.g. `recall@20`, `hitrate@50`, `ndcg@20 (comirec-paper)`, or the old
    `ndcg@20 (comirec)`) computed from the ranks. ValueError for the first name that the ranks do not give: a
    name of no metric, or REMI's NDCG (it needs the top-N lists)."""
    ks, with_published = set(), False
    for name in names:
        m = NAME.fullmatch(name)
        variant = m and m[3] and LEGACY.get(m[3], m[3])
        if not m or (m[3] and (m[1] != "ndcg" or variant not in VARIANTS)):
            raise ValueError(f"`{ascii(name)[1:-1]}` is not a metric of ranks")
        if variant == "remi":
            raise ValueError(f"`{name}` (REMI's NDCG) needs each user's top-N list, which the file does not hold")
        ks.add(int(m[2]))
        with_published |= bool(variant)
    got = user_metrics(ranks, counts, targets, sorted(ks), with_published)
    return {name: got[current_name(name)] for name in names}
