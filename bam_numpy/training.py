"""
bam_numpy/training.py: Adam and the training loop of the NumPy twin. ComiRec-SA or MIND + BaM, end to
end on the CPU, without torch.

    python -m bam_numpy DATA [--field=value ...] [--out=weights.npz]   # official format, like bam_minimal.py
    python -m bam_numpy --synthetic --max_iters=2000                   # the built-in synthetic data

`adam_step` is torch.optim.Adam's update (the same formula whether torch runs it fused or not), with
weight_decay as L2 added to the gradient; parameters without a gradient are skipped, as torch skips
a parameter whose .grad is None. `train` mirrors bam_minimal.train: batches, validation every
`eval_every` iterations on Recall@10, patience, the best weights restored, then the test split.
The random numbers are numpy's, so a run is not the same run as torch's; its accuracy is the same
within noise (tests/test_twin_train.py).
"""
import sys
import time
from dataclasses import asdict, fields

import numpy as np

from bam_data import synth
from bam_data.formats import read
from bam_data.dataset_stats import repeated_targets
from bam_numpy.blas import one_blas_thread
from bam_numpy.config import Config, InputError, check_config, tau_at
from bam_numpy.data import Dataset, train_batch
from bam_numpy.encoders import init_params
from bam_numpy.ranking import evaluate
from bam_numpy.loss import loss_and_grads

# -----------------------------------------------------------------------------
# Adam (Kingma and Ba, ICLR '15), as torch.optim.Adam computes it.


def adam_init(params):
    return dict(step={k: 0 for k in params}, m={k: np.zeros_like(v) for k, v in params.items()},
                v={k: np.zeros_like(v) for k, v in params.items()})


def adam_step(params, grads, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """One step, in place on `params` and `state`, for every parameter in `grads`:
    g += wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    b1, b2 = betas
    for name, g in grads.items():
        p, m, v = params[name], state["m"][name], state["v"][name]
        state["step"][name] += 1
        t = state["step"][name]
        if weight_decay:
            g = g + weight_decay * p
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
        p -= (lr / (1 - b1 ** t)) * m / denom

# -----------------------------------------------------------------------------
# Training: iterations, validation, early stopping, best-weights restore.


def check_trainable(cfg):
    """The twin evaluates under ComiRec's protocol (bam_numpy.comirec_split) but trains under leave-one-out only:
    its sampler would train on the test users' targets."""
    if cfg.protocol != "loo":
        raise InputError(f"protocol={cfg.protocol}: the twin trains under leave-one-out only (fix: --protocol=loo, "
                         "or train with cli.py train --protocol comirec; the twin's evaluation has both)")


def train(cfg, data, dtype=np.float32, log=print, params=None):
    """Train, validate every `eval_every` iterations, stop early, restore the best weights and test.
    Returns (params, result) with result like bam_minimal's metrics.json: test, valid, iters,
    best_iter, seconds, history. `params` starts from given weights instead of a fresh init."""
    check_config(cfg)
    check_trainable(cfg)
    if not len(data.trainable):
        raise InputError(f"{data.name}: no user has 4 or more interactions, so there is nothing to train on")
    init_rng, rng, draw = (np.random.default_rng([cfg.seed, i]) for i in range(3))
    params = params or init_params(cfg, data.n_items, init_rng, dtype)
    opt = adam_init(params)
    st = dict(it=0, best=-1.0, best_iter=0, trials=0, history=[], loss_sum=0.0, loss_n=0)
    best_params, t0 = None, time.time()
    while st["it"] < cfg.max_iters and st["trials"] <= cfg.patience:
        history, mask, target = train_batch(data, rng, cfg.batch_size, cfg.seq_len)  # (B, L), (B, L), (B,)
        negatives = draw.integers(0, data.n_items + 1, cfg.n_negatives)       # (S,) shared by the batch
        u = draw.random(len(target)).astype(dtype)                            # (B,) BaM's uniform draws
        with one_blas_thread():  # small matmuls: threads cost more than they bring (bam_numpy/blas.py)
            loss, grads, _ = loss_and_grads(params, cfg, history, mask, target, negatives, u,
                                            tau_at(cfg, st["it"]), draw)
            adam_step(params, grads, opt, cfg.lr, weight_decay=cfg.weight_decay)
        st["it"] += 1
        if not np.isfinite(loss):  # as bam_minimal.train: stop at once rather than train and save NaN weights
            raise InputError(f"iteration {st['it']}: the loss is {float(loss)} (fix: a lower --lr)")
        st["loss_sum"] += float(loss)
        st["loss_n"] += 1
        if st["it"] % cfg.eval_every == 0 or st["it"] == cfg.max_iters:
            if validate(params, data, cfg, rng, st, t0, log):
                best_params = {k: v.copy() for k, v in params.items()}
    params = best_params or params
    check_weights(params, st["it"], "the test")
    test = evaluate(params, data, "test", cfg)[0]
    best = next((h for h in st["history"] if h["iter"] == st["best_iter"]), {})
    return params, dict(test=test, valid={k: best.get(k) for k in test}, iters=st["it"],
                        best_iter=st["best_iter"], seconds=round(time.time() - t0, 2), config=asdict(cfg),
                        history=st["history"], engine="numpy", dtype=np.dtype(dtype).name)


def check_weights(params, it, before):
    """As bam_minimal.checked_scorer: a finite loss does not make finite weights (a row no batch used),
    so stop before non-finite ones are validated, tested or kept as the best."""
    bad = [k for k, v in params.items() if not np.isfinite(v).all()]
    if bad:
        raise InputError(f"iteration {it}: {bad[0]} is not finite at {before}, not kept (fix: --fresh, lower --lr)")


def validate(params, data, cfg, rng, st, t0, log):
    """One validation: record it and count the patience. Returns True when it is the best so far."""
    check_weights(params, st["it"], "validation")  # and so before the best weights are kept
    fixed = np.random.default_rng([cfg.seed, 1]).permutation(len(data.users))[:cfg.valid_sample or None]  # (V,)
    rows = rng.integers(0, len(data.users), cfg.valid_users) if cfg.valid_users else np.sort(fixed)  # official
    valid = evaluate(params, data, "valid", cfg, rows)[0]
    loss = st["loss_sum"] / max(1, st["loss_n"])
    st["loss_sum"], st["loss_n"] = 0.0, 0
    better = valid["recall@10"] > st["best"]
    if better:
        st["best"], st["best_iter"], st["trials"] = valid["recall@10"], st["it"], 0
    else:
        st["trials"] += 1
    st["history"].append(dict(iter=st["it"], loss=loss, seconds=round(time.time() - t0, 2), **valid))
    log(f"iter {st['it']}: loss {loss:.4f}, valid recall@10 {valid['recall@10']:.4f}, "
        f"ndcg@10 {valid['ndcg@10']:.4f}{' (best)' if better else ''}")
    return better

# -----------------------------------------------------------------------------
# Standalone: python -m bam_numpy DATA [--field=value ...] [--out=weights.npz] [--synthetic]


TRUE, FALSE = ("", "1", "true", "yes"), ("0", "false", "no")  # a bare --flag is True, as in bam_minimal.py


def parse_value(arg, key, value, kind):
    """The value of --key=value as the type of the Config field."""
    if kind is bool:
        if value.lower() not in TRUE + FALSE:
            raise InputError(f"{arg}: not a valid bool (fix: --{key}, --{key}=1/true/yes or --{key}=0/false/no)")
        return value.lower() in TRUE
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{arg}: not a valid {kind.__name__} (fix: --{key}=VALUE)") from None


def parse_args(argv):
    """DATA [--field=value ...] [--out=weights.npz] [--synthetic] [--dtype=float64] -> (Config, paths)."""
    cfg, names, paths = Config(), [f.name for f in fields(Config)], {}
    for arg in argv:
        key, _, value = arg[2:].partition("=")
        if not arg.startswith("--"):
            paths["data"] = arg
        elif key == "synthetic":
            if parse_value(arg, key, value, bool):
                paths[key] = True
        elif key in ("out", "dtype"):
            if not value:
                raise InputError(f"{arg}: needs a value (fix: --{key}=...)")
            paths[key] = value
        elif key in names:
            setattr(cfg, key, parse_value(arg, key, value, type(getattr(cfg, key))))
        else:
            raise InputError(f"{arg}: unknown option (fix: --out=FILE, --dtype=NAME, --synthetic or "
                             f"--{', --'.join(names)})")
    return cfg, paths


def main(argv):
    from bam_numpy.weights import save_weights
    cfg, paths = parse_args(argv)
    check_config(cfg)  # before the data is read: a typo should not wait for a large file
    check_trainable(cfg)
    if paths.get("dtype", "float32") not in ("float32", "float64"):
        raise InputError(f"--dtype={paths['dtype']}: not float32 or float64")
    dtype = np.dtype(paths.get("dtype", "float32"))
    if "synthetic" in paths:
        seqs, name = synth.generate()[0], "synthetic"
    elif "data" in paths:
        seqs, name = read(paths["data"])[0], paths["data"]  # every format, as cli.py reads it
    else:
        raise InputError("no data file (fix: python -m bam_numpy DATA [--field=value ...], or --synthetic)")
    data = Dataset(seqs, name=name)
    print(f"{len(data.users)} users, {data.n_items} items, {data.n_interactions} interactions; numpy {dtype.name}")
    repeats = repeated_targets(seqs)
    if repeats:
        print(f"warning: {repeats}")
    params, result = train(cfg, data, dtype)
    print("test " + ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items() if k != "nonfinite_users"))
    if result["test"]["nonfinite_users"]:
        print(f"note: {result['test']['nonfinite_users']} users had a NaN or infinite score (weights whose products "
              "overflow); those items rank above the target, and a non-finite target is a miss")
    if "out" in paths:
        save_weights(paths["out"], params, cfg, data.n_items)
        print(f"wrote {paths['out']}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except InputError as e:
        sys.exit(print(f"error: {e}", file=sys.stderr) or 2)
