"""
bam_bench/measure.py: the timing and peak-memory probes that every benchmark uses (bench.py, scale, twin, gpu).

A library, not a command: the others import it.

    from bam_bench.measure import median_time, peak_mb, reset_peak, rss_mb
    seconds = median_time(step, repeat=3, sync=torch.cuda.synchronize)   # CUDA: wait for the kernels
    reset_peak(); before = rss_mb(); work(); extra = peak_mb() - before   # Linux: the MB that work() added

Torch-free, so that bam_bench.numba_engine (the numba engine's benchmark, which must not load torch) can use it:
a caller timing asynchronous work passes its own synchronize as `sync`.
"""
import time

import numpy as np

# -----------------------------------------------------------------------------
# Time


def median_time(fn, repeat=5, warmup=1, sync=None):
    """Median seconds of `repeat` calls of fn, after `warmup` calls that are not timed (compilation, caches
    and the allocator's first growth are not what is measured). `sync`, if given, is called after every
    call, inside the timing: CUDA returns before its kernels finish, so without it the time is the launch's."""
    wait = sync or (lambda: None)
    for _ in range(warmup):
        fn()
        wait()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        wait()
        times.append(time.perf_counter() - t)
    return float(np.median(times))

# -----------------------------------------------------------------------------
# Memory (Linux: /proc/self)


def memory_mb(field):
    """VmRSS (resident now) or VmHWM (its peak since the last reset_peak) from /proc/self/status."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def rss_mb():
    return memory_mb("VmRSS")


def peak_mb():
    """Not ru_maxrss: a child's ru_maxrss starts at its parent's RSS when it was forked (exec keeps the
    larger of the two), so it read 437 MB where the child itself peaked at 313; clear_refs does not
    reset that part. VmHWM is the child's own peak, and clear_refs resets it."""
    return memory_mb("VmHWM")


def reset_peak():
    """From here on, VmHWM is the peak since now (writing 5 to clear_refs resets the high-water mark)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
