"""
bam_crosscheck: where the PyTorch reference meets its NumPy twin. The twin itself (bam_numpy) never
imports torch, so exporting a checkpoint to the twin's weights, comparing the two engines' gradients
and metrics, and writing the golden vectors from the reference live here.

  twin   export, crosscheck, the torch side of the golden vectors, evaluate with the numba engine

    python cli.py crosscheck --checkpoint runs/synthetic-comirec-bam/checkpoint.pt
"""
