"""
bam_tools: what cli.py needs beyond the algorithm in bam_minimal.py.

  formats      readers for the official, per-user, RecBole and Amazon 2023 formats
  prepare      Amazon Reviews 2023 -> the official format (dedup, k-core, Table 1 statistics)
  synth        the built-in synthetic dataset with planted interests (numpy only)
  checkpoints  loading our checkpoints and the official code's bare state_dicts
  baselines    the most-popular baseline
  table        the paper's Table 2 (methods x seeds, resumable)
  balance      the paper's Figure 1 (which interest serves each user's top-10)
  plots        the training curve and atomic PNG writing
  twin         torch-side glue for bam_numpy: export, crosscheck, golden vectors
  cli_twin     the `export`, `crosscheck` and `golden` commands
  files, perf  atomic writes without torch; the CPU allocator setting
"""
