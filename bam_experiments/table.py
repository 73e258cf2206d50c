"""
The paper's Table 2 from one command: several methods, several seeds, one protocol.

    python cli.py table --data ../shared/data/amazon-beauty-2014/Beauty.txt --seeds 3 --out runs/table

Every (method, seed) run lives in OUT/<method>/seed-<seed>/ and is a normal resumable run of
bam_minimal.train: a finished run is read back, an interrupted one resumes. The table is written as
Markdown and JSON: the mean over seeds with its 95% t-interval, best in bold, second best underlined,
BaM's gain over the best competitor; then, for the pairs of PAIRS in the table (BaM against hard
selection, against REMI, REMI + BaM against REMI, BaM-l against hard, MIND + BaM against MIND), each
difference from the runs' per-user files (bam_evidence.differences): the primary interval over seeds and
users together (a two-way random-effects model of the (seed, user) differences), Holm's correction over
the table's every pair x metric, a verdict, and, as secondary columns, the interval over seeds only (users
held fixed) and the tests over users only (each user's metric averaged over the seeds: the trained models
held fixed); and a forest plot (forest.png).

Runs side by side (`--jobs J`): J worker processes, each with a fixed number of torch threads
(`--threads`, default cores // J), take the runs in turn. Small matrix products do not scale across
threads, so on P cores P one-thread runs finish sooner than P P-thread runs one after another. A run's
numbers depend on its thread count (docs/determinism.md), never on J or on which worker ran it: each
run records `threads` in its metrics.json and the table says it. Workers die with the process that
started them (Linux: PR_SET_PDEATHSIG), so a killed table leaves no run behind holding its lock, and
rerunning the command resumes every run from its last.pt.
"""
import ctypes
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, replace
from multiprocessing import get_context

import numpy as np
import torch

import bam_minimal as bm
from bam_experiments import sasrec
from bam_data.files import atomic_text
from bam_data.formats import InputError as DataInputError
from bam_evidence import per_user, stats
from bam_evidence.differences import PAIRS, family as diff_family, markdown as diff_markdown
import bam_protocols
from bam_runs import run_folder
from bam_experiments.methods import METHODS  # torch-free, so that `cli.py table --help` lists them at once

# The columns a table reports and tests are its protocol's (`columns`; the pairs it compares are
# bam_evidence.differences'): leave-one-out's are the BaM paper's Table 2, ComiRec's protocol's the ComiRec and
# REMI papers' (N = 20, 50). With --ndcg-as the table shows the protocol's published NDCGs (`variant_columns`)
# beside the correct one (computed from each run's per-user ranks when it lacks them); shown, never tested.
COLUMNS = bam_protocols.get(bm.Config().protocol).columns   # the default protocol's


def run_one(base, method, seed, data, out, log, ndcg_as=False):
    """One (method, seed) run: read back when finished with the same config, else train (or resume). `ndcg_as`:
    keep every published NDCG the ranks give."""
    sasrec.register()  # Table 2's SASRec row, in this process or in a --jobs worker (bam_protocols: imported)
    cfg = replace(base, **METHODS[method], seed=seed)
    folder = os.path.join(out, method, f"seed-{seed}")
    with run_folder.lock(folder):
        run = run_folder.RunFolder(folder, cfg, data, extra=dict(threads=torch.get_num_threads()),
                                   fix=f"a new --out, or delete {folder} to run it again")  # table has no --fresh
        run.ndcg_as = ndcg_as
        result = run.finished()
        if result:
            log(f"{method} seed {seed}: finished earlier, reused")
            return run_folder.with_published_ndcg(result, folder) if ndcg_as else result, True
        bm.train(cfg, data, run, log=lambda s: log(f"{method} seed {seed}: {s}"))
        return run.result, False


def start_worker(threads, parent):
    """A worker of `--jobs`: its thread count; Ctrl-C is the parent's to handle (it stops the workers), and
    the worker dies with the table's process (Linux), so that no orphan keeps training and holds a lock."""
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the parent dies
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


def worker_run(base, method, seed, data, out, ndcg_as=False):
    """One run in a worker; its log lines go to stderr (the parent's progress bar stays in one place)."""
    return run_one(base, method, seed, data, out, log=lambda s: print(s, file=sys.stderr, flush=True),
                   ndcg_as=ndcg_as)


def run_all(base, data, todo, out, log, on_run, jobs, threads, ndcg_as=False):
    """Every (method, seed) of `todo`, one after another (jobs 1) or in `jobs` worker processes, in order.
    An error, a dead worker or Ctrl-C stops every worker at once; their runs resume from last.pt."""
    if jobs == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for method, seed in todo:
                yield run_one(base, method, seed, data, out, log, ndcg_as)
                on_run and on_run()
        finally:
            torch.set_num_threads(before)
        return
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=start_worker,
                               initargs=(threads, os.getpid()))
    try:
        futures = [pool.submit(worker_run, base, method, seed, data, out, ndcg_as) for method, seed in todo]
        for future in futures:
            yield future.result()
            on_run and on_run()
    except BrokenProcessPool:
        raise bm.InputError(f"{out}: a worker of --jobs {jobs} died (killed, or out of memory) (fix: rerun the same "
                            "command to resume; fewer --jobs if memory ran out)") from None
    finally:
        workers = list((pool._processes or {}).values())  # concurrent.futures keeps no public handle on them
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.join()


def summarise(results, columns=COLUMNS):
    """{method: [result per seed]} -> {method: {column: (mean, std, low, high)}}: std over seeds (ddof 1) and
    the 95% t-interval of the mean (low and high are None for one seed)."""
    table = {}
    for method, seeds in results.items():
        values = {c: np.array([r.test[c] for r in seeds]) for c in columns}
        table[method] = {c: (*stats.t_interval(v)[:1], float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                             *stats.t_interval(v)[1:]) for c, v in values.items()}
    return table


def differences(results, folders, n_resamples=9999, columns=COLUMNS):
    """The differences of the pairs of PAIRS in the table, each column, one family (bam_evidence.differences):
    the primary interval over seeds and users, the two secondary intervals, Holm's correction and the verdict.
    Seeds are paired in order; every run must rank the same users' same targets (checked). Returns
    (rows, note): no rows, and a note, when a run has no per-user file (a run of an older bam) or a damaged
    or mismatched one."""
    pairs = [(b, a) for b, a in PAIRS if b in results and a in results]
    if not pairs:
        return [], ""
    try:
        runs = {m: [load_user_file(os.path.join(f, per_user.FILE)) for f in folders[m]]
                for m in {m for pair in pairs for m in pair}}
        seeds = {(a, b): min(len(runs[a]), len(runs[b])) for b, a in pairs}
        return diff_family({(a, b): (runs[a][:n], runs[b][:n]) for (a, b), n in seeds.items()}, list(columns),
                           n_resamples), ""
    except DataInputError as e:  # a damaged or mismatched file costs the differences, not the table
        return [], str(e)


def load_user_file(path):
    if not os.path.exists(path):
        raise DataInputError(f"{path}: no per-user file (a run of an older bam): no differences over users")
    return per_user.load(path)


def code_note(results):
    """One note when the runs of a table come from different code (commits, or uncommitted changes); a run resumed
    under other code is named by each commit ("1f98e6d then 2cb4b99"), as the kept evidence names it."""
    labels = sorted({run_folder.code_label(r.code, r.code_history) for rs in results.values() for r in rs})
    if len(labels) < 2:
        return f"Code: every run trained at {labels[0]}." if labels else ""
    return (f"**Note: these runs come from different code** ({', '.join(labels)}; \"unknown\": a run of an older "
            "bam that recorded none); each run's metrics.json records its own.")


def gains(table, ours="BaM"):
    """BaM's improvement (%) over the best competitor, per column. Competitors are the methods not
    named after BaM."""
    others = [m for m in table if "BaM" not in m and m != ours]
    if ours not in table or not others:
        return {}
    return {c: 100.0 * (table[ours][c][0] / max(table[m][c][0] for m in others) - 1) for c in table[ours]}


def label(column):
    return column.replace("ndcg", "nDCG").replace("recall", "Recall").replace("hitrate", "HitRate")


def markdown(table, dataset, seeds, title=bam_protocols.get(bm.Config().protocol).title):
    """The table in Markdown; `title`: its protocol's."""
    spread = "± the half-width of its 95% t-interval" if seeds > 1 else "one seed, so no interval"
    columns = list(next(iter(table.values()))) if table else []
    rows = [f"Test metrics on {dataset} ({title}): the mean over {seeds} seed(s), {spread}. "
            "**Best**, <u>second best</u>.", "",
            "| method | " + " | ".join(label(c) for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    rank = {c: sorted(table, key=lambda m: -table[m][c][0]) for c in columns}
    for method in table:
        cells = []
        for c in columns:
            mean, _, low, high = table[method][c]
            cell = f"{mean:.4f}" + (f" ± {(high - low) / 2:.4f}" if low is not None else "")
            if method == rank[c][0]:
                cell = f"**{cell}**"
            elif len(rank[c]) > 1 and method == rank[c][1]:
                cell = f"<u>{cell}</u>"
            cells.append(cell)
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    g = gains(table)
    if g:
        rows.append("| BaM vs best competitor | " + " | ".join(f"{g[c]:+.2f}%" for c in columns) + " |")
    return "\n".join(rows) + "\n"


def beyond_accuracy(folders, data, top_n, codes=None):
    """{method: {metric: (mean, std, low, high)}} of each run's test top-N lists (its checkpoint, under its
    protocol): coverage@N, the interests' balance (entropy, single-interest users, Gini) and, with category
    codes (I + 1,), ComiRec's diversity@N; the mean over seeds with its 95% t-interval."""
    from bam_evidence import beyond
    from bam_experiments import balance
    from bam_runs import checkpoints
    per_method = {}
    for method, paths in folders.items():
        for path in paths:
            net, cfg, _, _ = checkpoints.load(os.path.join(path, "checkpoint.pt"))
            net = net.eval()
            _, _, tops = bam_protocols.get(cfg.protocol).evaluate(bm.model_scorer(net), data, "test", cfg,
                                                                  k_top=top_n)
            got = dict(beyond.list_metrics(tops, data.n_items, codes), **balance.list_balance(net, cfg, data, "test",
                                                                                              tops))
            for k, v in got.items():
                per_method.setdefault(method, {}).setdefault(k, []).append(v)
    return {m: {k: (*stats.t_interval(np.array(v, float))[:1], float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                    *stats.t_interval(np.array(v, float))[1:]) for k, v in row.items() if None not in v}
            for m, row in per_method.items()}


def markdown_beyond(rows, top_n):
    if not rows:
        return ""
    columns = list(next(iter(rows.values())))
    lines = ["", f"Beyond accuracy, each run's test top-{top_n} lists (mean over seeds ± the half-width of its 95% "
             "t-interval): coverage (share of the catalogue in someone's list), the interests' balance (mean "
             "entropy in bits of which interest supplies each item, the share of users served by one interest, "
             "the Gini of the interests' totals) and ComiRec's diversity when categories are given.", "",
             "| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for method, row in rows.items():
        lines.append(f"| {method} | " + " | ".join(
            f"{row[c][0]:.4f}" + (f" ± {(row[c][3] - row[c][2]) / 2:.4f}" if row[c][2] is not None else "")
            for c in columns) + " |")
    return "\n".join(lines) + "\n"


def run_table(base, data, methods, seeds, out, log=print, on_run=None, jobs=1, threads=None, ndcg_as=False,
              top_n=0, codes=None):
    """Run (or reuse) every (method, seed), `jobs` at a time with `threads` torch threads each (default:
    torch's count for one job, cores // jobs for several), then write table.md and table.json into `out`.
    The columns are the protocol's (`columns`); ndcg_as adds its published NDCGs (`variant_columns`); top_n > 0
    adds what each run's top-N lists show beyond accuracy (beyond_accuracy; codes: item categories)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise bm.InputError(f"--methods: unknown {', '.join(unknown)} (fix: choose from {', '.join(METHODS)})")
    if jobs < 1 or (threads is not None and threads < 1):
        raise bm.InputError(f"--jobs {jobs}, --threads {threads}: must be 1 or more (fix: e.g. --jobs 2 --threads 1)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # ours to use
    threads = threads or (torch.get_num_threads() if jobs == 1 else max(1, cores // jobs))
    os.makedirs(out, exist_ok=True)
    todo = [(method, base.seed + s) for method in methods for s in range(seeds)]
    results, folders, reused = {}, {}, 0
    protocol = bam_protocols.get(base.protocol)
    columns = tuple(protocol.columns) + (tuple(protocol.variant_columns) if ndcg_as else ())
    for (method, seed), (result, was_done) in zip(todo, run_all(base, data, todo, out, log, on_run, jobs, threads,
                                                                ndcg_as)):
        results.setdefault(method, []).append(result)
        folders.setdefault(method, []).append(os.path.join(out, method, f"seed-{seed}"))
        reused += was_done
    table = summarise(results, columns)
    diffs, note = differences(results, folders, columns=protocol.columns)  # the tested ones
    lists = beyond_accuracy(folders, data, top_n, codes) if top_n else {}
    text = (markdown(table, data.name, seeds, protocol.title) + ("\n" + diff_markdown(diffs) if diffs else "")
            + (f"\nNo differences: {note}\n" if note else "") + markdown_beyond(lists, top_n))
    if diffs:
        from bam_experiments import plots
        text += f"\nForest plot of the differences: {plots.forest(diffs, os.path.join(out, 'forest.png'))}\n"
    text += "\n" + code_note(results) + "\n"
    used = sorted({r.threads for rs in results.values() for r in rs}, key=str)
    text += (f"\nThis invocation: {jobs} run(s) at a time, {reused} of {len(todo)} reused from earlier; torch "
             f"threads per run: {', '.join(map(str, used))} (numbers depend on the thread count; each run's "
             "metrics.json records it).\n")
    runs = {m: [dict(seed=r.config["seed"], test=r.test, best_iter=r.best_iter, iters=r.iters,
                     seconds=r.seconds, threads=r.threads, code=r.code) for r in rs]
            for m, rs in results.items()}
    summary = {m: {c: dict(mean=v[0], std=v[1], low=v[2], high=v[3]) for c, v in row.items()}
               for m, row in table.items()}
    run_folder.save_json(dict(dataset=data.name, seeds=seeds, config=asdict(base), jobs=jobs,
                              confidence=stats.CONFIDENCE, gains_percent=gains(table), table=summary,
                              differences=diffs, runs=runs,
                              beyond={m: {k: dict(mean=v[0], std=v[1], low=v[2], high=v[3]) for k, v in row.items()}
                                      for m, row in lists.items()}),
                         os.path.join(out, "table.json"))
    atomic_text(os.path.join(out, "table.md"), text)
    return text, table, reused
