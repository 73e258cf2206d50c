"""
bam_runs/run_folder.py: the bookkeeping of a run folder, kept out of bam_minimal.py so that the algorithm
reads in one sitting. `cli.py train` and `cli.py table` use it; bam_minimal.train calls it through four
methods (resume, save_state, save_best, finish).

  lock         an OS file lock on the folder while a process trains in it (released on any exit,
               kill -9 included): a second process stops at once, naming the first; under torchrun
               process 0 takes it and every process shares the outcome
  RunFolder    exact resume from last.pt (weights, Adam, every random generator, the loop's state),
               the best checkpoint.pt and metrics.json, all written atomically and checksummed, each one
               record of bam_runs.records or bam_evidence.records (filled once, checked on reading),
               refused when they were made with another config or on other data, or when their data
               fingerprint cannot tell (none, or the old v1 hash: fix --fresh)
  fingerprint  a versioned blake2b hash of a dataset's sizes, users, lengths and items (one to one)
  load         torch.load that never runs code from the file, and says in one line what is wrong

    from bam_runs import run_folder
    with run_folder.lock("runs/x"):
        model, result = bm.train(cfg, data, run_folder.RunFolder("runs/x", cfg, data))
"""
import fcntl
import hashlib
import io
import os
import pickle
import re
import subprocess
import warnings
from contextlib import contextmanager
from dataclasses import asdict, fields, replace

import numpy as np
import torch

import bam_minimal as bm
from bam_evidence import kept, metrics as formulas, per_user
from bam_evidence.records import Result, RunData, read_result
import bam_protocols
from bam_data.files import atomic_json, atomic_write, clean_stale_temps
from bam_runs import distributed
from bam_runs.records import Checkpoint, Generators, State

RUN_FILES = ("last.pt", "checkpoint.pt", "metrics.json", per_user.FILE)

# -----------------------------------------------------------------------------
# Hashes: of the data, and of the weights in a checkpoint


FINGERPRINT_VERSION = "v2"


def fingerprint(data):
    """Tells one dataset from another, one to one: "v2:" and a blake2b (keyed by the version) of the
    sizes (item count, number of users, of lengths, of items), then the user ids, the lengths and the
    items. The sizes make the bytes read back one way only, so two different datasets share a
    fingerprint only if blake2b collides. The prefix is the format version, saved with it in last.pt,
    checkpoint.pt and metrics.json. v1 (bam before issue 14: no sizes, no prefix) gave datasets whose
    integers laid end to end agree one digest; a file that carries one is recognised
    (fingerprint_problem) and never taken for the same data."""
    arrays = [np.ascontiguousarray(a, dtype=np.int64) for a in (data.users, data.lengths, data.items)]
    h = hashlib.blake2b(digest_size=16, person=f"bam-data-{FINGERPRINT_VERSION}".encode())
    h.update(np.array([data.n_items] + [len(a) for a in arrays], dtype=np.int64).tobytes())
    for a in arrays:
        h.update(a.tobytes())
    return f"{FINGERPRINT_VERSION}:{h.hexdigest()}"


def fingerprint_v1(data):
    """bam's fingerprint before issue 14, only to tell whether a v1 file is certainly of other data."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.int64(data.n_items).tobytes())
    for a in (data.users, data.lengths, data.items):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


def fingerprint_version(fp):
    """"v2" (this bam), "v1" (32 hex digits, no prefix), None (none saved) or "unknown"."""
    if fp is None:
        return None
    if isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{32}", fp):
        return "v1"
    if isinstance(fp, str) and re.fullmatch(FINGERPRINT_VERSION + r":[0-9a-f]{32}", fp):
        return FINGERPRINT_VERSION
    return "unknown"


def fingerprint_problem(fp):
    """Why a saved fingerprint cannot show that data is the same, or None when it can."""
    version = fingerprint_version(fp)
    if version == FINGERPRINT_VERSION:
        return None
    return {None: "records no data fingerprint",
            "v1": "records bam's old data fingerprint (v1), which two different datasets can share"}.get(
        version, f"records a data fingerprint of an unknown version ({str(fp)[:16]!r})")


def checksum(tensors):
    """blake2b over every tensor's name, dtype, shape and bytes: torch itself checks no CRC, so a
    garbled byte in a checkpoint would otherwise load silently and give wrong numbers."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()

# -----------------------------------------------------------------------------
# The code that trains: which commit, and whether the tree had uncommitted changes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_version(repo=REPO):
    """{"commit": the HEAD commit of the checkout that runs, "dirty": whether a tracked file differs from it}, or
    {"commit": None, "dirty": None} outside a git checkout (an installed copy, a tarball). Untracked files are not
    counted: runs/ and .venv are untracked by design. Recorded in every run's metrics.json (and last.pt), so that
    `table`, `compare` and `report` can say when the runs they combine come from different code."""
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=30, check=True).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return dict(commit=None, dirty=None)
    return dict(commit=commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None, dirty=dirty)


code_label = kept.code_label  # "324e5d7", "324e5d7+changes" or "unknown" (bam_evidence.kept)

# -----------------------------------------------------------------------------
# Reading and writing files


def load(path, what="checkpoint"):
    """torch.load with weights_only=True: tensors, numbers, strings, lists and dicts, never code. A file
    that holds anything else, or is truncated or not a checkpoint at all, is one InputError line."""
    if os.path.isdir(path):
        raise bm.InputError(f"{path}: is a folder (fix: pass the {what} file inside it, e.g. {path}/checkpoint.pt)")
    if not os.path.isfile(path):
        raise bm.InputError(f"{path}: no such {what} (fix: check the path; `cli.py train` writes "
                            "runs/<name>/checkpoint.pt)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: one line is enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e).upper():  # a class or function that unpickling would import and call
            raise bm.InputError(f"{path}: holds Python objects that loading would have to run as code; refused "
                                "(fix: re-save only tensors, e.g. torch.save(model.state_dict(), path))") from None
        raise bm.InputError(f"{path}: not a PyTorch {what}, or damaged (fix: pass checkpoint.pt from a run or an "
                            "official model.pt; for a run's own file, rerun with --fresh)") from None
    except Exception as e:  # noqa: BLE001  torch's loaders fail on a damaged file in many ways (fuzzed: RuntimeError,
        # EOFError, zipfile.BadZipFile, struct.error, AssertionError, ...): each one is this one line
        raise bm.InputError(f"{path}: not a PyTorch {what}, or damaged ({type(e).__name__}) (fix: pass checkpoint.pt "
                            "from a run or an official model.pt; for a run's own file, rerun with --fresh)") from None


def save(obj, path):
    """torch.save, whole or not at all (a temporary file beside `path`, then a rename)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def save_json(obj, path):
    atomic_json(path, obj)

# -----------------------------------------------------------------------------
# The lock


@contextmanager
def lock(folder):
    """Hold an exclusive lock on `folder` (its file `.lock`) while the block runs. The kernel releases
    it when the process ends in any way, so a killed run never leaves a stale lock behind. Creating the
    lock file also finds a folder that cannot be written before any work is done. Under torchrun,
    process 0 holds it for all of them and tells the others whether it got it, so that a busy folder
    stops every process with the same line (exit code 2 from each), not process 0 alone."""
    fd, refusal = None, None
    if distributed.is_main():
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            refusal = (f"{folder}: in use by process {holder}, which is training in it "
                       "(fix: wait for it to finish, or pass another --out)")
        except OSError as e:  # a file in the way, no permission, a full disk: as cli.py words an OSError
            refusal = f"{e.filename or folder}: {e.strerror or e} (fix: check the path, or pass another --out)"
    refusal = distributed.broadcast(refusal)
    if refusal:
        if fd is not None:
            os.close(fd)
        raise bm.InputError(refusal)
    try:
        if fd is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            clean_stale_temps(folder)
        yield folder
    finally:
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the lock

# -----------------------------------------------------------------------------
# The run folder


def check_same_run(path, saved_config, saved_data, cfg, data, fix="a new --out, or --fresh to start over"):
    """Refuse to resume or reuse a run that was made with another config or on other data, or whose
    data fingerprint cannot tell (none, or the old v1 hash): refused, not trained over, since the
    folder's files are the user's."""
    problem = fingerprint_problem(saved_data)
    if problem:
        raise bm.InputError(f"{path}: this run {problem}, so it cannot be shown to be this data (fix: {fix})")
    if saved_data != fingerprint(data):
        raise bm.InputError(f"{path}: this run was made on other data (fix: {fix})")
    saved_config = with_defaults(saved_config)
    diff = [f"{k}={v} (saved {saved_config.get(k)})" for k, v in asdict(cfg).items()
            if k not in ("max_iters", "patience", "device") and saved_config.get(k) != v]
    if diff:
        raise bm.InputError(f"{path}: this run was made with another config: {', '.join(diff[:3])} (fix: {fix})")


def with_defaults(saved_config):
    """A saved config with the Config fields added since it was saved (`protocol`) at their defaults: the
    runs of an older bam were made with them, and are found and reused as before."""
    return {**asdict(bm.Config()), **saved_config} if isinstance(saved_config, dict) else saved_config


def check_table_size(data, cfg):
    """Refuse an item table that cannot fit in memory before allocating it: item ids are used as row
    numbers, so one id near 2^31 asks for a table of 2^31 rows."""
    table_bytes = (data.n_items + 1) * cfg.dim * 4 * 4  # weights, gradient and Adam's two moments, float32
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if table_bytes > available / 2:
        distinct = len(np.unique(data.items))  # only to say so: a sort of every interaction
        raise bm.InputError(f"{data.name}: the largest item id is {data.n_items:,} but there are {distinct:,} distinct "
                            f"items; a table of {table_bytes / 2**30:.1f} GiB does not fit in memory (fix: number "
                            "the items 1..n, e.g. `cli.py data remap`)")


def remove_run_files(folder):
    """--fresh: forget a run (its data file and lock stay)."""
    for name in RUN_FILES if distributed.is_main() else ():
        if os.path.exists(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
    distributed.barrier()


class RunFolder:
    """bam_minimal.train's hook for a folder that can be resumed: last.pt after every validation,
    checkpoint.pt for the best model, metrics.json at the end, each a record (bam_runs.records, bam_evidence.records)
    filled once. `extra`: the result's fields that the caller gives (`threads`, `mostpop`; checked against
    records.Result now, so that a misspelt one fails here); `fix` ends the line that refuses a run of another
    config or data (`table` has no --fresh). Under torchrun every process calls it; process 0 writes, and last.pt
    keeps every process's generators. `result`: the Result written by `finish`."""

    def __init__(self, path, cfg, data, extra=None, log=print, fix="a new --out, or --fresh to start over"):
        check_table_size(data, cfg)  # before any work: `train` and every run of `table` come through here
        self.path, self.cfg, self.data, self.log, self.fix = path, cfg, data, log, fix
        self.extra = {"threads": None, "mostpop": None, **(extra or {})}
        if unknown := self.extra.keys() - {f.name for f in fields(Result)}:
            raise TypeError(f"RunFolder(extra=...): {sorted(unknown)} are no fields of records.Result")
        self.result = None  # the Result that `finish` wrote
        self.fingerprint = fingerprint(data)
        self.checked = None  # (last.pt's modification time, its checked contents): read and hashed once
        self.ndcg_as = ()  # `--ndcg-as`: the published NDCGs to keep beside the correct one (True: all the ranks give)
        self.code = code_version()  # the code that trains now; a resumed run keeps the code of each stretch
        self.code_before = []       # from last.pt: the code of the stretches before this one
        os.makedirs(path, exist_ok=True)

    def file(self, name):
        return os.path.join(self.path, name)

    def finished(self):
        """The Result (bam_evidence.records) of a run that finished here with this config on this data, or None.
        A run made with another config or on other data is refused."""
        if not os.path.exists(self.file("metrics.json")):
            return None
        result = read_result(self.file("metrics.json"))  # a metrics.json of an older bam reads as before
        check_same_run(self.file("metrics.json"), result.config, result.data and result.data.fingerprint, self.cfg,
                       self.data, self.fix)
        return result if result.finished and with_defaults(result.config) == asdict(self.cfg) else None

    def saved_state(self):
        """last.pt as a records.State, checked: this run's config and data, intact weights, no more iterations
        than asked for. cli.py calls it before any work, so that a bad last.pt costs nothing. None when absent."""
        if not os.path.exists(self.file("last.pt")):
            return None
        stamp = os.stat(self.file("last.pt")).st_mtime_ns
        if self.checked and self.checked[0] == stamp:  # cli.py checked it before any work; train resumes now
            return self.checked[1]
        saved = State.from_dict(load(self.file("last.pt"), "run state (last.pt)"), self.file("last.pt"))
        it = saved.state.it
        if saved.device != bm.resolve_device(self.cfg):  # generators differ between devices
            raise bm.InputError(f"{self.file('last.pt')}: made on {saved.device}, resumed on "
                                f"{bm.resolve_device(self.cfg)} (fix: --device {saved.device}, or --fresh)")
        if len(saved.processes) != distributed.size():
            raise bm.InputError(f"{self.file('last.pt')}: made by {len(saved.processes)} processes, resumed by "
                                f"{distributed.size()} (fix: torchrun --nproc_per_node={len(saved.processes)}, "
                                "or --fresh)")
        check_same_run(self.file("last.pt"), saved.config, saved.data, self.cfg, self.data, self.fix)
        verify(self.file("last.pt"), saved.model, saved.checksum)
        threads = self.extra["threads"]  # `table` runs record theirs: numbers depend on it
        if threads is not None and saved.threads is not None and saved.threads != threads:  # None: not recorded
            raise bm.InputError(f"{self.file('last.pt')}: trained with {saved.threads} torch threads, resumed with "
                                f"{threads}, which would give other numbers (fix: --threads {saved.threads})")
        if it > self.cfg.max_iters:
            raise bm.InputError(f"{self.path}: this run has trained {it} iterations already, more than "
                                f"--max-iters {self.cfg.max_iters} (fix: --max-iters {it} or more, a new --out, "
                                "or --fresh)")
        self.checked = (stamp, saved)
        return saved

    def resume(self, model, opt, rng, gen):
        """Load last.pt into the model, optimizer and generators -> (training state, best checkpoint).
        Under torchrun every process reads it, and all must have read the same one: without a folder
        that every machine shares, the processes would go on from different states."""
        saved = self.saved_state()
        seen = distributed.gather(None if saved is None else (saved.state.it, saved.checksum))
        if len(set(seen)) > 1:
            raise bm.InputError(f"{self.path}: the processes see different runs in it ({seen}) "
                                "(fix: a run folder that every machine shares, e.g. on a network file system)")
        if saved is None:
            return None
        try:
            st = replace(saved.state)  # its own object: the checked record stays as read
            model.load_state_dict(saved.model)
            opt.load_state_dict(saved.optimizer)
            mine = saved.processes[distributed.rank()]  # this process's generators
            rng.bit_generator.state = mine.rng
            gen.set_state(mine.gen)
            torch.set_rng_state(mine.torch_rng)  # no bam draw uses it now; kept for code that does
            if mine.cuda_rng is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(mine.cuda_rng)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise bm.InputError(f"{self.file('last.pt')}: not a resumable state of this run ({type(e).__name__}) "
                                "(fix: rerun with --fresh)") from None
        self.code_before = list(saved.code)
        self.log(f"resuming {self.path} at iteration {st.it}")
        return st, self.best()

    def best(self):
        """The best checkpoint written so far (verified), or None; as bam_minimal.checkpoint's dict, which
        bam_minimal.train restores."""
        if not os.path.exists(self.file("checkpoint.pt")):
            return None
        best = Checkpoint.from_dict(load(self.file("checkpoint.pt")), self.file("checkpoint.pt"))
        verify(self.file("checkpoint.pt"), best.model, best.checksum)
        return best.to_dict()

    def save_state(self, model, opt, rng, gen, st):
        """last.pt: the weights, Adam, every process's generators and the loop's TrainState, by field name."""
        processes = distributed.gather(Generators(  # the weights and Adam are the same in every process
            rng=rng.bit_generator.state, gen=gen.get_state(), torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state() if torch.cuda.is_available() else None))
        if distributed.is_main():
            weights = model.state_dict()
            state = State.build(model=weights, checksum=checksum(weights), optimizer=opt.state_dict(),
                                processes=processes, state=st, config=asdict(self.cfg), data=self.fingerprint,
                                device=bm.resolve_device(self.cfg), threads=self.extra["threads"], code=self.codes())
            save(state.to_dict(), self.file("last.pt"))
        distributed.barrier()  # every process has its state on disk before any goes on

    def save_best(self, best):
        """checkpoint.pt: bam_minimal.checkpoint's dict `best`, its weights' checksum and the data's fingerprint."""
        if distributed.is_main():
            record = Checkpoint.build(**best, checksum=checksum(best["model"]), fingerprint=self.fingerprint)
            save(record.to_dict(), self.file("checkpoint.pt"))

    def codes(self):
        """Every distinct code version that trained this run, oldest first (more than one: resumed under new code)."""
        out = []
        for c in self.code_before + [self.code]:
            if c not in out:
                out.append(c)
        return out

    def finish(self, result, ranks=None):
        """metrics.json: bam_minimal.finish's `result` and what the run folder knows, one records.Result (kept as
        self.result); and each user's test rank and metrics in per_user_test.npz (bam_evidence)."""
        test = dict(result["test"])
        if distributed.is_main() and ranks is not None:  # first: a run whose metrics.json exists is finished
            metrics = save_per_user(self.file(per_user.FILE), self.data, "test", self.cfg, ranks, self.fingerprint,
                                    self.path, self.ndcg_as)
            test.update({k: float(v.mean()) for k, v in metrics.items() if k.endswith(")")})  # the published NDCGs
        # `code`: the commit that trained the run (the last stretch's); `code_history`: every one, when resumed
        codes = self.codes()
        self.result = Result.build(**{**result, "test": test, "data": RunData(**result["data"],
                                                                             fingerprint=self.fingerprint)},
                                   code=dict(codes[-1], mixed=len(codes) > 1),
                                   code_history=codes if len(codes) > 1 else None,
                                   validation=self.validation(), world_size=distributed.size(), **self.extra)
        if distributed.is_main():
            save_json(self.result.to_dict(), self.file("metrics.json"))

    def validation(self):
        """What `valid` was measured on: {users, how}."""
        users = len(bam_protocols.get(self.cfg.protocol).users(self.data, "valid"))
        if self.cfg.valid_users:
            return dict(users=self.cfg.valid_users, how="the official random sample, anew each time")
        return dict(users=min(self.cfg.valid_sample or users, users),
                    how="one fixed sample drawn from the seed" if 0 < self.cfg.valid_sample < users else "every user")


def from_ranks(ndcg_as):
    """The published NDCGs of `ndcg_as` (variant names) that a run folder keeps: those the ranks give (REMI's needs
    the top-N lists, which it does not keep). `table` passes True: every one the ranks give (both of ComiRec's)."""
    return formulas.FROM_RANKS if ndcg_as is True else tuple(v for v in ndcg_as or () if v in formulas.FROM_RANKS)


def with_published_ndcg(result, folder, ndcg_as=True):
    """A finished run's Result with the published NDCGs of `ndcg_as` (default every one the ranks give: ComiRec's two),
    computed from its per-user ranks when the run was made without them (every rank and target is in the file).
    (An older run's `ndcg@N (comirec)` reads as `ndcg@N (comirec-paper)`, the formula it is: records.Result.)"""
    missing = [f"ndcg@{n} ({v})" for v in from_ranks(ndcg_as) for n in formulas.KS
               if f"ndcg@{n} ({v})" not in result.test]
    if missing:
        found = per_user.load_run(folder)  # its metrics give any metric of ranks on request
        result.test = {**result.test, **{k: float(found.metrics[k].mean()) for k in missing}}
    return result


def save_per_user(path, data, split, cfg, ranks, fingerprint, source="", ndcg_as=()):
    """Each user's `split` targets, ranks and metrics (bam_evidence.per_user), for every user of the split in
    order; -> the per-user metrics (the protocol's user_metrics). `ndcg_as`: the published NDCGs to add, each
    labelled; those the ranks give only (from_ranks), so that per_user.load can compute every stored metric again."""
    protocol = bam_protocols.get(cfg.protocol)
    rows = protocol.users(data, split)                                         # (U,)
    _, counts, targets = protocol.targets(data, split, rows)                   # (U,), (T,)
    metrics = protocol.user_metrics(ranks, counts, targets, from_ranks(ndcg_as))
    per_user.save(path, users=data.users[rows], targets=targets, ranks=ranks, counts=counts, metrics=metrics,
                  protocol=cfg.protocol, split=split, history_mask=cfg.history_mask, fingerprint=fingerprint,
                  n_items=data.n_items, source=source)
    return metrics


def verify(path, weights, expected):
    """Refuse weights whose checksum differs from the one saved with them (a file without one, from
    bam_minimal.py's standalone run or an older bam, is not checked)."""
    if expected is not None and checksum(weights) != expected:
        raise bm.InputError(f"{path}: the weights do not match their checksum: the file is corrupted "
                            "(fix: retrain, or rerun with --fresh)")
