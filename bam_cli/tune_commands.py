"""
bam_cli/tune_commands.py: `cli.py tune`, a hyperparameter study of one method (Optuna; docs/tune.md).

    python cli.py tune --data movies.txt --method BaM --space "tau=log:0.1:10" --space "n_interests=choice:2,4,8" \
        --trials 30 --final-seeds 3 --against hard
    python cli.py tune --grid --space "tau=choice:0.1,1,10" --space "n_interests=choice:2,4,8" --seeds 3
    python cli.py tune --status --out runs/tune-movies-BaM

The work is bam_tune's; this module parses and prints.
"""
import os
from dataclasses import replace

import click

from bam_cli.options import config_options, data_options
from bam_experiments import methods


@click.command()
@data_options
@click.option("--method", default="BaM", show_default=True, type=click.Choice(list(methods.METHODS)),
              help="the method to tune (its settings override the flags)")
@click.option("--space", "specs", multiple=True,
              help="a knob: NAME=log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH, logint:LOW:HIGH or choice:A,B,C "
                   "(any Config field; repeat the option)")
@click.option("--space-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="a TOML file with a [space] table (NAME = \"log:0.1:10\" or NAME = [2, 4, 8])")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="the study's budget: trials finished or running, over all its workers")
@click.option("--grid", is_flag=True, help="every point of the choice knobs (GridSampler), each over --seeds; "
                                           "writes grid.png; no pruning")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="--grid: seeds per point")
@click.option("--against", type=click.Choice(["hard"]), default=None,
              help="also tune the method with hard selection, same space and budget (a second study)")
@click.option("--final-seeds", type=click.IntRange(min=0), default=0, show_default=True,
              help="then retrain the best configuration and the default over this many seeds and compare them on "
                   "the test split (waits for the other workers' trials)")
@click.option("--out", default=None,
              help="the study's folder: trials, locks, journal [default: runs/tune-<data>-<method>]")
@click.option("--study", "name", default=None, help="the study's name [default: the folder's name]")
@click.option("--storage", default=None,
              help="a journal file (on a shared file system, for workers on several machines) or a database URL "
                   "(sqlite:///tune.db) [default: OUT/journal.log]")
@click.option("--pruner", type=click.Choice(["median", "halving", "none"]), default="median", show_default=True)
@click.option("--prune-after", type=click.IntRange(min=0), default=5, show_default=True,
              help="median pruner: trials that finish before any is pruned")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads of this worker")
@click.option("--status", "show", is_flag=True, help="print the study's trials so far and stop")
@config_options
@click.pass_context
def tune(ctx, source, method, specs, space_file, trials, grid, seeds, against, final_seeds, out, name,
         storage, pruner, prune_after, threads, show, **kwargs):
    """Tune a method's Config fields on the validation split (Optuna), with any number of workers sharing a study.

    Each trial is a resumable run folder stopped early on validation; hopeless ones are pruned. Run the same
    command in several terminals or machines (the same --out on a shared file system, or the same --storage)
    and they share the study."""
    import bam_minimal as bm
    from bam_cli.run_commands import with_synthetic_preset
    from bam_experiments import single_run as experiment
    from bam_runs import datasets
    from bam_tune import figure
    from bam_tune import space as space_mod
    from bam_tune import study as study_mod
    base = with_synthetic_preset(ctx, bm.Config(**kwargs), source)
    out = out or experiment.default_out(source, base, prefix="tune-").rstrip("/") + f"-{method}"
    if show:
        spec = study_mod.Spec(base, method, {}, None, out, name=name or "", storage=storage)
        studies = [study_mod.open_study(spec, create=False)]
        hard = replace(spec, name=f"{spec.name}.hard")
        try:
            studies.append(study_mod.open_study(hard, create=False))
        except bm.InputError:
            pass
        click.echo("\n".join(study_mod.status(s) for s in studies))
        return
    base = study_mod.method_config(base, method)
    experiment.check_config(base)
    knobs = space_mod.parse(specs, space_file, base, fixed=methods.METHODS[method])
    if grid:
        space_mod.grid_values(knobs)
    if against:
        study_mod.hard_counterpart(method)
    dataset = datasets.load_run_data(source, out, log=click.echo)
    spec = study_mod.Spec(base, method, knobs, dataset, out, name=name or "", storage=storage, trials=trials,
                          grid=grid, seeds=seeds, pruner=pruner, prune_after=prune_after, threads=threads)
    specs_run = [spec] + ([study_mod.against(spec, against)] if against else [])
    for s in specs_run:  # the trust checks (same data, space, method, config), before any bar or work
        study_mod.open_study(s)
    from tqdm import tqdm
    for s in specs_run:
        total = study_mod.budget(s)
        with tqdm(total=total, desc=f"{s.name} trials", unit="trial", dynamic_ncols=True) as bar:
            def done(study, bar=bar):
                bar.n = min(total, len([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()
                                        and t.state.name != "FAIL"]))
                bar.refresh()
            study = study_mod.work(s, log=bar.write, on_trial=done)
            done(study)
    click.echo("\n".join(study_mod.status(study_mod.open_study(s)) for s in specs_run))
    if grid:
        studies = {f"{s.method} ({s.base.selection})": study_mod.open_study(s) for s in specs_run}
        for st in studies.values():
            study_mod.wait_for(st, click.echo)
        studies = {label: figure.records(st) for label, st in studies.items()}
        click.echo(f"figure: {figure.draw(studies, list(knobs), os.path.join(out, 'grid.png'))}")
    if final_seeds:
        click.echo(study_mod.final(specs_run, final_seeds, log=click.echo))
        click.echo(f"wrote {os.path.join(out, 'final.md')} and final.json")


COMMANDS = [tune]
