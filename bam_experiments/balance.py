"""
The balance analysis (the paper's Figure 1): which interest serves each user's recommendations.

    python cli.py balance --checkpoint runs/a/checkpoint.pt --out fig.png
    python cli.py balance --checkpoint runs/hard/checkpoint.pt --compare runs/bam/checkpoint.pt --out fig.png

For every test user, each of the top-10 items is credited to the interest that gives it its score
(the argmax interest, as in full-item ranking). A user's row is the share of the top-10 from each
interest. Summary figures: the mean entropy of a user's interest usage (bits; log2 N at most), the
share of users whose top-10 comes from a single interest, and the Gini coefficient of the interests'
total shares (0: all interests serve equally; 1 - 1/N: one interest serves everything).
"""
import json
import os
from dataclasses import replace

import numpy as np
import torch

import bam_minimal as bm
import bam_protocols


# -----------------------------------------------------------------------------
# Which interest serves each recommended item


def interest_usage(model, data, cfg, k=10):
    """-> (share (U, N), top-k items (U, k), contributing interest (U, k), test metrics).
    With fewer than k rankable items, k shrinks to the catalogue."""
    k = min(k, data.n_items + 1)
    item_emb = model.embeddings.weight                                         # (I + 1, d)
    captured = []

    def scorer(history, mask, routing):  # evaluate's own scorer, keeping the interests it computed
        interests = model(history, mask, routing=routing)[0]                   # (b, N, d)
        captured.append(interests)
        return (interests @ item_emb.T).amax(1)                               # (b, I + 1)
    with torch.no_grad():
        metrics, _, top = bam_protocols.get(cfg.protocol).evaluate(scorer, data, "test", cfg, k_top=k)
        interests = torch.cat(captured)                                        # (U, N, d)
        top_t = torch.as_tensor(top, device=interests.device)                  # (U, k)
        per_interest = interests @ item_emb[top_t].transpose(1, 2)            # (U, N, k)
        source = per_interest.argmax(1).cpu().numpy()                          # (U, k)
    n = interests.shape[1]
    share = np.stack([(source == i).mean(1) for i in range(n)], 1)             # (U, N)
    return share, top, source, metrics


@torch.no_grad()
def list_balance(model, cfg, data, split, tops, block=1024):
    """The balance of the interests over each user's top-N list (tops (U, N) of the users `split` evaluates,
    in order), as metrics: interest_entropy@N (bits, the mean over users), single_interest_users@N and
    interest_gini@N (of the interests' total shares). An item is credited to its argmax interest."""
    protocol = bam_protocols.get(cfg.protocol)
    rows = protocol.users(data, split)                                         # (U,)
    k = protocol.targets(data, split, rows)[0]                                 # (U,) each history's end
    device = next(model.parameters()).device
    item_emb = model.embeddings.weight                                         # (I + 1, d)
    source = []
    for i in range(0, len(rows), block):
        r, kb = rows[i:i + block], k[i:i + block]                              # (b,), (b,)
        history, mask, _ = (torch.as_tensor(a, device=device) for a in bm.windows(data, r, kb, cfg.seq_len))
        routing = bm.routing_noise(cfg, r) if cfg.model == "mind" else None   # evaluate's own routing logits
        interests = model.eval()(history, mask, routing=routing)[0]            # (b, N, d)
        top = torch.as_tensor(tops[i:i + block], device=device)                # (b, N_top)
        source.append((interests @ item_emb[top].transpose(1, 2)).argmax(1).cpu().numpy())  # (b, N_top)
    source = np.concatenate(source) if source else np.zeros((0, tops.shape[1]), np.int64)  # (U, N_top)
    share = np.stack([(source == i).mean(1) for i in range(cfg.n_interests)], 1)  # (U, N)
    s, n = summary(share), tops.shape[1]
    return {f"interest_entropy@{n}": s["mean_entropy_bits"], f"single_interest_users@{n}": s["single_interest_users"],
            f"interest_gini@{n}": s["gini_of_interest_totals"]}


# -----------------------------------------------------------------------------
# Summary figures


def entropy_bits(share):
    """Entropy of each row of shares, in bits."""
    p = np.where(share > 0, share, 1.0)
    return -(share * np.log2(p)).sum(1)                                        # (U,)


def gini(values):
    """Gini coefficient of non-negative values: mean absolute difference over twice the mean."""
    v = np.asarray(values, dtype=np.float64)
    if v.sum() == 0:
        return 0.0
    return float(np.abs(v[:, None] - v[None, :]).sum() / (2 * len(v) ** 2 * v.mean()))


def summary(share):
    totals = share.mean(0)                                                     # (N,)
    return dict(mean_entropy_bits=float(entropy_bits(share).mean()),
                max_entropy_bits=float(np.log2(share.shape[1])),
                single_interest_users=float((share.max(1) == 1.0).mean()),
                gini_of_interest_totals=gini(totals),
                interest_totals=sorted((float(x) for x in totals), reverse=True))


# -----------------------------------------------------------------------------
# The planted topics of the synthetic data


def topic_recovery(top, source, data, truth, protocol="loo"):
    """On the synthetic data: how well the interests line up with the planted topics.
    purity: for each (user, interest) that serves items, the share of them from its main topic.
    coverage: the share of a user's planted topics that appear in the top-k.
    top, source: of the test users of `protocol` (every user under leave-one-out), in order."""
    item_topic = np.array([-1] + truth["item_topic"])                          # (I + 1,), id 0 is padding
    topics = item_topic[top]                                                   # (U, k)
    purity, coverage = [], []
    for r, user in enumerate(data.users[bam_protocols.get(protocol).users(data, "test")]):
        for i in np.unique(source[r]):
            t = topics[r][source[r] == i]
            purity.append(np.bincount(t).max() / len(t))
        planted = set(truth["user_topics"][str(user)])
        coverage.append(len(planted & set(topics[r].tolist())) / len(planted))
    return dict(interest_topic_purity=float(np.mean(purity)), planted_topic_coverage=float(np.mean(coverage)))


def truth_beside(path):
    truth = os.path.splitext(path)[0] + ".truth.json"
    if os.path.exists(truth):
        with open(truth) as f:
            return json.load(f)
    return None


# -----------------------------------------------------------------------------
# One checkpoint's figures


def checkpoint_balance(path, load_checkpoint):
    """-> (title, share (U, N), summary with the test metrics and, on the synthetic data, topic recovery,
    data_check).
    `load_checkpoint(path)` -> (model, cfg, dataset, data_check), as bam_runs.checkpoints.load_with_data."""
    from bam_experiments import sasrec
    sasrec.register()  # a SASRec checkpoint loads like the others
    net, cfg, dataset, data_check = load_checkpoint(path)
    cfg = replace(cfg, device="auto")
    share, top, source, metrics = interest_usage(net.to(bm.resolve_device(cfg)), dataset, cfg)
    s = summary(share)
    truth = truth_beside(dataset.name)
    if truth:
        s.update(topic_recovery(top, source, dataset, truth, cfg.protocol))
    s["test"] = metrics
    return f"{cfg.model} + {cfg.selection}", share, s, data_check


# -----------------------------------------------------------------------------
# The heatmap


def rows_for_display(share, n_rows, seed=0):
    """A readable sample: columns by total share (largest first), rows by main interest, then share."""
    order = np.argsort(-share.mean(0), kind="stable")
    share = share[:, order]
    pick = np.random.default_rng(seed).choice(len(share), min(n_rows, len(share)), replace=False)
    rows = share[pick]
    key = np.lexsort((-rows.max(1), rows.argmax(1)))
    return rows[key]


def draw(panels, path, n_rows=60):
    """panels: [(title, share (U, N), summary)] -> a heatmap per panel, side by side."""
    from bam_experiments import plots
    plt = plots.plt
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1, 6.4), squeeze=False)
    for ax, (title, share, s) in zip(axes[0], panels):
        im = ax.imshow(rows_for_display(share, n_rows), aspect="auto", cmap="Blues", vmin=0, vmax=1,
                       interpolation="nearest")
        ax.set_xticks(range(share.shape[1]), [f"{i + 1}" for i in range(share.shape[1])])
        ax.set(xlabel="interest (by total share)", ylabel=f"users ({min(n_rows, len(share))} of {len(share)})",
               title=f"{title}\nmean entropy {s['mean_entropy_bits']:.2f} bits (max {s['max_entropy_bits']:.0f})\n"
                     f"single-interest users {s['single_interest_users']:.0%}, Gini {s['gini_of_interest_totals']:.2f}")
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), label="share of the top-10", shrink=0.8)
    return plots.save(fig, path)
