"""
bam_cli/evidence_commands.py: `python cli.py compare A B`: is B's difference from A real? Torch-free; `report
pack` alone loads the protocols (and so torch), to keep the title and metrics of the runs' protocol.

    python cli.py compare runs/synthetic-comirec-hard runs/synthetic-comirec-bam
    python cli.py compare a/per_user_test.npz b/per_user_test.npz --json compare.json

A and B are run folders (their per_user_test.npz) or per-user files (`evaluate --per-user`). The work is
bam_evidence's: per_user.load_run, stats.compare (scipy.stats); this module parses and prints.
"""
import click

from bam_cli.options import output_path
from bam_data.files import atomic_json


def p_text(p, floor=None):
    """A p-value; "<= floor" where a resampling test sits at the smallest p it can give."""
    if p is not None and floor is not None and p <= floor * (1 + 1e-9):
        return f"<= {floor:.2g}"
    return "n/a" if p is None else "< 1e-4" if p < 1e-4 else f"{p:.4f}"


def sides(path):
    """A side of `compare`: [(seed or None, run path)]. A run folder or a per-user file is one run; a folder of
    `seed-*` run folders (a table's method folder, OUT/<method>/) is one run per seed; several, comma-separated."""
    import os
    import re
    out = []
    for part in (p for p in path.split(",") if p):
        seeds = sorted(d for d in os.listdir(part) if re.fullmatch(r"seed-\d+", d)) if os.path.isdir(part) else []
        if seeds and not os.path.exists(os.path.join(part, "metrics.json")):
            out += [os.path.join(part, d) for d in seeds]
        else:
            out.append(part)
    found = [(result_of(run), run) for run in out]
    return [(result.config.get("seed") if result else None, run) for result, run in found]


def result_of(run):
    """A run folder's Result (bam_evidence.records), or None where there is none to read (a per-user file, a run
    not finished, a metrics.json that is not one: compare then goes by the per-user file alone)."""
    import os
    from bam_data.formats import InputError
    from bam_evidence import records
    try:
        return records.read_result(os.path.join(run, "metrics.json"))
    except (OSError, InputError):
        return None


def code_of(run):
    """A run's recorded code label (bam_evidence.kept.code_label), from its metrics.json: each commit that trained
    it, for a run resumed under other code."""
    from bam_evidence.kept import code_label
    result = result_of(run)
    return code_label(result.code, result.code_history) if result else code_label(None)


def paired_by_seed(a, b):
    """-> ([(seed, run a, run b)], note): the seeds both sides have, in order, and what was left out."""
    from bam_data.formats import InputError
    left, right = dict(sides(a)), dict(sides(b))
    if None in left or None in right:
        raise InputError(f"{a if None in left else b}: a run without a seed in its metrics.json (a per-user file?) "
                         "cannot be paired by seed (fix: pass run folders, or one run on each side)")
    common = sorted(set(left) & set(right))
    if not common:
        raise InputError(f"{a} and {b}: no seed in common ({sorted(left)} against {sorted(right)}) (fix: runs of "
                         "the same seeds, e.g. two method folders of one `table`)")
    only = sorted(set(left) ^ set(right))
    return [(s, left[s], right[s]) for s in common], (f"seeds on one side only, left out: {only}" if only else "")


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "json_out", default=None, callback=output_path, help="also write the comparison to this file")
@click.option("--resamples", type=click.IntRange(min=99), default=9999, show_default=True,
              help="resamples of the bootstrap and the randomization test")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="seed of the resampling")
def compare(a, b, json_out, resamples, seed):
    """B against A, user by user (one run each), or over seeds and users (several runs each, paired by seed).

    A and B are each a run folder, a per-user file (`evaluate --per-user`), a table's method folder (its
    seed-* runs: OUT/<method>) or run folders separated by commas. One run each: both means, B - A, a 95%
    paired bootstrap interval over users, the paired t-test and randomization test, per metric. Several
    seeds: the primary 95% interval over seeds and users together, Holm's correction over the metrics and a
    verdict, beside the intervals over seeds only and over users only (bam_evidence.differences).

    Every run must rank the same users' same targets (data, protocol, split and history mask): anything
    else is refused, since a paired comparison of different evaluations means nothing."""
    from bam_evidence import per_user, stats
    one = len(sides(a)) == 1 and len(sides(b)) == 1
    if not one:
        return compare_seeds(a, b, json_out, resamples, seed)
    first, second = per_user.load_run(sides(a)[0][1]), per_user.load_run(sides(b)[0][1])
    report = stats.compare(first, second, n_resamples=resamples, seed=seed)
    click.echo(f"A: {first.path}\nB: {second.path}\n{len(first.users)} users, {first.protocol} protocol, "
               f"{first.split} split, history mask {first.history_mask}; B - A, 95% bootstrap interval over users "
               "(one run each: the trained models are held fixed; pass several seeds for an interval over both)")
    width = max([12] + [len(name) + 2 for name in report])                  # `ndcg@50 (comirec-paper)` fits
    click.echo(f"{'metric':<{width}}{'A':>9}{'B':>9}{'B - A':>10}{'rel':>9}{'95% interval':>22}{'p (t)':>9}"
               f"{'p (rand)':>10}")
    for name, r in report.items():
        rel = f"{r['rel_diff']:+.1%}" if r["rel_diff"] is not None else "-"
        interval = f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        click.echo(f"{name:<{width}}{r['mean_a']:>9.4f}{r['mean_b']:>9.4f}{r['diff']:>+10.4f}{rel:>9}{interval:>22}"
                   f"{p_text(r['p_ttest']):>9}{p_text(r['p_randomization'], r['p_randomization_floor']):>10}")
    codes = sorted({code_of(p) for p in (sides(a)[0][1], sides(b)[0][1])})
    if len(codes) > 1:
        click.echo(f"note: the two runs come from different code ({', '.join(codes)})")
    if json_out:
        atomic_json(json_out, dict(a=first.path, b=second.path, users=len(first.users), protocol=first.protocol,
                                   split=first.split, history_mask=first.history_mask, fingerprint=first.fingerprint,
                                   resamples=resamples, seed=seed, confidence=stats.CONFIDENCE, metrics=report,
                                   code=codes))


def compare_seeds(a, b, json_out, resamples, seed):
    """compare over several seeds: one family of the metrics both sides hold, as `table` computes it."""
    from bam_evidence import differences, per_user
    runs, note = paired_by_seed(a, b)
    left = [per_user.load_run(x) for _, x, _ in runs]
    right = [per_user.load_run(y) for _, _, y in runs]
    metrics = per_user.check_paired(left[0], right[0])
    rows = differences.family({(a, b): (left, right)}, metrics, n_resamples=resamples, seed=seed)
    codes = sorted({code_of(p) for _, x, y in runs for p in (x, y)})
    click.echo(f"A: {a}\nB: {b}\nseeds {', '.join(str(s) for s, _, _ in runs)}, {len(left[0].users)} users, "
               f"{left[0].protocol} protocol, {left[0].split} split, history mask {left[0].history_mask}"
               + (f"\nnote: {note}" if note else "")
               + (f"\nnote: these runs come from different code ({', '.join(codes)})" if len(codes) > 1 else ""))
    width = max([12] + [len(r["metric"]) + 2 for r in rows])
    click.echo(f"{'metric':<{width}}{'B - A':>10}{'rel':>8}{'primary 95% interval':>24}{'p':>9}{'p (Holm)':>10}  "
               f"{'verdict':<24}{'seeds only':>22}{'users only':>22}{'detectable':>12}{'seeds for 5%':>14}")
    for r in rows:
        rel = f"{r['rel_diff']:+.1%}" if r["rel_diff"] is not None else "-"
        u = r["by_users"]
        click.echo(f"{r['metric']:<{width}}{r['diff']:>+10.4f}{rel:>8}"
                   f"{differences.interval(r['low'], r['high']):>24}{differences.p_text(r['p']):>9}"
                   f"{differences.p_text(r['p_holm']):>10}  {verdict_words(r, a, b):<24}"
                   f"{differences.interval(r['seeds_low'], r['seeds_high']):>22}"
                   f"{differences.interval(u.get('ci_low'), u.get('ci_high')):>22}"
                   f"{'n/a' if r['detectable_rel'] is None else format(r['detectable_rel'], '.1%'):>12}"
                   f"{differences.seeds_text(r['seeds_for_target'], r['seeds'], r['seeds_why']):>14}")
    click.echo("primary: seeds and users together (two-way random effects); Holm over the "
               f"{rows[0]['family']} metrics; seeds only holds the users fixed, users only the trained models; "
               "detectable: the smallest difference (share of A) these seeds and users detect with 80% power; "
               "seeds for 5%: to detect a 5% difference with these users (docs/statistics.md)")
    if json_out:
        atomic_json(json_out, dict(a=a, b=b, seeds=[s for s, _, _ in runs], runs=[[x, y] for _, x, y in runs],
                                   users=len(left[0].users), protocol=left[0].protocol, split=left[0].split,
                                   history_mask=left[0].history_mask, fingerprint=left[0].fingerprint,
                                   resamples=resamples, seed=seed, differences=rows, code=codes, note=note))


def verdict_words(row, a, b):
    """The verdict with the sides called A and B (the paths are long)."""
    return {f"{a} ahead": "A ahead", f"{b} ahead": "B ahead"}.get(row["verdict"], row["verdict"])


@click.group(invoke_without_command=True)
@click.option("--check", is_flag=True, help="compare the pages with the evidence, write nothing; exit 1 on a "
              "difference")
@click.option("--root", default=".", show_default=True, help="the checkout whose docs/ and README.md to write")
@click.pass_context
def report(ctx, check, root):
    """Regenerate every number of docs/results.md and README.md's results table from the kept evidence.

    Each kept table (docs/evidence/NAME.npz: every run's per-user ranks, packed by `report pack`) gives the
    block between <!-- report:NAME --> and <!-- /report:NAME -->: the means, the differences with their
    intervals, Holm's correction and the verdicts; `summary`, `readme` and `paper` gather the tables. Under a
    minute on a fresh clone; no run, checkpoint or dataset is needed."""
    if ctx.invoked_subcommand:
        return
    import os
    from bam_evidence import report as report_mod

    def forest(name, rows, evidence):  # a picture of each kept table's differences, beside the page that shows them
        from bam_experiments import plots
        plots.forest(rows, os.path.join(root, "docs", f"forest-{name}.png"))
        t = evidence.table
        if t.get("trials") and t.get("knobs"):  # a study's grid (`tune --grid`): redrawn from its kept trials
            from bam_tune import figure
            studies = {}
            for trial in t["trials"]:
                studies.setdefault(trial.get("method") or trial["study"], []).append(trial)
            figure.draw(studies, t["knobs"], os.path.join(root, "docs", f"grid-{name}.png"), t.get("metric"))
    problems = report_mod.write(root, check=check, on_rows=None if check else forest)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("the generated blocks match the evidence" if check else
               f"wrote the generated blocks of {', '.join(report_mod.PAGES)}")


@report.command("pack")
@click.argument("table_dir")
@click.option("--name", required=True, help="the evidence's name: docs/evidence/NAME.npz and block NAME")
@click.option("--command", "command", default="", help="the `cli.py table` command that made the runs, as the "
              "docs show it")
@click.option("--out", default=None, help="the file to write (default docs/evidence/NAME.npz)")
def pack(table_dir, name, command, out):
    """Keep the evidence of a finished `cli.py table`: every run's per-user ranks, config, seed, iterations,
    seconds and commit, in one compressed file."""
    import os
    import re
    from bam_data.formats import InputError
    from bam_evidence import kept
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise InputError(f"--name {name!r}: lower-case letters, digits and dashes only (fix: e.g. lastfm-comirec)")
    out = out or os.path.join("docs", "evidence", f"{name}.npz")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    import bam_protocols
    kept.pack(table_dir, out, name, command,
              protocols={n: (p.title, tuple(p.columns)) for n, p in bam_protocols.PROTOCOLS.items()})
    click.echo(f"wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB)")


COMMANDS = [compare, report]
