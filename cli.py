"""
cli.py: the command line of bam, for the PyTorch reference (bam_minimal.py), its NumPy twin and the
experiments around them. The commands live in bam_cli/ (one module per group); this is the entry point.

    python cli.py train                              # ComiRec-SA + BaM on the built-in synthetic data
    python cli.py train --data movies.txt --selection bam
    python cli.py evaluate --checkpoint runs/synthetic-comirec-bam/checkpoint.pt
    python cli.py data stats ../shared/data/lastfm/LastFM.txt
    python cli.py data synth --out synth.txt
    python cli.py COMMAND --help                     # every option

Bad input stops with one line that names the file, the line and the fix, and exit code 2; a training that
fails on good input (its loss or weights not finite) stops with one line and exit code 3.
"""
from bam_cli.main import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    main()
