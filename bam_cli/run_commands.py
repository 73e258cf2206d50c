"""
bam_cli/run_commands.py: the commands that train and evaluate: train, evaluate, table, balance.

    python cli.py train                              # ComiRec-SA + BaM on the built-in synthetic data
    python cli.py evaluate --checkpoint runs/synthetic-comirec-bam/checkpoint.pt
    python cli.py table --seeds 3
    python cli.py balance --checkpoint runs/a/checkpoint.pt --out fig.png

Each body parses, calls the function that does the work (bam_experiments.single_run, .table, .balance) and
prints. Modules that import torch are imported inside the commands that use them, so that --help answers at once.
"""
import json
import os
from dataclasses import asdict, replace

import click

from bam_cli import options
from bam_cli.options import config_options, data_options, output_path
from bam_data.categories import category_codes, read_categories
from bam_evidence import metrics as formulas
from bam_experiments import methods

# -----------------------------------------------------------------------------
# What the commands share


def ndcg_variants(ctx, param, values):
    """--ndcg-as, given once or more, each a name or a comma list -> the published NDCGs named, in order."""
    try:
        return formulas.variants(values)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


ndcg_as_option = click.option(
    "--ndcg-as", multiple=True, callback=ndcg_variants, metavar="NAME[,NAME]",
    help="also a published NDCG, beside the correct one and under its own label `ndcg@N (NAME)`: comirec-paper "
         "(ComiRec's original code: its KDD '20 tables), comirec-master (ComiRec's code after its issue #6), remi "
         "(REMI's code: its RecSys '23 tables; evaluate only), comirec (both of ComiRec's); a comma list, or the "
         "option again; a protocol whose tables published them (comirec). `table` shows both of ComiRec's "
         "(docs/protocols.md)")


def join_torchrun(device):
    """Under torchrun, join the process group (bam_runs/distributed.py). Processes other than 0
    print nothing but errors: one progress bar, one report."""
    from bam_runs import distributed
    if distributed.join(device)[0] > 0:
        import sys
        sys.stdout = open(os.devnull, "w")


def with_synthetic_preset(ctx, cfg, source):
    """No --data: the built-in synthetic data, with the preset's iterations unless given on the command line."""
    from bam_experiments import single_run as experiment
    if not source.synthetic:
        return cfg
    given = {k for k in experiment.SYNTHETIC_PRESET
             if ctx.get_parameter_source(k) not in (click.core.ParameterSource.DEFAULT, None)}
    return replace(cfg, **{k: v for k, v in experiment.SYNTHETIC_PRESET.items() if k not in given})


def echo_metrics(label, metrics):
    """The metrics on one line; then a `note:` with the users whose scores were not all finite, when there
    are any (the count stays in the metrics, and so in every JSON output that holds them)."""
    click.echo(f"{label:<16} " + "  ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a"
                                          for k, v in metrics.items() if k != "nonfinite_users"))
    if metrics.get("nonfinite_users"):
        click.echo(f"note: {metrics['nonfinite_users']} users had a NaN or infinite score (weights whose products "
                   "overflow); those items rank above the target, and a non-finite target is a miss")


class Progress:
    """A tqdm bar over iterations that starts where a resumed run starts, so its rate is right."""

    def __init__(self, total):
        self.total, self.bar, self.it = total, None, 0

    def step(self, it):
        self.it = it
        if self.bar is None:
            from tqdm import tqdm

            from bam_runs import distributed
            self.bar = tqdm(total=self.total, initial=it - 1, desc="train", unit="it", dynamic_ncols=True,
                            mininterval=0.5, disable=not distributed.is_main())
        self.bar.update(1)

    def write(self, line):
        self.bar.write(line) if self.bar else click.echo(line)

    def close(self):
        if self.bar:
            self.bar.close()

# -----------------------------------------------------------------------------
# train


@click.command()
@data_options
@click.option("--out", default=None, help="run folder [default: runs/<data>-<model>-<selection>]")
@click.option("--fresh", is_flag=True, help="start over, even if --out holds a run")
@ndcg_as_option
@config_options
@click.pass_context
def train(ctx, source, out, fresh, ndcg_as, **kwargs):
    """Train a model, validate, stop early, and test the best checkpoint.

    With no --data it trains ComiRec-SA + BaM on the built-in synthetic dataset (5,000 iterations,
    validation every 500 unless you pass --max-iters / --eval-every). A run resumes from its last
    validation when you rerun the same command; Ctrl-C keeps the best checkpoint so far."""
    import bam_minimal as bm
    from bam_experiments import single_run as experiment
    cfg = bm.Config(**kwargs)
    experiment.check_config(cfg)  # SASRec registered first: --model sasrec is Table 2's baseline
    experiment.check_ndcg_as(ndcg_as, cfg.protocol, lists=False, command="train")
    join_torchrun(cfg.device)
    cfg = with_synthetic_preset(ctx, cfg, source)
    out = out or experiment.default_out(source, cfg)
    bar = Progress(cfg.max_iters)
    try:
        result, reused = experiment.train_run(cfg, source, out, fresh, log=bar.write, on_step=bar.step,
                                              on_start=click.echo, ndcg_as=ndcg_as)
    except KeyboardInterrupt:
        bar.close()
        best = os.path.join(out, "checkpoint.pt")
        click.echo(f"interrupted at iteration {bar.it}; " + (f"the best checkpoint so far is {best}; "
                   if os.path.exists(best) else "") + "rerun the same command to resume", err=True)
        raise
    finally:
        bar.close()  # before any error line, so that it stands alone
    if reused:
        click.echo(f"{out} has finished already (pass --fresh to run it again)")
    report(result, out)


def report(result, out):
    """What `train` prints of its Result (bam_evidence.records): the curve, the baseline and the test."""
    from bam_experiments import plots
    from bam_runs import distributed
    if result.history and distributed.is_main():
        click.echo(f"curve: {plots.training_curve(result.history, os.path.join(out, 'curve.png'))}")
    if result.mostpop:  # runs made by `table` have no baseline
        echo_metrics("most popular", result.mostpop)
    echo_metrics(f"test (iter {result.best_iter})", result.test)
    pop, ours = (result.mostpop or {}).get("recall@20"), result.test["recall@20"]
    click.echo(f"recall@20 {ours:.4f}" + (f" against most popular {pop:.4f}" if pop is not None else "")
               + (f" ({ours / pop:.1f}x)" if pop else "") + f"; results in {os.path.join(out, 'metrics.json')}")

# -----------------------------------------------------------------------------
# evaluate


@click.command()
@click.option("--checkpoint", "ckpt", required=True, callback=options.existing,
              help="checkpoint.pt of a run, or an official model.pt")
@data_options
@click.option("--history-mask", type=click.Choice(options.choices("history_mask")), default=None,
              help="default: the checkpoint's (exclude for official state_dicts)")
@click.option("--protocol", default=None,
              help="loo (leave-one-out) | comirec (ComiRec's and REMI's: the test users' last 20% as targets) | "
                   "another that bam_protocols registers; default: the checkpoint's")
@ndcg_as_option
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--json", "json_out", default=None, callback=output_path,
              help="also write the metrics to this JSON file")
@click.option("--per-user", "per_user_out", default=None, callback=output_path,
              help="also write each user's target, rank and metrics to this .npz, for `compare` "
                   "[default with --json: beside it, NAME.per_user.npz]")
@click.option("--top-n", type=click.IntRange(min=1), default=None,
              help="also coverage@N, the interests' balance over it (and diversity@N with --categories) of each "
                   "user's top-N [default with --categories: 50, ComiRec's]")
@click.option("--categories", default=None, callback=options.existing,
              help="`item category` per line (data synth writes one): adds diversity@N")
@click.option("--model", type=click.Choice(["comirec", "mind"]), default=None,
              help="what the checkpoint must hold (checked; the shapes tell the rest)")
@options.official_options
@click.option("--engine", type=click.Choice(["torch", "numpy"]), default="torch", show_default=True,
              help="numpy: the same metrics from bam_numpy's numba engine")
@options.other_data_option
def evaluate(ckpt, source, history_mask, protocol, ndcg_as, split, json_out, per_user_out, top_n, categories, model,
             n_interests, seq_len, engine, other_data):
    """Full-item ranking of a checkpoint: Recall and nDCG at 10 and 20 (and HitRate, at 50 too, under
    --protocol comirec), each user's result for `compare`, and on request what the top-N lists show beyond
    accuracy (coverage@N, the interests' balance, diversity@N)."""
    import bam_protocols
    from bam_experiments import single_run as experiment
    from bam_runs import distributed, run_folder
    join_torchrun("auto")
    if protocol:  # else the checkpoint's, known once it is loaded
        experiment.check_ndcg_as(ndcg_as, protocol)
    mapping = read_categories(categories) if categories else None  # a bad file stops before any work
    top_n = top_n or (50 if categories else 0)
    request = experiment.EvaluationRequest(ckpt, source, split=split, protocol=protocol, history_mask=history_mask,
                                           model=model, n_interests=n_interests, seq_len=seq_len, engine=engine,
                                           other_data=other_data, k_top=top_n, ndcg_as=ndcg_as)
    got = experiment.evaluate_checkpoint(request, log=click.echo, note=options.note)
    metrics, cfg, dataset, data_check, ranks = got.metrics, got.cfg, got.dataset, got.data_check, got.ranks
    if top_n:
        from bam_evidence import beyond
        codes = category_codes(mapping, dataset.n_items) if mapping is not None else None
        metrics.update(beyond.list_metrics(got.tops, dataset.n_items, codes))
    echo_metrics(f"{split} ({bam_protocols.get(cfg.protocol).label()}{cfg.history_mask})", metrics)
    per_user_out = per_user_out or (json_out and os.path.splitext(json_out)[0] + ".per_user.npz")
    if per_user_out and distributed.is_main():  # first: a JSON is never without the file beside it
        run_folder.save_per_user(per_user_out, dataset, split, cfg, ranks, run_folder.fingerprint(dataset), ckpt,
                                 ndcg_as=ndcg_as)  # those the ranks give: REMI's is in the JSON only
        click.echo(f"each user's result: {per_user_out}")
    if json_out and distributed.is_main():
        run_folder.save_json(dict(metrics=metrics, split=split, protocol=cfg.protocol, history_mask=cfg.history_mask,
                                  checkpoint=ckpt,
                                  data=dataset.name, config=asdict(cfg), engine=engine, **data_check), json_out)

# -----------------------------------------------------------------------------
# table


@click.command()
@data_options
@click.option("--seeds", type=int, default=3, show_default=True, help="seeds per method (seed, seed+1, ...)")
@click.option("--methods", "chosen", default=",".join(methods.DEFAULT_METHODS), show_default=True,
              help=f"comma-separated, from: {', '.join(methods.METHODS)}")
@click.option("--out", default=None, help="folder for the runs and the table [default: runs/table-<data>]")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="runs at a time, each in its own process")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per run, recorded in its metrics.json [default: torch's for --jobs 1, else "
                   "cores // jobs]")
@ndcg_as_option
@click.option("--top-n", type=click.IntRange(min=1), default=None,
              help="also each run's top-N lists beyond accuracy: coverage@N, the interests' balance, and "
                   "diversity@N with --categories [default with --categories: 50]")
@click.option("--categories", default=None, callback=options.existing,
              help="`item category` per line (data synth writes one): adds diversity@N")
@config_options
@click.pass_context
def table(ctx, source, seeds, chosen, out, jobs, threads, ndcg_as, top_n, categories, **kwargs):
    """The paper's Table 2: SASRec, ComiRec, REMI and BaM under one protocol, with 95% intervals over seeds.

    Every (method, seed) run is resumable and a finished one is reused, so rerunning the command
    after an interruption only runs what is missing. Method settings override the flags."""
    import bam_minimal as bm
    from bam_experiments import single_run as experiment
    from bam_experiments import table as table_mod
    from bam_runs import datasets
    base = bm.Config(**kwargs)
    experiment.check_config(base)
    experiment.check_ndcg_as(ndcg_as, base.protocol, lists=False, command="table")
    if seeds < 1:
        raise bm.InputError(f"--seeds {seeds}: must be 1 or more")
    base = with_synthetic_preset(ctx, base, source)
    out = out or experiment.default_out(source, base, prefix="table-")
    mapping = read_categories(categories) if categories else None  # a bad file stops before any work
    top_n = top_n or (50 if categories else 0)
    dataset = datasets.load_run_data(source, out, log=click.echo)
    if top_n > dataset.n_items:
        raise bm.InputError(f"--top-n {top_n}: more than the {dataset.n_items} items of {dataset.name} (fix: a "
                            "smaller --top-n)")
    codes = category_codes(mapping, dataset.n_items) if mapping is not None else None
    chosen = [m.strip() for m in chosen.split(",") if m.strip()]
    from tqdm import tqdm
    with tqdm(total=len(chosen) * seeds, desc="runs", unit="run", dynamic_ncols=True) as bar:  # closed before an error
        text, _, reused = table_mod.run_table(base, dataset, chosen, seeds, out, log=bar.write,
                                              on_run=lambda: bar.update(1), jobs=jobs, threads=threads,
                                              ndcg_as=bool(ndcg_as), top_n=top_n, codes=codes)
    click.echo(text)
    click.echo(f"{reused} of {len(chosen) * seeds} runs reused; wrote {os.path.join(out, 'table.md')} and table.json")

# -----------------------------------------------------------------------------
# balance


@click.command()
@click.option("--checkpoint", "ckpt", required=True, callback=options.existing,
              help="a run's checkpoint.pt (or an official model.pt with --data)")
@click.option("--compare", default=None, help="a second checkpoint, drawn beside the first (hard against BaM)")
@data_options
@click.option("--out", required=True, callback=output_path, help="the PNG to write")
@click.option("--users", "n_rows", type=int, default=60, show_default=True, help="users (rows) in the heatmap")
@click.option("--json", "json_out", default=None, callback=output_path,
              help="also write the summary figures to this JSON file")
@options.official_options
@options.other_data_option
def balance(ckpt, compare, source, out, n_rows, json_out, n_interests, seq_len, other_data):
    """The paper's Figure 1: which interest serves each user's top-10, as a heatmap, with summary
    figures (mean entropy, single-interest users, Gini of the interests' shares). On the synthetic
    data it also reports how well the interests recover the planted topics."""
    import bam_minimal as bm
    from bam_experiments import balance as bal
    from bam_runs import checkpoints, datasets, run_folder
    if n_rows < 1:
        raise bm.InputError(f"--users {n_rows}: must be 1 or more")
    base = checkpoints.official_base(n_interests, seq_len)

    def load(path):
        return checkpoints.load_with_data(path, source.path, lambda p: datasets.load_dataset(source.at(p)), base,
                                          log=options.note, other_data=other_data)
    panels, summaries = [], {}
    for path in [ckpt] + ([compare] if compare else []):
        name, share, s, data_check = bal.checkpoint_balance(path, load)
        panels.append((name, share, s))
        summaries[path] = dict(method=name, **s, **data_check)
        click.echo(f"{name} ({path}):")
        for k, v in s.items():
            click.echo(f"  {k:<26}{json.dumps(v) if not isinstance(v, float) else f'{v:.4f}'}")
    click.echo(f"figure: {bal.draw(panels, out, n_rows)}")
    if json_out:
        run_folder.save_json(summaries, json_out)


COMMANDS = [train, evaluate, table, balance]
