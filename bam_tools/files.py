"""
Writing files atomically without torch: a temporary file in the same folder, flushed to disk, then
renamed over the target. A crash leaves the old file or the new one, never half of one, and no
temporary file behind. bam_minimal.atomic_write is the same for the torch side; this copy exists
because bam_tools.synth writes the synthetic dataset with it, and the NumPy twin uses that dataset
in a process where torch (and so bam_minimal) cannot be imported: tests/test_numpy_no_torch.py.

    from bam_tools.files import atomic_text
    atomic_text("out.txt", "hello\n")
"""
import os
import tempfile


def atomic_write(path, write):
    """`write(file)` into a temporary binary file beside `path`, then rename it to `path`."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; results are for others to read too
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def clean_stale_temps(folder, max_age_s=60):
    """Remove `.tmp-*` files that a killed writer left in `folder` (older than `max_age_s`)."""
    import time
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(".tmp-") and time.time() - os.path.getmtime(path) > max_age_s:
            os.remove(path)
