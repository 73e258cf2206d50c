"""
bam_bench/scale.py: how time and peak memory grow with the data: `python bench.py --scale`.

Three stages, measured on synthetic data of growing size (users x items), each (stage, size) in a
fresh process, so that one stage's memory never shows up in another's:
  read   a synthetic file in the official format (written beforehand, vectorised), then
         bam_data.formats.read and bam_minimal.Dataset
  train  `steps` calls of bam_minimal.train_step (ComiRec-SA, the default Config sizes)
  eval   bam_minimal.evaluate with model_scorer: every user, or a random sample of users where
         users x items passes `eval_budget` (the JSON says which: eval_users)
Peak memory is the measuring process's high-water mark (VmHWM; ru_maxrss would include the parent's
RSS at the fork, see bam_bench.measure.peak_mb), reset after the stage's setup by writing 5 to
/proc/self/clear_refs, so that the train and eval figures leave out how their data was built.
Then the fits (evaluation seconds = c * users * N * (I + 1) * d, one constant by least squares; the
train and eval peak memory = a + b * items + c * interactions, by least squares, which the default grid's
two sweeps separate; reading's memory a + c * interactions) and projections to real datasets, a JSON and a
PNG. A term that the sizes do not determine (one item count, one interaction count, or the two growing
together) is left out with a one-line warning, and so are the projections that need it.

    python bench.py --scale                                   # the full grid: scale.json, scaling.png
    python bench.py --scale --sizes 2000x1000,4000x1000,2000x2000 --steps 5 --json s.json --plot s.png
    python -m bam_bench.scale table scale.json                # its tables in Markdown (docs/performance.md)
    python -m bam_bench.scale measure '{"stage": "eval", "users": 1000, "items": 5000, ...}'   # one child
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bam_bench.measure import peak_mb, reset_peak, rss_mb
from bam_data.files import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("read", "train", "eval")
# Two sweeps that share (10k, 10k): users at 10k items, items at 10k users, and the largest corner.
DEFAULT_SIZES = ([(u, 10_000) for u in (10_000, 30_000, 100_000, 300_000, 1_000_000)]
                 + [(10_000, i) for i in (30_000, 100_000, 300_000, 1_000_000)] + [(1_000_000, 1_000_000)])
# Datasets to project to: (users, items, interactions). ComiRec's (Cen et al., KDD '20, Table 2), the
# BaM paper's (Amazon Reviews 2023) and ../shared/data's (its README).
DATASETS = {
    "Amazon Books (ComiRec)": (459_133, 313_966, 8_898_041),
    "Taobao (ComiRec)": (976_779, 1_708_530, 85_384_110),
    "Movies & TV 2023 (BaM)": (22_747, 17_848, 841_607),
    "Books 2023 (BaM)": (14_905, 13_642, 626_702),
    "Beauty 2014": (22_363, 12_101, 198_502),
    "Office Products 2014": (4_905, 2_420, 53_258),
    "LastFM": (1_090, 3_646, 52_551),
    "ml-100k": (943, 1_682, 100_000),
    "All_Beauty 2023": (253, 356, 2_535),
}

# -----------------------------------------------------------------------------
# Synthetic data, vectorised: a million users in seconds


def synthetic(users, items, mean_len=10, seed=0):
    """Sequence lengths 3 + Poisson(mean_len - 3) (every user is kept: 3 or more items), item ids
    uniform in 1..items; the last interaction is item `items`, so that the largest id is `items`.
    -> lengths (U,), items (T,). No planted structure: costs do not depend on it."""
    rng = np.random.default_rng(seed)
    lengths = 3 + rng.poisson(max(mean_len - 3, 0), users)                    # (U,)
    flat = rng.integers(1, items + 1, int(lengths.sum()))                     # (T,)
    flat[-1] = items
    return lengths, flat


def write_official(path, lengths, items, chunk=1 << 20):
    """One `user item` line per interaction, users 1..U, atomically; chunked, so that the text of a
    10M-line file never sits in memory at once."""
    users = np.repeat(np.arange(1, len(lengths) + 1), lengths)               # (T,)

    def write(f):
        for lo in range(0, len(items), chunk):
            pairs = zip(users[lo:lo + chunk].tolist(), items[lo:lo + chunk].tolist())
            f.write("".join(f"{u} {i}\n" for u, i in pairs).encode())
    atomic_write(path, write)


def array_dataset(lengths, items, n_items):
    """A bam_minimal.Dataset straight from the arrays (no file, no lists): the setup of the train and
    eval stages. Through the public constructor, with numpy views as the sequences."""
    import bam_minimal as bm
    start = np.concatenate([[0], np.cumsum(lengths)])                       # (U + 1,)
    seqs = dict(zip(range(1, len(lengths) + 1), np.split(items, start[1:-1])))
    return bm.Dataset(seqs, n_items=n_items, name="synthetic")

# -----------------------------------------------------------------------------
# One measurement, in a fresh process


def measure_read(spec):
    import bam_minimal as bm
    from bam_data import formats
    reset_peak()
    before = rss_mb()
    t = time.perf_counter()
    seqs, _ = formats.read(spec["path"])
    read_s, read_peak, seqs_mb = time.perf_counter() - t, peak_mb(), rss_mb() - before
    t = time.perf_counter()
    data = bm.Dataset(seqs, name=spec["path"])
    return dict(seconds=read_s + (time.perf_counter() - t), read_seconds=read_s,
                dataset_seconds=time.perf_counter() - t, before_mb=before, read_peak_mb=read_peak,
                seqs_mb=seqs_mb, peak_mb=peak_mb(), interactions=data.n_interactions,
                file_mb=os.path.getsize(spec["path"]) / 2 ** 20)


def measure_train(spec):
    import torch
    import bam_minimal as bm
    data = array_dataset(*synthetic(spec["users"], spec["items"], spec["mean_len"], spec["seed"]), spec["items"])
    cfg = bm.Config(device="cpu")
    reset_peak()
    before = rss_mb()
    torch.manual_seed(cfg.seed)
    model = bm.build_model(cfg, data.n_items)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # as bam_minimal.train
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    step = lambda: bm.train_step(model, opt, cfg, data, rng, gen, bm.tau_at(cfg, 0), "cpu")  # noqa: E731
    for _ in range(2):  # warm-up: Adam's state is allocated on the first step
        step()
    t = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    seconds = time.perf_counter() - t
    return dict(seconds=seconds, step_ms=1e3 * seconds / spec["steps"], steps=spec["steps"], before_mb=before,
                peak_mb=peak_mb(), interactions=data.n_interactions)


def eval_rows(users, items, budget, seed=0):
    """Every user when users * items is within `budget`, else a sorted random sample of budget // items."""
    if users * items <= budget:
        return None
    n = max(1, budget // items)
    return np.sort(np.random.default_rng(seed).choice(users, n, replace=False))


def measure_eval(spec):
    import torch
    import bam_minimal as bm
    data = array_dataset(*synthetic(spec["users"], spec["items"], spec["mean_len"], spec["seed"]), spec["items"])
    cfg = bm.Config(device="cpu")
    torch.manual_seed(cfg.seed)
    model = bm.build_model(cfg, data.n_items).eval()
    rows = eval_rows(len(data.users), data.n_items, spec["eval_budget"])
    reset_peak()
    before = rss_mb()
    t = time.perf_counter()
    bm.evaluate(bm.model_scorer(model), data, "test", cfg, rows=rows)
    seconds = time.perf_counter() - t
    n = len(data.users) if rows is None else len(rows)
    return dict(seconds=seconds, eval_users=n, sampled=rows is not None, seconds_per_user=seconds / n,
                full_seconds=seconds / n * len(data.users), before_mb=before, peak_mb=peak_mb(),
                block_scores_mb=block_scores_mb(cfg, data.n_items), interactions=data.n_interactions)


def block_scores_mb(cfg, n_items):
    """The MB (2^20 bytes) of one block's (b, N, I + 1) float32 scores, by bam_minimal.evaluate's rule on
    the CPU: b = max(16, min(8192, 2^24 // (N (I + 1)))). At most 64 MB up to 262,143 items (N = 4), then
    16 users' worth: 256 bytes per item."""
    b = max(16, min(8192, (1 << 24) // (cfg.n_interests * (n_items + 1))))
    return 4 * b * cfg.n_interests * (n_items + 1) / 2 ** 20


def measure(spec):
    """Run in the fresh process: one stage at one size -> a dict of figures (what the child prints)."""
    import torch
    torch.set_num_threads(spec["threads"])
    if spec.get("keep_freed_memory"):  # as cli.py runs: evaluation 1.3-1.5x faster, but its peak is not stable
        from bam_runs.allocator import keep_freed_memory
        keep_freed_memory()
    out = dict(read=measure_read, train=measure_train, eval=measure_eval)[spec["stage"]](spec)
    return dict(stage=spec["stage"], users=spec["users"], items=spec["items"], threads=torch.get_num_threads(),
                **{k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()})


def measure_in_child(spec):
    """`measure(spec)` in a fresh Python process; its last stdout line is the JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "bam_bench.scale", "measure", json.dumps(spec)], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{spec['stage']} at {spec['users']}x{spec['items']} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

# -----------------------------------------------------------------------------
# The grid


def run(sizes=DEFAULT_SIZES, steps=20, eval_budget=10 ** 9, mean_len=10, threads=None, seed=0, keep_freed_memory=False,
        log=print):
    """Every stage at every size, one fresh process each. -> the result dict (measurements, fits, projections).
    The children use glibc's default allocator, as bam_minimal.py alone does; `keep_freed_memory` runs them
    as cli.py does (bam_runs/allocator.py), whose heap kept 205 to 718 MB at the peak of the same evaluation."""
    import torch
    threads = threads or torch.get_num_threads()
    spec = dict(steps=steps, eval_budget=eval_budget, mean_len=mean_len, threads=threads, seed=seed,
                keep_freed_memory=keep_freed_memory)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bam-scale-") as tmp:
        for users, items in sizes:
            path = os.path.join(tmp, f"synth-{users}x{items}.txt")
            write_official(path, *synthetic(users, items, mean_len, seed))
            for stage in STAGES:
                rows.append(measure_in_child(dict(spec, stage=stage, users=users, items=items, path=path)))
                log(summary_line(rows[-1]))
            os.remove(path)
    d, n = 64, 4  # the default Config's; the children use bam_minimal.Config() too
    result = dict(config=dict(spec, dim=d, n_interests=n, model="comirec", sizes=[list(s) for s in sizes]),
                  measurements=rows)
    result["fit"] = fit(rows, n, d)
    result["projections"] = project(result["fit"], n, d)
    return result


def summary_line(r):
    extra = dict(read=lambda: f"{r['interactions']:,} interactions, {r['file_mb']:.0f} MB file",
                 train=lambda: f"{r['step_ms']:.1f} ms/step",
                 eval=lambda: f"{r['eval_users']:,} users{' (sampled)' if r['sampled'] else ''}")[r["stage"]]()
    return (f"{r['stage']:5s} {r['users']:>9,} users {r['items']:>9,} items: {r['seconds']:8.2f} s, "
            f"peak {r['peak_mb']:7.0f} MB (before {r['before_mb']:.0f}); {extra}")

# -----------------------------------------------------------------------------
# Fits and projections


def through_origin(x, y):
    """Least squares of y = c x: c = sum(x y) / sum(x^2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float((x * y).sum() / (x * x).sum())


def linear(rows, terms, y):
    """Least squares of y = a + sum_k b_k * row[term_k] over `rows` -> (a, [b_k])."""
    x = np.column_stack([np.ones(len(rows))] + [[r[t] for r in rows] for t in terms]).astype(float)
    coef = np.linalg.lstsq(x, np.asarray(y, float), rcond=None)[0]
    return float(coef[0]), [float(b) for b in coef[1:]]


def fittable(rows):
    """Which of "items" and "interactions" the measured sizes determine as memory terms -> (terms, why not
    the others, or None). A term needs two or more distinct values, and two terms need sizes that do not
    move them together (|correlation| <= 0.99 over the sizes: the default grid's users and items sweeps)."""
    sizes = sorted({(r["items"], r["interactions"]) for r in rows})
    terms = [t for k, t in enumerate(("items", "interactions")) if len({s[k] for s in sizes}) > 1]
    why = [f"one {t[:-1]} count ({sizes[0][k]:,})" for k, t in enumerate(("items", "interactions")) if t not in terms]
    if len(terms) == 2:
        corr = np.corrcoef(np.array(sizes, float).T)[0, 1]
        if abs(corr) > 0.99:
            terms, why = [], [f"items and interactions that grow together (correlation {corr:.3f})"]
    return terms, " and ".join(why) or None


def extra(r):
    """MB above the RSS at the start of the stage."""
    return r["peak_mb"] - r["before_mb"]


def eval_work(r, n, d):
    """U N (I + 1) d multiply-adds of the scores: the cost model's variable."""
    return r["eval_users"] * n * (r["items"] + 1) * d


def fit(rows, n, d):
    """The constants of the cost model, with each measurement's ratio measured / fitted. Peak memory of
    train and eval: a + b * items + c * interactions (MB; b and c given in bytes); a slope the sizes do not
    determine is None, and `warning` says why (None when every slope was fitted)."""
    by = {s: [r for r in rows if r["stage"] == s] for s in STAGES}
    ev, tr, rd = by["eval"], by["train"], by["read"]
    c = through_origin([eval_work(r, n, d) for r in ev], [r["seconds"] for r in ev])
    terms, why = fittable(rows)

    def memory(stage_rows):
        a, b = linear(stage_rows, terms, [r["peak_mb"] for r in stage_rows])
        b = dict(zip(terms, b))
        return dict(intercept=a, **{f"per_{t[:-1]}_bytes": b[t] * 2 ** 20 if t in b else None
                                    for t in ("items", "interactions")})
    step = sorted((r["items"], r["step_ms"]) for r in tr if r["users"] == min(q["users"] for q in tr))
    read_terms = ["interactions"] if len({r["interactions"] for r in rd}) > 1 else []
    a, b = linear(rd, read_terms, [extra(r) for r in rd])
    read_s = through_origin([r["interactions"] for r in rd], [r["seconds"] for r in rd])
    for r in ev:
        r["fit_seconds"] = c * eval_work(r, n, d)
    left_out = [what for what, missing in (("peak memory", why), ("step time", len(step) < 2),
                                            ("reading memory", not read_terms)) if missing]
    warning = None
    if left_out:
        names = ", ".join(left_out[:-1]) + " and " * (len(left_out) > 1) + left_out[-1]
        warning = (f"these sizes have {why or 'one item count at the fewest users'}: left out "
                   f"{'the memory slopes they do not determine and ' if why else ''}the projections of {names} "
                   "(measure sizes that differ in users and in items, as the default grid does)")
    return dict(
        eval_seconds_per_madd=c, eval_gmadd_per_s=1e-9 / c,
        eval_ratio_measured_to_fit=[round(r["seconds"] / r["fit_seconds"], 3) for r in ev],
        eval_peak_mb=memory(ev),
        eval_extra_mb_range=[min(extra(r) for r in ev), max(extra(r) for r in ev)],
        train_peak_mb=memory(tr),
        train_step_ms=dict(items=[i for i, _ in step], ms=[m for _, m in step]),
        read_extra_mb=dict(intercept=a, per_interaction_bytes=b[0] * 2 ** 20 if b else None),
        read_seconds_per_million_interactions=read_s * 1e6, warning=warning)


def interpolate(x, xs, ys):
    """Piecewise linear through the measurements; the first value below them, the last segment's line
    above them. The step time is flat up to ~30k items and then linear (the dense embedding gradient and
    Adam update), which no single line fits."""
    if x <= xs[-1] or len(xs) < 2:
        return float(np.interp(x, xs, ys))
    return float(ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (x - xs[-1]))


def peak(m, items, interactions):
    """A peak-memory fit at a size (MB), or None where it lacks a slope."""
    if m["per_item_bytes"] is None or m["per_interaction_bytes"] is None:
        return None
    return m["intercept"] + (m["per_item_bytes"] * items + m["per_interaction_bytes"] * interactions) / 2 ** 20


def project(f, n, d):
    """Each dataset's full evaluation time (c U N (I + 1) d), and peak memory from the linear fits; None
    for what the fit could not determine (see fit's warning)."""
    out = []
    step, rd = f["train_step_ms"], f["read_extra_mb"]
    for name, (users, items, interactions) in DATASETS.items():
        out.append(dict(
            name=name, users=users, items=items, interactions=interactions,
            eval_seconds=f["eval_seconds_per_madd"] * users * n * (items + 1) * d,
            eval_peak_mb=peak(f["eval_peak_mb"], items, interactions),
            train_peak_mb=peak(f["train_peak_mb"], items, interactions),
            train_step_ms=interpolate(items, step["items"], step["ms"]) if len(step["items"]) > 1 else None,
            read_seconds=f["read_seconds_per_million_interactions"] * interactions / 1e6,
            read_extra_mb=None if rd["per_interaction_bytes"] is None
            else rd["intercept"] + rd["per_interaction_bytes"] * interactions / 2 ** 20))
    return out

# -----------------------------------------------------------------------------
# The plot


def plot(result, path):
    """Four panels: evaluation time against the cost model, memory against users and against items,
    and reading time and memory against interactions."""
    from bam_experiments.plots import plt, save
    rows, f = result["measurements"], result["fit"]
    n, d = result["config"]["n_interests"], result["config"]["dim"]
    ev = [r for r in rows if r["stage"] == "eval"]
    fig, ax = plt.subplots(2, 2, figsize=(10, 7.5))

    x = np.array([eval_work(r, n, d) for r in ev], float)
    ax[0, 0].loglog(x, [r["seconds"] for r in ev], "o", label="measured")
    if np.ptp(x) > 0:  # one size's work is a point, not a line
        grid = np.geomspace(x.min(), x.max(), 50)
        ax[0, 0].loglog(grid, f["eval_seconds_per_madd"] * grid, "-", color="grey",
                        label=f"fit: {f['eval_gmadd_per_s']:.1f} G multiply-adds/s")
    ax[0, 0].set(xlabel="evaluated users x N x (I + 1) x d", ylabel="evaluation seconds", title="evaluation time")

    base_items = min(r["items"] for r in rows)
    base_users = min(r["users"] for r in rows)
    for stage, marker in zip(STAGES, "s^o"):
        by_u = sorted((r["users"], r["peak_mb"], r["items"], r["interactions"]) for r in rows
                      if r["stage"] == stage and r["items"] == base_items)
        by_i = sorted((r["items"], r["peak_mb"], r["items"], r["interactions"]) for r in rows
                      if r["stage"] == stage and r["users"] == base_users)
        for a, pts, draw in ((ax[0, 1], by_u, ax[0, 1].semilogx), (ax[1, 0], by_i, ax[1, 0].plot)):
            if not pts:
                continue
            color = draw(*list(zip(*pts))[:2], marker=marker, label=stage)[0].get_color()  # linear axes for items
            m = f.get(f"{stage}_peak_mb")
            if m and len(pts) > 1 and peak(m, 0, 0) is not None:  # the fit a + b items + c interactions
                draw([p[0] for p in pts], [peak(m, p[2], p[3]) for p in pts], ":", color=color,
                     label=f"{stage} fit: {m['per_item_bytes']:.0f} B/item + {m['per_interaction_bytes']:.0f} "
                           "B/interaction" if a is ax[1, 0] else f"{stage} fit")
    ax[0, 1].set(xlabel="users", ylabel="peak RSS, MB", title=f"peak memory, {base_items:,} items")
    ax[1, 0].set(xlabel="items", ylabel="peak RSS, MB", title=f"peak memory, {base_users:,} users")

    rd = sorted((r["interactions"], r["seconds"], r["peak_mb"] - r["before_mb"]) for r in rows if r["stage"] == "read")
    t, s, m = (np.array(v, float) for v in zip(*rd))
    ax[1, 1].loglog(t, s, "s-", label="seconds")
    ax[1, 1].loglog(t, m, "o-", label="MB above the start")
    ax[1, 1].set(xlabel="interactions", title="reading + Dataset")
    for a in ax.flat:
        a.legend(frameon=False, fontsize=8)
        a.grid(alpha=0.3, which="both", lw=0.5)
    threads = {r["threads"] for r in rows}
    fig.suptitle(f"bam_minimal scaling, ComiRec-SA, N = {n}, d = {d}, {'/'.join(map(str, threads))} thread(s)")
    fig.tight_layout()
    return save(fig, path)

# -----------------------------------------------------------------------------
# Markdown tables of a result, for docs/performance.md


def markdown(result):
    """The measurements, the fit and the projections as Markdown tables (MB = 2^20 bytes)."""
    rows = result["measurements"]
    out = ["| users | items | interactions | read + Dataset s | read peak MB (above start) | train ms/step | "
           "train peak MB | eval users | eval s | fit s | eval peak MB (above start) |", "|" + "---:|" * 11]
    for users, items in result["config"]["sizes"]:
        rd, tr, ev = (next(r for r in rows if (r["stage"], r["users"], r["items"]) == (s, users, items))
                      for s in STAGES)
        out.append(f"| {users:,} | {items:,} | {rd['interactions']:,} | {rd['seconds']:.1f} | {rd['peak_mb']:,.0f} "
                   f"({rd['peak_mb'] - rd['before_mb']:,.0f}) | {tr['step_ms']:.1f} | {tr['peak_mb']:,.0f} | "
                   f"{ev['eval_users']:,}{' (sample)' if ev['sampled'] else ''} | {ev['seconds']:.1f} | "
                   f"{ev['fit_seconds']:.1f} | {ev['peak_mb']:,.0f} ({ev['peak_mb'] - ev['before_mb']:,.0f}) |")
    out += ["", "| dataset | users | items | interactions | full evaluation | eval peak MB | train peak MB | "
            "train ms/step | read + Dataset s | read MB above start |", "|---|" + "---:|" * 9]
    for p in result["projections"]:
        out.append(f"| {p['name']} | {p['users']:,} | {p['items']:,} | {p['interactions']:,} | "
                   f"{duration(p['eval_seconds'])} | {whole(p['eval_peak_mb'])} | {whole(p['train_peak_mb'])} | "
                   f"{whole(p['train_step_ms'])} | {p['read_seconds']:,.1f} | {whole(p['read_extra_mb'])} |")
    return "\n".join(out)


def whole(value, width=0):
    """A projection (MB or ms) rounded to a whole number, or n/a where the fit could not make it."""
    return f"{'n/a' if value is None else f'{value:,.0f}':>{width}}"


def memory_text(m):
    """`a MB + b B/item + c B/interaction`, the slopes that were fitted."""
    return " + ".join([f"{m['intercept']:.0f} MB"] + [f"{m[k]:.0f} B/{k[4:-6]}" for k in
                                                      ("per_item_bytes", "per_interaction_bytes") if m[k] is not None])


def duration(seconds):
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"

# -----------------------------------------------------------------------------
# Command line: `python bench.py --scale [options]` lands here


def parse_sizes(text):
    """`10000x5000,20000x5000` -> [(10000, 5000), (20000, 5000)]."""
    try:
        sizes = [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"`{text}`: expected USERSxITEMS[,USERSxITEMS...], e.g. 10000x5000")
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench.py --scale", description="Time and peak memory of reading, training "
                                 "and evaluation on synthetic data of growing size (bam_bench/scale.py).")
    ap.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES,
                    help="USERSxITEMS,... (default: users 10k-1M at 10k items, items 10k-1M at 10k users, 1Mx1M)")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per size (after 2 warm-up steps)")
    ap.add_argument("--eval-budget", type=int, default=10 ** 9,
                    help="evaluate every user while users x items <= this, else a sample of budget // items users")
    ap.add_argument("--mean-len", type=int, default=10, help="mean sequence length of the synthetic users")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each measurement (default: "
                    "torch's, which follows OMP_NUM_THREADS)")
    ap.add_argument("--keep-freed-memory", action="store_true", help="measure with cli.py's allocator setting "
                    "(bam_runs/allocator.py): faster, but the peak memory varies from run to run")
    ap.add_argument("--from-json", default=None, help="measure nothing: fit, project and plot the measurements "
                    "of this earlier --json")
    ap.add_argument("--json", default="scale.json", help="the measurements, fits and projections")
    ap.add_argument("--plot", default="scaling.png", help="the PNG")
    args = ap.parse_args(argv)
    if args.from_json:  # the fits, projections and plot again, from the measurements of an earlier run
        with open(args.from_json) as fh:
            result = json.load(fh)
        result["fit"] = fit(result["measurements"], result["config"]["n_interests"], result["config"]["dim"])
        result["projections"] = project(result["fit"], result["config"]["n_interests"], result["config"]["dim"])
    else:
        result = run(args.sizes, args.steps, args.eval_budget, args.mean_len, args.threads,
                     keep_freed_memory=args.keep_freed_memory)
    f = result["fit"]
    if f.get("warning"):
        print(f"warning: {f['warning']}", file=sys.stderr)
    print(f"fit: evaluation {f['eval_gmadd_per_s']:.2f} G multiply-adds/s; "
          + "; ".join(f"{stage} peak {memory_text(f[stage + '_peak_mb'])}" for stage in ("eval", "train"))
          + "; reading " + ("n/a" if f["read_extra_mb"]["per_interaction_bytes"] is None
                            else f"{f['read_extra_mb']['per_interaction_bytes']:.0f} B/interaction"))
    for p in result["projections"]:
        print(f"  {p['name']:24s} evaluation {p['eval_seconds']:10.1f} s, eval peak {whole(p['eval_peak_mb'], 6)} MB, "
              f"train peak {whole(p['train_peak_mb'], 6)} MB, reading {p['read_seconds']:6.1f} s")
    atomic_write(args.json, lambda fh: fh.write(json.dumps(result, indent=2).encode()))
    plot(result, args.plot)
    print(f"wrote {args.json} and {args.plot}")
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:  # one child of `run`: a stage at a size, printed as one JSON line
        print(json.dumps(measure(json.loads(sys.argv[2]))))
    elif sys.argv[1:2] == ["table"]:  # python -m bam_bench.scale table scale.json
        with open(sys.argv[2]) as fh:
            print(markdown(json.load(fh)))
    else:
        main()
