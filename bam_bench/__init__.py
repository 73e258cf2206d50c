"""
bam_bench: the benchmarks; bench.py at the top is their entry point.

  scale         how time and peak memory grow with the data (`python bench.py --scale`)
  numba_engine  the numba engine's evaluation benchmark (torch-free: `python -m bam_bench.numba_engine DATA`)
  gpu           bam_minimal.py's CUDA path against its CPU path (`python -m bam_bench.gpu`)
  measure       the timing and peak-memory probes that all of them use

docs/performance.md holds the figures and the commands that produced them.
"""
