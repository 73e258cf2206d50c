"""
bam_runs/allocator.py: a process-wide speed setting for the CPU, applied once at start by cli.py and bench.py
(bam_minimal.py itself stays free of process-wide side effects).

    from bam_runs.allocator import keep_freed_memory
    keep_freed_memory()
"""
import ctypes


def keep_freed_memory():
    """glibc returns large freed blocks to the OS, so every CPU training step and evaluation block
    page-faults fresh memory for its gradients and scores: a quarter of the CPU time on these 2-core
    machines (bench.py, docs/performance.md). Raising the mmap and trim thresholds keeps freed blocks
    for reuse; the peak memory is the same. A no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass
