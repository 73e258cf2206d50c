"""
bam_crosscheck/golden_vectors.py: the torch side of the golden test vectors (docs/golden.md): their inputs and
every expected output, computed by bam_minimal, in one framework-neutral .npz, and the check of an
implementation against such a file (bam_numpy/golden.py reads and compares it, without torch).

    python cli.py golden --out vectors.npz
    python cli.py golden --check vectors.npz --impl module:function

    from bam_crosscheck import golden_vectors
    golden_vectors.write_golden("vectors.npz", model="mind")
"""
import json
from dataclasses import asdict, replace

import numpy as np
import torch

import bam_minimal as bm
from bam_numpy import golden as bg
from bam_numpy import weights as bw
from bam_data import synth
from bam_crosscheck.agreement import torch_loss_and_grads
from bam_crosscheck.numpy_engine import check_twinned, export_arrays


# -----------------------------------------------------------------------------
# Golden vectors: inputs and expected outputs from bam_minimal, in one framework-neutral .npz.


def torch_reference(inputs):
    """bam_minimal, in the golden form of bam_numpy.golden: fn(inputs) -> outputs (float64)."""
    names = set(asdict(bm.Config()))
    cfg = bm.Config(**{k: v for k, v in inputs["config"].items() if k in names})
    cfg = replace(cfg, device="cpu")
    model = bm.build_model(cfg, inputs["config"]["n_items"]).double()
    model.load_state_dict({k: torch.as_tensor(v, dtype=torch.float64) for k, v in inputs["weights"].items()})
    b, e = inputs["batch"], inputs["eval"]
    mind = cfg.model == "mind"
    noise = torch.as_tensor(b["noise"], dtype=torch.float64) if mind else None
    want = torch_loss_and_grads(model, cfg, torch.as_tensor(b["history"]), torch.as_tensor(b["mask"]),
                                torch.as_tensor(b["target"]), torch.as_tensor(b["negatives"]),
                                torch.as_tensor(b["u"], dtype=torch.float64), noise)
    out = {k: np.asarray(want[k]) for k in ("interests", "attention", "logits", "probs", "index", "loss")}
    out.update({f"grad/{k}": v for k, v in want["grads"].items()})
    with torch.no_grad():
        noise = torch.as_tensor(e["noise"], dtype=torch.float64) if mind else None
        history = torch.as_tensor(e["history"])
        scores = bm.model_scorer(model.eval())(history, torch.as_tensor(e["mask"]), noise)
        scores = bm.mask_history(scores, torch.as_tensor(e["full_history"]), history, cfg.history_mask)
        ranks = bm.target_rank(scores, torch.as_tensor(e["target"]))
        out.update({"eval/scores": scores.numpy(), "eval/ranks": ranks.numpy(),
                    "eval/top20": bm.top_k(scores, inputs["config"]["top_k"]).numpy()})
    out.update({f"eval/{k}": np.asarray(v) for k, v in bm.metrics_from_ranks(ranks.numpy()).items()})
    ties = torch.as_tensor(inputs["ties"]["scores"])
    out["ties/ranks"] = bm.target_rank(ties.clone(), torch.as_tensor(inputs["ties"]["target"])).numpy()
    out["ties/top20"] = bm.top_k(ties, inputs["config"]["top_k"]).numpy()
    return out


def tie_scores(rng, rows=6, items=30):
    """Scores on a grid of small integers, with -inf, NaN and +inf entries: exact ties in every
    framework. Row 0's target is masked (-inf), row 1's ties with many items, rows 2 and 3 have a NaN
    and a +inf target (misses); the NaN and +inf of other items rank above the target."""
    scores = rng.integers(-2, 3, (rows, items)).astype(np.float64)             # (T, I + 1)
    draw = rng.random((rows, items))                                           # (T, I + 1)
    scores[draw < 0.2] = -np.inf
    scores[(draw >= 0.2) & (draw < 0.25)] = np.nan
    scores[(draw >= 0.25) & (draw < 0.3)] = np.inf
    scores[:, 0] = -np.inf
    target = rng.integers(1, items, rows)                                      # (T,)
    scores[0, target[0]] = -np.inf
    scores[1, target[1]] = 1.0
    scores[2, target[2]], scores[3, target[3]] = np.nan, np.inf
    scores[np.arange(4, rows), target[4:]] = 0.0  # finite targets below some NaN and +inf items
    return scores, target


GOLDEN_DATA = synth.SynthConfig(users=48, items=60, topics=6, mean_len=12, seed=7)


def golden_inputs(model="comirec", selection="bam", loss="sampled", history_mask="exclude", tau=1.0, seed=0):
    """The inputs of a golden file: a small seeded model on small synthetic data, one batch, and the
    whole test split of that data."""
    data = bm.Dataset(synth.generate(GOLDEN_DATA)[0], name="golden-synthetic")
    cfg = bm.Config(model=model, dim=8, n_interests=4, seq_len=10, selection=selection, tau=tau, loss=loss,
                    n_negatives=24, history_mask=history_mask, seed=seed, device="cpu")
    bm.check_config(cfg)
    check_twinned(cfg)
    torch.manual_seed(seed)
    net = bm.build_model(cfg, data.n_items).double()
    rng = np.random.default_rng(seed)
    history, mask, target = bm.train_batch(data, rng, 16, cfg.seq_len)
    k = bm.split_targets(data, "test")
    rows = np.arange(len(k))
    e_history, e_mask, e_target = bm.windows(data, rows, k, cfg.seq_len)
    config = {k: v for k, v in asdict(cfg).items() if k not in ("device",)}
    config.update(n_items=data.n_items, top_k=20, ks=[10, 20], batch_size=len(target))
    inputs = {"config": config,
              "weights": {k: v.astype(np.float64) for k, v in export_arrays(net).items()},
              "batch": dict(history=history, mask=mask.astype(np.float64), target=target,
                            negatives=rng.integers(0, data.n_items + 1, cfg.n_negatives),
                            u=rng.random(len(target))),
              "eval": dict(history=e_history, mask=e_mask.astype(np.float64), target=e_target,
                           full_history=bm.windows(data, rows, k, int(k.max()))[0]),
              "ties": dict(zip(("scores", "target"), tie_scores(rng)))}
    if model == "mind":
        inputs["batch"]["noise"] = rng.standard_normal((len(target), cfg.n_interests, cfg.seq_len))
        inputs["eval"]["noise"] = rng.standard_normal((len(rows), cfg.n_interests, cfg.seq_len))
    if selection in ("bam", "bam-l"):
        # Row 0 draws the interest with the second-highest probability, so that sampling and argmax
        # always disagree somewhere: an implementation that takes the argmax fails the check.
        probs = torch_reference(inputs)["probs"]                                  # (B, N)
        second = np.argsort(-probs[0], kind="stable")[1]
        cdf = np.cumsum(probs[0])
        inputs["batch"]["u"][0] = (cdf[second] - probs[0, second] / 2)
    return inputs


def write_golden(path, **options):
    inputs = golden_inputs(**options)
    expected = torch_reference(inputs)
    arrays = {"format": np.array(bg.FORMAT), "config": np.array(json.dumps(inputs["config"]))}
    for group in ("weights", "batch", "eval", "ties"):
        arrays.update({f"{group}/{k}": np.asarray(v) for k, v in inputs[group].items()})
    arrays.update({f"expected/{k}": np.asarray(v) for k, v in expected.items()})
    bw.atomic_savez(path, arrays)
    return arrays


def check_golden(path, impl, rtol=1e-8, log=print):
    return bg.check(path, impl, rtol=rtol, log=log)
