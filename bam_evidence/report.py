"""
bam_evidence/report.py: the Markdown of docs/results.md and of the README's results table, generated from the
kept evidence (bam_evidence/kept.py) and nothing else, so that no number is copied by hand.

    python cli.py report            # rewrite the generated blocks of docs/results.md and README.md
    python cli.py report --check    # exit 1, naming the block, when a file differs from what the evidence gives

A generated block sits between two HTML comments that Markdown does not show:
    <!-- report:NAME -->  ...  <!-- /report:NAME -->
NAME is an evidence file's name (docs/evidence/NAME.npz: its table, differences, verdicts and runs), `summary`
(every kept table's verdicts, for docs/results.md), `readme` (the README's results table) or `paper` (what the
paper's Table 2 gaps would need in seeds, under our variance estimates). Text outside the blocks is prose,
written by hand; it must not restate a number that a block holds.
"""
import os
import re

import numpy as np

from bam_data.formats import InputError
from bam_evidence import differences, kept, stats, verdicts

EVIDENCE = os.path.join("docs", "evidence")
PAGES = (os.path.join("docs", "results.md"), "README.md")
BLOCK = re.compile(r"(<!-- report:([a-z0-9-]+) -->\n)(.*?)(<!-- /report:\2 -->)", re.S)
# The built-in protocols' short titles, which the pages use (their objects' titles are longer); another
# protocol's kept evidence carries its own (`protocol_title`, written by `report pack`): bam_evidence sits below
# bam_protocols and cannot ask it, and a protocol a user registered is gone in the process that reports.
PROTOCOL_NAMES = dict(loo="leave-one-out", comirec="ComiRec's protocol")
# The paper's Table 2 (KDD '24): leave-one-out, full ranking, d = 64, N = 4, ComiRec-SA. One number per cell.
PAPER = {("Movies & TV", "recall@20"): dict(REMI=0.1055, BaM=0.1153),
         ("Books", "recall@20"): dict(REMI=0.1804, BaM=0.1894)}
PAPER_CLAIM = 0.1501   # "up to 15.01% over the second best"
GATHERING = ("summary", "readme", "paper")   # the blocks that gather every kept table


def label(metric):
    return differences.label(metric)


def protocol_title(evidence):
    """How the pages name the evidence's protocol: a built-in's short title, else the title it was packed with,
    else its name."""
    return PROTOCOL_NAMES.get(evidence.protocol) or evidence.table.get("protocol_title") or evidence.protocol


def protocol_columns(evidence):
    """The metrics the evidence's protocol reports and tests: as packed, else a built-in's (bam_evidence.metrics)."""
    packed = evidence.table.get("protocol_columns")
    if packed:
        return tuple(packed)
    if evidence.protocol not in differences.PROTOCOL_COLUMNS:
        raise InputError(f"{evidence.path}: protocol {evidence.protocol!r} is not a built-in one and the file names "
                         "none of its metrics (fix: pack it where the protocol is registered: "
                         "bam_evidence.kept.pack(..., protocols={name: (title, columns)}))")
    return differences.PROTOCOL_COLUMNS[evidence.protocol]


def dataset(evidence):
    """The data's name for a reader: its file's name without folders or extension (LastFM, Beauty, ml-100k)."""
    return os.path.basename(str(evidence.table.get("dataset") or evidence.table["name"])).split(".")[0]


# -----------------------------------------------------------------------------
# One table


def means(evidence, columns):
    """{method: {column: (mean, low, high)}}: the mean over seeds of each run's test metric (its users' mean,
    from the ranks) and the 95% t-interval over seeds."""
    return {m: {c: stats.t_interval([r.metrics[c].mean() for r in runs]) for c in columns}
            for m, runs in evidence.runs.items()}


def means_markdown(evidence, columns):
    table = means(evidence, columns)
    seeds = len(next(iter(evidence.runs.values())))
    rank = {c: sorted(table, key=lambda m: -table[m][c][0]) for c in columns}
    lines = [f"Test metrics, the mean over {seeds} seeds ± the half-width of its 95% t-interval over seeds; "
             "**best**, <u>second best</u>.", "",
             "| method | " + " | ".join(label(c) for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for method in table:
        cells = []
        for c in columns:
            mean, low, high = table[method][c]
            cell = f"{mean:.4f}" + (f" ± {(high - low) / 2:.4f}" if low is not None else "")
            cell = f"**{cell}**" if method == rank[c][0] else f"<u>{cell}</u>" if method == rank[c][1] else cell
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def family(evidence, n_resamples=9999):
    """The table's differences, one family: every pair of differences.PAIRS that it holds x its protocol's metrics."""
    columns = protocol_columns(evidence)
    named = evidence.table.get("pairs") or [(a, b) for b, a in differences.PAIRS]  # a study's own, or the methods'
    pairs = {(a, b): (evidence.runs[a], evidence.runs[b]) for a, b in named
             if a in evidence.runs and b in evidence.runs}
    return differences.family(pairs, list(columns), n_resamples=n_resamples) if pairs else []


def runs_sentence(evidence):
    meta = evidence.runs_meta
    seconds = [m["seconds"] for m in meta if m.get("seconds") is not None]
    best = [m["best_iter"] for m in meta if m.get("best_iter") is not None]
    codes = evidence.codes()
    code = (f"all trained at commit {codes[0]}".replace(" then ", ", resumed at commit ") if len(codes) == 1 else
            f"**trained by different code** ({', '.join(codes)})")
    return (f"The {len(meta)} runs took {min(seconds):,.0f} to {max(seconds):,.0f} s each ({sum(seconds) / 60:,.0f} "
            f"minutes of CPU in all), kept their best checkpoints at iterations {min(best):,} to {max(best):,}, and "
            f"were {code}.") if seconds and best else f"The {len(meta)} runs were {code}."


def beyond_markdown(evidence):
    rows = evidence.table.get("beyond") or {}
    if not rows:
        return ""
    columns = list(next(iter(rows.values())))
    lines = [f"Beyond accuracy, each run's test top-{evidence.table.get('top_n')} lists (the mean over seeds ± the "
             "half-width of its 95% t-interval, as `table --top-n` computed them from the checkpoints): coverage, "
             "the interests' balance (mean entropy in bits of which interest supplies each item, the share of users "
             "served by one interest, the Gini of the interests' totals) and diversity where there are categories.",
             "", "| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for method, row in rows.items():
        lines.append(f"| {method} | " + " | ".join(
            "n/a" if row[c]["mean"] is None else f"{row[c]['mean']:.3f}" + (
                f" ± {(row[c]['high'] - row[c]['low']) / 2:.3f}" if row[c].get("low") is not None else "")
            for c in columns) + " |")
    return "\n".join(lines) + "\n"


def verdict_lines(rows):
    """Per pair: how many metrics say which, in the words of the verdicts."""
    out = []
    for pair in dict.fromkeys((r["a"], r["b"]) for r in rows):
        mine = [r for r in rows if (r["a"], r["b"]) == pair]
        counts = {}
        for r in mine:
            counts.setdefault(r["verdict"], []).append(label(r["metric"]))
        parts = [f"{v} on {', '.join(ms)}" if len(ms) < len(mine) else f"{v} on all {len(mine)} metrics"
                 for v, ms in sorted(counts.items())]
        rel = [r["rel_diff"] for r in mine if r["rel_diff"] is not None]
        size = f" (B - A from {min(rel):+.1%} to {max(rel):+.1%} of A)" if rel else ""
        out.append(f"- **{pair[1]} - {pair[0]}**: {'; '.join(parts)}{size}.")
    return "\n".join(out) + "\n"


def table_block(evidence, rows):
    """The Markdown of one kept table: its command, runs, means, differences (`rows`, family's), verdicts and
    what its top-N lists show beyond accuracy, with its forest plot (docs/forest-NAME.png, drawn by `report`)."""
    t = evidence.table
    columns = [c for c in protocol_columns(evidence) if c in t["columns"]]
    published = [c for c in t["columns"] if "(" in c and int(c.split("@")[1].split()[0]) in (20, 50)]
    first = evidence.runs[t["methods"][0]]
    parts = [f"*Generated by `python cli.py report` from docs/evidence/{t['name']}.npz "
             f"({protocol_title(evidence)}, {len(first)} seeds, {len(first[0].users):,} test users).*", "",
             "```bash", t["command"], "```", "", runs_sentence(evidence), "",
             means_markdown(evidence, columns + published)]
    if rows:
        parts += [differences.markdown(rows), f"![the differences of {t['name']}](forest-{t['name']}.png)", "",
                  "What the verdicts (Holm) support:", "", verdict_lines(rows)]
    beyond = beyond_markdown(evidence)
    if beyond:
        parts.append(beyond)
    if t.get("trials"):
        parts.append(grid_markdown(t))
    return "\n".join(parts)


def grid_markdown(t):
    """A study's trials (`cli.py tune --grid`): each point's validation metric, the mean over seeds ± the half-width
    of its 95% t-interval over seeds, one row per point and study; its figure is docs/grid-NAME.png."""
    knobs = t.get("knobs") or []
    lines = [f"The study's trials: {t.get('metric', 'the validation metric')} of each point, the mean over its seeds ± "
             "the half-width of the 95% t-interval over seeds (chosen on these; the test split is above).", "",
             "| study | " + " | ".join(knobs) + " | seeds | mean | ± |", "|---|" + "---:|" * (len(knobs) + 3)]
    by = {}
    for trial in t["trials"]:
        point = tuple(trial["params"].get(k) for k in knobs)
        by.setdefault((trial["study"], point), []).append(trial["value"])
    order = lambda kv: (kv[0][0], [(isinstance(p, str), p is None, p if isinstance(p, (int, float)) else str(p))  # noqa: E731
                                   for p in kv[0][1]])
    for (study, point), values in sorted(by.items(), key=order):
        mean, low, high = stats.t_interval(values)
        lines.append(f"| {study} | " + " | ".join("-" if p is None else f"{p:g}" if isinstance(p, float) else str(p)
                                                 for p in point)
                     + f" | {len(values)} | {mean:.4f} | " + ("" if low is None else f"{(high - low) / 2:.4f}") + " |")
    timed = {}
    for trial in t["trials"]:
        if isinstance(trial.get("seconds"), (int, float)):
            timed.setdefault(trial.get("method") or trial["study"], []).append(trial["seconds"])
    if timed:  # a trial's wall time, start to end: one thread each; a worker paused while it ran counts here too
        lines += ["", "The trials' wall times (each trained on one thread): " + "; ".join(
            f"{m}: {len(v)} trials, median {float(np.median(v)) / 60:.1f} minutes, {sum(v) / 60:,.0f} in all"
            for m, v in timed.items()) + "."]
    return "\n".join(lines) + f"\n\n![the grid of {t['name']}](grid-{t['name']}.png)\n"


# -----------------------------------------------------------------------------
# Across tables


def load_all(folder=EVIDENCE):
    """{name: Evidence} of every kept table, in name order."""
    out = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".npz"):
            out[name[:-4]] = kept.load(os.path.join(folder, name))
    return out


def span(values, fmt):
    """"a to b" over the values (formatted with `fmt`), "a" for one, "n/a" for none."""
    if not values:
        return "n/a"
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low} to {high}"


def seeds_span(rows):
    """The seeds a 5% difference needs over a pair's metrics: the range of those that some number of seeds
    reaches, and how many metrics need more users (or more than 1,000 seeds) instead."""
    need = [r["seeds_for_target"] for r in rows if r["seeds_for_target"] is not None]
    why = [r["seeds_why"] for r in rows if r["seeds_for_target"] is None]
    parts = [span(need, "d")] if need else []
    parts += [f"{n} of {len(rows)}: {differences.seeds_text(None, 0, w)}" for w, n in
              sorted((w, why.count(w)) for w in set(why))]
    return "; ".join(parts) or "n/a"


def summary_block(all_rows, all_evidence):
    """One row per kept table and pair: the verdicts over its metrics."""
    lines = ["| data | protocol | seeds | B - A | verdicts (Holm over the table's every pair x metric) | "
             "B - A, share of A's mean | smallest detectable (share of A's mean; 80% power at 0.05 / m) | "
             "seeds for a 5% difference |", "|---|---|---:|---|---|---:|---:|---:|"]
    for name, rows in all_rows.items():
        ev = all_evidence[name]
        for pair in dict.fromkeys((r["a"], r["b"]) for r in rows):
            mine = [r for r in rows if (r["a"], r["b"]) == pair]
            counts = {}
            for r in mine:
                counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
            words = "; ".join(f"{v}: {n} of {len(mine)}" for v, n in sorted(counts.items()))
            rel = [r["rel_diff"] for r in mine if r["rel_diff"] is not None]
            det = [r["detectable_rel"] for r in mine if r["detectable_rel"] is not None]
            lines.append(f"| {dataset(ev)} | {protocol_title(ev)} | {mine[0]['seeds']} | "
                         f"{pair[1]} - {pair[0]} | {words} | {span(rel, '+.1%')} | {span(det, '.1%')} | "
                         f"{seeds_span(mine)} |")
    return "\n".join(lines) + "\n"


def readme_block(all_rows, all_evidence):
    """The README's results table: Recall@20 of each method, and the verdicts of BaM against hard and REMI."""
    lines = ["| data | protocol | seeds | hard | BaM | REMI | BaM - hard | BaM - REMI |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for name, rows in all_rows.items():
        ev = all_evidence[name]
        m = means(ev, ["recall@20"])
        cell = {k: f"{m[k]['recall@20'][0]:.4f}" if k in m else "" for k in ("ComiRec", "BaM", "REMI")}
        verdict = {}
        for a in ("ComiRec", "REMI"):
            mine = [r for r in rows if (r["a"], r["b"]) == (a, "BaM")]
            counts = {}
            for r in mine:
                counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
            verdict[a] = ", ".join(f"{v} ({n}/{len(mine)})" for v, n in sorted(counts.items())) or "n/a"
        lines.append(f"| {dataset(ev)} | {protocol_title(ev)} | {len(ev.runs['BaM'])} | "
                     f"{cell['ComiRec']} | {cell['BaM']} | {cell['REMI']} | {verdict['ComiRec']} | "
                     f"{verdict['REMI']} |")
    return "\n".join(lines) + "\n"


def paper_block(all_rows, all_evidence):
    """What the paper's one-number gaps would need here: for each kept table, BaM - REMI's Recall@20 variance
    components, the seeds that would detect the paper's gaps (relative to REMI) with this table's users."""
    gaps = {f"{data}, R@20 (+{v['BaM'] / v['REMI'] - 1:.1%})": v["BaM"] / v["REMI"] - 1
            for (data, _), v in PAPER.items()}
    gaps[f"the paper's largest claim (+{PAPER_CLAIM:.2%})"] = PAPER_CLAIM
    lines = ["| our table | users | " + " | ".join(gaps) + " |", "|---|---:|" + "---:|" * len(gaps)]
    for name, rows in all_rows.items():
        ev = all_evidence[name]
        row = next((r for r in rows if (r["a"], r["b"]) == ("REMI", "BaM") and r["metric"] == "recall@20"), None)
        if row is None or row["components"] is None:
            continue
        cells = []
        for size in gaps.values():
            target = size * abs(row["mean_a"])
            n = verdicts.seeds_needed(row["components"], row["users"], row["family"], target)
            why = "users" if verdicts.users_part(row["components"], row["users"], row["family"]) > target else "seeds"
            cells.append(differences.seeds_text(n, 0, why))
        lines.append(f"| {dataset(ev)}, {protocol_title(ev)} | {row['users']:,} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------
# The pages


def blocks(folder=EVIDENCE, n_resamples=9999, evidence=None):
    """-> ({block name: Markdown} of every generated block, {table name: its differences' rows})."""
    evidence = load_all(folder) if evidence is None else evidence
    rows = {name: family(ev, n_resamples) for name, ev in evidence.items()}
    out = {name: table_block(ev, rows[name]) for name, ev in evidence.items()}
    tables = {name: ev for name, ev in evidence.items() if ev.table.get("kind") != "tune"}  # a study is no table
    if tables:
        kept_rows = {name: rows[name] for name in tables}
        out.update(summary=summary_block(kept_rows, tables), readme=readme_block(kept_rows, tables),
                   paper=paper_block(kept_rows, tables))
    # a blank line before the closing comment: Markdown ends a table there, not at the comment
    return {k: v.rstrip("\n") + "\n\n" for k, v in out.items()}, rows


def render(text, generated):
    """`text` with every block that `generated` names replaced; -> (new text, names of blocks it holds)."""
    seen = []

    def put(m):
        seen.append(m[2])
        return m[1] + generated[m[2]] + m[4] if m[2] in generated else m[0]
    return BLOCK.sub(put, text), seen


def write(root=".", check=False, n_resamples=9999, on_rows=None):
    """Rewrite (or, with check, compare) the generated blocks of PAGES under `root`. -> [problems]: a page whose
    block differs, a block with no evidence, or evidence that no page shows. `on_rows(name, rows, evidence)` is
    called with each kept table's differences (the command line draws its pictures with them)."""
    evidence = load_all(os.path.join(root, EVIDENCE))
    generated, rows = blocks(n_resamples=n_resamples, evidence=evidence)
    for name, r in rows.items():
        if on_rows and r:
            on_rows(name, r, evidence[name])
    problems, shown = [], set()
    for page in PAGES:
        path = os.path.join(root, page)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new, seen = render(text, generated)
        shown.update(seen)
        problems += [f"{page}: block `{name}` has no evidence file (docs/evidence/{name}.npz)" for name in seen
                     if name not in generated]
        if new != text:
            if check:
                problems.append(f"{page}: generated blocks differ from the evidence (fix: python cli.py report)")
            else:
                from bam_data.files import atomic_text
                atomic_text(path, new)
    for name in (n for n in generated if n not in shown):
        where = "README.md" if name == "readme" else "docs/results.md"
        problems.append(f"block `{name}`" + (f" (docs/evidence/{name}.npz)" if name not in GATHERING else "")
                        + f": no page shows it (fix: add <!-- report:{name} --> <!-- /report:{name} --> to {where})")
    return problems
