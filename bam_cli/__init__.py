"""
bam_cli: the command line, in one place; cli.py at the top is its entry point.

  options  the shared options (read from bam_minimal.py's source, without torch), lazy imports, and the
           one rule that turns every kind of bad input into one line and exit code 2 (and a training that
           failed, bam_minimal.TrainingError, into one line and exit code 3)
  run      train, evaluate, table, balance
  evidence compare (over users, and over seeds and users), report (the docs' numbers from the kept evidence)
  data     data stats / remap / synth, prepare amazon2023
  twin     export, crosscheck, golden (the NumPy twin)
  course   course make / check / grade
  read     bam_minimal.py as one annotated HTML page (bam_read)
  tune     tune (Optuna studies of a method: bam_tune, docs/tune.md)

A command's body parses and prints; the work is a function of the package that does the job, so that
tests call it directly.
"""
