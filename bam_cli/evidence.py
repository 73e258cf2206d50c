"""
bam_cli/evidence.py: `python cli.py compare A B`: is B's difference from A real? Torch-free.

    python cli.py compare runs/synthetic-comirec-hard runs/synthetic-comirec-bam
    python cli.py compare a/per_user_test.npz b/per_user_test.npz --json compare.json

A and B are run folders (their per_user_test.npz) or per-user files (`evaluate --per-user`). The work is
bam_evidence's: per_user.load_run, stats.compare (scipy.stats); this module parses and prints.
"""
import click

from bam_cli.options import output_path
from bam_data.files import atomic_json


def p_text(p):
    return "n/a" if p is None else "< 1e-4" if p < 1e-4 else f"{p:.4f}"


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "json_out", default=None, callback=output_path, help="also write the comparison to this file")
@click.option("--resamples", type=click.IntRange(min=99), default=9999, show_default=True,
              help="resamples of the bootstrap and the randomization test")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="seed of the resampling")
def compare(a, b, json_out, resamples, seed):
    """B against A, user by user: both means, the difference (B - A), a 95% paired bootstrap interval,
    the paired t-test and the paired randomization test, for every metric both evaluations hold.

    A and B must rank the same users' same targets (data, protocol, split and history mask): anything
    else is refused, since a paired comparison of different evaluations means nothing."""
    from bam_evidence import per_user, stats
    first, second = per_user.load_run(a), per_user.load_run(b)
    report = stats.compare(first, second, n_resamples=resamples, seed=seed)
    click.echo(f"A: {first.path}\nB: {second.path}\n{len(first.users)} users, {first.protocol} protocol, "
               f"{first.split} split, history mask {first.history_mask}; B - A, 95% bootstrap interval over users")
    width = max([12] + [len(name) + 2 for name in report])                  # `ndcg@50 (comirec)` fits
    click.echo(f"{'metric':<{width}}{'A':>9}{'B':>9}{'B - A':>10}{'rel':>9}{'95% interval':>22}{'p (t)':>9}"
               f"{'p (rand)':>10}")
    for name, r in report.items():
        rel = f"{r['rel_diff']:+.1%}" if r["rel_diff"] is not None else "-"
        interval = f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        click.echo(f"{name:<{width}}{r['mean_a']:>9.4f}{r['mean_b']:>9.4f}{r['diff']:>+10.4f}{rel:>9}{interval:>22}"
                   f"{p_text(r['p_ttest']):>9}{p_text(r['p_randomization']):>10}")
    if json_out:
        atomic_json(json_out, dict(a=first.path, b=second.path, users=len(first.users), protocol=first.protocol,
                                   split=first.split, history_mask=first.history_mask, fingerprint=first.fingerprint,
                                   resamples=resamples, seed=seed, confidence=stats.CONFIDENCE, metrics=report))


COMMANDS = [compare]
