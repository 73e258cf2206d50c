"""
bam_experiments: the paper's experiments, built on the reference and the run machinery.

  methods    the methods of Table 2, each a set of Config overrides (torch-free)
  run        one training run in a run folder (`cli.py train`) and the evaluation of a checkpoint
  sasrec     the SASRec baseline (register() adds it to bam_minimal.MODELS)
  baselines  the most-popular baseline
  table      Table 2: methods x seeds, resumable, in parallel with --jobs
  balance    Figure 1: which interest serves each user's top-10
  plots      the training curve and the figures, written atomically

    python cli.py table --seeds 3            # Table 2 on the built-in synthetic data
"""
