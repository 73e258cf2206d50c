"""
cli.py: the command line of bam, for the PyTorch reference (bam_minimal.py) and its tools.

    python cli.py train                              # ComiRec-SA + BaM on the built-in synthetic data
    python cli.py train --data movies.txt --selection bam
    python cli.py evaluate --checkpoint runs/synthetic-comirec-bam/checkpoint.pt
    python cli.py data stats ../shared/data/lastfm/LastFM.txt
    python cli.py data synth --out synth.txt
    python cli.py COMMAND --help                     # every option

Bad input stops with one line that names the file, the line and the fix, and exit code 2.
"""
import json
import os
import sys
from dataclasses import asdict, replace

import click
import numpy as np

import bam_data
from bam_data import files, formats, synth
from bam_tools import methods, options
from bam_tools.options import Group, Later, config_options, data_options, output_path
from bam_tools.perf import keep_freed_memory


bm = Later("bam_minimal")
baselines, checkpoints = Later("bam_tools.baselines"), Later("bam_tools.checkpoints")
datasets, distributed = Later("bam_tools.datasets"), Later("bam_tools.distributed")
runs, table_mod = Later("bam_tools.runs"), Later("bam_tools.table")

@click.group(cls=Group)
def cli():
    """bam: the reference implementation of BaM (KDD '24, BigData '24). See README.md."""
    keep_freed_memory()

# -----------------------------------------------------------------------------
# Shared helpers (the shared options are in bam_tools/options.py).


def load_dataset(path, fmt="auto", quiet=False):
    return datasets.load_dataset(path, fmt, log=None if quiet else click.echo)


def synthetic(folder, fresh=False):
    """The built-in synthetic dataset, written into `folder` so that later commands can reuse it.
    Written again when `fresh`, or when the generator's settings have changed since."""
    path = os.path.join(folder, "synthetic.txt")
    truth = os.path.join(folder, "synthetic.truth.json")
    if distributed.is_main() and (fresh or not synthetic_is_current(path, truth)):
        os.makedirs(folder, exist_ok=True)
        synth.write(*synth.generate(), path)
    distributed.barrier()  # under torchrun, process 0 alone decides and writes, and every process waits here
    return path


def synthetic_is_current(path, truth):
    if not (os.path.exists(path) and os.path.exists(truth)):
        return False
    try:
        with open(truth) as f:
            return json.load(f).get("config") == asdict(synth.SynthConfig())
    except (ValueError, AttributeError):  # damaged: written again
        return False


def join_torchrun(device):
    """Under torchrun, join the process group (bam_tools/distributed.py). Processes other than 0
    print nothing but errors: one progress bar, one report."""
    if distributed.join(device)[0] > 0:
        sys.stdout = open(os.devnull, "w")


SYNTHETIC_PRESET = dict(max_iters=5000, eval_every=500)  # so that `cli.py train` ends in minutes


def explicit(ctx, name):
    return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)


def echo_metrics(label, metrics):
    """The metrics on one line; then a `note:` with the users whose scores were not all finite, when there
    are any (the count stays in the metrics, and so in every JSON output that holds them)."""
    click.echo(f"{label:<17}" + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "nonfinite_users"))
    if metrics.get("nonfinite_users"):
        click.echo(f"note: {metrics['nonfinite_users']} users had a NaN or infinite score (weights whose products "
                   "overflow); those items rank above the target, and a non-finite target is a miss")

# -----------------------------------------------------------------------------
# train


@cli.command()
@data_options
@click.option("--out", default=None, help="run folder [default: runs/<data>-<model>-<selection>]")
@click.option("--fresh", is_flag=True, help="start over, even if --out holds a run")
@config_options
@click.pass_context
def train(ctx, data, fmt, out, fresh, **kwargs):
    """Train a model, validate, stop early, and test the best checkpoint.

    With no --data it trains ComiRec-SA + BaM on the built-in synthetic dataset (5,000 iterations,
    validation every 500 unless you pass --max-iters / --eval-every). A run resumes from its last
    validation when you rerun the same command; Ctrl-C keeps the best checkpoint so far."""
    cfg = bm.Config(**kwargs)
    bm.check_config(cfg)
    join_torchrun(cfg.device)
    if data is None:
        cfg = replace(cfg, **{k: v for k, v in SYNTHETIC_PRESET.items() if not explicit(ctx, k)})
    name = "synthetic" if data is None else os.path.basename(data).split(".")[0]
    out = out or os.path.join("runs", f"{name}-{cfg.model}-{cfg.selection}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise bm.InputError(f"{out}: is a file, not a run folder (fix: pass another --out)")
    with runs.lock(out):  # before anything is written: a second process on this folder stops here
        if fresh:
            runs.remove_run_files(out)
        dataset = load_dataset(synthetic(out, fresh) if data is None else data, fmt)
        folder = runs.RunFolder(out, cfg, dataset)  # refuses an item table that cannot fit in memory
        result = folder.finished()
        if result:
            click.echo(f"{out} has finished already (pass --fresh to run it again)")
            return report(result, out)
        folder.saved_state()  # a last.pt that cannot be resumed stops here, before any work
        device = bm.resolve_device(cfg)
        click.echo(f"{dataset.name}: {len(dataset.users)} users, {dataset.n_items} items, "
                   f"{dataset.n_interactions} interactions; {cfg.model} + {cfg.selection}, "
                   f"device {device}; writing {out}")
        folder.extra["mostpop"] = bm.evaluate(baselines.popularity_scorer(dataset, device), dataset, "test", cfg)[0]
        bar = Progress(cfg.max_iters)
        folder.log = bar.write
        try:
            _, result = bm.train(cfg, dataset, folder, log=bar.write, on_step=bar.step)
        except KeyboardInterrupt:
            bar.close()
            best = os.path.join(out, "checkpoint.pt")
            click.echo(f"interrupted at iteration {bar.it}; " + (f"the best checkpoint so far is {best}; "
                       if os.path.exists(best) else "") + "rerun the same command to resume", err=True)
            raise
        finally:
            bar.close()  # before any error line, so that it stands alone
    report(result, out)


class Progress:
    """A tqdm bar over iterations that starts where a resumed run starts, so its rate is right."""

    def __init__(self, total):
        self.total, self.bar, self.it = total, None, 0

    def step(self, it):
        self.it = it
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, initial=it - 1, desc="train", unit="it", dynamic_ncols=True,
                            mininterval=0.5, disable=not distributed.is_main())
        self.bar.update(1)

    def write(self, line):
        self.bar.write(line) if self.bar else click.echo(line)

    def close(self):
        if self.bar:
            self.bar.close()


def report(result, out):
    from bam_tools import plots
    if result["history"] and distributed.is_main():
        click.echo(f"curve: {plots.training_curve(result['history'], os.path.join(out, 'curve.png'))}")
    if "mostpop" in result:  # runs made by `table` have no baseline
        echo_metrics("most popular", result["mostpop"])
    echo_metrics(f"test (iter {result['best_iter']})", result["test"])
    pop, ours = result.get("mostpop", {}).get("recall@20"), result["test"]["recall@20"]
    click.echo(f"recall@20 {ours:.4f}" + (f" against most popular {pop:.4f}" if pop is not None else "")
               + (f" ({ours / pop:.1f}x)" if pop else "") + f"; results in {os.path.join(out, 'metrics.json')}")

# -----------------------------------------------------------------------------
# evaluate


@cli.command()
@click.option("--checkpoint", "ckpt", required=True, callback=options.existing,
              help="checkpoint.pt of a run, or an official model.pt")
@data_options
@click.option("--history-mask", type=click.Choice(options.choices("history_mask")), default=None,
              help="default: the checkpoint's (exclude for official state_dicts)")
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--json", "json_out", default=None, callback=output_path,
              help="also write the metrics to this JSON file")
@click.option("--model", type=click.Choice(["comirec", "mind"]), default=None,
              help="what the checkpoint must hold (checked; the shapes tell the rest)")
@options.official_options
@click.option("--engine", type=click.Choice(["torch", "numpy"]), default="torch", show_default=True,
              help="numpy: the same metrics from bam_numpy's numba engine")
@options.other_data_option
def evaluate(ckpt, data, fmt, history_mask, split, json_out, model, n_interests, seq_len, engine, other_data):
    """Full-item ranking of a checkpoint: Recall and nDCG at 10 and 20."""
    join_torchrun("auto")
    net, cfg, dataset, data_check = checkpoints.load_with_data(
        ckpt, data, lambda p: load_dataset(p, fmt), checkpoints.official_base(n_interests, seq_len), model,
        checkpoints.note, other_data)  # other data than the checkpoint's stops here, unless --other-data
    cfg = replace(cfg, history_mask=history_mask or cfg.history_mask, device="auto")
    if engine == "numpy" and distributed.size() > 1:
        raise bm.InputError("--engine numpy runs in one process (fix: python cli.py evaluate, without torchrun)")
    if engine == "numpy":
        from bam_tools import twin
        metrics = twin.evaluate_numpy(net, cfg, dataset, split)[0]
    else:
        net = net.to(bm.resolve_device(cfg))
        metrics = bm.evaluate(bm.model_scorer(net), dataset, split, cfg)[0]
    echo_metrics(f"{split} ({cfg.history_mask})", metrics)
    if split == "valid" and not cfg.valid_users and 0 < cfg.valid_sample < len(dataset.users):
        checkpoints.note(f"note: this scores every user's validation target; the run itself validated a fixed "
                         f"sample of {cfg.valid_sample} users (metrics.json, `validation`)")
    if json_out and distributed.is_main():
        runs.save_json(dict(metrics=metrics, split=split, history_mask=cfg.history_mask, checkpoint=ckpt,
                            data=dataset.name, config=asdict(cfg), engine=engine, **data_check), json_out)

# -----------------------------------------------------------------------------
# table


@cli.command()
@data_options
@click.option("--seeds", type=int, default=3, show_default=True, help="seeds per method (seed, seed+1, ...)")
@click.option("--methods", default=",".join(methods.DEFAULT_METHODS), show_default=True,
              help=f"comma-separated, from: {', '.join(methods.METHODS)}")
@click.option("--out", default=None, help="folder for the runs and the table [default: runs/table-<data>]")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="runs at a time, each in its own process")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per run, recorded in its metrics.json [default: torch's for --jobs 1, else "
                   "cores // jobs]")
@config_options
@click.pass_context
def table(ctx, data, fmt, seeds, methods, out, jobs, threads, **kwargs):
    """The paper's Table 2: SASRec, ComiRec, REMI and BaM under one protocol, mean ± std over seeds.

    Every (method, seed) run is resumable and a finished one is reused, so rerunning the command
    after an interruption only runs what is missing. Method settings override the flags."""
    base = bm.Config(**kwargs)
    bm.check_config(base)
    if seeds < 1:
        raise bm.InputError(f"--seeds {seeds}: must be 1 or more")
    if data is None:
        base = replace(base, **{k: v for k, v in SYNTHETIC_PRESET.items() if not explicit(ctx, k)})
    name = "synthetic" if data is None else os.path.basename(data).split(".")[0]
    out = out or os.path.join("runs", f"table-{name}")
    dataset = load_dataset(synthetic(out) if data is None else data, fmt)
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    from tqdm import tqdm
    with tqdm(total=len(chosen) * seeds, desc="runs", unit="run", dynamic_ncols=True) as bar:  # closed before an error
        text, _, reused = table_mod.run_table(base, dataset, chosen, seeds, out, log=bar.write,
                                              on_run=lambda: bar.update(1), jobs=jobs, threads=threads)
    click.echo(text)
    click.echo(f"{reused} of {len(chosen) * seeds} runs reused; wrote {os.path.join(out, 'table.md')} and table.json")

# -----------------------------------------------------------------------------
# balance


@cli.command()
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
def balance(ckpt, compare, data, fmt, out, n_rows, json_out, n_interests, seq_len, other_data):
    """The paper's Figure 1: which interest serves each user's top-10, as a heatmap, with summary
    figures (mean entropy, single-interest users, Gini of the interests' shares). On the synthetic
    data it also reports how well the interests recover the planted topics."""
    from bam_tools import balance as bal
    if n_rows < 1:
        raise bm.InputError(f"--users {n_rows}: must be 1 or more")
    panels, report = [], {}
    for path in [ckpt] + ([compare] if compare else []):
        net, cfg, dataset, data_check = checkpoints.load_with_data(
            path, data, lambda p: load_dataset(p, fmt, quiet=True), checkpoints.official_base(n_interests, seq_len),
            log=checkpoints.note, other_data=other_data)
        cfg = replace(cfg, device="auto")
        share, top, source, metrics = bal.interest_usage(net.to(bm.resolve_device(cfg)), dataset, cfg)
        s = bal.summary(share)
        truth = bal.truth_beside(dataset.name)
        if truth:
            s.update(bal.topic_recovery(top, source, dataset, truth))
        s["test"] = metrics
        name = f"{cfg.model} + {cfg.selection}"
        panels.append((name, share, s))
        report[path] = dict(method=name, **s, **data_check)
        click.echo(f"{name} ({path}):")
        for k, v in s.items():
            click.echo(f"  {k:<26}{json.dumps(v) if not isinstance(v, float) else f'{v:.4f}'}")
    click.echo(f"figure: {bal.draw(panels, out, n_rows)}")
    if json_out:
        runs.save_json(report, json_out)

# -----------------------------------------------------------------------------
# prepare


@cli.group(cls=Group)
def prepare():
    """Prepare raw public data in the official format."""


@prepare.command("amazon2023")
@click.argument("path")
@click.option("--out", required=True, help="the official-format file to write (id maps go beside it)")
@click.option("--kcore", type=int, default=5, show_default=True, help="iterative k-core on users and items")
@click.option("--dedup/--keep-repeats", default=True, show_default=True,
              help="keep only a user's first interaction with an item")
def amazon2023(path, out, kcore, dedup):
    """Amazon Reviews 2023: the 5-core CSV (user_id,parent_asin,rating,timestamp) or a raw review
    .jsonl / .jsonl.gz -> the official format, with Table 1's statistics."""
    from bam_tools.prepare import prepare_amazon2023
    if kcore < 1:
        raise bam_data.InputError(f"--kcore {kcore}: must be 1 or more")
    with files.output_folder(out):  # a failed prepare leaves no empty folder behind
        stats, maps = prepare_amazon2023(path, out, kcore, dedup)
    click.echo(f"{'users':<14}{stats['users']:,}\n{'items':<14}{stats['items']:,}\n"
               f"{'interactions':<14}{stats['interactions']:,}\n{'density':<14}{stats['density']:.4%}\n"
               f"{'avg length':<14}{stats['avg_len']:.2f}\n"
               f"(read {stats['raw_interactions']:,} rows, {stats['after_dedup']:,} after dedup, {kcore}-core)")
    click.echo(f"wrote {out} and {maps}")

# -----------------------------------------------------------------------------
# data


@cli.group(cls=Group)
def data():
    """Inspect data, or write the synthetic dataset."""


@data.command()
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="auto", show_default=True)
@click.option("--json", "json_out", default=None, callback=output_path,
              help="also write the statistics to this JSON file")
def stats(path, fmt, json_out):
    """Users, items, interactions, sequence lengths and density (the paper's Table 1)."""
    seqs, info = formats.read(path, fmt)
    lengths = np.array([len(s) for s in seqs.values()])
    out = dict(format=info["format"], users=len(seqs), items=len({i for s in seqs.values() for i in s}),
               max_item_id=max(max(s) for s in seqs.values()), interactions=int(lengths.sum()),
               avg_len=round(float(lengths.mean()), 2), median_len=float(np.median(lengths)),
               max_len=int(lengths.max()), users_under_3=int((lengths < 3).sum()))
    out["density"] = round(out["interactions"] / (out["users"] * out["items"]), 6)
    for k, v in out.items():
        click.echo(f"{k:<14}{v}")
    for note in info.get("notes", []):
        click.echo(f"note: {note}")
    if json_out:
        files.atomic_json(json_out, out)


@data.command()
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="auto", show_default=True)
@click.option("--out", required=True, callback=output_path, help="the official-format file to write")
def remap(path, fmt, out):
    """Number the items 1..n in order of first appearance (users keep their ids), so that the item
    table has one row per item; the map from new to old ids goes beside --out as .items.json."""
    seqs, _ = formats.read(path, fmt)
    ids = {}
    remapped = {u: [ids.setdefault(i, len(ids) + 1) for i in s] for u, s in seqs.items()}
    formats.write_official(remapped, out)
    files.atomic_json(out + ".items.json", {new: old for old, new in ids.items()})
    click.echo(f"wrote {out} ({len(ids):,} items, largest id before {max(ids):,}) and {out}.items.json")


@data.command("synth")
@click.option("--out", required=True, help="file to write; the ground truth goes beside it as .truth.json")
@click.option("--users", type=int, default=synth.SynthConfig.users, show_default=True)
@click.option("--items", type=int, default=synth.SynthConfig.items, show_default=True)
@click.option("--topics", type=int, default=synth.SynthConfig.topics, show_default=True)
@click.option("--mean-len", type=int, default=synth.SynthConfig.mean_len, show_default=True)
@click.option("--seed", type=int, default=synth.SynthConfig.seed, show_default=True)
def synth_cmd(out, users, items, topics, mean_len, seed):
    """Write the synthetic dataset (planted topics) in the official format."""
    if topics > items or min(users, items, topics) < 1 or mean_len < 5:
        raise bam_data.InputError("--users, --items, --topics must be positive, topics <= items, --mean-len >= 5")
    seqs, truth = synth.generate(synth.SynthConfig(users, items, topics, mean_len=mean_len, seed=seed))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    truth_path = synth.write(seqs, truth, out)
    click.echo(f"wrote {out} ({sum(map(len, seqs.values()))} interactions) and {truth_path}")


from bam_tools import cli_twin  # noqa: E402  (export, crosscheck, golden: the NumPy twin)

for c in cli_twin.COMMANDS:
    cli.add_command(c)

from bam_tools.cli_course import COMMANDS as COURSE_COMMANDS  # noqa: E402  (course make, check, grade)

for c in COURSE_COMMANDS:
    cli.add_command(c)

if __name__ == "__main__":
    if "LOCAL_RANK" in os.environ:  # under torchrun: each worker ends with its own exit code
        distributed.run_and_leave(lambda: cli(prog_name="cli.py"))
    else:
        cli(prog_name="cli.py")
