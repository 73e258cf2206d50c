"""
bam_crosscheck/agreement.py: the cross-check, bam_minimal against bam_numpy on the same weights and batch:
interests, attention, selection, loss, every gradient, full-item scores, top-20 lists, ranks and metrics, one
row each, and whether every row agrees within its tolerance. This file imports torch; bam_numpy never does.

    python cli.py crosscheck [--checkpoint X] [--data PATH] [--dtype float64|float32]

    from bam_crosscheck import agreement
    rows, ok = agreement.crosscheck(model, cfg, data, dtype="float32", log=print)
"""
import copy
from dataclasses import asdict, replace

import numpy as np
import torch

import bam_minimal as bm
import bam_numpy as bn
from bam_numpy import golden as bg
import bam_protocols
from bam_crosscheck.numpy_engine import check_twinned, eval_noise, export_arrays, numpy_config


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
