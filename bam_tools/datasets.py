"""
bam_tools/datasets.py: a data file of any format -> bam_minimal.Dataset, with what the reader noticed.
The one loader of cli.py, its twin commands (export, crosscheck, golden) and bench.py.

    from bam_tools.datasets import load_dataset
    data = load_dataset("movies.txt", log=print)   # notes and warnings go to `log`
"""
import bam_minimal as bm
from bam_data import formats
from bam_data.stats import repeated_targets


def load_dataset(path, fmt="auto", log=None):
    """bam_data.formats.read, then bm.Dataset. With `log`, say what was shifted, skipped or suspicious."""
    seqs, info = formats.read(path, fmt)
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
