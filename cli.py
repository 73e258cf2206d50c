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
import inspect
import json
import os
import re
import sys
from dataclasses import asdict, fields, replace

import click
import numpy as np

import bam_minimal as bm
from bam_tools import checkpoints, formats, synth

# -----------------------------------------------------------------------------
# Errors: one line and exit code 2, never a traceback.


class BadInput(click.ClickException):
    exit_code = 2

    def show(self, file=None):
        click.echo(f"error: {self.message}", err=True)


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except bm.InputError as e:
            raise BadInput(str(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=Group)
def cli():
    """bam: the reference implementation of BaM (KDD '24, BigData '24). See README.md."""

# -----------------------------------------------------------------------------
# Shared options and helpers.


def config_help():
    """The comments beside the Config fields in bam_minimal.py become the --help text."""
    return dict(re.findall(r"^\s+(\w+): \w+ = [^#\n]*#\s*(.*)$", inspect.getsource(bm.Config), re.M))


def config_options(f):
    """Every Config field as a flag: --n-interests, --selection, ..., with the official defaults."""
    helps = config_help()
    for field in reversed(fields(bm.Config)):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            f = click.option(f"{flag}/--no-{flag[2:]}", field.name, default=field.default,
                             show_default=True, help=helps.get(field.name))(f)
        else:
            kind = click.Choice(bm.CHOICES[field.name]) if field.name in bm.CHOICES else type(field.default)
            f = click.option(flag, field.name, type=kind, default=field.default, show_default=True,
                             help=helps.get(field.name))(f)
    return f


def data_options(f):
    f = click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="auto", show_default=True,
                     help="data format (README, Data formats)")(f)
    return click.option("--data", type=str, default=None,
                        help="interaction file; default: the built-in synthetic dataset")(f)


def load_dataset(path, fmt="auto", quiet=False):
    seqs, info = formats.read(path, fmt)
    data = bm.Dataset(seqs, name=str(path))
    if not quiet:
        for note in info.get("notes", []):
            click.echo(f"note: {note}")
        if data.skipped:
            click.echo(f"warning: skipped {data.skipped} users with fewer than 3 interactions "
                       "(leave-one-out needs a train, a validation and a test item)")
    return data


def synthetic(folder):
    """The built-in synthetic dataset, written into `folder` so that later commands can reuse it."""
    path = os.path.join(folder, "synthetic.txt")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        synth.write(*synth.generate(), path)
    return path


SYNTHETIC_PRESET = dict(max_iters=5000, eval_every=500)  # so that `cli.py train` ends in minutes


def explicit(ctx, name):
    return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)


def echo_metrics(label, metrics):
    click.echo(f"{label:<17}" + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

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
    if data is None:
        cfg = replace(cfg, **{k: v for k, v in SYNTHETIC_PRESET.items() if not explicit(ctx, k)})
    name = "synthetic" if data is None else os.path.basename(data).split(".")[0]
    out = out or os.path.join("runs", f"{name}-{cfg.model}-{cfg.selection}")
    if fresh:
        for f in ("last.pt", "checkpoint.pt", "metrics.json"):
            if os.path.exists(os.path.join(out, f)):
                os.remove(os.path.join(out, f))
    dataset = load_dataset(synthetic(out) if data is None else data, fmt)
    done = os.path.join(out, "metrics.json")
    if os.path.exists(done):
        with open(done) as f:
            result = json.load(f)
        if result.get("finished") and result["config"] == asdict(cfg):
            click.echo(f"{out} has finished already (pass --fresh to run it again)")
            return report(result, out)
    click.echo(f"{dataset.name}: {len(dataset.users)} users, {dataset.n_items} items, "
               f"{dataset.n_interactions} interactions; {cfg.model} + {cfg.selection}, "
               f"device {bm.resolve_device(cfg)}; writing {out}")
    mostpop = bm.evaluate(bm.popularity_scorer(dataset, bm.resolve_device(cfg)), dataset, "test", cfg)[0]
    from tqdm import tqdm
    bar = tqdm(total=cfg.max_iters, desc="train", unit="it", dynamic_ncols=True, mininterval=0.5)
    _, result = bm.train(cfg, dataset, out, log=bar.write, extra=dict(mostpop=mostpop),
                         on_step=lambda it: bar.update(it - bar.n))
    bar.close()
    report(result, out)


def report(result, out):
    from bam_tools import plots
    if result["history"]:
        click.echo(f"curve: {plots.training_curve(result['history'], os.path.join(out, 'curve.png'))}")
    echo_metrics("most popular", result["mostpop"])
    echo_metrics(f"test (iter {result['best_iter']})", result["test"])
    pop, ours = result["mostpop"]["recall@20"], result["test"]["recall@20"]
    click.echo(f"recall@20 {ours:.4f} against most popular {pop:.4f}"
               + (f" ({ours / pop:.1f}x)" if pop else "") + f"; results in {os.path.join(out, 'metrics.json')}")

# -----------------------------------------------------------------------------
# evaluate


@cli.command()
@click.option("--checkpoint", "ckpt", required=True, help="checkpoint.pt of a run, or an official model.pt")
@data_options
@click.option("--history-mask", type=click.Choice(bm.CHOICES["history_mask"]), default=None,
              help="default: the checkpoint's (exclude for official state_dicts)")
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--json", "json_out", default=None, help="also write the metrics to this JSON file")
@click.option("--model", type=click.Choice(["comirec", "mind"]), default=None, help="official state_dicts: the model")
@click.option("--n-interests", type=int, default=4, show_default=True, help="official MIND state_dicts: N")
@click.option("--seq-len", type=int, default=50, show_default=True, help="official MIND state_dicts: L")
def evaluate(ckpt, data, fmt, history_mask, split, json_out, model, n_interests, seq_len):
    """Full-item ranking of a checkpoint: Recall and nDCG at 10 and 20."""
    base = replace(bm.Config(), n_interests=n_interests, seq_len=seq_len, model=model or "comirec")
    net, cfg, n_items, info = checkpoints.load(ckpt, base)
    data = data or info.get("data")
    if not data:
        raise bm.InputError(f"{ckpt}: an official state_dict does not say its data (fix: pass --data)")
    dataset = load_dataset(data, fmt)
    checkpoints.check_items(ckpt, n_items, dataset)
    cfg = replace(cfg, history_mask=history_mask or cfg.history_mask, device="auto")
    net = net.to(bm.resolve_device(cfg))
    metrics = bm.evaluate(bm.model_scorer(net), dataset, split, cfg)[0]
    echo_metrics(f"{split} ({cfg.history_mask})", metrics)
    if json_out:
        bm.atomic_save(dict(metrics=metrics, split=split, history_mask=cfg.history_mask, checkpoint=ckpt,
                            data=dataset.name, config=asdict(cfg)), json_out)

# -----------------------------------------------------------------------------
# data


@cli.group(cls=Group)
def data():
    """Inspect data, or write the synthetic dataset."""


@data.command()
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="auto", show_default=True)
@click.option("--json", "json_out", default=None, help="also write the statistics to this JSON file")
def stats(path, fmt, json_out):
    """Users, items, interactions, sequence lengths and density (the paper's Table 1)."""
    seqs, info = formats.read(path, fmt)
    lengths = np.array([len(s) for s in seqs.values()])
    dataset = bm.Dataset(seqs, name=str(path))
    out = dict(format=info["format"], users=len(seqs), items=len({i for s in seqs.values() for i in s}),
               max_item_id=dataset.n_items, interactions=int(lengths.sum()),
               avg_len=round(float(lengths.mean()), 2), median_len=float(np.median(lengths)),
               max_len=int(lengths.max()), users_under_3=int((lengths < 3).sum()))
    out["density"] = round(out["interactions"] / (out["users"] * out["items"]), 6)
    for k, v in out.items():
        click.echo(f"{k:<14}{v}")
    for note in info.get("notes", []):
        click.echo(f"note: {note}")
    if json_out:
        bm.atomic_save(out, json_out)


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
        raise bm.InputError("--users, --items, --topics must be positive, topics <= items, --mean-len >= 5")
    seqs, truth = synth.generate(synth.SynthConfig(users, items, topics, mean_len=mean_len, seed=seed))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    truth_path = synth.write(seqs, truth, out)
    click.echo(f"wrote {out} ({sum(map(len, seqs.values()))} interactions) and {truth_path}")


if __name__ == "__main__":
    cli(prog_name="cli.py")
