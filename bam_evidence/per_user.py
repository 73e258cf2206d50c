"""
bam_evidence/per_user.py: the per-user results file of one evaluation. Each user's target, its rank and
the metrics it earns, with what identifies the evaluation, so that two evaluations can be compared user
by user: every run ranks the same users' same targets, so the comparison is paired.

    from bam_evidence import per_user
    per_user.save(path, users=..., targets=..., ranks=..., metrics=..., protocol="loo", split="test", ...)
    results = per_user.load(path)            # np.load(allow_pickle=False): opening it never runs code
    results = per_user.load_run("runs/x")    # a run folder's, checked to be the run's own
    per_user.check_paired(a, b)              # refuses two evaluations of different users, targets, ...

The file (.npz, format "bam-per-user-2"):
  users, counts           (U,) int64: the users, and how many targets each has (1 under leave-one-out)
  targets, ranks          (T,) int64, T = counts.sum(): each user's targets one user after another, in time
                          order; ranks are 0-based, a target whose own score is not finite ranks I + 1
  one (U,) float64 array per metric, named as in metrics.json: "recall@20", "ndcg@20", ...
A file of format "bam-per-user-1" (one target per user, no `counts`) is read as counts of 1.
  protocol, split, history_mask, fingerprint, source, format: strings; n_items: an integer
Written by `cli.py train` (per_user_test.npz in the run folder), `table` (in each run's folder) and
`evaluate --per-user`.

The ranks are the evidence; the metric arrays are what they give. `load` computes every stored metric again
from users, counts, targets and ranks (bam_evidence.metrics) and refuses a file where one differs by more than
TOLERANCE, or where one is no metric of ranks (REMI's NDCG needs the top-N lists: never stored). So a file whose
ranks were changed without its metrics, or the reverse, stops there, and every comparison uses the recomputed
metrics. `ndcg@N (comirec)` of files written before ComiRec's two published NDCGs had their own labels reads as
`ndcg@N (comirec-paper)`, the formula it was (bam_evidence/metrics.py).
"""
import io
import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from bam_data.files import atomic_write
from bam_data.formats import InputError
from bam_evidence import metrics as formulas

FORMAT = "bam-per-user-2"
FORMATS = ("bam-per-user-1", FORMAT)   # what `load` reads
FILE = "per_user_test.npz"   # its name in a run folder
IDENTITY = ("protocol", "split", "history_mask", "fingerprint", "n_items")  # what must match for a paired comparison
STRINGS = ("format", "protocol", "split", "history_mask", "fingerprint", "source")
TOLERANCE = 1e-9   # a stored metric may differ this much from its ranks' (float noise); more is another number


class Metrics(dict):
    """{name: (U,) float64}: a file's metrics, each computed from its ranks. A metric that the file does not store
    but its ranks give (ComiRec's published NDCG of a run made without --ndcg-as) is computed when asked for:
    m[name] gives it, while `in`, len and iteration count the stored ones only."""

    def __init__(self, stored, ranks, counts, targets):
        super().__init__(stored)
        self.inputs = (ranks, counts, targets)

    def __missing__(self, name):
        try:
            return formulas.recompute([name], *self.inputs)[name]
        except ValueError:
            raise KeyError(name) from None


@dataclass
class PerUser:
    path: str
    users: np.ndarray       # (U,) int64
    targets: np.ndarray     # (T,) int64, user by user
    ranks: np.ndarray       # (T,) int64
    metrics: dict           # {name: (U,) float64}, computed from the ranks (Metrics)
    protocol: str
    split: str
    history_mask: str
    fingerprint: str
    n_items: int
    source: str
    counts: np.ndarray = None   # (U,) int64, targets per user

    def means(self):
        return {k: float(v.mean()) for k, v in self.metrics.items()}


def user_metrics(ranks, metrics_from_ranks, ks=(10, 20)):
    """{name: (U,) float64}: each user's metrics, from the same `metrics_from_ranks` that gives the means
    (bam_minimal's or the twin's), applied to each distinct rank: the formula is written once, and the
    mean over users equals metrics_from_ranks(ranks)."""
    ranks = np.asarray(ranks, np.int64)
    distinct, index = np.unique(ranks, return_inverse=True)                   # (D,), (U,)
    values = [metrics_from_ranks(np.array([r]), ks) for r in distinct]
    return {name: np.array([v[name] for v in values], np.float64)[index] for name in values[0]} if len(ranks) else {}


def save(path, *, users, targets, ranks, metrics, protocol, split, history_mask, fingerprint, n_items, source="",
         counts=None):
    """Write the file whole or not at all. `counts` (U,): targets per user; None: one each."""
    users, targets, ranks = (np.asarray(a, np.int64) for a in (users, targets, ranks))
    counts = np.ones(len(users), np.int64) if counts is None else np.asarray(counts, np.int64)
    if not (len(users) == len(counts) and len(targets) == len(ranks) == counts.sum() and (counts >= 1).all()) \
            or any(len(v) != len(users) for v in metrics.values()):
        raise ValueError("per-user arrays of different lengths")
    arrays = dict(users=users, counts=counts, targets=targets, ranks=ranks, format=np.str_(FORMAT),
                  protocol=np.str_(protocol),
                  split=np.str_(split), history_mask=np.str_(history_mask), fingerprint=np.str_(fingerprint or ""),
                  source=np.str_(source), n_items=np.int64(n_items),
                  **{k: np.asarray(v, np.float64) for k, v in metrics.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path


def load(path):
    """-> PerUser, or InputError: one line that names the file and the fix."""
    fix = "(fix: rerun `cli.py evaluate --checkpoint ... --per-user FILE` to write it again)"
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise InputError(f"{path}: not a per-user results file ({type(e).__name__}) {fix}") from None
    if str(arrays.get("format", "")) not in FORMATS:
        raise InputError(f"{path}: not a per-user results file of format {FORMAT} {fix}")
    if str(arrays["format"]) == FORMATS[0]:  # one target per user
        arrays.setdefault("counts", np.ones(np.shape(arrays.get("users", ())), np.int64))
    missing = [k for k in ("users", "counts", "targets", "ranks", "n_items") + STRINGS if k not in arrays]
    if missing:
        raise InputError(f"{path}: per-user file without `{missing[0]}` {fix}")
    if any(arrays[k].shape != () or arrays[k].dtype.kind != "U" for k in STRINGS) or arrays["n_items"].shape != () \
            or arrays["n_items"].dtype.kind not in "iu":
        raise InputError(f"{path}: per-user file with a malformed identity field {fix}")
    columns = {k: v for k, v in arrays.items() if k not in STRINGS + ("n_items",)}
    n = len(arrays["users"]) if arrays["users"].ndim == 1 else -1
    counts = arrays["counts"]
    total = int(counts.sum()) if counts.shape == (n,) and counts.dtype.kind in "iu" and (counts >= 1).all() else -1
    for k, v in columns.items():
        size = total if k in ("targets", "ranks") else n
        if v.shape != (size,) or v.dtype.kind not in ("f" if "@" in k else "iu"):
            raise InputError(f"{path}: per-user column `{k}` is {v.dtype} {v.shape}, expected ({size},) "
                             f"{'float' if '@' in k else 'int'} {fix}")
    stored = {k: v.astype(np.float64) for k, v in columns.items() if "@" in k}
    unknown = [k for k in columns if "@" not in k and k not in ("users", "counts", "targets", "ranks")]
    if unknown:
        raise InputError(f"{path}: per-user file with an unknown column `{unknown[0]}` {fix}")
    n_items = int(arrays["n_items"])
    if (arrays["ranks"] < 0).any() or (arrays["ranks"] > n_items + 1).any() \
            or any(((v < 0) | (v > 1) | ~np.isfinite(v)).any() for v in stored.values()):
        raise InputError(f"{path}: per-user ranks or metrics out of range {fix}")
    users, targets, ranks = (columns[k].astype(np.int64) for k in ("users", "targets", "ranks"))
    counts = counts.astype(np.int64)
    metrics = Metrics(recomputed(path, stored, users, counts, targets, ranks, fix), ranks, counts, targets)
    return PerUser(path, users, targets, ranks, metrics,
                   *(str(arrays[k]) for k in ("protocol", "split", "history_mask", "fingerprint")), n_items,
                   str(arrays["source"]), counts)


def recomputed(path, stored, users, counts, targets, ranks, fix):
    """{name: (U,)}: every stored metric computed again from the ranks, under its current name; InputError when
    the ranks do not give one, or give another number for one: the file was changed, or written wrong."""
    try:
        again = formulas.recompute(list(stored), ranks, counts, targets)
    except ValueError as e:
        raise InputError(f"{path}: per-user metric {e} {fix}") from None
    for name, values in stored.items():
        off = np.abs(values - again[name]) > TOLERANCE                        # (U,)
        if off.any():
            u = int(np.argmax(off))
            raise InputError(f"{path}: per-user `{name}` of user {users[u]} is {values[u]:.6g}, but its ranks give "
                             f"{again[name][u]:.6g} (and so for {int(off.sum())} user(s)): the metrics are not the "
                             f"ranks' {fix}")
    return {formulas.current_name(k): v for k, v in again.items()}


def load_run(path):
    """A per-user file, or a run folder's. A folder's must be the finished run's own: its means are the test
    metrics of the folder's metrics.json, so that a file left by an earlier run is never compared."""
    if not os.path.isdir(path):
        return load(path)
    found, metrics = os.path.join(path, FILE), os.path.join(path, "metrics.json")
    fix = f"(fix: cli.py evaluate --checkpoint {os.path.join(path, 'checkpoint.pt')} --per-user FILE, then use FILE)"
    if not (os.path.exists(found) and os.path.exists(metrics)):
        raise InputError(f"{path}: no {FILE} beside a finished metrics.json (a run of an older bam, or not "
                         f"finished) {fix}")
    results = load(found)
    try:
        with open(metrics, encoding="utf-8") as f:
            test = {formulas.current_name(k): v for k, v in json.load(f)["test"].items()}
        ours = all(abs(test[k] - v) <= 1e-12 for k, v in results.means().items())
    except (ValueError, KeyError, TypeError, AttributeError):
        ours = False
    if not ours:
        raise InputError(f"{found}: not the run's own (its means differ from metrics.json's test metrics) {fix}")
    return results


def check_paired(a, b):
    """Refuse two evaluations that do not rank the same users' same targets the same way: a paired
    comparison of them would compare different things."""
    for k in IDENTITY:
        if getattr(a, k) != getattr(b, k):
            raise InputError(f"{a.path} and {b.path}: different {k.replace('_', ' ')} ({getattr(a, k)} against "
                             f"{getattr(b, k)}): not the same evaluation (fix: evaluate both the same way)")
    for k in ("users", "counts", "targets"):
        x, y = getattr(a, k), getattr(b, k)
        if len(x) != len(y) or not np.array_equal(x, y):
            first = int(np.argmax(x != y)) if len(x) == len(y) else -1          # the first difference
            user = first if k != "targets" else int(np.searchsorted(np.cumsum(a.counts), first, side="right"))
            raise InputError(f"{a.path} and {b.path}: different {k} ({len(x)} against {len(y)}"
                             + ("" if first < 0 else f", first at user {a.users[user]}")
                             + ") (fix: evaluate both on the same data and split)")
    shared = [k for k in a.metrics if k in b.metrics]
    if not shared:
        raise InputError(f"{a.path} and {b.path}: no metric in common (fix: evaluate both the same way)")
    return shared
