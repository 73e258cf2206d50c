"""
bam_runs/datasets.py: a DataSource (bam_data/source.py: the file, its format, its filter) -> bam_minimal.Dataset,
with what the reader noticed. The one loader of the command line (bam_cli), bench.py and the experiments; and the
cached built-in synthetic dataset. It sits in the run machinery, not in bam_data, because it builds the
reference's Dataset, and the data layer never imports the reference.

    from bam_data.source import DataSource
    from bam_runs.datasets import load_dataset, load_run_data
    data = load_dataset(DataSource("movies.txt", filter="comirec"), log=print)   # notes and warnings go to `log`
    data = load_dataset("movies.txt")                  # a path alone: the format detected, no filter
    data = load_run_data(DataSource(), "runs/x")       # no file: writes runs/x/synthetic.txt unless it is current
"""
import json
import os
from dataclasses import asdict

import bam_minimal as bm
from bam_data import synth
from bam_data.dataset_stats import repeated_targets
from bam_data.source import DataSource
from bam_runs import distributed

# -----------------------------------------------------------------------------
# A data source -> bam_minimal.Dataset


def load_dataset(source, log=None):
    """`source` (a DataSource, or a path: read with the format detected and no filter) read and filtered, then
    bm.Dataset. With `log`, say what was shifted, filtered, skipped or suspicious."""
    source = source if isinstance(source, DataSource) else DataSource(str(source))
    seqs, info = source.read()
    data = bm.Dataset(seqs, name=str(source.path))
    if log:
        for note in info.get("notes", []):
            log(f"note: {note}")
        if data.skipped:
            log(f"warning: skipped {data.skipped} users with fewer than 3 interactions "
                "(leave-one-out needs a train, a validation and a test item)")
        repeats = repeated_targets(seqs)
        if repeats:
            log(f"warning: {repeats}")
    return data


def load_run_data(source, folder, fresh=False, log=None):
    """The data of a command that writes `folder` (train, table, tune): `source`'s file, or with no file the
    built-in synthetic dataset, written into `folder` (again when `fresh`)."""
    return load_dataset(source.at(synthetic(folder, fresh)) if source.synthetic else source, log=log)

# -----------------------------------------------------------------------------
# The built-in synthetic dataset


def synthetic(folder, fresh=False):
    """The built-in synthetic dataset, written into `folder` so that later commands can reuse it; its path.
    Written again when `fresh`, or when the generator's settings have changed since (its .truth.json)."""
    path = os.path.join(folder, "synthetic.txt")
    truth = os.path.join(folder, "synthetic.truth.json")
    if distributed.is_main() and (fresh or not synthetic_is_current(path, truth)):
        os.makedirs(folder, exist_ok=True)
        synth.write(*synth.generate(), path)
    distributed.barrier()  # under torchrun, process 0 alone decides and writes, and every process waits here
    return path


def synthetic_is_current(path, truth):
    """The data, its truth and its categories (written since the categories came: the same data again) exist,
    made by the generator's current settings."""
    if not all(os.path.exists(p) for p in (path, truth, os.path.splitext(path)[0] + ".categories.txt")):
        return False
    try:
        with open(truth) as f:
            return json.load(f).get("config") == asdict(synth.SynthConfig())
    except (ValueError, AttributeError):  # damaged: written again
        return False
