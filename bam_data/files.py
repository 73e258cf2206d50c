"""
bam_data/files.py: writing files atomically, without torch, and cleaning what a killed writer left.

atomic_write writes into a temporary file `.tmp-<pid>-<random>` in the target's folder, flushes it to
disk, renames it over the target and flushes the folder. What is guaranteed:
  * a reader sees the old file or the new one, never half of one (the rename is atomic);
  * when `write` raises (or Ctrl-C), the temporary file is removed before the error goes on;
  * a process killed hard in the middle (kill -9, out of memory, power loss) DOES leave its
    `.tmp-<pid>-*` file behind: nothing can run at that moment. clean_stale_temps(folder) removes
    such files later: those whose writer process is gone, and any `.tmp-*` older than a minute.

    from bam_data.files import atomic_text, clean_stale_temps
    atomic_text("out.txt", "hello\\n")
    clean_stale_temps("runs/x")        # -> the paths it removed
"""
import json
import os
import re
import tempfile
import time
from contextlib import contextmanager

PREFIX = ".tmp-"
_PID = re.compile(r"^\.tmp-(\d+)-")  # mkstemp's random part has no `-`, so older names never match


def atomic_write(path, write):
    """`write(file)` into a temporary binary file beside `path`, then rename it to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{PREFIX}{os.getpid()}-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; results are for others to read too
        os.replace(tmp, path)
        _fsync_folder(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_json(path, obj):
    """`obj` as indented JSON, whole or not at all (run_folder.save_json and the torch-free commands of cli.py)."""
    atomic_text(path, json.dumps(obj, indent=2))


def _fsync_folder(folder):
    """Make the rename itself durable. Some file systems cannot open a folder: then it stays in cache."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

# -----------------------------------------------------------------------------
# What a killed writer leaves behind


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def clean_stale_temps(folder, max_age_s=60.0):
    """Remove the `.tmp-*` files directly in `folder` that no writer will finish: those whose name
    holds the pid of a process that no longer exists, and any not modified for `max_age_s` seconds
    (a live writer keeps its file's mtime fresh). Returns the removed paths; a missing folder is fine."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed, now = [], time.time()
    for name in names:
        if not name.startswith(PREFIX):
            continue
        path = os.path.join(folder, name)
        try:
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            m = _PID.match(name)
            dead = m is not None and not _alive(int(m.group(1)))
            if dead or now - os.path.getmtime(path) > max_age_s:
                os.remove(path)
                removed.append(path)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
    return removed

# -----------------------------------------------------------------------------
# Output folders that a failed command does not leave behind


@contextmanager
def output_folder(path):
    """Create the missing folders above the file `path` for the block; if the block raises, remove
    the ones created here again, when they are still empty."""
    created, folder = [], os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder):
        created.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in created:  # the deepest first
            try:
                os.rmdir(folder)
            except OSError:  # not empty (someone wrote there meanwhile) or gone: leave it
                break
        raise
