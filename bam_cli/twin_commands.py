"""
bam_cli/twin_commands.py: the command-line commands of the NumPy twin; cli.py adds them to its group.

    python cli.py export --checkpoint runs/x/checkpoint.pt --out weights.npz [--data PATH]  # checked: its data
    python cli.py crosscheck                                   # fresh model, synthetic data, float64
    python cli.py crosscheck --checkpoint X --data PATH --dtype float32
    python cli.py golden --out vectors.npz
    python cli.py golden --check vectors.npz --impl my_bam:golden   # or file.py:function

crosscheck and golden --check exit 0 when everything passes and 1 otherwise; bad input exits 2, and so
does a checkpoint given other data than it was trained on (unless --other-data; checkpoints.check_data).
The work is in bam_crosscheck: numpy_engine.py (export), agreement.py (crosscheck), golden_vectors.py (golden).
"""
import os
from dataclasses import replace

import click

from bam_data import formats, synth
from bam_data.source import DataSource
from bam_cli import options


def load_dataset(path, fmt="auto", data_filter="none"):
    """The twin's commands read --data in its --format, with its --filter (a checkpoint trained on filtered data
    is checked against the same filtered data)."""
    from bam_runs import datasets
    return datasets.load_dataset(DataSource(path, fmt, data_filter))


def register_models():
    """SASRec loads like the other models, so that the twin's own refusal ("twins comirec and mind only")
    is what a SASRec checkpoint gets, not "use cli.py" (a checkpoint of any protocol loads: bam_runs.checkpoints
    imports bam_protocols, which registers them)."""
    from bam_experiments import sasrec
    sasrec.register()

# -----------------------------------------------------------------------------
# export


@click.command()
@click.option("--checkpoint", "ckpt", required=True, callback=options.existing,
              help="checkpoint.pt of a run, or an official model.pt")
@click.option("--out", required=True, help="the .npz file to write (bam_numpy.load_weights reads it)")
@click.option("--data", default=None, callback=options.existing,
              help="the data the weights are for: checked to be the checkpoint's")
@click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="auto", show_default=True)
@options.filter_option
@options.official_options
@options.other_data_option
def export(ckpt, out, data, fmt, data_filter, n_interests, seq_len, other_data):
    """Write a checkpoint's weights as .npz, under the official parameter names, for bam_numpy. The
    file keeps the name and fingerprint of the checkpoint's data; with --data, that data is checked
    to be the checkpoint's first."""
    from bam_crosscheck import numpy_engine
    from bam_runs import checkpoints
    register_models()
    dataset = load_dataset(data, fmt, data_filter) if data else None
    numpy_engine.export(ckpt, out, checkpoints.official_base(n_interests, seq_len), log=options.note, data=dataset,
                other_data=other_data)
    click.echo(f"wrote {out}")

# -----------------------------------------------------------------------------
# crosscheck


@click.command()
@click.option("--checkpoint", "ckpt", default=None, callback=options.existing,
              help="default: a freshly initialised model (seed 2021)")
@click.option("--data", default=None, callback=options.existing,
              help="default: the checkpoint's data, or the built-in synthetic dataset")
@click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--model", type=click.Choice(["comirec", "mind"]), default="comirec", show_default=True,
              help="the fresh model's encoder (ignored with --checkpoint)")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="the batch, negatives and draws")
@options.filter_option
@options.official_options
@options.other_data_option
def crosscheck(ckpt, data, fmt, data_filter, dtype, model, batch_size, seed, n_interests, seq_len, other_data):
    """Compare bam_minimal and bam_numpy on the same weights and batch: interests, attention,
    selection, loss, every gradient, full-item scores, top-20 lists, ranks and metrics.
    Prints a table; exits 0 only when every row passes."""
    import torch

    import bam_minimal as bm
    from bam_crosscheck import agreement
    from bam_runs import checkpoints
    register_models()
    if ckpt:
        net, cfg, dataset, _ = checkpoints.load_with_data(ckpt, data, lambda p: load_dataset(p, fmt, data_filter),
                                                          checkpoints.official_base(n_interests, seq_len),
                                                          log=options.note, other_data=other_data)
    else:
        dataset = load_dataset(data, fmt, data_filter) if data else bm.Dataset(synth.generate()[0], name="synthetic")
        cfg = replace(bm.Config(), model=model, device="cpu")
        torch.manual_seed(cfg.seed)
        net = bm.build_model(cfg, dataset.n_items)
    if not len(dataset.trainable):
        raise bm.InputError(f"{dataset.name}: no user has 4 or more interactions (fix: pass more data)")
    click.echo(f"crosscheck: {cfg.model} + {cfg.selection}, N={cfg.n_interests}, d={cfg.dim}, {dtype}; "
               f"{os.path.basename(str(dataset.name))}: {len(dataset.users)} users, {dataset.n_items} items; "
               f"{'checkpoint ' + ckpt if ckpt else 'fresh model'}")
    click.echo("rel err = max|numpy - torch| / max|torch| over the array")
    _, ok = agreement.crosscheck(net, cfg, dataset, dtype=dtype, batch_size=batch_size, seed=seed, log=click.echo)
    raise SystemExit(0 if ok else 1)

# -----------------------------------------------------------------------------
# golden


@click.command()
@click.option("--out", default=None, help="write golden vectors to this .npz")
@click.option("--check", "check_path", default=None, help="check an implementation against this .npz")
@click.option("--impl", default="bam_numpy.golden:reference", show_default=True,
              help="with --check: module:function or file.py:function, fn(inputs) -> outputs. This imports "
                   "and runs that code, on purpose: pass only code you trust")
@click.option("--rtol", type=float, default=1e-8, show_default=True, help="with --check: relative tolerance")
@click.option("--model", type=click.Choice(["comirec", "mind"]), default="comirec", show_default=True)
@click.option("--selection", type=click.Choice(options.choices("selection")), default="bam", show_default=True)
@click.option("--loss", type=click.Choice(options.choices("loss")), default="sampled", show_default=True)
@click.option("--history-mask", type=click.Choice(options.choices("history_mask")), default="exclude",
              show_default=True)
@click.option("--tau", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def golden(out, check_path, impl, rtol, model, selection, loss, history_mask, tau, seed):
    """Golden test vectors for anyone who writes their own BaM (docs/golden.md).

    --out writes the inputs (weights, a batch, negatives, BaM's uniform draws, the config) and every
    expected output, computed by bam_minimal. --check runs --impl on the inputs and compares: it
    imports and runs the implementation's code (the vectors file itself is read without pickle)."""
    import bam_minimal as bm
    from bam_crosscheck import golden_vectors
    if bool(out) == bool(check_path):
        raise bm.InputError("golden: pass exactly one of --out FILE and --check FILE "
                            "(fix: `golden --out vectors.npz`, then `golden --check vectors.npz`)")
    if out:
        arrays = golden_vectors.write_golden(out, model=model, selection=selection, loss=loss,
                                   history_mask=history_mask, tau=tau, seed=seed)
        click.echo(f"wrote {out}: {len(arrays)} arrays, {sum(k.startswith('expected/') for k in arrays)} "
                   "expected outputs")
        return
    raise SystemExit(0 if golden_vectors.check_golden(check_path, impl, rtol=rtol, log=click.echo) else 1)


COMMANDS = [export, crosscheck, golden]
