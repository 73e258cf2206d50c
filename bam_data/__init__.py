"""
bam_data: the data layer shared by the PyTorch reference, its command line and the NumPy twin. It never
imports torch, bam_minimal or any package above it, so that bam_numpy can use it in a process without torch.

  formats  read(path, fmt="auto") -> (seqs, info): THE reader of every format (official, one line per
           user, RecBole .inter, Amazon Reviews 2023 CSV / JSONL); InputError, its one-line error
           write_official(seqs, path), remap_items(seqs) (ids 1..n in order of first appearance)
  source   DataSource(path, fmt, filter): what data a command reads and how (--data, --format, --filter), and
           its read() (read, then filter)
  dataset_stats  table1(seqs) (the paper's Table 1), train_counts(data), repeated_targets(seqs) (a data warning)
  amazon   Amazon Reviews 2023 -> the official format (dedup, k-core, id maps)
  filters  apply(seqs, name, path): `--filter`; comirec_filter(seqs), ComiRec's preprocessing (5+ per item, then user)
  categories  item categories (`item category` per line) for Diversity@N
  synth    the built-in synthetic dataset with planted interests
  files    atomic_write / atomic_text / atomic_json, clean_stale_temps(folder, max_age_s=60.0), output_folder(path)

    from bam_data import read, InputError
    seqs, info = read("data.txt")
"""
from bam_data.files import atomic_json, atomic_text, atomic_write, clean_stale_temps, output_folder
from bam_data.formats import FORMATS, InputError, detect, read, read_official
from bam_data.dataset_stats import repeated_targets, train_counts

__all__ = ["atomic_json", "atomic_text", "atomic_write", "clean_stale_temps", "output_folder", "FORMATS", "InputError",
           "detect", "read", "read_official", "repeated_targets", "train_counts"]
