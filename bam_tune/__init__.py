"""
bam_tune: hyperparameter studies of a method (Optuna), `python cli.py tune` (docs/tune.md).

  space   the search space: `--space "tau=log:0.1:10"` or a TOML file -> Optuna distributions, checked
          against bam_minimal.Config before any work (one line, exit code 2)
  study   the study: its storage (a journal file by default, or a database URL), the trust checks (same data,
          space, method and base config), the workers (any number, on any machines sharing the storage and
          the study's folder), each trial an ordinary run folder stopped early on the validation split only,
          pruning, the retry of a dead worker's trial, `--status`, and the final comparison on the test split
  figure  `tune --grid`: the validation metric against each knob, with the seeds' intervals

bam_tune sits above bam_experiments (it uses its methods and plots) and below bam_cli.
"""
