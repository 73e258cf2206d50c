"""
bam_experiments/run.py: one training run of the paper's protocol in a run folder, with the most-popular
baseline beside it, and the evaluation of a checkpoint: what `python cli.py train` and `evaluate` do,
callable without click.

    from bam_experiments.run import train_run
    result, reused = train_run(cfg, "movies.txt", "runs/movies")   # data=None: the built-in synthetic data
    got = evaluate_checkpoint("runs/movies/checkpoint.pt", k_top=50)   # .metrics, .ranks, .tops, ...

The run folder (bam_runs/run_folder.py) makes it resumable: rerunning the same call continues from the
last validation, and a finished run is read back rather than trained again.
"""
import os
from dataclasses import dataclass, replace

import numpy as np

import bam_minimal as bm
from bam_experiments import baselines, sasrec
from bam_runs import checkpoints, datasets, distributed, run_folder

SYNTHETIC_PRESET = dict(max_iters=5000, eval_every=500)  # so that `cli.py train` ends in minutes


def check_config(cfg):
    """bam_minimal.check_config, with the models of the experiments registered (SASRec), as the commands
    that take a --model check it before any work."""
    sasrec.register()
    bm.check_config(cfg)


def default_out(data, cfg, prefix=""):
    """runs/<data>-<model>-<selection> (or runs/<prefix><data> with a prefix: `table`'s folder)."""
    name = "synthetic" if data is None else os.path.basename(data).split(".")[0]
    return os.path.join("runs", f"{prefix}{name}" if prefix else f"{name}-{cfg.model}-{cfg.selection}")


def train_run(cfg, data, out, fmt="auto", fresh=False, log=print, on_step=lambda it: None, on_start=None):
    """Train, validate, stop early and test the best checkpoint in the run folder `out`; -> (result, reused).
    `data`: a file of any format, or None for the built-in synthetic dataset (written into `out`).
    `on_start(message)` is told what will run before the first step; a KeyboardInterrupt propagates, with
    the best checkpoint so far kept in `out`."""
    sasrec.register()  # Config(model="sasrec") is Table 2's baseline
    bm.check_config(cfg)
    if os.path.exists(out) and not os.path.isdir(out):
        raise bm.InputError(f"{out}: is a file, not a run folder (fix: pass another --out)")
    with run_folder.lock(out):  # before anything is written: a second process on this folder stops here
        if fresh:
            run_folder.remove_run_files(out)
        dataset = datasets.load_dataset(datasets.synthetic(out, fresh) if data is None else data, fmt, log=log)
        folder = run_folder.RunFolder(out, cfg, dataset, log=log)  # refuses an item table that cannot fit
        result = folder.finished()
        if result:
            return result, True
        folder.saved_state()  # a last.pt that cannot be resumed stops here, before any work
        device = bm.resolve_device(cfg)
        if on_start:
            on_start(f"{dataset.name}: {len(dataset.users)} users, {dataset.n_items} items, "
                     f"{dataset.n_interactions} interactions; {cfg.model} + {cfg.selection}, device {device}; "
                     f"writing {out}")
        folder.extra["mostpop"] = bm.evaluate(baselines.popularity_scorer(dataset, device), dataset, "test", cfg)[0]
        return bm.train(cfg, dataset, folder, log=log, on_step=on_step)[1], False


@dataclass
class Evaluation:
    metrics: dict           # recall@K, ndcg@K, nonfinite_users
    cfg: object             # the checkpoint's Config, with the history mask used
    dataset: object         # bm.Dataset
    data_check: dict        # what checkpoints.check_data found, for the JSON output
    ranks: np.ndarray       # (U,) each user's target rank
    tops: np.ndarray        # (U, k_top) each user's top-k ids, or None


def evaluate_checkpoint(ckpt, data=None, fmt="auto", split="test", history_mask=None, model=None, n_interests=4,
                        seq_len=50, engine="torch", other_data=False, log=print, note=print, k_top=0):
    """Full-item ranking of a checkpoint on `data` (default: the data it names) -> Evaluation (with each
    user's top-`k_top` list when k_top > 0). Other data than the checkpoint's stops here with one line,
    unless `other_data`; `engine` "numpy" ranks with bam_numpy's numba engine (one process). The data
    reader's notes go to `log`, the checkpoint loader's to `note`."""
    sasrec.register()  # a SASRec checkpoint loads like the others
    net, cfg, dataset, data_check = checkpoints.load_with_data(
        ckpt, data, lambda p: datasets.load_dataset(p, fmt, log=log), checkpoints.official_base(n_interests, seq_len),
        model, note, other_data)
    cfg = replace(cfg, history_mask=history_mask or cfg.history_mask, device="auto")
    if k_top > dataset.n_items:  # a longer list would hold masked items and padding
        raise bm.InputError(f"--top-n {k_top}: more than the {dataset.n_items} items of {dataset.name} (fix: a "
                            "smaller --top-n)")
    if engine == "numpy" and distributed.size() > 1:
        raise bm.InputError("--engine numpy runs in one process (fix: python cli.py evaluate, without torchrun)")
    if engine == "numpy":
        from bam_crosscheck import twin  # numba compiles on first use: only for this engine
        metrics, ranks, tops = twin.evaluate_numpy(net, cfg, dataset, split, k_top=k_top)
    else:
        net = net.to(bm.resolve_device(cfg))
        metrics, ranks, tops = bm.evaluate(bm.model_scorer(net), dataset, split, cfg, k_top=k_top)
    if split == "valid" and not cfg.valid_users and 0 < cfg.valid_sample < len(dataset.users):
        note(f"note: this scores every user's validation target; the run itself validated a fixed sample of "
            f"{cfg.valid_sample} users (metrics.json, `validation`)")
    return Evaluation(metrics, cfg, dataset, data_check, ranks, tops)
