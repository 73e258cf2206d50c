"""python -m bam_numpy DATA [--field=value ...] [--out=weights.npz]: train with the NumPy twin
(bam_numpy/training.py)."""
import sys

from bam_numpy.config import InputError
from bam_numpy.training import main

try:
    main(sys.argv[1:])
except InputError as e:
    sys.exit(print(f"error: {e}", file=sys.stderr) or 2)
