# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # BaM, step by step
#
# A walkthrough of `bam_minimal.py`: synthetic data, one batch, the interests, hard selection and BaM's
# selection side by side, one training step, a short training run of each, and the balance of the interests.
# Every step calls `bam_minimal`'s own functions (`import bam_minimal as bm`); nothing of the algorithm is
# copied here.
#
# This file, `notebooks/walkthrough.py`, is the source: a [jupytext](https://jupytext.readthedocs.io)
# notebook in the percent format (`# %%` starts a cell), kept as text so that a diff reads like code.
#
# ```bash
# python -m jupytext --to notebook notebooks/walkthrough.py   # writes notebooks/walkthrough.ipynb (git-ignored)
# python notebooks/walkthrough.py                             # or run it as a plain script (plots off-screen)
# ```
#
# `tests/test_walkthrough.py` converts and executes it headless, as CI does, in about 10 s. The sizes are
# tiny on purpose (a few hundred users, d = 16, a few hundred iterations): the point is to see the mechanics,
# not to reproduce the paper's tables (`python cli.py table` does that). `BAM_WALKTHROUGH_SEED` picks the seed.
#
# The papers: [KDD24] Lee, Yun and Kang, *Balanced Interest Learning for Multi-interest Recommendation*,
# KDD '24; [BD24] *Towards True Multi-interest Recommendation*, IEEE BigData '24.

# %%
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
import torch

if "ipykernel" not in sys.modules:  # a plain script: draw off-screen (a kernel shows plots inline, drawn by Agg)
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

# The repository root (the folder with bam_minimal.py), from here or from notebooks/.
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "bam_minimal.py").exists())
sys.path.insert(0, str(ROOT))
import bam_minimal as bm  # noqa: E402
from bam_data.synth import SynthConfig, generate  # noqa: E402
from bam_experiments import balance  # noqa: E402  (the project's balance measures, Figure 1)

SEED = int(os.environ.get("BAM_WALKTHROUGH_SEED", "0"))
torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and the same numbers on every machine
plt.rcParams.update({"figure.dpi": 80, "font.size": 9})
print(f"seed {SEED}, torch {torch.__version__}")

# %% [markdown]
# ## 1. Data: sequences with planted interests
#
# `bam_data.synth` plants the structure that a multi-interest model should find: items fall into topics,
# every user follows 1 to 4 of them, and a user's sequence hops between its topics. `bm.Dataset` keeps the
# sequences in one flat array. Leave-one-out: a user's last item is the test target, the one before it the
# validation target, and training targets come from the rest.

# %%
seqs, truth = generate(SynthConfig(users=300, items=120, topics=6, max_topics=3, mean_len=20, seed=SEED))
data = bm.Dataset(seqs, name="synthetic")
item_topic = np.array([-1] + truth["item_topic"])  # (I + 1,) the planted topic of each item; 0 is padding
print(f"{len(data.users)} users, {data.n_items} items, {data.n_interactions} interactions, "
      f"{len(data.trainable)} users to train on")

fig, ax = plt.subplots(figsize=(8, 2.2))
for row in range(6):  # each of the first users' sequences, coloured by topic
    seq = data.items[data.start[row]:data.start[row + 1]]
    ax.scatter(np.arange(len(seq)), np.full(len(seq), row), c=item_topic[seq], cmap="tab10", vmin=0, vmax=9, s=25)
ax.set(xlabel="position in the sequence", ylabel="user", title="six users' sequences, each item coloured by topic")
plt.show()

# %% [markdown]
# ## 2. One batch
#
# `bm.train_batch` is the official sampler: a user uniformly (with replacement), then a target position
# $k \ge 1$; the history is the last $L$ items before it, right-padded with item 0, and `mask` marks the real
# positions.

# %%
cfg = bm.Config(dim=16, n_interests=4, seq_len=20, batch_size=64, n_negatives=100, lr=5e-3, tau=1.0,
                max_iters=300, eval_every=25, patience=100, device="cpu", seed=SEED)
rng = np.random.default_rng(SEED)
history, mask, target = (torch.as_tensor(a) for a in bm.train_batch(data, rng, cfg.batch_size, cfg.seq_len))
print("history", tuple(history.shape), "mask", tuple(mask.shape), "target", tuple(target.shape))
print("example 0: history", history[0, :int(mask[0].sum())].tolist(), "-> target", int(target[0]))
print("its topics:       ", item_topic[history[0, :int(mask[0].sum())]].tolist(), "->", item_topic[target[0]])

# %% [markdown]
# ## 3. The interests
#
# ComiRec-SA (Cen et al., KDD '20) turns the history's embeddings $H \in \mathbb{R}^{L \times d}$ (plus
# position embeddings $P$) into $N$ interests with $N$ attention heads:
#
# $$A = \mathrm{softmax}_L\!\big(W_2 \tanh(W_1 (H + P)^\top)\big) \in \mathbb{R}^{N \times L}, \qquad
#   M_u = A H \in \mathbb{R}^{N \times d}.$$
#
# Each row of $A$ is one interest's attention over the history: which past items it summarises.
# (Padded positions get no attention.) `bm.build_model` makes the model; calling it gives both.

# %%
torch.manual_seed(cfg.seed)
model = bm.build_model(cfg, data.n_items)
interests, attention = model(history, mask)
print("interests M_u", tuple(interests.shape), " attention A", tuple(attention.shape))

n = int(mask[0].sum())
fig, ax = plt.subplots(figsize=(8, 1.8))
im = ax.imshow(attention[0, :, :n].detach().numpy(), cmap="Blues", aspect="auto")
ax.set_xticks(range(n), [f"{i}\nt{t}" for i, t in zip(history[0, :n].tolist(), item_topic[history[0, :n]])],
              fontsize=6)
ax.set(ylabel="interest", title="example 0: each interest's attention over the history (item id, topic)")
fig.colorbar(im, ax=ax)
plt.show()

# %% [markdown]
# ## 4. Which interest scores the target: hard selection and BaM
#
# Training scores the target $i^+$ with ONE interest. Both rules start from each interest's correlation with
# the target, [KDD24] Eq. (1): $M_u^\top e_{i^+} \in \mathbb{R}^N$ (`bm.interest_logits`).
#
# * **hard** (the old rule, [KDD24] Eq. (1)): the argmax, $n^* = \arg\max_n\, m_u^{n\top} e_{i^+}$. As a
#   distribution it is one-hot: all the probability on one interest.
# * **BaM** ([KDD24] Eq. (3)): sample it from the softmax of the correlations, with a temperature $\tau$,
#   drawn by inverting the CDF at $u \sim U[0, 1)$. An interest that is close to the target is still picked
#   most often, but every interest gets some of the training, so none starves:
#
# $$n \sim P(m_u^n \mid i^+) = \frac{\exp(\tau\, m_u^{n\top} e_{i^+})}
#   {\sum_{k=1}^{N} \exp(\tau\, m_u^{k\top} e_{i^+})}.$$
#
# `bm.select_interest(logits, selection, tau, u)` returns the selected index and the softmax probabilities.

# %%
logits = bm.interest_logits(model, "bam", interests, model.embeddings.weight[target].detach())  # (B, N)
u = torch.rand(len(target), generator=torch.Generator().manual_seed(SEED))                      # (B,)
hard_index, _ = bm.select_interest(logits, "hard", cfg.tau, u)
bam_index, bam_probs = bm.select_interest(logits, "bam", cfg.tau, u)
hard_probs = torch.nn.functional.one_hot(hard_index, cfg.n_interests).float()  # hard's rule as a distribution

rows = 12
fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
for ax, probs, index, title in ((axes[0], hard_probs, hard_index, "hard: one-hot argmax"),
                                (axes[1], bam_probs, bam_index, rf"BaM: softmax($\tau$ $M_u^T e$), $\tau$={cfg.tau}")):
    ax.imshow(probs[:rows].detach().numpy(), cmap="Oranges", vmin=0, vmax=1, aspect="auto")
    ax.scatter(index[:rows].numpy(), np.arange(rows), marker="x", c="k", label="selected")
    ax.set(xlabel="interest", title=title, xticks=range(cfg.n_interests))
axes[0].set(ylabel="example")
axes[1].legend(loc="lower right", fontsize=7)
plt.show()

row_sums = {"hard": hard_probs.sum(-1), "bam": bam_probs.sum(-1)}
print("rows sum to 1:", {k: bool(torch.allclose(v, torch.ones_like(v))) for k, v in row_sums.items()})
print("hard and BaM pick the same interest in", f"{(hard_index == bam_index).float().mean():.0%}", "of the batch")


# %% [markdown]
# At initialisation the correlations are small, so BaM's softmax is nearly flat and its draw nearly uniform;
# it sharpens as the interests learn (and a larger $\tau$ sharpens it: $\tau \to \infty$ is hard selection).
#
# ## 5. One training step
#
# The selected interest $m$ scores the target against $S$ uniform negatives, shared by the batch (a sampled
# softmax, as officially):
#
# $$\mathcal{L} = -\log \frac{\exp(m^\top e_{i^+})}{\exp(m^\top e_{i^+}) + \sum_{j \in S} \exp(m^\top e_j)}.$$
#
# `bm.train_step` draws a fresh batch, the negatives and BaM's $u$, computes this loss (`bm.bam_loss`) and
# takes one Adam step. The gradient reaches an interest only through the examples that selected it: the
# selection rule decides which interests learn.
#
# To see the selections that training makes, we listen in on `bm.select_interest` (`bm.bam_loss` looks it up
# in the module at every call): the listener records the index it returns and changes nothing.

# %%
@contextmanager
def recording_selections():
    """Every index bm.select_interest returns while inside: one (B,) tensor per training step."""
    picks, original = [], bm.select_interest

    def listen(logits, selection, tau, u):
        index, probs = original(logits, selection, tau, u)
        picks.append(index.detach().cpu())
        return index, probs
    bm.select_interest = listen
    try:
        yield picks
    finally:
        bm.select_interest = original


torch.manual_seed(cfg.seed)
step_model = bm.build_model(cfg, data.n_items)
opt = torch.optim.Adam(step_model.parameters(), lr=cfg.lr)
with recording_selections() as picks:
    loss = bm.train_step(step_model, opt, cfg, data, np.random.default_rng(SEED), torch.Generator().manual_seed(SEED),
                         cfg.tau, "cpu")
scored = np.bincount(picks[0].numpy(), minlength=cfg.n_interests)   # (N,) the examples each interest scored
head_grad = step_model.linear2.weight.grad.norm(dim=1)              # (N,) each interest's attention head
print(f"loss {loss:.4f}  (log(1 + S) = {np.log(1 + cfg.n_negatives):.4f}: a model that knows nothing)")
for k in range(cfg.n_interests):
    print(f"interest {k}: scored {scored[k]:2d} of the {cfg.batch_size} targets, "
          f"gradient on its attention head {float(head_grad[k]):.4f}")

# %% [markdown]
# ## 6. A short training run of each
#
# `bm.train` is the whole loop: steps, a validation every `eval_every` iterations (Recall@10 over all items,
# an item scored by its best interest, $\max_n m_u^{n\top} e_i$), early stopping, and the test of the best
# model. We run it twice, from the same initial weights and on the same batches: `selection="hard"` and
# `selection="bam"`, recording every selection.

# %%
runs = {}
for selection in ("hard", "bam"):
    with recording_selections() as picks:
        trained, result = bm.train(replace(cfg, selection=selection), data, log=lambda line: None)
    runs[selection] = dict(model=trained, result=result, picks=torch.stack(picks).numpy())  # picks: (iters, B)
    print(f"{selection:4}  {result['iters']} iterations in {result['seconds']:.1f} s, "
          f"test recall@10 {result['test']['recall@10']:.3f}, ndcg@10 {result['test']['ndcg@10']:.3f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
for name, r in runs.items():
    its = [h["iter"] for h in r["result"]["history"]]
    left.plot(its, [h["loss"] for h in r["result"]["history"]], label=name)
    right.plot(its, [h["recall@10"] for h in r["result"]["history"]], label=name)
left.set(xlabel="iteration", title="training loss")
right.set(xlabel="iteration", title="validation Recall@10")
left.legend()
plt.show()

# %% [markdown]
# ## 7. The balance picture
#
# Three views, each an entropy in bits (with $N = 4$ interests, $\log_2 4 = 2$ bits when all are used
# equally, 0 when one takes everything), computed with `bam_experiments.balance.entropy_bits`:
#
# 1. **Training**: how often each interest was selected over the whole run, as shares
#    $p_n = c_n / \sum_k c_k$ of the iterations $\times$ $B$ selections, and their entropy
#    $H = -\sum_n p_n \log_2 p_n$. Interests have no order of their own, so the bars are sorted.
# 2. **The trained selection distribution**: for each user's test target, the entropy of
#    $P(m_u^n \mid i^+) = \mathrm{softmax}(\tau M_u^\top e_{i^+})$, the distribution that BaM draws from and
#    hard selection takes the argmax of (for both trained models; normalised by $\log_2 N$, this is the
#    balance measure of the course kit's Part 8, [docs/course.md](../docs/course.md)).
# 3. **Recommendations** (the paper's Figure 1): for each test user, which interest gives each of the top-10
#    items its score (`balance.interest_usage`), and the entropy of a user's shares (`balance.summary`;
#    `python cli.py balance` draws it for real checkpoints).

# %%
def test_selection_entropy(model):
    """(U,) for every user's test target: the entropy (bits) of softmax(tau * M_u^T e_target)."""
    rows = np.arange(len(data.users))
    history, mask, target = (torch.as_tensor(a) for a in
                             bm.windows(data, rows, bm.split_targets(data, "test")[rows], cfg.seq_len))
    with torch.no_grad():
        interests, _ = model.eval()(history, mask)
        logits = bm.interest_logits(model, "bam", interests, model.embeddings.weight[target])
        _, probs = bm.select_interest(logits, "hard", cfg.tau, None)  # the probabilities are the same for both
    return balance.entropy_bits(probs.numpy())


summary, views = {}, {}
for name, r in runs.items():
    counts = np.bincount(r["picks"].ravel(), minlength=cfg.n_interests)                  # (N,) over the run
    share, _, _, _ = balance.interest_usage(r["model"], data, replace(cfg, selection=name))  # (U, N) top-10
    views[name] = dict(shares=np.sort(counts / counts.sum())[::-1], p_entropy=test_selection_entropy(r["model"]),
                       top10_entropy=balance.entropy_bits(share))
    summary[name] = dict(selection_counts=sorted(counts.tolist(), reverse=True),
                         selection_entropy_bits=float(balance.entropy_bits(counts[None] / counts.sum())[0]),
                         selection_distribution_entropy_bits=float(views[name]["p_entropy"].mean()),
                         top10_entropy_bits=balance.summary(share)["mean_entropy_bits"],
                         test_recall_at_10=r["result"]["test"]["recall@10"])

fig, axes = plt.subplots(1, 3, figsize=(12, 3))
bins = np.linspace(0, 2, 21)
for k, (name, v) in enumerate(views.items()):
    s = summary[name]
    axes[0].bar(np.arange(cfg.n_interests) + (k - 0.5) * 0.4, v["shares"], width=0.4, color=f"C{k}",
                label=f"{name}: {s['selection_entropy_bits']:.3f} bits")
    axes[1].hist(v["p_entropy"], bins=bins, alpha=0.6, color=f"C{k}",
                 label=f"{name}: mean {s['selection_distribution_entropy_bits']:.2f} bits")
    axes[2].hist(v["top10_entropy"], bins=bins, alpha=0.6, color=f"C{k}",
                 label=f"{name}: mean {s['top10_entropy_bits']:.2f} bits")
axes[0].axhline(1 / cfg.n_interests, ls=":", c="grey")
axes[0].set(xlabel="interest (by share)", xticks=range(cfg.n_interests), ylabel="share",
            title="1. training selections over the run")
axes[1].set(xlabel="entropy of P(n | test target), bits", ylabel="users", title="2. the trained selection distribution")
axes[2].set(xlabel="entropy of a user's top-10 shares, bits", ylabel="users", title="3. recommendations (Figure 1)")
for ax in axes:
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# What to read from it, on this tiny data:
#
# 1. BaM spreads the training over the interests almost exactly evenly. Hard selection stays close to even
#    here too (the planted topics give every interest some targets), but it was the less even of the two on
#    every seed we tried (0 to 7).
# 2. The clearest difference: hard selection trains the model to be *sure* which interest a target belongs to
#    (the argmax interest gets all the gradient, so it gets closer still and wins again: a rich-get-richer
#    loop), while BaM's trained softmax stays spread, so every interest keeps learning ([KDD24] Section 3).
# 3. At recommendation time the picture turns round: a user's top-10 comes from *fewer* interests under BaM.
#    `docs/results.md` finds the same on Amazon Beauty and MovieLens: BaM balances which interests are trained
#    (and their shares across users), not how many interests serve one user's list.
#
# The last cell leaves the results in `result` and prints them as JSON (`tests/test_walkthrough.py` reads it).

# %%
result = dict(seed=SEED, n_interests=cfg.n_interests,
              rows_sum_to_one={k: bool(torch.allclose(v, torch.ones_like(v))) for k, v in row_sums.items()},
              **summary)
print(json.dumps(result))
