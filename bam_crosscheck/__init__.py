"""
bam_crosscheck: where the PyTorch reference meets its NumPy twin. The twin itself (bam_numpy) never
imports torch, so handing a torch model's weights to the twin, comparing the two engines' gradients and
metrics, and writing the golden vectors from the reference live here.

  numpy_engine    a torch model's weights as the twin's arrays (`export`), and `evaluate --engine numpy`: the
                  production path that ranks a checkpoint with the twin's numba engine
  agreement       the cross-check: both implementations on the same weights and batch, row by row
  golden_vectors  the torch side of the golden vectors: write them, check an implementation against them

    python cli.py crosscheck --checkpoint runs/synthetic-comirec-bam/checkpoint.pt
"""
