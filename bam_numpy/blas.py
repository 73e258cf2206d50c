"""
bam_numpy/blas.py: run small matmuls on one BLAS thread.

A multi-threaded BLAS call wakes its helper threads and waits for them. On an idle machine that takes
microseconds; on a busy 2-core machine (other jobs running) it takes milliseconds, because the helper
waits for a time slice: a (2,000 x 32) @ (32 x 128) product then costs 8 ms instead of 0.2 ms
(measured, docs/performance.md). The training step and the encoder are made of such small products,
so they run on one thread; the large scoring matmul of the evaluation keeps every thread.

numpy's wheels bundle OpenBLAS, whose `openblas_set_num_threads_local` (OpenBLAS >= 0.3.27) sets the
count for the calling thread only. Where that symbol is not found (another BLAS), this is a no-op.

    from bam_numpy.blas import one_blas_thread
    with one_blas_thread():
        ...
"""
import ctypes
import glob
import os
from contextlib import contextmanager

import numpy as np


def _find_setter():
    here = os.path.dirname(np.__file__)
    candidates = glob.glob(os.path.join(here, os.pardir, "numpy.libs", "*openblas*")) + \
        glob.glob(os.path.join(here, ".dylibs", "*openblas*"))
    for path in candidates:
        try:
            fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local", None)
        except OSError:
            continue
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            return fn
    return None


_set_local = _find_setter()


@contextmanager
def one_blas_thread():
    """BLAS calls made by this thread inside the block use one thread; the previous count is restored."""
    if _set_local is None:
        yield
        return
    previous = _set_local(1)
    try:
        yield
    finally:
        _set_local(previous)
