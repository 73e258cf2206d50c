"""
bam_tune/study.py: a study of one method over a search space (Optuna), its workers, and the final comparison.

    from bam_tune import study
    spec = study.Spec(base, "BaM", knobs, dataset, "runs/tune", trials=20)
    study.work(spec, log=print)             # one worker: run trials until the study has its budget
    study.final(spec, seeds=3)              # the best config and the default over 3 seeds, on the test split

Each trial is an ordinary run folder, OUT/trials/<method>/trial-NNNN/ (resumable, fingerprinted: bam_runs.run_folder),
trained by bam_minimal.train. Its validations pass through the run folder's `save_state` (TrialFolder), which
reports each one to Optuna, raises optuna.TrialPruned when the pruner says so, and stops the run (`Stopped`)
once bam_minimal.train's own early stopping would end it, before `train` reaches the test split. The trial's
value is its best validation Recall@10 (the metric `train` stops on); each user's validation result of its
best checkpoint is kept (per_user_valid.npz). No test metric is computed or read until `final`.

Workers. Any number of processes, on any machines, share a study through its storage (a journal file, by default
OUT/journal.log, or a database URL) and the study's folder OUT. Optuna 5.1's JournalStorage records no
heartbeats (only RDBStorage and gRPC do), so bam finds a dead worker's trials itself: a worker holds an OS lock
(fcntl.flock) on OUT/locks/<study>/trial-N.lock while trial N runs; the kernel drops it when the worker dies,
kill -9 included. Before each trial a worker marks every RUNNING trial whose lock it can take as failed, and it
is queued again (`retry`, as Optuna's RetryFailedTrialCallback did); the retry trains in the first trial's
folder, so it resumes from its last validation. The lock is taken before the trial is asked for and renamed to
its number after, so a live trial is never without its lock; a RUNNING trial without a lock file (its worker
died in between, or it runs on a machine that does not share OUT) is failed only when its worker is on this
machine and its process is gone, or, without a record of its worker, when it started more than GRACE seconds
ago.
"""
import fcntl
import glob
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

import bam_minimal as bm
from bam_evidence import per_user
from bam_evidence.differences import PROTOCOL_COLUMNS, family as diff_family, markdown as diff_markdown
from bam_experiments import single_run as experiment
from bam_experiments.methods import METHODS
from bam_runs import run_folder
from bam_tune import space as spaces

GRACE = 60          # seconds: a RUNNING trial with neither lock nor worker record is a dead worker's after this
MAX_RETRY = 3       # a trial whose workers die this many times is left failed
METRIC = "recall@10"  # what bam_minimal.train stops on, and the studies maximise
VALID_FILE = "per_user_valid.npz"
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Spec:
    base: object            # bm.Config with the method's settings
    method: str             # a METHODS name
    knobs: dict             # bam_tune.space.parse
    data: object            # bm.Dataset
    out: str                # the study's folder: journal, trials, locks, final runs
    name: str = ""          # the study's name (default: the folder's name)
    storage: str = None     # None: OUT/journal.log; a path: a journal file; "sqlite:///...": a database
    trials: int = 20        # the budget: finished and running trials together (--grid: every point)
    grid: bool = False
    seeds: int = 1          # --grid: each point over these seeds
    pruner: str = "median"  # median | halving | none
    prune_after: int = 5    # trials before the median pruner prunes
    threads: int = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.name = self.name or os.path.basename(os.path.normpath(self.out))


def method_config(base, method):
    if method not in METHODS:
        raise bm.InputError(f"--method {method}: unknown (fix: one of {', '.join(METHODS)})")
    return replace(base, **METHODS[method])


def hard_counterpart(method):
    """The method with hard selection in place of its own: BaM -> ComiRec, MIND+BaM -> MIND."""
    want = dict(METHODS[method], selection="hard")
    name = next((m for m, s in METHODS.items() if s == want), None)
    if name is None:
        raise bm.InputError(f"--against hard: no method in METHODS is {method} with hard selection "
                            f"(fix: --method BaM, BaM-l or MIND+BaM)")
    return name


# Knobs that hard selection never reads: its argmax of M_u^T e_target is the same at every temperature
# (bam_minimal.select_interest), so searching them for hard would train the same model again and again.
HARD_IGNORES = ("tau", "tau_schedule", "tau_hard", "tau_anneal_iters")


def against(spec, name):
    """The second study of --against hard: the hard counterpart, the same space but the knobs hard selection ignores
    (HARD_IGNORES), the same budget. With no knob left it is one trial per seed: the counterpart's own config."""
    method = hard_counterpart(spec.method)
    base = replace(spec.base, **METHODS[method])
    knobs = {k: v for k, v in spec.knobs.items() if k not in HARD_IGNORES}
    more = {} if knobs else dict(grid=True, seeds=spec.seeds if spec.grid else 1)
    return replace(spec, base=base, method=method, name=f"{spec.name}.{name}", knobs=knobs, **more)

# -----------------------------------------------------------------------------
# Storage, the study and its trust checks


def storage(spec):
    """A journal file (default OUT/journal.log; NFS-safe symlink lock) or a database URL (RDBStorage)."""
    where = spec.storage or os.path.join(spec.out, "journal.log")
    if "://" in where:
        return where
    folder = os.path.dirname(os.path.abspath(where))
    if not os.path.isdir(folder):
        raise bm.InputError(f"--storage {where}: no such folder {folder} (fix: create it, or another path)")
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    return JournalStorage(JournalFileBackend(where))


def sampler(spec, n=0):
    """TPE seeded by the base seed and the number of trials so far (a worker's next trial is the same for the same
    study; two workers do not draw the same startup trials); GridSampler for --grid, over the choices and seeds."""
    if spec.grid:
        return Grid(grid(spec))  # unseeded: the order of the points does not matter
    return optuna.samplers.TPESampler(seed=int(np.random.SeedSequence([spec.base.seed, n]).generate_state(1)[0]))


class Grid(optuna.samplers.GridSampler):
    """GridSampler without its study.stop() after the last point, which works only inside study.optimize; the
    workers here ask and tell, and stop when every point is taken (`finished`)."""

    def after_trial(self, study, trial, state, values):
        pass


def pruner(spec):
    if spec.grid or spec.pruner == "none":  # a grid compares every point over seeds: none is cut short
        return optuna.pruners.NopPruner()
    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=spec.prune_after, n_warmup_steps=0)


def grid(spec):
    return dict(spaces.grid_values(spec.knobs), seed=[spec.base.seed + s for s in range(spec.seeds)])


def identity(spec):
    """What a study is, stored as its user attrs: another data, space, method or base config is refused."""
    base = {k: v for k, v in asdict(spec.base).items() if k not in spec.knobs and k not in ("seed", "device")}
    return dict(data=run_folder.fingerprint(spec.data), space=spaces.canonical(spec.knobs, spec.grid),
                method=spec.method, config=json.dumps(base, sort_keys=True))


WHAT = dict(data="was made on other data", space="was made with another search space",
            method="tunes another method", config="was made with another base config")


def open_study(spec, create=True):
    """The study, created when new (`create`), its identity checked against `spec` (one InputError line)."""
    if not create and not spec.storage and not os.path.exists(os.path.join(spec.out, "journal.log")):
        raise bm.InputError(f"{spec.out}: no study here (no journal.log) (fix: check --out, or give --storage)")
    if create:
        os.makedirs(spec.out, exist_ok=True)
    store = storage(spec)
    if not create:
        try:
            return optuna.load_study(study_name=spec.name, storage=store)
        except KeyError:
            raise bm.InputError(f"--study {spec.name}: no such study in {spec.storage or spec.out} (fix: check "
                                "--study and --storage)") from None
    study = optuna.create_study(study_name=spec.name, storage=store, direction="maximize", load_if_exists=True,
                                sampler=sampler(spec), pruner=pruner(spec))
    saved = study.user_attrs
    for key, value in identity(spec).items():
        if key not in saved:
            study.set_user_attr(key, value)
        elif saved[key] != value:
            detail = f" (saved {saved[key]}, now {value})" if key == "method" else ""
            raise bm.InputError(f"--study {spec.name}: this study {WHAT[key]}{detail} (fix: another --study or "
                                "--out, or the same data, --space, --method and flags as before)")
    return study

# -----------------------------------------------------------------------------
# Dead workers: each running trial's lock


def locks(spec):
    folder = os.path.join(spec.out, "locks", spec.name)
    os.makedirs(folder, exist_ok=True)
    return folder


def alive(spec, t):
    """Whether trial t (RUNNING) still has a live worker: its lock held, or no proof that its worker is gone."""
    path = os.path.join(locks(spec), f"trial-{t.number}.lock")
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        who = t.user_attrs.get("worker")
        if isinstance(who, dict) and who.get("trial") == t.number:  # recorded by this trial's own worker
            if who.get("host") != socket.gethostname():
                return True   # another machine, and OUT not shared: that machine's workers judge it
            try:
                os.kill(int(who["pid"]), 0)
                return True
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        started = t.datetime_start.timestamp() if t.datetime_start else time.time()
        return time.time() - started < GRACE
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def reap(spec, study, log=print):
    """Mark the RUNNING trials of dead workers failed, and queue each again (RetryFailedTrialCallback)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if alive(spec, t):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # it finished meanwhile, or another worker failed it
            continue
        log(f"trial {t.number}: its worker died; marked failed and queued again")
        retry(study, study.get_trials(deepcopy=False)[t.number])


def retry(study, t):
    """Queue a failed trial again with its params (what Optuna's RetryFailedTrialCallback does; deprecated in 4.9
    and renamed for heartbeats, which the journal has not): `failed_trial` names the first of its line, whose run
    folder the retry resumes; after MAX_RETRY deaths it stays failed."""
    history = list(t.system_attrs.get("retry_history", [])) + [t.number]
    if len(history) > MAX_RETRY:
        return
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=t.params, distributions=t.distributions,
                                        user_attrs={k: v for k, v in t.user_attrs.items() if k != "worker"},
                                        system_attrs={**t.system_attrs, "failed_trial": t.system_attrs.get(
                                            "failed_trial", t.number), "retry_history": history}))


class TrialLock:
    """The lock of the trial this worker is about to ask for: held before the trial exists, then named for it."""

    def __init__(self, spec):
        self.path = os.path.join(locks(spec), f".ask-{os.getpid()}-{uuid.uuid4().hex[:8]}.lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.pwrite(self.fd, f"{socket.gethostname()} {os.getpid()}".encode(), 0)

    def name(self, number):
        final = os.path.join(os.path.dirname(self.path), f"trial-{number}.lock")
        os.replace(self.path, final)  # the lock goes with the file: this trial is never seen without it
        self.path = final

    def release(self):
        try:
            os.remove(self.path)
        finally:
            os.close(self.fd)

# -----------------------------------------------------------------------------
# One trial: a run folder that reports each validation and stops before the test


class Stopped(Exception):
    """bam_minimal.train would end here (max_iters, or patience): stop before it tests."""


class TrialFolder(run_folder.RunFolder):
    """A RunFolder whose save_state (called after every validation) reports to the trial, prunes, and stops the run
    at the end of its training, so that bam_minimal.train never reaches the test split."""

    def __init__(self, path, cfg, data, trial, **kwargs):
        super().__init__(path, cfg, data, **kwargs)
        self.trial, self.kept, self.reported = trial, None, 0

    def over(self, st):
        return st.it >= self.cfg.max_iters or st.trials > self.cfg.patience

    def resume(self, model, opt, rng, gen):
        got = super().resume(model, opt, rng, gen)
        if got:
            st, self.kept = got
            for h in st.history:  # a retried trial: what its first worker validated
                self.report(h)
            if self.over(st):
                raise Stopped(st)
        return got

    def report(self, h):
        self.trial.report(h[METRIC], h["iter"])
        self.reported += 1

    def save_best(self, best):
        super().save_best(best)
        self.kept = best

    def save_state(self, model, opt, rng, gen, st):
        super().save_state(model, opt, rng, gen, st)
        self.report(st.history[-1])
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at iteration {st.it}")
        if self.over(st):
            raise Stopped(st)


def study_trial(trial):
    """The FrozenTrial of a running optuna Trial (its system attrs: which trial it retries)."""
    return trial.study._storage.get_trial(trial._trial_id)


def trial_folder(spec, trial):
    """A retried trial trains in its first trial's folder (and so resumes from it)."""
    first = study_trial(trial).system_attrs.get("failed_trial", trial.number)
    return os.path.join(spec.out, "trials", spec.method, f"trial-{first:04d}")


def run_trial(spec, trial, log=print):
    """Train (or resume, or read back) one trial -> its best validation Recall@10. optuna.TrialPruned when pruned."""
    cfg = replace(spec.base, **trial.params)
    folder = trial_folder(spec, trial)
    trial.set_user_attr("folder", folder)
    done = os.path.join(folder, "trial.json")
    with run_folder.lock(folder):
        if os.path.exists(done):
            saved = json.loads(open(done, encoding="utf-8").read())
            if saved.get("config") == asdict(cfg) and saved.get("data") == run_folder.fingerprint(spec.data):
                trial.set_user_attr("validations", saved["validations"])
                log(f"trial {trial.number}: finished earlier in {folder}, reused")
                return saved["value"]
        run = TrialFolder(folder, cfg, spec.data, trial, extra=dict(threads=torch.get_num_threads()),
                          log=lambda s: log(f"trial {trial.number}: {s}"),
                          fix=f"delete {folder}, or another --out")
        try:
            bm.train(cfg, spec.data, run, log=lambda s: log(f"trial {trial.number}: {s}"))
            raise AssertionError("bam_minimal.train reached the test split in a trial")  # Stopped comes first
        except Stopped as stop:
            st = stop.args[0]
        except optuna.TrialPruned:
            trial.set_user_attr("validations", run.reported)
            raise
        trial.set_user_attr("validations", run.reported)
        keep_validation(run, cfg, spec.data, folder)
        run_folder.save_json(dict(value=st.best, best_iter=st.best_iter, iters=st.it, validations=run.reported,
                                  params=trial.params, config=asdict(cfg), history=st.history,
                                  data=run.fingerprint, threads=torch.get_num_threads()), done)
        return st.best


def keep_validation(run, cfg, data, folder):
    """Each validation user's result of the trial's best checkpoint (per_user_valid.npz): the validation split."""
    if not run.kept:
        return
    net = bm.build_model(cfg, data.n_items).to(bm.resolve_device(cfg))
    net.load_state_dict(run.kept["model"])
    _, ranks, _ = bm.PROTOCOLS[cfg.protocol]["evaluate"](bm.model_scorer(net.eval()), data, "valid", cfg)
    run_folder.save_per_user(os.path.join(folder, VALID_FILE), data, "valid", cfg, ranks, run.fingerprint, folder)

# -----------------------------------------------------------------------------
# A worker


def finished(spec, study):
    """The study has its budget: the trials that finished or are under way fill it (--grid: every point)."""
    trials = study.get_trials(deepcopy=False, states=LIVE)
    if any(t.state == TrialState.WAITING for t in trials):  # queued (a retry, enqueue_trial): run them first
        return False
    if spec.grid:
        names = list(grid(spec))
        seen = {tuple(t.params.get(n) for n in names) for t in trials if t.params}
        return len(seen) >= int(np.prod([len(v) for v in grid(spec).values()]))
    return len(trials) >= spec.trials


def budget(spec):
    return int(np.prod([len(v) for v in grid(spec).values()])) if spec.grid else spec.trials


def work(spec, log=print, on_trial=None):
    """One worker: run trials until the study is full, each under its lock; -> the study. TrainingError (a config
    whose loss diverged) fails its trial and the study goes on; bad input stops the worker."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    experiment.register()
    study = open_study(spec)
    dists = spaces.distributions(spec.knobs)
    if spec.grid:
        import optuna.distributions as d
        dists["seed"] = d.CategoricalDistribution(grid(spec)["seed"])
    while True:
        reap(spec, study, log)
        if finished(spec, study):
            break
        if not spec.grid:
            study.sampler = sampler(spec, len(study.get_trials(deepcopy=False)))
        lock = TrialLock(spec)
        try:
            trial = study.ask(fixed_distributions=dists)
            lock.name(trial.number)
            trial.set_user_attr("worker", dict(host=socket.gethostname(), pid=os.getpid(), trial=trial.number))
            try:
                value = run_trial(spec, trial, log)
            except optuna.TrialPruned as e:
                log(f"trial {trial.number}: {e}")
                study.tell(trial, state=TrialState.PRUNED)
            except bm.TrainingError as e:
                log(f"trial {trial.number}: failed: {e}")
                study.tell(trial, state=TrialState.FAIL)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                retry(study, study.get_trials(deepcopy=False)[trial.number])
                raise
            else:
                study.tell(trial, value)
                log(f"trial {trial.number}: validation {METRIC} {value:.4f} with {trial.params}")
        finally:
            lock.release()
        on_trial and on_trial(study)
    return study


def wait_for(study, log=print, poll=2.0):
    """Until no trial of the study runs or waits (other workers finishing theirs)."""
    said = False
    while any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in study.get_trials(deepcopy=False)):
        if not said:
            log("waiting for the other workers' trials to finish")
            said = True
        time.sleep(poll)


def best_params(spec, study):
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        raise bm.InputError(f"--study {spec.name}: no trial finished, so no best configuration (fix: more --trials)")
    if not spec.grid:
        best = max(done, key=lambda t: (t.value, -t.number))
        return {k: v for k, v in best.params.items() if k != "seed"}, best
    # a grid runs every point over its seeds: the best point is the best mean over them, not one lucky seed's trial
    points = {}
    for t in done:
        points.setdefault(json.dumps({k: v for k, v in t.params.items() if k != "seed"}, sort_keys=True), []).append(t)
    key, trials = max(points.items(), key=lambda kv: (np.mean([t.value for t in kv[1]]), -min(t.number for t in kv[1])))
    first = min(trials, key=lambda t: t.number)
    return json.loads(key), SimpleNamespace(number=first.number, value=float(np.mean([t.value for t in trials])))

# -----------------------------------------------------------------------------
# --status


def status(study):
    """The trials so far, one line each: number, state, params, value."""
    lines = [f"study {study.study_name}: method {study.user_attrs.get('method')}, "
             f"{len(study.get_trials(deepcopy=False))} trials"]
    for t in study.get_trials(deepcopy=False):
        value = f"{t.value:.4f}" if t.value is not None else (
            f"{t.intermediate_values[t.last_step]:.4f} at iter {t.last_step}" if t.last_step is not None else "-")
        retry = f" (retry of {t.system_attrs['failed_trial']})" if "failed_trial" in t.system_attrs else ""
        lines.append(f"{t.number:>4}  {t.state.name:<8} {value:<24} {json.dumps(t.params)}{retry}")
    return "\n".join(lines)

# -----------------------------------------------------------------------------
# The final comparison, on the test split, once the study is over


def trained_trial(out, cfg, fingerprint):
    """The folder of a finished trial under OUT/trials with exactly this config (seed included) on this data, or None.
    A grid trains every point over the final seeds already, and a search often trains the default's first seed."""
    for done in sorted(glob.glob(os.path.join(out, "trials", "*", "trial-*", "trial.json"))):
        try:
            saved = json.loads(open(done, encoding="utf-8").read())
        except (OSError, ValueError):
            continue
        if saved.get("config") == asdict(cfg) and saved.get("data") == fingerprint:
            return os.path.dirname(done)
    return None


def adopt(trial, folder):
    """Start the final run `folder` from a finished trial's state (last.pt, checkpoint.pt). The trial stopped where
    bam_minimal.train's early stopping ends (TrialFolder.over), and resuming is exact (tests/test_train.py,
    test_a_resumed_run_equals_an_uninterrupted_one), so the run resumes past its loop and only tests: the same
    result as training it again, without the hours."""
    os.makedirs(folder, exist_ok=True)
    for name in ("checkpoint.pt", "last.pt"):  # last.pt last: a folder with it is a run to resume
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
        shutil.copyfile(os.path.join(trial, name), tmp)
        os.replace(tmp, os.path.join(folder, name))


def final_run(cfg, data, folder, log=print, out=None, fingerprint=None):
    """An ordinary run of `cfg` (train, stop early on validation, test), reused when finished; started from a finished
    trial of the study folder `out` with the same config and seed when there is one (`adopt`)."""
    with run_folder.lock(folder):
        trial = out and not os.path.exists(os.path.join(folder, "last.pt")) and \
            trained_trial(out, cfg, fingerprint or run_folder.fingerprint(data))
        if trial and os.path.exists(os.path.join(trial, "last.pt")):
            adopt(trial, folder)
            log(f"{folder}: trained as {trial}; resumed there to test it")
        run = run_folder.RunFolder(folder, cfg, data, extra=dict(threads=torch.get_num_threads()),
                                   fix=f"delete {folder}, or another --out")
        result = run.finished()
        if result:
            log(f"{folder}: finished earlier, reused")
            return result
        bm.train(cfg, data, run, log=lambda s: log(f"{folder}: {s}"))
        return run.result


def final(specs, seeds, log=print, n_resamples=9999):
    """Retrain the best configuration of each study (specs[0] the method's, specs[1] the hard counterpart's with
    --against hard) and the method's default over the same seeds; their test differences as one family
    (bam_evidence.differences: the primary interval over seeds and users, Holm, verdicts). Writes OUT/final.md
    and final.json; -> the Markdown."""
    spec = specs[0]
    experiment.register()
    arms, studies = {}, []  # label -> config; (spec, its study)
    for s in specs:
        study = open_study(s)
        studies.append((s, study))
        wait_for(study, log)
        params, best = best_params(s, study)
        arms[f"{s.method} tuned"] = (replace(s.base, **params), best.number, best.value, s.name)
    for s in specs:  # the defaults: what the verdict was before tuning (with --against hard, both methods')
        arms[f"{s.method} default"] = (s.base, None, None, s.name)
    columns = list(PROTOCOL_COLUMNS[spec.base.protocol])
    runs, results, fingerprint = {}, {}, run_folder.fingerprint(spec.data)  # hashed once, not per final run
    for label, (cfg, _, _, _) in arms.items():
        for i in range(seeds):
            folder = os.path.join(spec.out, "final", label.replace(" ", "-"), f"seed-{cfg.seed + i}")
            results.setdefault(label, []).append(final_run(replace(cfg, seed=cfg.seed + i), spec.data, folder, log,
                                                           out=spec.out, fingerprint=fingerprint))
            runs.setdefault(label, []).append(per_user.load(os.path.join(folder, per_user.FILE)))
    pairs = final_pairs(specs)
    rows = diff_family({(a, b): (runs[a], runs[b]) for a, b in pairs}, columns, n_resamples)
    lines = [f"Final comparison on the test split of {spec.data.name}, over {seeds} seed(s) "
             f"({spec.base.seed}..{spec.base.seed + seeds - 1}); each configuration chosen on validation "
             f"{METRIC} only.", "", "| arm | study | best trial | validation | config | " +
             " | ".join(columns) + " |", "|---|---|---:|---:|---|" + "---:|" * len(columns)]
    for label, (cfg, number, value, name) in arms.items():
        means = [float(np.mean([r.test[c] for r in results[label]])) for c in columns]
        changed = {k: v for k, v in asdict(cfg).items() if asdict(spec.base).get(k) != v and k != "seed"}
        lines.append(f"| {label} | {name} | {'-' if number is None else number} | "
                     f"{'-' if value is None else f'{value:.4f}'} | {json.dumps(changed) if changed else 'default'} | "
                     + " | ".join(f"{m:.4f}" for m in means) + " |")
    text = "\n".join(lines) + "\n\n" + diff_markdown(rows, n_resamples)
    run_folder.save_json(dict(seeds=seeds, arms={k: dict(config=asdict(v[0]), trial=v[1], validation=v[2], study=v[3],
                                                         test=[r.test for r in results[k]])
                                                 for k, v in arms.items()}, differences=rows),
                         os.path.join(spec.out, "final.json"))
    from bam_data.files import atomic_text
    atomic_text(os.path.join(spec.out, "final.md"), text)
    save_table(studies, seeds, arms, pairs)
    return text


def final_pairs(specs):
    """(A, B) pairs of arm labels, each difference B - A: what tuning buys the method; and with --against hard, the
    method against hard selection before tuning (both defaults) and after (both tuned)."""
    ours, default = f"{specs[0].method} tuned", f"{specs[0].method} default"
    pairs = [(default, ours)]
    if len(specs) > 1:
        hard = specs[1].method
        pairs += [(f"{hard} default", default), (f"{hard} tuned", ours)]
    return pairs


def save_table(studies, seeds, arms, pairs):
    """OUT/final/table.json, in `cli.py table`'s layout (runs/<arm>/seed-S), so that `cli.py report pack OUT/final`
    keeps the final runs as evidence; with the pairs to compare and every study's trials (the grid's figure).
    `studies`: [(spec, its optuna study)], the method's first, as final opened them."""
    spec = studies[0][0]
    folder = lambda label: label.replace(" ", "-")  # noqa: E731
    trials = [dict(study=s.name, method=s.method, params=t.params, value=t.value,
                   seconds=t.duration.total_seconds() if t.duration else None)  # wall, from start to the end
              for s, st in studies for t in st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    run_folder.save_json(dict(
        kind="tune", dataset=str(spec.data.name), seeds=seeds, config=asdict(spec.base), grid=spec.grid,
        knobs=list(spec.knobs), metric=f"validation {METRIC}", trials=trials,
        methods=[folder(label) for label in arms],
        runs={folder(label): [dict(seed=cfg.seed + i) for i in range(seeds)] for label, (cfg, *_) in arms.items()},
        pairs=[[folder(a), folder(b)] for a, b in pairs]), os.path.join(spec.out, "final", "table.json"))
