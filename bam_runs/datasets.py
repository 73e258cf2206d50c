"""
bam_runs/datasets.py: a data file of any format -> bam_minimal.Dataset, with what the reader noticed.
The one loader of the command line (bam_cli) and bench.py; and the cached built-in synthetic dataset.

    from bam_runs.datasets import load_dataset, synthetic
    data = load_dataset("movies.txt", log=print)   # notes and warnings go to `log`
    data = load_dataset(synthetic("runs/x"))       # writes runs/x/synthetic.txt unless it is current
"""
import json
import os
from dataclasses import asdict

import bam_minimal as bm
from bam_data import filters, formats, synth
from bam_data.stats import repeated_targets
from bam_runs import distributed


def load_dataset(path, fmt="auto", log=None, data_filter="none"):
    """bam_data.formats.read, bam_data.filters.apply (`data_filter`: --filter), then bm.Dataset. With `log`, say
    what was shifted, filtered, skipped or suspicious."""
    seqs, info = formats.read(path, fmt)
    seqs = filters.apply(seqs, data_filter, path, info.setdefault("notes", []))
    data = bm.Dataset(seqs, name=str(path))
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
