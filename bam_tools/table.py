"""
The paper's Table 2 from one command: several methods, several seeds, one protocol.

    python cli.py table --data ../shared/data/amazon-beauty-2014/Beauty.txt --seeds 3 --out runs/table

Every (method, seed) run lives in OUT/<method>/seed-<seed>/ and is a normal resumable run of
bam_minimal.train: a finished run is read back, an interrupted one resumes. The table is written as
Markdown and JSON: mean ± std over seeds, best in bold, second best underlined, and BaM's gain over
the best competitor.
"""
import os
from dataclasses import asdict, replace

import numpy as np

import bam_minimal as bm
import bam_tools.sasrec  # noqa: F401  (adds the SASRec baseline to bam_minimal.MODELS)
from bam_data.files import atomic_text
from bam_tools import runs

# The four methods of Table 2, all on the same protocol; the rest come with --methods.
METHODS = {
    "SASRec": dict(model="sasrec", n_interests=1, selection="hard"),
    "ComiRec": dict(model="comirec", selection="hard"),
    # REMI on ComiRec-SA with the BaM authors' settings (snudatalab/BaM, src/main.py): beta 0.01, lambda 100
    "REMI": dict(model="comirec", selection="hard", remi_beta=0.01, remi_lambda=100.0),
    "BaM": dict(model="comirec", selection="bam"),
    # Extended BaM [BD24] and variants beyond the papers
    "BaM-l": dict(model="comirec", selection="bam-l"),
    "BaM+multi": dict(model="comirec", selection="bam", multi_loss=True),
    "BaM-l+multi": dict(model="comirec", selection="bam-l", multi_loss=True),
    "Expected": dict(model="comirec", selection="expected"),
    "BaM-anneal": dict(model="comirec", selection="bam", tau_schedule="hard-to-soft"),
    # Ablations of REMI on ComiRec-SA: its routing regulariser alone, and REMI on top of BaM
    "REMI-reg": dict(model="comirec", selection="hard", remi_lambda=100.0),
    "BaM+REMI": dict(model="comirec", selection="bam", remi_beta=0.01, remi_lambda=100.0),
    "MIND": dict(model="mind", selection="hard"),
    "MIND+BaM": dict(model="mind", selection="bam"),
}
DEFAULT_METHODS = ("SASRec", "ComiRec", "REMI", "BaM")
COLUMNS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20")


def run_one(base, method, seed, data, out, log):
    """One (method, seed) run: read back when finished with the same config, else train (or resume)."""
    cfg = replace(base, **METHODS[method], seed=seed)
    folder = os.path.join(out, method, f"seed-{seed}")
    with runs.lock(folder):
        run = runs.RunFolder(folder, cfg, data)
        result = run.finished()
        if result:
            log(f"{method} seed {seed}: finished earlier, reused")
            return result, True
        _, result = bm.train(cfg, data, run, log=lambda s: log(f"{method} seed {seed}: {s}"))
        return result, False


def summarise(results):
    """{method: [result per seed]} -> {method: {column: (mean, std)}}, std over seeds (ddof 1)."""
    table = {}
    for method, seeds in results.items():
        values = {c: np.array([r["test"][c] for r in seeds]) for c in COLUMNS}
        table[method] = {c: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
                         for c, v in values.items()}
    return table


def gains(table, ours="BaM"):
    """BaM's improvement (%) over the best competitor, per column. Competitors are the methods not
    named after BaM."""
    others = [m for m in table if "BaM" not in m and m != ours]
    if ours not in table or not others:
        return {}
    return {c: 100.0 * (table[ours][c][0] / max(table[m][c][0] for m in others) - 1) for c in COLUMNS}


def markdown(table, dataset, seeds):
    rows = [f"Test metrics on {dataset}, mean ± std over {seeds} seed(s). **Best**, <u>second best</u>.", "",
            "| method | " + " | ".join(c.replace("ndcg", "nDCG").replace("recall", "Recall") for c in COLUMNS) + " |",
            "|---|" + "---:|" * len(COLUMNS)]
    rank = {c: sorted(table, key=lambda m: -table[m][c][0]) for c in COLUMNS}
    for method in table:
        cells = []
        for c in COLUMNS:
            mean, std = table[method][c]
            cell = f"{mean:.4f} ± {std:.4f}"
            if method == rank[c][0]:
                cell = f"**{cell}**"
            elif len(rank[c]) > 1 and method == rank[c][1]:
                cell = f"<u>{cell}</u>"
            cells.append(cell)
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    g = gains(table)
    if g:
        rows.append("| BaM vs best competitor | " + " | ".join(f"{g[c]:+.2f}%" for c in COLUMNS) + " |")
    return "\n".join(rows) + "\n"


def run_table(base, data, methods, seeds, out, log=print, on_run=None):
    """Run (or reuse) every (method, seed), then write table.md and table.json into `out`."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise bm.InputError(f"--methods: unknown {', '.join(unknown)} (fix: choose from {', '.join(METHODS)})")
    os.makedirs(out, exist_ok=True)
    results, reused = {}, 0
    for method in methods:
        for s in range(seeds):
            result, was_done = run_one(base, method, base.seed + s, data, out, log)
            results.setdefault(method, []).append(result)
            reused += was_done
            if on_run:
                on_run()
    table = summarise(results)
    text = markdown(table, data.name, seeds)
    runs.save_json(dict(dataset=data.name, seeds=seeds, config=asdict(base), gains_percent=gains(table),
                        table={m: {c: dict(mean=v[0], std=v[1]) for c, v in row.items()} for m, row in table.items()},
                        runs={m: [dict(seed=r["config"]["seed"], test=r["test"], best_iter=r["best_iter"],
                                       iters=r["iters"], seconds=r["seconds"]) for r in rs]
                              for m, rs in results.items()}), os.path.join(out, "table.json"))
    atomic_text(os.path.join(out, "table.md"), text)
    return text, table, reused
