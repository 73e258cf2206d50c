"""
bam_tools: what cli.py needs beyond the algorithm in bam_minimal.py.

  prepare      Amazon Reviews 2023 -> the official format (dedup, k-core, Table 1 statistics)
  checkpoints  loading our checkpoints and the official code's bare state_dicts
  baselines    the most-popular baseline
  table        the paper's Table 2 (methods x seeds, resumable)
  balance      the paper's Figure 1 (which interest serves each user's top-10)
  plots        the training curve and atomic PNG writing
  twin         torch-side glue for bam_numpy: export, crosscheck, golden vectors
  cli_twin     the `export`, `crosscheck` and `golden` commands
  perf         the CPU allocator setting

The data formats, the synthetic dataset and atomic writes are in the torch-free bam_data package.
"""
