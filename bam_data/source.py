"""
bam_data/source.py: DataSource, what data a command reads and how: the file, its format and the filter applied
once after reading. The three always travel together (the command line's --data, --format and --filter), so
they travel as one object: the command line builds it once (bam_cli.options.data_options), and the loaders
read it (bam_runs.datasets.load_dataset, which turns its sequences into a bam_minimal.Dataset).

    from bam_data.source import DataSource
    source = DataSource("movies.txt", filter="comirec")
    seqs, info = source.read()                  # bam_data.formats.read, then bam_data.filters.apply
    source.at("other.txt")                       # another file, read the same way (a checkpoint's own data)
    DataSource().synthetic                       # True: no file, the built-in synthetic dataset

Torch-free, like the rest of bam_data, so that `--help` and the data commands build it without the model.
"""
from dataclasses import dataclass, replace

from bam_data import filters, formats

# -----------------------------------------------------------------------------
# The object


@dataclass(frozen=True)
class DataSource:
    path: str | None = None   # the interaction file; None: the built-in synthetic dataset (bam_runs.datasets)
    fmt: str = "auto"         # one of bam_data.FORMATS; auto: detected from the file
    filter: str = "none"      # one of bam_data.filters.FILTERS, applied once after reading (--filter)

    @property
    def synthetic(self):
        return self.path is None

    def at(self, path):
        """The same format and filter for another file: the data a checkpoint names, when --data is not given."""
        return replace(self, path=path)

    def read(self):
        """-> (seqs, info): the file read (bam_data.formats.read), then filtered (bam_data.filters.apply), the
        filter's note added to info["notes"]."""
        seqs, info = formats.read(self.path, self.fmt)
        return filters.apply(seqs, self.filter, self.path, info.setdefault("notes", [])), info
