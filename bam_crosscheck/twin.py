"""
bam_crosscheck/twin.py: the torch side of the NumPy twin (bam_numpy): weights export, the cross-check of
bam_minimal against bam_numpy, and the golden test vectors. This file imports torch; bam_numpy never does.

    python cli.py export --checkpoint runs/x/checkpoint.pt --out weights.npz
    python cli.py crosscheck [--checkpoint X] [--data PATH] [--dtype float64|float32]
    python cli.py golden --out vectors.npz
    python cli.py golden --check vectors.npz --impl module:function
    python cli.py evaluate --checkpoint X --engine numpy

Errors: bad input raises bam_minimal.InputError, or bam_data.InputError (bam_numpy's) when it comes from the
twin; the command line (bam_cli/options.py, Group) turns both into one line and exit code 2.
"""
import copy
import json
from dataclasses import asdict, replace

import numpy as np
import torch

import bam_minimal as bm
import bam_numpy as bn
from bam_numpy import golden as bg
from bam_numpy import weights as bw
from bam_data import synth
import bam_protocols
from bam_runs import checkpoints


# -----------------------------------------------------------------------------
# Weights: torch model <-> {official name: numpy array}.


def export_arrays(model):
    """Every parameter (and buffer) of the state_dict, under its official name, as a numpy array."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def numpy_config(cfg):
    return bn.Config(**asdict(cfg))


def import_arrays(params, cfg, n_items):
    """The torch model of numpy weights (for round trips, and to evaluate a bam_numpy run in torch)."""
    model = bm.build_model(replace(bm.Config(**asdict(cfg)), device="cpu"), n_items)
    dtype = torch.float64 if next(iter(params.values())).dtype == np.float64 else torch.float32
    model.to(dtype).load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in params.items()}, strict=True)
    return model.eval()


def check_twinned(cfg, path="the model"):
    if cfg.model not in ("comirec", "mind"):
        raise bm.InputError(f"{path}: a {cfg.model} model; bam_numpy twins comirec and mind only "
                            "(fix: cross-check a ComiRec-SA or MIND checkpoint)")


def export(checkpoint, out, base=None, log=print, data=None, other_data=False):
    """checkpoint.pt (ours or an official state_dict) -> weights.npz that bam_numpy loads. The file
    keeps the name and fingerprint of the checkpoint's data (`__data__`, `__data_fingerprint__`; empty
    when it has none), which bam_numpy.load_weights leaves aside like its other `__` entries. With
    `data` (a bm.Dataset the weights are meant for), the checkpoint is checked against it first
    (checkpoints.check_data; `other_data` is --other-data)."""
    model, cfg, n_items, info = checkpoints.load(checkpoint, base)
    for note in info["notes"]:
        log(f"note: {note}")
    check_twinned(cfg, checkpoint)
    if data is not None:
        checkpoints.check_items(checkpoint, n_items, data)
        checkpoints.check_data(checkpoint, info, data, other_data, log)
    provenance = {"__data__": np.array(str(info.get("data") or "")),
                  "__data_fingerprint__": np.array(str(info.get("fingerprint") or ""))}
    bw.save_weights(out, {**export_arrays(model), **provenance}, numpy_config(cfg), n_items)
    return out

# -----------------------------------------------------------------------------
# MIND's evaluation noise, exactly as bam_minimal.evaluate draws it.


def eval_noise(cfg, data, split="test", rows=None):
    """The (U, N, L) routing logits that bam_minimal.evaluate gives MIND for these rows (counter-based,
    keyed by (seed, row), whatever the block size). bam_numpy.evaluate draws the same ones itself."""
    return bm.routing_noise(cfg, np.arange(len(data.users)) if rows is None else np.asarray(rows))


def evaluate_numpy(model, cfg, data, split, rows=None, k_top=0):
    """The protocol's evaluate's numbers, computed by its twin (bam_numpy's engine) on the model's weights."""
    check_twinned(cfg)
    protocol = bam_protocols.get(cfg.protocol)
    if protocol.twin is None:
        raise bm.InputError(f"--engine numpy: protocol {cfg.protocol} has no twin in bam_numpy (fix: --engine torch)")
    return protocol.twin(export_arrays(model), data, split, numpy_config(cfg), rows=rows, k_top=k_top)

# -----------------------------------------------------------------------------
# Cross-check: the same weights and batch through both implementations.


def away_from_steps(u, probs, gap=1e-4):
    """Move each u to the middle of its CDF interval when it lies within `gap` of a step, so that the
    last-bit differences of float32 cannot change BaM's draw (the cross-check compares the same
    selected interests). probs (B, N) from either side; u (B,)."""
    cdf = np.cumsum(probs, -1)                                                # (B, N)
    lo = np.concatenate([np.zeros((len(u), 1)), cdf[:, :-1]], 1)             # (B, N)
    n = np.minimum((cdf <= u[:, None]).sum(-1), probs.shape[1] - 1)          # (B,)
    a, b = lo[np.arange(len(u)), n], cdf[np.arange(len(u)), n]                # (B,), (B,)
    near = (u - a < gap) | (b - u < gap)
    return np.where(near, (a + b) / 2, u)


class Table:
    """The cross-check's rows, printed as they come: quantity, max abs err, max rel err, tolerance, result."""

    def __init__(self, log):
        self.log, self.rows = log, []
        log(f"{'quantity':<52}{'max abs err':>12}{'max rel err':>12}{'tolerance':>14}  result")

    def add(self, name, abs_err, rel_err, tol_text, ok):
        self.rows.append(dict(quantity=name, abs_err=abs_err, rel_err=rel_err, tolerance=tol_text, ok=bool(ok)))
        self.log(f"{name:<52}{abs_err:>12.3g}{rel_err:>12.3g}{tol_text:>14}  {'pass' if ok else 'FAIL'}")


def torch_loss_and_grads(model, cfg, history, mask, target, negatives, u, noise):
    """bam_minimal's loss and autograd gradients for `cfg` (its selection and loss), on `model`."""
    model.zero_grad(set_to_none=True)
    interests, attention = model(history, mask, routing=noise)
    logits = bm.interest_logits(model, cfg.selection, interests, model.embeddings.weight[target].detach())
    index, probs = bm.select_interest(logits, cfg.selection, cfg.tau, u)
    loss = bm.bam_loss(model, cfg, interests, attention, target, negatives, u, cfg.tau)
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in model.named_parameters() if p.grad is not None}
    return dict(interests=interests.detach().numpy(), attention=attention.detach().numpy(),
                logits=logits.detach().numpy(), probs=probs.detach().numpy(), index=index.numpy(),
                loss=loss.item(), grads=grads)


def crosscheck(model, cfg, data, dtype="float64", batch_size=128, seed=0, log=print):
    """Compare bam_minimal and bam_numpy on `model`'s weights and one batch of `data`: the forward
    pass, selection, loss and every gradient (for the model's selection and `hard`/`bam`, each with
    both losses), then full-item scores, top-20 lists, ranks and metrics on the whole test split
    for the model's history mask and the other of exclude/official. Returns (rows, all passed)."""
    check_twinned(cfg)
    tdt, ndt = (torch.float64, np.float64) if dtype == "float64" else (torch.float32, np.float32)
    tol = 1e-10 if dtype == "float64" else 1e-4
    model = copy.deepcopy(model).cpu().to(tdt).eval()
    cfg = replace(cfg, device="cpu")
    params = {k: v.astype(ndt) for k, v in export_arrays(model).items()}
    rng = np.random.default_rng(seed)
    history, mask, target = bm.train_batch(data, rng, batch_size, cfg.seq_len)  # (B, L), (B, L), (B,)
    negatives = rng.integers(0, data.n_items + 1, cfg.n_negatives)             # (S,)
    u = rng.random(len(target))                                                 # (B,)
    noise = rng.standard_normal((len(target), cfg.n_interests, cfg.seq_len))    # (B, N, L) MIND's routing logits
    t = dict(history=torch.as_tensor(history), mask=torch.as_tensor(mask), target=torch.as_tensor(target),
             negatives=torch.as_tensor(negatives), noise=torch.as_tensor(noise, dtype=tdt))
    nnoise = noise.astype(ndt) if cfg.model == "mind" else None
    table = Table(log)
    rel_tol = f"rel {tol:g}"

    def row(name, got, want):
        a, r = bg.max_errors(got, want)
        table.add(name, a, r, rel_tol, r <= tol)

    selections = list(dict.fromkeys([cfg.selection, "hard", "bam"]))
    losses = ["sampled"] + (["full"] if not cfg.remi_beta else [])
    for sel in selections:
        for loss_kind in losses:
            c = replace(cfg, selection=sel, loss=loss_kind)
            logits64 = bn.interest_logits(params, sel, bn.forward(params, c, history, mask, nnoise)[0],
                                          params["embeddings.weight"][target]).astype(np.float64)
            us = away_from_steps(u, bn.encoders.softmax(c.tau * logits64))
            want = torch_loss_and_grads(model, c, t["history"], t["mask"], t["target"], t["negatives"],
                                        torch.as_tensor(us, dtype=tdt), t["noise"])
            loss, grads, info = bn.loss_and_grads(params, bn.Config(**asdict(c)), history, mask, target,
                                                  negatives, us.astype(ndt), c.tau, nnoise)
            if loss_kind == losses[0]:
                if sel == selections[0]:
                    row("interests", info["interests"], want["interests"])
                    row("attention" if cfg.model == "comirec" else "attention (routing weights)",
                        info["attention"], want["attention"])
                row(f"selection logits [{sel}]", info["logits"], want["logits"])
                row(f"selection probabilities [{sel}]", info["probs"], want["probs"])
                differ = int((info["index"] != want["index"]).sum())
                table.add(f"selected interest [{sel}] (rows differing)", differ, differ / len(u), "identical",
                          differ == 0)
            row(f"loss [{sel}, {loss_kind}]", loss, want["loss"])
            if set(grads) != set(want["grads"]):
                table.add(f"gradient set [{sel}, {loss_kind}]", np.nan, np.nan, "same params", False)
            for name in sorted(want["grads"]):
                if name in grads:
                    row(f"grad {name} [{sel}, {loss_kind}]", grads[name], want["grads"][name])
    modes = list(dict.fromkeys([cfg.history_mask, "exclude", "official"]))[:2]
    for mode in modes:
        check_evaluation(model, params, replace(cfg, history_mask=mode), data, dtype, tol, table)
    for protocol in (p for p in bam_protocols.PROTOCOLS.values() if p.many_targets and p.twin):
        check_protocol_evaluation(model, params, replace(cfg, history_mask="none"), data, dtype, table, protocol)
    ok = all(r["ok"] for r in table.rows)
    failed = [r["quantity"] for r in table.rows if not r["ok"]]
    log(f"{'all ' + str(len(table.rows)) + ' checks pass' if ok else 'FAILED: ' + ', '.join(failed[:5])}")
    return table.rows, ok


def check_evaluation(model, params, cfg, data, dtype, tol, table, k_top=20):
    """Full-item scores block by block, then both engines end to end on the test split. float64: ranks,
    top-20 lists and metrics identical. float32: a rank or top-20 entry may differ only among items whose
    torch scores are within the tolerance of each other (a near-tie that rounding can flip), and the
    metrics must be equal to 4 decimals (|diff| < 1.5e-4, numpy's assert_almost_equal rule)."""
    mode = cfg.history_mask
    ncfg = numpy_config(cfg)
    noise = eval_noise(cfg, data) if cfg.model == "mind" else None
    t_metrics, t_ranks, t_tops = bm.evaluate(bm.model_scorer(model), data, "test", cfg, k_top=k_top)
    n_metrics, n_ranks, n_tops = bn.evaluate(params, data, "test", ncfg, k_top=k_top, noise=noise)
    k = bm.split_targets(data, "test")
    score_err, score_rel, rank_bad, top_bad, rank_diff, top_diff = 0.0, 0.0, 0, 0, 0, 0
    block = 256
    for i in range(0, len(k), block):
        r = np.arange(i, min(i + block, len(k)))
        history, mask, target = bm.windows(data, r, k[r], cfg.seq_len)
        full = bm.windows(data, r, k[r], int(k[r].max()))[0]
        nb = noise[r] if noise is not None else None
        tn = torch.as_tensor(nb, dtype=next(model.parameters()).dtype) if nb is not None else None
        with torch.no_grad():
            ts = bm.mask_history(bm.model_scorer(model)(torch.as_tensor(history), torch.as_tensor(mask), tn),
                                 torch.as_tensor(full), torch.as_tensor(history), mode).numpy()  # (b, I + 1)
        ns = bn.mask_history(bn.model_scorer(params, ncfg)(history, mask, nb), full, history, mode)
        a, rel = bg.max_errors(ns, ts)
        score_err, score_rel = max(score_err, a), max(score_rel, rel)
        band = tol * np.abs(np.where(np.isfinite(ts), ts, 0)).max(1)                  # (b,) near-tie width
        for j, user in enumerate(r):
            if t_ranks[user] != n_ranks[user]:
                rank_diff += 1
                st = ts[j, target[j]]
                ties = int((np.abs(ts[j] - st) <= band[j]).sum()) if np.isfinite(st) else 0
                rank_bad += dtype == "float64" or abs(int(t_ranks[user]) - int(n_ranks[user])) > ties
            if (t_tops[user] != n_tops[user]).any():
                top_diff += 1
                gap = np.abs(ts[j, n_tops[user]] - ts[j, t_tops[user]]).max()
                top_bad += dtype == "float64" or not gap <= band[j]
    tie_rule = "identical" if dtype == "float64" else "near-ties"
    table.add(f"full-item scores [{mode}]", score_err, score_rel, f"rel {tol:g}", score_rel <= tol)
    table.add(f"top-{k_top} lists [{mode}] (users differing)", top_diff, top_diff / len(k), tie_rule, top_bad == 0)
    table.add(f"ranks [{mode}] (users differing)", rank_diff, rank_diff / len(k), tie_rule, rank_bad == 0)
    for name, want in t_metrics.items():
        diff = abs(n_metrics[name] - want)
        ok = diff == 0 if dtype == "float64" else diff < 1.5e-4
        table.add(f"{name} [{mode}]", diff, diff / want if want else diff,
                  "identical" if dtype == "float64" else "4 decimals", ok)

def check_protocol_evaluation(model, params, cfg, data, dtype, table, protocol):
    """A protocol of many targets per user (ComiRec's) in both engines, its own evaluate and its twin, on its test
    users with the `none` mask (ComiRec's): every target's rank and every metric. float64: identical. float32: the
    metrics equal to 4 decimals (a near-tie may flip a rank, as in check_evaluation). Leave-one-out's ranks are
    check_evaluation's."""
    cfg = replace(cfg, protocol=protocol.name)
    t_metrics, t_ranks, _ = protocol.evaluate(bm.model_scorer(model), data, "test", cfg)
    n_metrics, n_ranks, _ = protocol.twin(params, data, "test", numpy_config(cfg))
    differ = int((t_ranks != n_ranks).sum())
    table.add(f"{protocol.name} protocol: target ranks (differing)", differ, differ / max(1, len(t_ranks)),
              "identical" if dtype == "float64" else "near-ties", dtype != "float64" or differ == 0)
    for name, want in t_metrics.items():
        diff = abs(n_metrics[name] - want)
        exact = dtype == "float64"
        table.add(f"{protocol.name} protocol: {name}", diff, diff / want if want else diff,
                  "identical" if exact else "4 decimals", diff == 0 if exact else diff < 1.5e-4)

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
