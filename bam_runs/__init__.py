"""
bam_runs: the run machinery around bam_minimal.py. What turns one call of bam_minimal.train into a run
that resumes, refuses the wrong data, and can be loaded again safely.

  run_folder   a run folder: exact resume (last.pt), the lock, checksums, the data fingerprint, safe loading
  checkpoints  loading our checkpoints and the official code's model.pt files; the data check
  records      the records of checkpoint.pt (Checkpoint) and last.pt (State), on bam_evidence.records' base
  datasets     a DataSource (bam_data.source) -> bam_minimal.Dataset (with the reader's notes); the cached
               built-in synthetic dataset. Here, not in bam_data: it builds the reference's Dataset
  distributed  joining torchrun's process group; which process writes and prints
  allocator    glibc's allocator told to keep freed memory, applied once at start by cli.py and bench.py: a
               setting of the process a run lives in (bam_minimal.py stays free of process-wide side effects)

It imports the reference (bam_minimal) and the data layer (bam_data), never the experiments, the course
kit, the benchmarks or the command line (docs/architecture.md; the import-linter contract in
pyproject.toml checks it).
"""
