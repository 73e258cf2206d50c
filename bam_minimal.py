"""
bam_minimal.py: BaM, balanced interest learning for multi-interest recommendation, in one file.

  [KDD24] Lee, Yun and Kang. Balanced Interest Learning for Multi-interest Recommendation. KDD '24.
  [BD24]  Lee, Yun and Kang. Towards True Multi-interest Recommendation. IEEE BigData '24.

A multi-interest encoder (ComiRec-SA, MIND) turns a history into N interest vectors, and training
scores the target with ONE of them. The old rule takes the argmax interest (`hard`), and one
interest ends up taking all the training; BaM samples it from softmax(tau * M_u^T e_target) (`bam`),
so every interest is trained. Evaluation ranks every item by its best interest (leave-one-out).

torch and numpy only; CUDA when there is one, else the CPU. Every Config field is a --field=value:
    python bam_minimal.py data.txt --selection=hard --out=runs/hard    # one `user item` per line
`python cli.py train` wraps this file with progress bars, plots, data formats and synthetic data.
"""
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# Config. Defaults are the official ones (github.com/jlunits2/BaM, src/main.py), except `selection`.


@dataclass
class Config:
    model: str = "comirec"        # comirec (ComiRec-SA) | mind (MIND / ComiRec-DR) | sasrec (one interest)
    dim: int = 64                 # d, the embedding size (official: hidden_size)
    n_interests: int = 4          # N
    seq_len: int = 50             # L, the history window
    selection: str = "bam"        # hard | bam | bam-l | expected   (official default: hard)
    tau: float = 1.0              # temperature of the selection softmax
    tau_schedule: str = "constant"  # constant | hard-to-soft | soft-to-hard (linear in tau)
    tau_hard: float = 10.0        # the "hard" end of a tau schedule
    tau_anneal_iters: int = 10000
    linear_size: int = 16         # d' of bam-l
    multi_loss: bool = False      # [BD24] multi-interest loss
    loss: str = "sampled"         # sampled | full
    n_negatives: int = 1280       # uniform negatives, drawn once per batch and shared by it
    remi_beta: float = 0.0        # REMI interest-aware hard negatives (0: off)
    remi_lambda: float = 0.0      # REMI routing regularisation (0: off)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_iters: int = 1_000_000
    eval_every: int = 1000
    patience: int = 15            # stop after more than `patience` validations without a better Recall@10
    valid_users: int = 0          # 0: all users (deterministic); 1000: the official random sample
    history_mask: str = "exclude"  # exclude | official | none
    routing_iters: int = 3        # MIND
    n_blocks: int = 2             # SASRec
    dropout: float = 0.2          # SASRec
    seed: int = 2021
    device: str = "auto"          # auto | cpu | cuda


CHOICES = dict(model=("comirec", "mind", "sasrec"), selection=("hard", "bam", "bam-l", "expected"),
               tau_schedule=("constant", "hard-to-soft", "soft-to-hard"), loss=("sampled", "full"),
               history_mask=("exclude", "official", "none"), device=("auto", "cpu", "cuda"))


class InputError(ValueError):
    """Bad input. The message is one line that names the file, the line and the fix."""


def check_config(cfg):
    """Refuse a config that cannot run, naming the first bad option."""
    positive = ("dim", "n_interests", "seq_len", "batch_size", "n_negatives", "max_iters", "eval_every",
                "linear_size", "routing_iters", "n_blocks", "tau_anneal_iters", "lr")
    non_negative = ("tau", "tau_hard", "patience", "valid_users", "remi_beta", "remi_lambda", "weight_decay",
                    "seed")
    bad = [f"{k}={getattr(cfg, k)} is not one of {', '.join(v)}" for k, v in CHOICES.items()
           if getattr(cfg, k) not in v]
    bad += [f"{k}={getattr(cfg, k)} must be positive" for k in positive if getattr(cfg, k) <= 0]
    bad += [f"{k}={getattr(cfg, k)} must be 0 or more" for k in non_negative if getattr(cfg, k) < 0]
    bad += [why for broken, why in (
        (not 0 <= cfg.dropout < 1, f"dropout={cfg.dropout} must be in [0, 1)"),
        (cfg.device == "cuda" and not torch.cuda.is_available(), "device=cuda, but torch sees no GPU (use auto)"),
        (cfg.remi_lambda and cfg.model != "comirec", "remi_lambda > 0 acts on ComiRec-SA's attention: model comirec"),
        (cfg.remi_beta and cfg.loss == "full", "remi_beta > 0 reweights sampled negatives: loss sampled"),
        (cfg.model == "sasrec" and cfg.n_interests != 1, "model sasrec has one interest: n_interests 1")) if broken]
    if bad:
        raise InputError(f"bad config: {bad[0]} (fix: change that option; --help shows the defaults)")

# -----------------------------------------------------------------------------
# Data: per-user sequences, the leave-one-out split, and vectorised batches.


def read_official(path):
    """The official format: one `user item` pair per line, 1-indexed, each user's items in time order.
    Extra fields are ignored, as the official reader does. Returns {user: [items]} in file order."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file (fix: check the path)")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise InputError(f"{path}: the file is empty (fix: pass a file with one `user item` pair per line)")
    if b"\0" in raw[:65536]:
        raise InputError(f"{path}:1: binary data, not text (fix: pass a text file of `user item` lines)")
    seqs = {}
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise InputError(f"{path}:{n}: one field, expected `user item` (fix: write one pair per line)")
        try:
            user, item = int(parts[0]), int(parts[1])
        except ValueError:
            raise InputError(f"{path}:{n}: `{line.strip()[:30]}` is not two integer ids (fix: integer ids)") from None
        if max(user, item) >= 1 << 31:
            raise InputError(f"{path}:{n}: id too large (fix: map ids to 1..n, e.g. with `cli.py prepare`)")
        if user < 0 or item < 0:
            raise InputError(f"{path}:{n}: negative id (fix: user ids are 0 or more, item ids 1 or more)")
        if item == 0:
            raise InputError(f"{path}:{n}: item id 0 is padding (fix: items are 1-indexed; add 1 to every item id)")
        seqs.setdefault(user, []).append(item)
    return seqs


class Dataset:
    """All sequences in one flat array: user row r owns items[start[r]:start[r + 1]], in time order.
    Item ids are kept as they are; 0 is padding. Users with fewer than 3 items are skipped."""

    def __init__(self, seqs, n_items=None, name="data"):
        kept = {u: s for u, s in seqs.items() if len(s) >= 3}
        if not kept:
            raise InputError(f"{name}: no user has 3 or more interactions (fix: leave-one-out needs 3 per user)")
        self.name, self.skipped = name, len(seqs) - len(kept)
        self.users = np.array(sorted(kept), dtype=np.int64)                     # (U,)
        self.lengths = np.array([len(kept[u]) for u in self.users], dtype=np.int64)  # (U,)
        self.start = np.concatenate([[0], np.cumsum(self.lengths)])            # (U + 1,)
        self.items = np.concatenate([kept[u] for u in self.users]).astype(np.int64)
        self.n_items = int(n_items or max(max(s) for s in seqs.values()))      # the official item_count
        self.trainable = np.flatnonzero(self.lengths - 2 >= 2)                # rows with a train target k >= 1
        self.n_interactions = int(self.lengths.sum())
        # Tells one dataset from another, so that a run is never resumed or reused on other data.
        w = np.arange(1, len(self.items) + 1, dtype=np.uint64)                 # wraps modulo 2^64
        by_item = (self.items.astype(np.uint64) * w).sum()
        by_length = (self.lengths.astype(np.uint64) * w[:len(self.lengths)]).sum()
        checksum = int(by_item ^ by_length)
        self.fingerprint = f"{len(self.users)}-{self.n_items}-{self.n_interactions}-{checksum:x}"


def windows(data, rows, k, width):
    """Examples (row, k): target items[k]; history the last `width` items before k, right-padded with 0."""
    lo = np.maximum(k - width, 0)                                              # (B,)
    pos = lo[:, None] + np.arange(width)                                       # (B, W)
    mask = pos < k[:, None]                                                    # (B, W)
    flat = data.start[rows][:, None] + np.minimum(pos, k[:, None] - 1)         # (B, W)
    history = np.where(mask, data.items[flat], 0)                              # (B, W)
    target = data.items[data.start[rows] + k]                                  # (B,)
    return history, mask.astype(np.float32), target


def train_batch(data, rng, batch_size, seq_len):
    """The official sampler: a user uniformly with replacement, then a target k >= 1 in seq[:-2]."""
    rows = data.trainable[rng.integers(0, len(data.trainable), batch_size)]   # (B,)
    k = rng.integers(1, data.lengths[rows] - 2)                                # (B,) in [1, len - 3]
    return windows(data, rows, k, seq_len)


def split_targets(data, split):
    """Leave-one-out: validation predicts seq[-2] from seq[:-2], test predicts seq[-1] from seq[:-1]."""
    return data.lengths - (2 if split == "valid" else 1)                       # (U,) target positions


# -----------------------------------------------------------------------------
# Models. Parameter names and shapes are the official ones, so released checkpoints load strictly.

MASK = -2.0 ** 32 + 1  # the official masking constant: padded positions get this attention logit


class Encoder(nn.Module):
    """Item embeddings (row 0 is padding), plus the two small maps of BaM_l when they are used."""

    def __init__(self, cfg, n_items):
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)    # (I + 1, d)
        if cfg.selection == "bam-l":  # [BD24] Eq. (9): l1, l2 map interests and target to d'
            self.l1 = nn.Linear(cfg.dim, cfg.linear_size)
            self.l2 = nn.Linear(cfg.dim, cfg.linear_size)

    def reset_parameters(self):
        # Official init: kaiming-normal on every matrix, the padding row 0 too (it is then trained as a
        # sampled negative and can be ranked, as in the official code); biases (BaM_l only) at zero.
        for p in self.parameters():
            nn.init.kaiming_normal_(p) if p.dim() > 1 else nn.init.zeros_(p)


class ComiRecSA(Encoder):
    """ComiRec-SA (Cen et al., KDD '20): N attention heads over the history, one per interest."""

    def __init__(self, cfg, n_items):
        super().__init__(cfg, n_items)
        d, N = cfg.dim, cfg.n_interests
        self.position_embedding = nn.Parameter(torch.empty(1, cfg.seq_len, d))    # (1, L, d)
        self.linear1 = nn.Sequential(nn.Linear(d, 4 * d, bias=False), nn.Tanh())
        self.linear2 = nn.Linear(4 * d, N, bias=False)
        self.reset_parameters()

    def forward(self, history, mask, noise=None):
        h = self.embeddings(history) * mask[..., None]                        # (B, L, d)
        # The official code runs the MLP on every position, then overwrites the padded ones with MASK.
        # Running it on the real positions only gives the same values and gradients, for less work.
        real = mask > 0                                                        # (B, L)
        logits = h.new_full((*mask.shape, self.cfg.n_interests), MASK)       # (B, L, N)
        logits[real] = self.linear2(self.linear1((h + self.position_embedding)[real]))  # (P, N)
        attention = logits.transpose(1, 2).softmax(-1)                        # (B, N, L), over the sequence
        return attention @ h, attention                                       # (B, N, d), (B, N, L)


class CapsuleNetwork(nn.Module):
    """MIND's dynamic routing (Li et al., CIKM '19), as in the official code."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.dim
        # `relu` is unused (the official runs pass relu_layer=False) but its weight is in their checkpoints.
        self.relu = nn.Sequential(nn.Linear(d, d, bias=False), nn.ReLU())
        self.linear = nn.Linear(d, d, bias=False)
        self.iters = cfg.routing_iters

    def forward(self, h, mask, logits):
        u = self.linear(h)                                                     # (B, L, d), shared by all N capsules
        u_frozen = u.detach()
        keep = mask[:, None] > 0                                               # (B, 1, L)
        for i in range(self.iters):
            # Softmax over the sequence, then zero at padding without renormalising (official).
            w = torch.where(keep, logits.softmax(-1), 0.0)                    # (B, N, L)
            last = i == self.iters - 1
            z = squash(w @ (u if last else u_frozen))                         # (B, N, d)
            if not last:  # stop-gradient through all routing updates but the last pass
                logits = logits + z @ u_frozen.transpose(1, 2)                # (B, N, L)
        return z, w


def squash(z):
    norm2 = (z * z).sum(-1, keepdim=True)                                      # (B, N, 1)
    return norm2 / (1 + norm2) / torch.sqrt(norm2 + 1e-9) * z


class MIND(Encoder):
    def __init__(self, cfg, n_items):
        super().__init__(cfg, n_items)
        self.capsule_network = CapsuleNetwork(cfg)
        self.reset_parameters()

    def forward(self, history, mask, noise=None):
        """`noise`: the initial routing logits (B, N, L), or a generator to draw them from."""
        h = self.embeddings(history) * mask[..., None]                        # (B, L, d)
        if noise is None or isinstance(noise, torch.Generator):
            # Official: fresh random routing logits on every forward pass, at test time too.
            noise = torch.randn(h.shape[0], self.cfg.n_interests, h.shape[1], device=h.device, dtype=h.dtype,
                                generator=noise)
        return self.capsule_network(h, mask, noise.to(h))                    # (B, N, d), (B, N, L)


class SASRec(Encoder):
    """SASRec (Kang and McAuley, ICDM '18): causal self-attention, one interest from the last position.
    Layout after pmixer/SASRec.pytorch; histories are right-padded here, so positions count from the
    window's start."""

    def __init__(self, cfg, n_items):
        super().__init__(cfg, n_items)
        d = cfg.dim
        self.position_embedding = nn.Parameter(torch.empty(1, cfg.seq_len, d))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(d, cfg.dropout) for _ in range(cfg.n_blocks))
        self.last_norm = nn.LayerNorm(d)
        for p in self.parameters():
            nn.init.xavier_normal_(p) if p.dim() > 1 else None

    def sequence(self, history, mask):
        # Right padding + causal attention: columns past the longest history are padding in every
        # row and cannot change earlier positions, so they are cut (exact, and most of a batch).
        length = mask.sum(1).long()                                            # (B,)
        L = int(length.max())
        history, mask = history[:, :L], mask[:, :L]                            # (B, L), (B, L)
        # Positions count back from the most recent item (at seq_len - 1), as with SASRec's left padding.
        pos = (self.cfg.seq_len - length)[:, None] + torch.arange(L, device=history.device)   # (B, L)
        pos_emb = self.position_embedding[0, pos.clamp(max=self.cfg.seq_len - 1)]              # (B, L, d)
        x = self.embeddings(history) * self.cfg.dim ** 0.5 + pos_emb                           # (B, L, d)
        x = self.drop(x) * mask[..., None]                                     # (B, L, d)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)   # True: may not attend
        for block in self.blocks:
            x = block(x, causal) * mask[..., None]                             # (B, L, d)
        return self.last_norm(x)                                               # (B, L, d)

    def forward(self, history, mask, noise=None):
        x = self.sequence(history, mask)                                       # (B, L, d)
        last = mask.sum(1).long() - 1                                          # (B,)
        return x[torch.arange(len(x), device=x.device), last][:, None], None   # (B, 1, d)


class SASRecBlock(nn.Module):
    def __init__(self, d, dropout):
        super().__init__()
        self.attn_norm, self.ffn_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 1, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, d), nn.Dropout(dropout))

    def forward(self, x, causal):
        q = self.attn_norm(x)                                                  # (B, L, d)
        x = q + self.attn(q, x, x, attn_mask=causal, need_weights=False)[0]   # (B, L, d)
        x = self.ffn_norm(x)                                                   # (B, L, d)
        return x + self.ffn(x)                                                 # (B, L, d)


def build_model(cfg, n_items):
    return dict(comirec=ComiRecSA, mind=MIND, sasrec=SASRec)[cfg.model](cfg, n_items)

# -----------------------------------------------------------------------------
# Interest selection: which interest scores the target.


def interest_logits(model, interests, target_emb):
    """Correlation of each interest with the target. [KDD24] Eq. (1): M_u^T e_target.
    [BD24] Eq. (9), BaM_l: the same product after two learned maps to d'."""
    if model.cfg.selection == "bam-l":
        return (model.l1(interests) @ model.l2(target_emb)[..., None])[..., 0]   # (B, N)
    return (interests @ target_emb[..., None])[..., 0]                         # (B, N)


def select_interest(logits, selection, tau, u):
    """Returns the selected index (B,) and the selection probabilities (B, N).
    `hard`: [KDD24] Eq. (1), argmax_n m_u^n . e_target (the first on ties).
    `bam`, `bam-l`: [KDD24] Eq. (3), n ~ P(m_u^n | i+) = softmax(tau * M_u^T e_target), drawn by
    inverting the CDF at u ~ U[0, 1), so that a given u gives the same draw in any framework."""
    probs = torch.softmax(tau * logits, -1)                                    # (B, N)
    if selection == "hard":
        return logits.argmax(-1), probs
    index = (probs.cumsum(-1) <= u[:, None]).sum(-1)                           # (B,)
    return index.clamp(max=logits.shape[-1] - 1), probs


def tau_at(cfg, it):
    """The temperature at iteration `it`: constant, or a linear anneal between tau_hard and tau."""
    if cfg.tau_schedule == "constant":
        return cfg.tau
    a, b = (cfg.tau_hard, cfg.tau) if cfg.tau_schedule == "hard-to-soft" else (cfg.tau, cfg.tau_hard)
    return a + (b - a) * min(1.0, it / max(1, cfg.tau_anneal_iters))

# -----------------------------------------------------------------------------
# Loss: sampled softmax over shared uniform negatives (official), or a full softmax.


def item_scores(query, target, negatives, item_emb, loss):
    """query (B, K, d), the selected interest (K = 1) or all of them -> target scores (B, K) and
    negative scores (B, K, S). `full` uses every item but the target and padding 0 as a negative."""
    pos = (query * item_emb[target][:, None]).sum(-1)                         # (B, K)
    if loss == "sampled":
        return pos, query @ item_emb[negatives].T                              # (B, K, S)
    neg = query @ item_emb.T                                                   # (B, K, I + 1)
    drop = F.one_hot(target, neg.shape[-1]).bool()[:, None]                   # (B, 1, I + 1)
    drop[..., 0] = True
    return pos, neg.masked_fill(drop, -math.inf)                               # (B, K), (B, K, I + 1)


def softmax_loss(pos, neg, beta=0.0):
    """-log softmax of the target among [target, negatives]; no accidental-hit removal (official).
    The uniform proposal's log q is the same for every item, so its correction cancels.
    REMI (Xie et al., RecSys '23) with beta > 0: negative j is reweighted by w_j = S softmax(beta * s)_j,
    mean 1, and the weights stay in the graph, as in the REMI and BaM code."""
    if beta:
        neg = neg + math.log(neg.shape[-1]) + torch.log_softmax(beta * neg, -1)   # (..., S)
    return torch.logsumexp(torch.cat([pos[..., None], neg], -1), -1) - pos        # (...)


def routing_regulariser(attention, dim):
    """REMI's routing regularisation: sum_b ||diag(Cov(A_b))||^2 with A_b (N, L) centred over the
    sequence and Cov = A A^T / d (as the REMI code divides by the hidden size)."""
    centred = attention - attention.mean(-1, keepdim=True)                    # (B, N, L)
    return (((centred * centred).sum(-1) / dim) ** 2).sum()                  # ()


def bam_loss(model, cfg, interests, attention, target, negatives, u, tau):
    """The training loss of one batch: select an interest, score the target against the negatives."""
    item_emb = model.embeddings.weight                                         # (I + 1, d)
    logits = interest_logits(model, interests, item_emb[target].detach())     # (B, N)
    index, probs = select_interest(logits, cfg.selection, tau, u)             # (B,), (B, N)
    if cfg.selection == "expected":
        # Beyond the papers: the loss of every interest, weighted by its (constant) selection probability.
        pos, neg = item_scores(interests, target, negatives, item_emb, cfg.loss)   # (B, N), (B, N, S)
        loss = (probs.detach() * softmax_loss(pos, neg, cfg.remi_beta)).sum(-1)    # (B,)
    else:
        selection = interests[torch.arange(len(index), device=index.device), index]  # (B, d)
        pos, neg = item_scores(selection[:, None], target, negatives, item_emb, cfg.loss)  # (B, 1), (B, 1, S)
        loss = softmax_loss(pos, neg, cfg.remi_beta)[:, 0]                   # (B,)
    if cfg.multi_loss:
        # [BD24] Eq. (10)-(13): an item's score over all interests is logsumexp_n m_u^n . e_i.
        pos, neg = item_scores(interests, target, negatives, item_emb, cfg.loss)   # (B, N), (B, N, S)
        loss = loss + softmax_loss(pos.logsumexp(1), neg.logsumexp(1), cfg.remi_beta)  # (B,)
    loss = loss.mean()                                                         # ()
    if cfg.remi_lambda:
        loss = loss + cfg.remi_lambda * routing_regulariser(attention, cfg.dim)
    return loss

# -----------------------------------------------------------------------------
# Evaluation: full-item ranking, leave-one-out, one target per user.


def model_scorer(model):
    """Scores of every item for a block of histories: an item's best score over the interests."""
    item_emb = model.embeddings.weight                                         # (I + 1, d)

    def score(history, mask, noise):
        interests = model(history, mask, noise)[0]                             # (b, N, d)
        return (interests @ item_emb.T).amax(1)                               # (b, I + 1)
    return score


def mask_history(scores, full_history, window, mode):
    """`exclude`: every item before the target gets -inf. `official`: the items of the model's window,
    padding 0 included, get score 0, as the official code does. Padding 0 is never ranked in
    `exclude` or `none`. Works in place on `scores`."""
    if mode == "official":
        return scores.scatter_(1, window, 0.0)
    if mode == "exclude":
        scores.scatter_(1, full_history, -math.inf)  # full_history is 0-padded: item 0 is masked too
    scores[:, 0] = -math.inf
    return scores


def target_rank(scores, target):
    """0-based rank of each target. An item ranks above another when its score is higher, or equal and
    its id lower, so ranks and top-K lists are deterministic. A masked (-inf) target is never a hit."""
    s = scores.gather(1, target[:, None])                                      # (b, 1)
    # One pass instead of a `>` and an `==` pass: sign is +1 above s, 0 tied, -1 below, and two sums
    # of it give both counts (exact in float32 up to 2^24 items).
    sign = (scores - s).sign_() if scores.shape[1] < 1 << 24 else (scores.double() - s.double()).sign_()
    total, spread = sign.sum(1), sign.abs_().sum(1)                            # above - below, above + below
    rank = ((total + spread) / 2).long()                                       # (b,) items scored above s
    tied = scores.shape[1] - spread > 1                                        # (b,) others equal to s
    if tied.any():  # rare: count the equal items with a lower id
        ids = torch.arange(scores.shape[1], device=scores.device)
        rank[tied] += ((scores[tied] == s[tied]) & (ids < target[tied, None])).sum(1)
    return torch.where(s[:, 0] == -math.inf, scores.shape[1], rank)


def top_k(scores, k):
    """The top-k item ids per row under the same tie rule, via one sortable int64 key per item."""
    if scores.dtype != torch.float32:  # a stable sort keeps the lower id first among ties
        return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    bits = (scores + 0.0).view(torch.int32).long()                            # +0.0 folds -0.0 into 0.0
    key = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)                       # int order == float order
    ids = torch.arange(scores.shape[1], device=scores.device)
    return torch.topk((key << 32) - ids, k, dim=1).indices                    # (b, k)


def metrics_from_ranks(rank, ks=(10, 20)):
    """Recall@K (hit rate, one target per user) and nDCG@K = 1 / log2(rank + 2) for a hit."""
    rank = np.asarray(rank, dtype=np.float64)
    out = {}
    for k in ks:
        hit = rank < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(rank + 2), 0.0).mean())
    return out


def routing_noise(cfg, n_rows):
    """MIND's routing logits for every evaluated user, drawn at once from a CPU generator seeded with
    `seed`: every evaluation, block size and device sees the same numbers."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return torch.randn(n_rows, cfg.n_interests, cfg.seq_len, generator=gen) if cfg.model == "mind" else None


@torch.no_grad()
def evaluate(scorer, data, split, cfg, rows=None, k_top=0, block=None):
    """Ranks of the `split` targets of `rows` (default: every user), in blocks of users.
    Returns (metrics, ranks (U,), top-k ids (U, k_top) or None)."""
    device = resolve_device(cfg)
    rows = np.arange(len(data.users)) if rows is None else np.asarray(rows)
    k = split_targets(data, split)[rows]                                       # (U,)
    noise = routing_noise(cfg, len(rows))                                      # (U, N, L) or None
    budget = 1 << (28 if device == "cuda" else 24)  # elements of one block's (b, N, I + 1) scores
    block = block or max(16, min(8192, budget // (cfg.n_interests * (data.n_items + 1))))
    ranks, tops = [], []
    for i in range(0, len(rows), block):
        r, kb = rows[i:i + block], k[i:i + block]
        history, mask, target = (torch.as_tensor(a, device=device) for a in windows(data, r, kb, cfg.seq_len))
        full = torch.as_tensor(windows(data, r, kb, int(kb.max()))[0], device=device)  # (b, max k)
        nb = None if noise is None else noise[i:i + block].to(device)
        scores = mask_history(scorer(history, mask, nb), full, history, cfg.history_mask)  # (b, I + 1)
        ranks.append(target_rank(scores, target).cpu())                         # (b,)
        tops += [top_k(scores, k_top).cpu()] if k_top else []                  # (b, k_top)
    ranks = torch.cat(ranks).numpy()
    return metrics_from_ranks(ranks), ranks, torch.cat(tops).numpy() if k_top else None

# -----------------------------------------------------------------------------
# Training: iterations, validation, early stopping, best-checkpoint restore, resume.


def resolve_device(cfg):
    return cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"


def atomic_write(path, write):
    """`write(file)` into a temporary file in the same folder, then a rename: a crash never leaves
    half a file, and the old one stays until the new one is whole."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; results are for others to read too
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path):
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_json(obj, path):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def check_same_run(path, saved_config, saved_data, cfg, data):
    """Refuse to resume or reuse a run that was made with another config or on other data."""
    if saved_data is not None and saved_data != data.fingerprint:
        raise InputError(f"{path}: this run was made on other data ({saved_data}, now {data.fingerprint}) "
                         "(fix: pass a new --out, or --fresh to start over)")
    diff = [f"{k}={v} (saved {saved_config.get(k)})" for k, v in asdict(cfg).items()
            if k not in ("max_iters", "patience", "device") and saved_config.get(k) != v]
    if diff:
        raise InputError(f"{path}: this run was made with another config: {', '.join(diff[:3])} "
                         "(fix: pass a new --out, or --fresh to start over)")


def save_state(path, cfg, data, model, opt, rng, gen, st):
    """Everything a resumed run needs to continue exactly where this one is."""
    atomic_save(dict(model=model.state_dict(), optimizer=opt.state_dict(), rng=rng.bit_generator.state,
                     gen=gen.get_state(), torch_rng=torch.get_rng_state(),  # SASRec's dropout uses torch's own
                     cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                     state=st, config=asdict(cfg), data=data.fingerprint), path)


def restore_state(path, cfg, data, model, opt, rng, gen):
    """Load `path` (last.pt) into the model, optimizer and generators; the training state, or None."""
    if not os.path.exists(path):
        return None
    saved = torch.load(path, map_location="cpu", weights_only=False)
    check_same_run(path, saved["config"], saved.get("data"), cfg, data)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    rng.bit_generator.state = saved["rng"]
    gen.set_state(saved["gen"])
    torch.set_rng_state(saved["torch_rng"])
    if saved.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    return saved["state"]


def train_step(model, opt, cfg, data, rng, gen, tau, device):
    """One optimisation step on a fresh batch. Returns the loss, detached (no device sync here)."""
    history, mask, target = (torch.as_tensor(a, device=device)                # (B, L), (B, L), (B,)
                             for a in train_batch(data, rng, cfg.batch_size, cfg.seq_len))
    negatives = torch.randint(0, data.n_items + 1, (cfg.n_negatives,), device=device, generator=gen)  # (S,)
    u = torch.rand(len(target), device=device, generator=gen)                 # (B,) BaM's uniform draws
    interests, attention = model(history, mask, gen)                          # (B, N, d), (B, N, L)
    loss = bam_loss(model, cfg, interests, attention, target, negatives, u, tau)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train(cfg, data, out_dir=None, log=print, on_step=None, extra=None):
    """Train, validate every `eval_every` iterations, stop early, restore the best model and test it.
    With `out_dir`, writes checkpoint.pt (best model), last.pt (resumable state) and metrics.json,
    and resumes from last.pt when it is there."""
    check_config(cfg)
    if not len(data.trainable):
        raise InputError(f"{data.name}: no user has 4 or more interactions, so there is nothing to train on")
    device = resolve_device(cfg)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # the model's initialisation, as the official setup_seed does first
    model = build_model(cfg, data.n_items).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    rng = np.random.default_rng(cfg.seed)                                     # batches, validation users
    gen = torch.Generator(device).manual_seed(cfg.seed)                       # negatives, BaM draws, routing
    paths = {n: os.path.join(out_dir, n) for n in ("checkpoint.pt", "last.pt", "metrics.json")} if out_dir else {}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    st = restore_state(paths["last.pt"], cfg, data, model, opt, rng, gen) if out_dir else None
    if st:
        log(f"resuming {out_dir} at iteration {st['it']}")
    st = st or dict(it=0, best=-1.0, best_iter=0, trials=0, history=[], seconds=0.0, loss_sum=0.0, loss_n=0)
    t0, best = time.time() - st["seconds"], None
    try:
        while st["it"] < cfg.max_iters and st["trials"] <= cfg.patience:
            st["loss_sum"] += train_step(model, opt, cfg, data, rng, gen, tau_at(cfg, st["it"]), device)
            st["it"], st["loss_n"] = st["it"] + 1, st["loss_n"] + 1
            if on_step:
                on_step(st["it"])
            if st["it"] % cfg.eval_every == 0 or st["it"] == cfg.max_iters:
                validate(model, data, cfg, rng, st, t0, log)
                if st["best_iter"] == st["it"]:
                    best = checkpoint(model, cfg, data, st)
                    if out_dir:
                        atomic_save(best, paths["checkpoint.pt"])
                if out_dir:
                    save_state(paths["last.pt"], cfg, data, model, opt, rng, gen, st)
    except KeyboardInterrupt:
        saved = out_dir and os.path.exists(paths["checkpoint.pt"])
        log(f"interrupted at iteration {st['it']}; " + (f"the best checkpoint so far (iteration {st['best_iter']}) is "
            f"{paths['checkpoint.pt']}; rerun the same command to resume" if saved else "no checkpoint yet"))
        raise
    if out_dir and os.path.exists(paths["checkpoint.pt"]):  # also a best found before a resume
        best = torch.load(paths["checkpoint.pt"], map_location="cpu", weights_only=False)
    if best:
        model.load_state_dict(best["model"])
    return model, finish(model, cfg, data, st, t0, device, paths.get("metrics.json"), extra)


def validate(model, data, cfg, rng, st, t0, log):
    """One validation: record it, keep the best Recall@10 (strictly better), count the patience."""
    rows = rng.integers(0, len(data.users), cfg.valid_users) if cfg.valid_users else None   # official: with replacement
    valid = evaluate(model_scorer(model.eval()), data, "valid", cfg, rows)[0]
    model.train()
    loss = float(st["loss_sum"]) / max(1, st["loss_n"])
    st["loss_sum"], st["loss_n"], st["seconds"] = 0.0, 0, time.time() - t0
    better = valid["recall@10"] > st["best"]
    if better:
        st["best"], st["best_iter"], st["trials"] = valid["recall@10"], st["it"], 0
    else:
        st["trials"] += 1
    st["history"].append(dict(iter=st["it"], loss=loss, seconds=round(st["seconds"], 2), **valid))
    log(f"iter {st['it']}: loss {loss:.4f}, valid recall@10 {valid['recall@10']:.4f}, "
        f"ndcg@10 {valid['ndcg@10']:.4f}{' (best)' if better else ''}")


def finish(model, cfg, data, st, t0, device, metrics_path, extra):
    """Test the (best) model and gather the results; written to metrics.json when there is a path."""
    test = evaluate(model_scorer(model.eval()), data, "test", cfg)[0]
    best = next((h for h in st["history"] if h["iter"] == st["best_iter"]), {})
    result = dict(test=test, valid={k: best.get(k) for k in test}, iters=st["it"], best_iter=st["best_iter"],
                  seconds=round(time.time() - t0, 2), config=asdict(cfg), history=st["history"],
                  data=dict(name=data.name, users=len(data.users), items=data.n_items, interactions=data.n_interactions,
                            skipped_users=data.skipped, fingerprint=data.fingerprint),
                  device=device, torch=torch.__version__, finished=True, **(extra or {}))
    if metrics_path:
        atomic_json(result, metrics_path)
    return result


def checkpoint(model, cfg, data, st):
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return dict(format="bam-1", config=asdict(cfg), n_items=data.n_items, iter=st["it"], data=data.name,
                fingerprint=data.fingerprint, model=weights)

# -----------------------------------------------------------------------------
# Standalone: python bam_minimal.py DATA [--field=value ...] [--out=DIR]


def parse_args(argv):
    """DATA [--field=value ...] [--out=DIR] -> (Config, data path, out dir), nanoGPT-style."""
    cfg, out, data = Config(), None, [a for a in argv if not a.startswith("--")]
    for key, _, value in (a[2:].partition("=") for a in argv if a.startswith("--")):
        if key == "out":
            out = value
        elif key in {f.name for f in fields(Config)}:
            kind = type(getattr(cfg, key))
            try:
                setattr(cfg, key, value.lower() in ("", "1", "true", "yes") if kind is bool else kind(value))
            except ValueError:
                raise InputError(f"--{key}={value}: not a valid {kind.__name__}") from None
        else:
            raise InputError(f"--{key}: unknown option (fix: --out or a Config field, e.g. --selection=hard)")
    if len(data) != 1:
        raise InputError("expected one data file (fix: python bam_minimal.py DATA [--field=value ...])")
    return cfg, data[0], out or f"runs/{os.path.basename(data[0]).split('.')[0]}-{cfg.model}-{cfg.selection}"


if __name__ == "__main__":
    try:
        cfg, data_path, out = parse_args(sys.argv[1:])
        data = Dataset(read_official(data_path), name=data_path)
        print(f"{len(data.users)} users ({data.skipped} with < 3 interactions skipped), {data.n_items} items; "
              f"device {resolve_device(cfg)}; writing {out}")
        print("test", train(cfg, data, out)[1]["test"])
    except InputError as e:
        sys.exit(print(f"error: {e}", file=sys.stderr) or 2)
    except KeyboardInterrupt:
        sys.exit(130)
