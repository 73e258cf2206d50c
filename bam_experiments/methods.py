"""
bam_experiments/methods.py: the methods that `cli.py table` runs, each a set of Config overrides. Torch-free,
so that `cli.py table --help` lists them at once; bam_experiments/table.py runs them.
"""
# The four methods of Table 2, all on the same protocol; the rest come with --methods.
METHODS = {
    "SASRec": dict(model="sasrec", n_interests=1, selection="hard"),
    "ComiRec": dict(model="comirec", selection="hard"),
    # REMI on ComiRec-SA with the BaM authors' settings (snudatalab/BaM, src/main.py): beta 0.01, lambda 100
    "REMI": dict(model="comirec", selection="hard", remi_beta=0.01, remi_lambda=100.0),
    "BaM": dict(model="comirec", selection="bam"),
    # Extended BaM [BD24] and variants beyond the papers
    "BaM-l": dict(model="comirec", selection="bam-l"),
    "BaM+multi": dict(model="comirec", selection="bam", multi_loss=True),
    "BaM-l+multi": dict(model="comirec", selection="bam-l", multi_loss=True),
    "Expected": dict(model="comirec", selection="expected"),
    "BaM-anneal": dict(model="comirec", selection="bam", tau_schedule="hard-to-soft"),
    # Ablations of REMI on ComiRec-SA: its routing regulariser alone, and REMI on top of BaM
    "REMI-reg": dict(model="comirec", selection="hard", remi_lambda=100.0),
    "BaM+REMI": dict(model="comirec", selection="bam", remi_beta=0.01, remi_lambda=100.0),
    "MIND": dict(model="mind", selection="hard"),
    "MIND+BaM": dict(model="mind", selection="bam"),
}
DEFAULT_METHODS = ("SASRec", "ComiRec", "REMI", "BaM")
