"""
bam_experiments/single_run.py: one run, as `python cli.py train` and `evaluate` make it, callable without click:
the training of one Config in one run folder, with the most-popular baseline beside it, and the evaluation of
one checkpoint. (`table` and `tune` make many runs; each of theirs is one of these. Named "single_run", not
"run", so that the name says which of the project's runs it holds.)

    from bam_data.source import DataSource
    from bam_experiments.single_run import EvaluationRequest, evaluate_checkpoint, train_run
    result, reused = train_run(cfg, DataSource("movies.txt"), "runs/movies")   # DataSource(): the synthetic data
    got = evaluate_checkpoint(EvaluationRequest("runs/movies/checkpoint.pt", k_top=50))   # .metrics, .ranks, ...

The run folder (bam_runs/run_folder.py) makes it resumable: rerunning the same call continues from the
last validation, and a finished run is read back rather than trained again.
"""
import os
from dataclasses import dataclass, field, replace

import numpy as np

import bam_minimal as bm
from bam_evidence import metrics as formulas
from bam_experiments import balance, baselines, sasrec
import bam_protocols
from bam_data.source import DataSource
from bam_runs import checkpoints, datasets, distributed, run_folder

SYNTHETIC_PRESET = dict(max_iters=5000, eval_every=500)  # so that `cli.py train` ends in minutes


def register():
    """Add SASRec to bam_minimal.MODELS (idempotent): every command that builds a model, trains or loads a
    checkpoint calls it first. The protocols are registered by importing bam_protocols (above)."""
    sasrec.register()


def check_config(cfg):
    """bam_minimal.check_config, with the models of the experiments registered (SASRec) and every protocol of
    bam_protocols, as the commands that take a --model check it before any work."""
    register()
    bm.check_config(cfg)


def default_out(source, cfg, prefix=""):
    """runs/<data>-<model>-<selection> (or runs/<prefix><data> with a prefix: `table`'s folder); `source` a
    DataSource."""
    name = "synthetic" if source.synthetic else os.path.basename(source.path).split(".")[0]
    return os.path.join("runs", f"{prefix}{name}" if prefix else f"{name}-{cfg.model}-{cfg.selection}")


def train_run(cfg, source, out, fresh=False, log=print, on_step=lambda it: None, on_start=None, ndcg_as=()):
    """Train, validate, stop early and test the best checkpoint in the run folder `out`; -> (result, reused), the
    result a bam_evidence.records.Result (metrics.json's).
    `source`: a DataSource (bam_data/source.py; a path alone is read with the format detected), with no path the
    built-in synthetic dataset (written into `out`).
    `on_start(message)` is told what will run before the first step; a KeyboardInterrupt propagates, with
    the best checkpoint so far kept in `out`. `ndcg_as`: published NDCGs too, each labelled (the protocol's
    variants, but REMI's, which needs the top-N lists that only `evaluate` has)."""
    check_config(cfg)  # Config(model="sasrec") is Table 2's baseline; any protocol of bam_protocols
    check_ndcg_as(ndcg_as, cfg.protocol, lists=False)
    if os.path.exists(out) and not os.path.isdir(out):
        raise bm.InputError(f"{out}: is a file, not a run folder (fix: pass another --out)")
    with run_folder.lock(out):  # before anything is written: a second process on this folder stops here
        if fresh:
            run_folder.remove_run_files(out)
        source = source if isinstance(source, DataSource) else DataSource(source)
        dataset = datasets.load_run_data(source, out, fresh, log=log)
        folder = run_folder.RunFolder(out, cfg, dataset, log=log)  # refuses an item table that cannot fit
        folder.ndcg_as = ndcg_as
        result = folder.finished()
        if result:  # a run made without --ndcg-as gets the published NDCGs from its per-user ranks
            return run_folder.with_published_ndcg(result, out, ndcg_as) if ndcg_as else result, True
        folder.saved_state()  # a last.pt that cannot be resumed stops here, before any work
        device = bm.resolve_device(cfg)
        if on_start:
            on_start(f"{dataset.name}: {len(dataset.users)} users, {dataset.n_items} items, "
                     f"{dataset.n_interactions} interactions; {cfg.model} + {cfg.selection}, device {device}; "
                     f"writing {out}")
        protocol = bam_protocols.get(cfg.protocol)
        popular = baselines.popularity_scorer(dataset, device, protocol.popularity_counts(dataset))
        folder.extra["mostpop"] = protocol.evaluate(popular, dataset, "test", cfg)[0]  # a field of records.Result
        bm.train(cfg, dataset, folder, log=log, on_step=on_step)
        return folder.result, False


def check_ndcg_as(ndcg_as, protocol, lists=True, command="train"):
    """Refuse, before any work, an unknown protocol and published NDCGs that cannot be computed: each is for the
    protocols whose tables published it (their `variants`), and REMI's needs each user's top-N list, which only an
    evaluation has (`lists`)."""
    if set(ndcg_as) - set(bam_protocols.get(protocol).variants):
        raise bm.InputError(f"--ndcg-as {','.join(ndcg_as)}: not published for protocol {protocol}, nor computed "
                            f"under it (fix: --protocol {' or '.join(bam_protocols.with_variants())}, or leave "
                            "--ndcg-as out)")
    if "remi" in ndcg_as and not lists:
        raise bm.InputError(f"--ndcg-as remi: REMI's NDCG needs each user's top-N list, which `{command}` does not "
                            "keep (fix: leave remi out here, then cli.py evaluate --checkpoint RUN/checkpoint.pt "
                            "--ndcg-as remi)")


# -----------------------------------------------------------------------------
# The evaluation of a checkpoint


@dataclass(frozen=True)
class EvaluationRequest:
    """What `evaluate` asks of a checkpoint, as one object: `cli.py evaluate` builds it once from its options, and
    evaluate_checkpoint reads it (a test builds it too). None means the checkpoint's own."""
    checkpoint: str                       # checkpoint.pt of a run, or an official model.pt
    source: DataSource = field(default_factory=DataSource)  # no path: the data the checkpoint names
    split: str = "test"                   # test | valid
    protocol: str | None = None           # a name registered in bam_protocols; None: the checkpoint's
    history_mask: str | None = None       # None: the checkpoint's
    model: str | None = None              # what the checkpoint must hold (checked), or None
    n_interests: int = 4                  # an official MIND state_dict's N (ours record theirs)
    seq_len: int = 50                     # an official MIND state_dict's L
    engine: str = "torch"                 # torch | numpy (bam_numpy's numba engine, one process)
    other_data: bool = False              # other data than the checkpoint's, on purpose (--other-data)
    k_top: int = 0                        # > 0: each user's top-k list, and the interests' balance over it
    ndcg_as: tuple = ()                   # published NDCGs too, each labelled (the protocol's variants)


@dataclass
class Evaluation:
    metrics: dict           # the protocol's (recall@K, ndcg@K, ...), nonfinite_users, and with k_top the balance
    cfg: object             # the checkpoint's Config, with the history mask and protocol used
    dataset: object         # bm.Dataset
    data_check: dict        # what checkpoints.check_data found, for the JSON output
    ranks: np.ndarray       # (T,) each target's rank, user by user (one each under leave-one-out)
    tops: np.ndarray        # (U, k_top) each user's top-k ids, or None


def evaluate_checkpoint(request, log=print, note=print):
    """Full-item ranking of `request.checkpoint` (an EvaluationRequest) on its data (default: the data the
    checkpoint names) -> Evaluation (with each user's top-`k_top` list and the interests' balance over it when
    k_top > 0). Other data than the checkpoint's stops here with one line, unless `other_data`; engine "numpy"
    ranks with bam_numpy's engine (one process). The data reader's notes go to `log`, the checkpoint loader's
    to `note`."""
    register()  # a SASRec checkpoint loads like the others
    r, source = request, request.source
    split, ndcg_as, k_top = r.split, tuple(r.ndcg_as), r.k_top
    net, cfg, dataset, data_check = checkpoints.load_with_data(
        r.checkpoint, source.path, lambda p: datasets.load_dataset(source.at(p), log=log),
        checkpoints.official_base(r.n_interests, r.seq_len), r.model, note, r.other_data)
    cfg = replace(cfg, history_mask=r.history_mask or cfg.history_mask, protocol=r.protocol or cfg.protocol,
                  device="auto")
    check_ndcg_as(ndcg_as, cfg.protocol)
    check_request(r, dataset)
    protocol = bam_protocols.get(cfg.protocol)  # the object, from here on
    lists = max(k_top, max(formulas.KS)) if "remi" in ndcg_as else k_top  # REMI's NDCG@50 needs top-50 lists
    if r.engine == "numpy":
        from bam_crosscheck import numpy_engine  # numba compiles on first use: only for this engine
        metrics, ranks, tops = numpy_engine.evaluate_numpy(net, cfg, dataset, split, k_top=lists)
    else:
        net = net.to(bm.resolve_device(cfg))
        metrics, ranks, tops = protocol.evaluate(bm.model_scorer(net), dataset, split, cfg, k_top=lists)
    if ndcg_as:
        _, counts, targets = protocol.targets(dataset, split, protocol.users(dataset, split))
        metrics.update({k: float(v.mean()) for k, v in formulas.published(ndcg_as, ranks, counts, targets, tops)
                        .items()})
    tops = tops[:, :k_top] if k_top else None                                # (U, k_top): the lists asked for
    if k_top:  # which interest supplies each recommended item (the torch model's interests, either engine's lists)
        metrics.update(balance.list_balance(net, cfg, dataset, split, tops))
    pool = len(protocol.users(dataset, split))                                 # the users of the split
    if split == "valid" and not cfg.valid_users and 0 < cfg.valid_sample < pool:
        note(f"note: this scores every user's validation target; the run itself validated a fixed sample of "
            f"{cfg.valid_sample} users (metrics.json, `validation`)")
    return Evaluation(metrics, cfg, dataset, data_check, ranks, tops)


def check_request(request, dataset):
    """Refuse, before any ranking, what the data or the process cannot give: longer top-k lists than the items
    (they would hold masked items and padding), the numba engine under torchrun, REMI's NDCG@50 on fewer items."""
    if request.k_top > dataset.n_items:
        raise bm.InputError(f"--top-n {request.k_top}: more than the {dataset.n_items} items of {dataset.name} (fix: "
                            "a smaller --top-n)")
    if request.engine == "numpy" and distributed.size() > 1:
        raise bm.InputError("--engine numpy runs in one process (fix: python cli.py evaluate, without torchrun)")
    if "remi" in request.ndcg_as and dataset.n_items < max(formulas.KS):
        raise bm.InputError(f"--ndcg-as remi: REMI's NDCG@{max(formulas.KS)} needs top-{max(formulas.KS)} lists, and "
                            f"{dataset.name} has {dataset.n_items} items (fix: leave remi out, or more items)")
