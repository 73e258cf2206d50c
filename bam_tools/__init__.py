"""
bam_tools: what cli.py needs beyond the algorithm in bam_minimal.py.

  datasets     a data file of any format -> bam_minimal.Dataset, with the reader's notes and warnings
  runs         a run folder: exact resume (last.pt), the lock, checksums, data fingerprints, safe loading
  distributed  joining torchrun's process group; which process writes and prints
  checkpoints  loading our checkpoints and the official code's model.pt files
  sasrec       the SASRec baseline (Table 2), added to bam_minimal.MODELS on import
  prepare      Amazon Reviews 2023 -> the official format (dedup, k-core, Table 1 statistics)
  baselines    the most-popular baseline
  table        the paper's Table 2 (methods x seeds, resumable)
  balance      the paper's Figure 1 (which interest serves each user's top-10)
  plots        the training curve and atomic PNG writing
  twin         torch-side glue for bam_numpy: export, crosscheck, golden vectors
  cli_twin     the `export`, `crosscheck` and `golden` commands
  course       the course kit: skeleton, handout, hidden-case grader (cli_course: its commands)
  perf         the CPU allocator setting

The data formats, the synthetic dataset and atomic writes are in the torch-free bam_data package.
"""
