"""bam_minimal.py: BaM, balanced interest learning for multi-interest recommendation, in one file.
  [KDD24] Lee, Yun and Kang. Balanced Interest Learning for Multi-interest Recommendation. KDD '24.
  [BD24]  Lee, Yun and Kang. Towards True Multi-interest Recommendation. IEEE BigData '24.

A multi-interest encoder (ComiRec-SA, MIND) turns a history into N interest vectors, and training scores the target
with ONE of them. The old rule takes the argmax interest (`hard`), and one interest ends up taking all the training;
BaM samples it from softmax(tau * M_u^T e_target) (`bam`), so every interest is trained. Evaluation ranks every item
by its best interest (leave-one-out). Sections: config, data, models, selection, loss, evaluation, training, then
plumbing. torch and numpy only; CUDA when there is one; data parallel under torchrun. Alone: python bam_minimal.py
data.txt; `cli.py train` adds data formats, progress, plots, exact resume and run locks.
"""
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn


# -----------------------------------------------------------------------------
# Config. Defaults are the official ones (github.com/jlunits2/BaM, src/main.py) except `selection` (official: hard)
# and docs/differences.md: `valid_users`, `valid_sample` (official: 1,000 random users), `history_mask` (`official`).
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
    valid_users: int = 0          # 0: the fixed users below (deterministic); 1000: the official random sample
    valid_sample: int = 5000      # validate this many users, drawn once from the seed (0: every user)
    history_mask: str = "exclude"  # exclude | official | none
    protocol: str = "loo"         # loo (leave-one-out, [KDD24]) | one that bam_protocols registers (cli.py): comirec
    routing_iters: int = 3        # MIND
    n_blocks: int = 2             # SASRec
    dropout: float = 0.2          # SASRec
    seed: int = 2021
    device: str = "auto"          # auto | cpu | cuda

CHOICES = dict(model=("comirec", "mind", "sasrec"), selection=("hard", "bam", "bam-l", "expected"),
               tau_schedule=("constant", "hard-to-soft", "soft-to-hard"), device=("auto", "cpu", "cuda"),
               history_mask=("exclude", "official", "none"), loss=("sampled", "full"))
POSITIVE = ("dim", "n_interests", "seq_len", "batch_size", "n_negatives", "max_iters", "eval_every", "linear_size",
            "routing_iters", "n_blocks", "tau_anneal_iters", "lr")
NON_NEGATIVE = ("tau", "tau_hard", "patience", "valid_users", "valid_sample", "remi_beta", "remi_lambda",
                "weight_decay", "seed")

class InputError(ValueError):
    """Bad input. The message is one line that names the file, the line and the fix. Exit code 2."""

class TrainingError(Exception):
    """A training that failed, not bad input: the loss or the weights are not finite. One line, the fix; exit code 3."""


# -----------------------------------------------------------------------------
# Data: per-user sequences, the leave-one-out split, and vectorised batches.
def read_official(path):
    """One `user item` pair per line (extra fields ignored, as officially), in time order -> {user: [items]}."""
    seqs = {}
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # -sig: a byte-order mark is not an id
        for n, line in enumerate(f, 1):
            if not (parts := line.split()):
                continue
            try:
                user, item = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                raise InputError(f"{path}:{n}: `{line.strip()[:30]}` is not `user item` (fix: integer ids)") from None
            if not (0 <= user < 1 << 31 and 0 < item < 1 << 31):
                raise InputError(f"{path}:{n}: id out of range (fix: ids below 2^31; items from 1, 0 is padding)")
            seqs.setdefault(user, []).append(item)
    return seqs

class Dataset:
    """All sequences in one flat array: row r owns items[start[r]:start[r + 1]]; users with < 3 are skipped."""

    def __init__(self, seqs, n_items=None, name="data"):
        kept = {u: seqs[u] for u in sorted(seqs) if len(seqs[u]) >= 3}          # in user order
        if not kept:
            raise InputError(f"{name}: no user has 3 or more interactions (fix: 3 per user; one line per user: cli.py)")
        self.name, self.skipped = name, len(seqs) - len(kept)
        self.users = np.array(list(kept), dtype=np.int64)                       # (U,)
        self.lengths = np.array([len(s) for s in kept.values()], dtype=np.int64)  # (U,)
        self.start = np.concatenate([[0], np.cumsum(self.lengths)])            # (U + 1,)
        self.items = np.fromiter((i for s in kept.values() for i in s), np.int64, self.start[-1])  # (T,)
        self.n_items = int(n_items or max(max(s) for s in seqs.values()))      # the official item_count
        self.trainable, self.n_interactions = np.flatnonzero(self.lengths >= 4), int(self.lengths.sum())  # k >= 1

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

class MultiInterestModel(nn.Module):
    """The item table (row 0 is padding) and BaM_l's maps. A subclass encodes: forward(history, mask, gen=None,
    routing=None) -> interests (B, N, d), attention (B, N, L); gen: a generator; routing: MIND's initial logits."""

    def __init__(self, cfg, n_items):
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)    # (I + 1, d)
        if cfg.selection == "bam-l":  # [BD24] Eq. (9): l1, l2 map interests and target to d'
            self.l1, self.l2 = nn.Linear(cfg.dim, cfg.linear_size), nn.Linear(cfg.dim, cfg.linear_size)

    def reset_parameters(self):
        # Official: kaiming-normal matrices, padding row 0 too (a trained, rankable negative); zero biases (BaM_l).
        for p in self.parameters():
            (nn.init.kaiming_normal_ if p.dim() > 1 else nn.init.zeros_)(p)

class ComiRecSA(MultiInterestModel):
    """ComiRec-SA (Cen et al., KDD '20): N attention heads over the history, one per interest."""

    def __init__(self, cfg, n_items):
        super().__init__(cfg, n_items)
        self.position_embedding = nn.Parameter(torch.empty(1, cfg.seq_len, cfg.dim))   # (1, L, d)
        self.linear1 = nn.Sequential(nn.Linear(cfg.dim, 4 * cfg.dim, bias=False), nn.Tanh())
        self.linear2 = nn.Linear(4 * cfg.dim, cfg.n_interests, bias=False)
        self.reset_parameters()

    def forward(self, history, mask, gen=None, routing=None):
        """Self-attentive interests: A = softmax_L(W2 tanh(W1 (H + P))), interests = A H."""
        h = self.embeddings(history) * mask[..., None]                        # (B, L, d)
        # The MLP on real positions only (official: on all, then overwritten): the same numbers, fewer FLOPs.
        real = mask > 0                                                        # (B, L)
        logits = h.new_full((*mask.shape, self.cfg.n_interests), MASK)       # (B, L, N)
        logits[real] = self.linear2(self.linear1((h + self.position_embedding)[real]))  # (P, N)
        attention = logits.transpose(1, 2).softmax(-1)                        # (B, N, L), over the sequence
        return attention @ h, attention                                       # (B, N, d), (B, N, L)

class CapsuleNetwork(nn.Module):
    """MIND's dynamic routing (Li et al., CIKM '19), as in the official code."""

    def __init__(self, cfg):
        super().__init__()
        # `relu` is unused (the official runs pass relu_layer=False) but its weight is in their checkpoints.
        self.relu = nn.Sequential(nn.Linear(cfg.dim, cfg.dim, bias=False), nn.ReLU())
        self.linear = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.iters = cfg.routing_iters

    def forward(self, h, mask, logits):
        u = self.linear(h)                                                     # (B, L, d), shared by all N capsules
        keep = mask[:, None] > 0                                               # (B, 1, L)
        for i in range(self.iters):
            # Softmax over the sequence, then zero at padding without renormalising (official).
            w = torch.where(keep, logits.softmax(-1), 0.0)                    # (B, N, L)
            if i == self.iters - 1:  # the gradient flows through the last pass only
                return squash(w @ u), w                                        # (B, N, d), (B, N, L)
            z = squash(w @ u.detach())                                         # (B, N, d)
            logits = logits + z @ u.detach().transpose(1, 2)                  # (B, N, L)

def squash(z):  # the capsule non-linearity: |z|^2 / (1 + |z|^2) * z / |z|
    norm2 = (z * z).sum(-1, keepdim=True)                                      # (B, N, 1)
    return norm2 / (1 + norm2) / torch.sqrt(norm2 + 1e-9) * z                 # (B, N, d)

class MIND(MultiInterestModel):
    def __init__(self, cfg, n_items):
        super().__init__(cfg, n_items)
        self.capsule_network = CapsuleNetwork(cfg)
        self.reset_parameters()

    def forward(self, history, mask, gen=None, routing=None):
        """`routing`: the initial routing logits (B, N, L); None draws them from `gen` (official: fresh ones on
        every forward pass, at test time too; evaluate passes routing_noise's, the same on any device)."""
        h = self.embeddings(history) * mask[..., None]                        # (B, L, d)
        if routing is None:
            routing = torch.randn(len(h), self.cfg.n_interests, h.shape[1], device=h.device, dtype=h.dtype,
                                  generator=gen)                               # (B, N, L)
        return self.capsule_network(h, mask, torch.as_tensor(routing).to(h))  # (B, N, d), (B, N, L)

MODELS = dict(comirec=ComiRecSA, mind=MIND)  # bam_experiments.sasrec.register() adds SASRec

def build_model(cfg, n_items):
    return MODELS[cfg.model](cfg, n_items)  # check_config has made sure it is there


# -----------------------------------------------------------------------------
# Interest selection: which interest scores the target.
def interest_logits(model, selection, interests, target_emb):
    """Each interest's correlation with the target, [KDD24] Eq. (1): M_u^T e_target; BaM_l after two maps to d'."""
    if selection == "bam-l":
        interests, target_emb = model.l1(interests), model.l2(target_emb)     # (B, N, d'), (B, d')
    return (interests @ target_emb[..., None])[..., 0]                         # (B, N)

def select_interest(logits, selection, tau, u):
    """-> the selected index (B,) and the probabilities (B, N). `hard`: [KDD24] Eq. (1), the first argmax.
    `bam`, `bam-l`: [KDD24] Eq. (3), n ~ P(m_u^n | i+) = softmax(tau * M_u^T e_target), drawn by
    inverting the CDF at u ~ U[0, 1), so that a given u gives the same draw in any framework."""
    probs = torch.softmax(tau * logits, -1)                                    # (B, N)
    if selection == "hard":
        return logits.argmax(-1), probs
    index = (probs.cumsum(-1) <= u[:, None]).sum(-1)                           # (B,) the first n with CDF > u
    return index.clamp(max=logits.shape[-1] - 1), probs                        # clamp: CDF rounding below u

def tau_at(cfg, it):
    """The temperature at iteration `it`: constant, or a linear anneal between tau_hard and tau."""
    if cfg.tau_schedule == "constant":
        return cfg.tau
    a, b = (cfg.tau_hard, cfg.tau) if cfg.tau_schedule == "hard-to-soft" else (cfg.tau, cfg.tau_hard)
    return a + (b - a) * min(1.0, it / max(1, cfg.tau_anneal_iters))


# -----------------------------------------------------------------------------
# Loss: sampled softmax over shared uniform negatives (official), or a full softmax.
def item_scores(query, target, negatives, item_emb, loss):
    """query (B, K, d): the selected interest (K = 1) or all -> target (B, K), negative scores (B, K, S).
    `full` uses every item but the target and padding 0 as a negative."""
    pos = (query * item_emb[target][:, None]).sum(-1)                         # (B, K)
    if loss == "sampled":
        return pos, query @ item_emb[negatives].T                              # (B, K), (B, K, S)
    neg = query @ item_emb.T                                                   # (B, K, I + 1)
    drop = nn.functional.one_hot(target, neg.shape[-1]).bool()[:, None]       # (B, 1, I + 1)
    drop[..., 0] = True
    return pos, neg.masked_fill(drop, -math.inf)                               # (B, K), (B, K, I + 1)

def softmax_loss(pos, neg, beta=0.0):
    """-log softmax of the target among [target, negatives], no accidental-hit removal (official); the
    uniform proposal's log q cancels. REMI (Xie et al., RecSys '23), beta > 0: negative j is reweighted by
    w_j = S softmax(beta * s)_j, mean 1, and the weights stay in the graph, as in the REMI and BaM code."""
    neg = neg + math.log(neg.shape[-1]) + torch.log_softmax(beta * neg, -1) if beta else neg  # (..., S)
    return torch.logsumexp(torch.cat([pos[..., None], neg], -1), -1) - pos        # (...)

def routing_regulariser(attention, dim):
    """REMI's routing regularisation: sum_b ||diag(Cov(A_b))||^2, A_b (N, L) centred, Cov = A A^T / d (REMI's code)."""
    centred = attention - attention.mean(-1, keepdim=True)                    # (B, N, L)
    return (((centred * centred).sum(-1) / dim) ** 2).sum()                  # ()

def bam_loss(model, cfg, interests, attention, target, negatives, u, tau):
    """The training loss of one batch: select an interest, score the target against the negatives."""
    item_emb = model.embeddings.weight                                         # (I + 1, d)
    logits = interest_logits(model, cfg.selection, interests, item_emb[target].detach())  # (B, N)
    index, probs = select_interest(logits, cfg.selection, tau, u)             # (B,), (B, N)
    if cfg.selection == "expected":  # beyond the papers: every interest's loss, weighted by its probability
        pos, neg = item_scores(interests, target, negatives, item_emb, cfg.loss)   # (B, N), (B, N, S)
        loss = (probs.detach() * softmax_loss(pos, neg, cfg.remi_beta)).sum(-1)    # (B,)
    else:
        selection = interests[torch.arange(len(index), device=index.device), index][:, None]  # (B, 1, d)
        pos, neg = item_scores(selection, target, negatives, item_emb, cfg.loss)   # (B, 1), (B, 1, S)
        loss = softmax_loss(pos, neg, cfg.remi_beta)[:, 0]                   # (B,)
    if cfg.multi_loss:  # [BD24] Eq. (10)-(13): an item's score over all interests is logsumexp_n m_u^n . e_i
        pos, neg = item_scores(interests, target, negatives, item_emb, cfg.loss)   # (B, N), (B, N, S)
        loss = loss + softmax_loss(pos.logsumexp(1), neg.logsumexp(1), cfg.remi_beta)  # (B,)
    loss = loss.mean()                                                         # ()
    return loss + cfg.remi_lambda * routing_regulariser(attention, cfg.dim) if cfg.remi_lambda else loss


# -----------------------------------------------------------------------------
# Evaluation: full-item ranking, leave-one-out, one target per user.
@torch.no_grad()
def evaluate(scorer, data, split, cfg, rows=None, k_top=0, block=None):
    """Rank the `split` target of each user in `rows` (default: every user) among all items: windows -> score ->
    mask -> rank, a block of users at a time (MIND: routing_noise, in Plumbing at the end). -> (metrics, ranks (U,),
    top-k ids (U, k_top) or None). metrics["nonfinite_users"]: users with a NaN or inf score (before the mask)."""
    device = resolve_device(cfg)
    rows = np.arange(len(data.users)) if rows is None else np.asarray(rows)
    k = split_targets(data, split)[rows]                                       # (U,) target positions
    ranks, tops, bad = [np.zeros(0, np.int64)], [np.zeros((0, min(k_top, data.n_items + 1)), np.int64)], [[]]
    for r, kb in user_blocks(cfg, data, rows, k, block):  # this process's users (all, without torchrun)
        history, mask, target = (torch.as_tensor(a, device=device) for a in windows(data, r, kb, cfg.seq_len))
        full = torch.as_tensor(windows(data, r, kb, int(kb.max()))[0], device=device)  # (b, max k) every earlier item
        scores = scorer(history, mask, routing_noise(cfg, r) if cfg.model == "mind" else None)  # (b, I + 1)
        bad.append(nonfinite_rows(scores))                                     # (b,)
        scores = mask_history(scores, full, history, cfg.history_mask)        # (b, I + 1)
        ranks.append(target_rank(scores, target).cpu().numpy())               # (b,)
        if k_top:
            tops.append(top_k(scores, k_top).cpu().numpy())                    # (b, k_top)
    ranks, tops, bad = gather_users(ranks, tops, bad)  # (U,), (U, k_top), (U,) of every process, in user order
    return dict(metrics_from_ranks(ranks), nonfinite_users=int(bad.sum())), ranks, tops if k_top else None

def model_scorer(model):
    """Scores of every item for a block of histories: an item's best score over the interests."""
    def score(history, mask, routing):
        interests = model(history, mask, routing=routing)[0]                   # (b, N, d)
        return (interests @ model.embeddings.weight.T).amax(1)                # (b, I + 1)
    return score

def mask_history(scores, full_history, window, mode):
    """In place. `exclude`: every item before the target gets -inf (padding 0 too, and in `none`).
    `official`: the items of the model's window, padding 0 included, get score 0, as the official code does."""
    if mode == "official":
        return scores.scatter_(1, window, 0.0)
    if mode == "exclude":
        scores.scatter_(1, full_history, -math.inf)  # full_history is 0-padded: item 0 is masked too
    scores[:, 0] = -math.inf
    return scores

def target_rank(scores, target):
    """In place: the 0-based rank of each target, the items scored higher plus the equal ones with a lower id. Another
    item's NaN or +inf ranks ABOVE it (an overflow never helps); a non-finite target misses (I + 1); -inf: the mask."""
    scores.nan_to_num_(nan=math.inf, posinf=math.inf, neginf=-math.inf)      # (b, I + 1) NaN counts as +inf
    s = scores.gather(1, target[:, None])                                      # (b, 1)
    # sign: +1 above s, 0 tied, -1 below; two sums count both, in one pass over the scores.
    sign = (scores - s).sign_() if scores.shape[1] < 1 << 24 else (scores.double() - s.double()).sign_()
    total, spread = sign.sum(1), sign.abs_().sum(1)                            # above - below, above + below
    rank = ((total + spread) / 2).long()                                       # (b,) items scored above s
    tied = scores.shape[1] - spread > 1                                        # (b,) others equal to s
    if tied.any():  # rare: count the equal items with a lower id
        ids = torch.arange(scores.shape[1], device=scores.device)
        rank[tied] += ((scores[tied] == s[tied]) & (ids < target[tied, None])).sum(1)
    return torch.where(s[:, 0].isfinite(), rank, scores.shape[1])            # (b,)

def nonfinite_rows(scores):
    """(b,) bool: the rows that hold a NaN or infinite score. A finite row sum clears a row at once."""
    suspect = ~scores.sum(1).isfinite()                                        # (b,) NaN, inf, or a sum overflow
    return suspect.index_put((suspect,), ~scores[suspect].isfinite().all(1)).cpu().numpy()  # (b,)

def top_k(scores, k):
    """The top-k ids per row by target_rank's rule: NaN = +inf first, -inf last; stable: the lower id first on ties."""
    return scores.masked_fill(scores.isnan(), math.inf).argsort(dim=1, descending=True, stable=True)[:, :k]  # (b, k)

def metrics_from_ranks(rank, ks=(10, 20)):
    """Recall@K (hit rate, one target per user) and nDCG@K = 1 / log2(rank + 2) for a hit."""
    rank = np.asarray(rank, dtype=np.float64)
    out = {}
    for k in ks:
        hit = rank < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(rank + 2), 0.0).mean())
    return out


# -----------------------------------------------------------------------------
# Training: iterations, validation, early stopping, best-checkpoint restore. A protocol is each split's users, the
# sampler and the evaluator: leave-one-out's are this file's; bam_protocols registers the others (ComiRec's, REMI's).
PROTOCOLS = dict(loo=dict(users=lambda data, split: np.arange(len(data.users)), batch=train_batch, evaluate=evaluate))
@dataclass
class TrainState:
    """The training loop's state; a run folder saves it by name in last.pt, and a resumed run goes on from it."""
    it: int = 0                   # iterations done
    best: float = -1.0            # the best validation Recall@10 so far
    best_iter: int = 0
    trials: int = 0               # validations since the best one
    history: list = field(default_factory=list)   # one dict per validation
    seconds: float = 0.0          # training time so far
    losses: list = field(default_factory=list)    # the step losses since the last validation

def train_step(model, opt, cfg, data, rng, gen, tau, device):
    """One optimisation step on a fresh batch, leave-one-out's from train_batch (Data, above). -> the loss, a float."""
    sample = train_batch if cfg.protocol == "loo" else PROTOCOLS[cfg.protocol]["batch"]  # -> (B, L), (B, L), (B,)
    history, mask, target = (torch.as_tensor(a, device=device) for a in sample(data, rng, cfg.batch_size, cfg.seq_len))
    negatives = torch.randint(0, data.n_items + 1, (cfg.n_negatives,), device=device, generator=gen)  # (S,)
    u = torch.rand(len(target), device=device, generator=gen)                 # (B,) BaM's uniform draws
    interests, attention = model(history, mask, gen)                          # (B, N, d), (B, N, L)
    loss = bam_loss(model, cfg, interests, attention, target, negatives, u, tau)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if dist.is_initialized():  # data parallel, as DistributedDataParallel: step with the gradients of all
        for p in (p for p in model.parameters() if p.grad is not None):
            dist.all_reduce(p.grad.div_(dist.get_world_size()))  # the sum of g / P: their mean
    opt.step()
    return loss.item()

def train(cfg, data, folder=None, log=print, on_step=lambda it: None):
    """Train, validate every `eval_every` iterations, stop early, restore the best model and test it.
    -> (model, result). `folder` (bam_runs.run_folder.RunFolder) resumes a run and writes its files, atomically."""
    check_config(cfg)
    if not len(data.trainable):
        raise InputError(f"{data.name}: no user has 4 or more interactions, so there is nothing to train on")
    device = resolve_device(cfg)
    torch.manual_seed(cfg.seed)  # the model's initialisation, as the official setup_seed does first
    model = build_model(cfg, data.n_items).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    rank = dist.get_rank() if dist.is_initialized() else 0  # torchrun: process 0 keeps a single process's seed
    seed = cfg.seed if rank == 0 else int(np.random.SeedSequence([cfg.seed, rank]).generate_state(1)[0])
    rng = np.random.default_rng(seed)                                         # batches, validation users
    gen = torch.Generator(device).manual_seed(seed)                           # negatives, BaM draws, routing
    st, best = (folder.resume(model, opt, rng, gen) if folder else None) or (TrainState(), None)
    t0 = time.time() - st.seconds
    while st.it < cfg.max_iters and st.trials <= cfg.patience:
        loss = train_step(model, opt, cfg, data, rng, gen, tau_at(cfg, st.it), device)
        st.it += 1
        if not math.isfinite(loss):
            raise TrainingError(f"iteration {st.it}: the loss is {loss} (fix: --fresh with a lower --lr)")
        st.losses.append(loss)
        on_step(st.it)
        if st.it % cfg.eval_every == 0 or st.it == cfg.max_iters:
            if validate(model, data, cfg, rng, st, t0, log):
                best = checkpoint(model, cfg, data, st.it)
                if folder:
                    folder.save_best(best)
            if folder:
                folder.save_state(model, opt, rng, gen, st)
    if best:
        model.load_state_dict(best["model"])
    result, ranks = finish(model, cfg, data, st, t0, device)
    if folder:
        folder.finish(result, ranks)  # ranks: each user's, for paired comparisons (bam_evidence)
    return model, result

def validate(model, data, cfg, rng, st, t0, log):
    """One validation: record it and count the patience. True when its Recall@10 is strictly the best."""
    pool = (protocol := PROTOCOLS[cfg.protocol])["users"](data, "valid")      # (P,) the validation users
    fixed = np.random.default_rng([cfg.seed, 1]).permutation(pool)[:cfg.valid_sample or None]  # (V,)
    rows = [pool[rng.integers(0, len(pool), cfg.valid_users)] if cfg.valid_users else np.sort(fixed)]  # official
    if dist.is_initialized():  # all processes validate process 0's users, and so stop at the same time
        dist.broadcast_object_list(rows)
    valid = protocol["evaluate"](checked_scorer(model, st.it, "validation"), data, "valid", cfg, rows[0])[0]
    model.train()
    loss, st.losses, st.seconds = sum(st.losses) / max(1, len(st.losses)), [], time.time() - t0
    if better := valid["recall@10"] > st.best:
        st.best, st.best_iter = valid["recall@10"], st.it
    st.trials = 0 if better else st.trials + 1
    st.history.append(dict(iter=st.it, loss=loss, seconds=round(st.seconds, 2), **valid))
    log(f"iter {st.it}: loss {loss:.4f}, valid recall@10 {valid['recall@10']:.4f}, "
        f"ndcg@10 {valid['ndcg@10']:.4f}{' (best)' if better else ''}")
    return better

def checked_scorer(model, it, before):
    """model_scorer of finite weights (checked before a validation or the test, so before any save)."""
    if bad := [k for k, v in model.state_dict().items() if not v.isfinite().all()]:
        raise TrainingError(f"iteration {it}: {bad[0]} is not finite at {before}, not saved (fix: --fresh, lower --lr)")
    return model_scorer(model.eval())

def finish(model, cfg, data, st, t0, device):
    """Test the (best) model -> (the results, each user's test rank (U,))."""
    test, ranks, _ = PROTOCOLS[cfg.protocol]["evaluate"](checked_scorer(model, st.it, "the test"), data, "test", cfg)
    best = next((h for h in st.history if h["iter"] == st.best_iter), {})
    return dict(test=test, valid={k: best.get(k) for k in test}, iters=st.it, best_iter=st.best_iter,
                seconds=round(time.time() - t0, 2), config=asdict(cfg), history=st.history,
                data=dict(name=data.name, users=len(data.users), items=data.n_items, interactions=data.n_interactions,
                          skipped_users=data.skipped), device=device, torch=torch.__version__, finished=True), ranks

def checkpoint(model, cfg, data, it):  # the model, and what rebuilding and evaluating it needs
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return dict(format="bam-1", config=asdict(cfg), n_items=data.n_items, iter=it, data=data.name, model=weights)


# -----------------------------------------------------------------------------
# Plumbing: the config check, the device, blocks of users, torchrun's shares, MIND's evaluation noise (for twin parity).
def check_config(cfg):
    """Refuse a config that cannot run, naming the first bad option."""
    bad = [f"{k}={getattr(cfg, k)} is not one of {', '.join(v)}" for k, v in dict(CHOICES, protocol=PROTOCOLS).items()
           if getattr(cfg, k) not in v]  # the protocols: this file's leave-one-out, and those cli.py registers
    bad += [f"{k}={getattr(cfg, k)} must be a finite number" for k in POSITIVE + NON_NEGATIVE
            if not math.isfinite(getattr(cfg, k))]
    bad += [f"{k}={getattr(cfg, k)} must be positive" for k in POSITIVE if getattr(cfg, k) <= 0]
    bad += [f"{k}={getattr(cfg, k)} must be 0 or more" for k in NON_NEGATIVE if getattr(cfg, k) < 0]
    bad += [why for broken, why in (  # past tau = 1e4, BaM's draw silently becomes "always interest 0"
        (max(cfg.tau, cfg.tau_hard) > 1e4, f"tau={cfg.tau}, tau_hard={cfg.tau_hard} must be at most 1e4"),
        (not 0 <= cfg.dropout < 1, f"dropout={cfg.dropout} must be in [0, 1)"),
        (cfg.device == "cuda" and not torch.cuda.is_available(), "device=cuda, but torch sees no GPU (use auto)"),
        (cfg.remi_lambda and cfg.model != "comirec", "remi_lambda > 0 acts on ComiRec-SA's attention: model comirec"),
        (cfg.remi_beta and cfg.loss == "full", "remi_beta > 0 reweights sampled negatives: loss sampled"),
        (cfg.model == "sasrec" and cfg.n_interests != 1, "model sasrec has one interest: n_interests 1"),
        (cfg.seed >= 1 << 63, f"seed={cfg.seed} must be below 2^63"),
        (cfg.model not in MODELS, f"model={cfg.model} comes with cli.py (bam_experiments.sasrec)")) if broken]
    if bad:
        raise InputError(f"bad config: {bad[0]} (fix: change that option; --help shows the defaults)")

def resolve_device(cfg):
    return cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"

def user_blocks(cfg, data, rows, k, block=None):
    """This process's share of (rows, k), in blocks whose scores (b, N, I + 1) fit a budget and b * max k <= 2^21."""
    budget = (1 << 28 if resolve_device(cfg) == "cuda" else 1 << 24) // (cfg.n_interests * (data.n_items + 1))
    block = block or max(16, min(8192, budget))
    rank, size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    i, end = len(rows) * rank // size, len(rows) * (rank + 1) // size
    while i < end:
        j = min(i + block, end)
        while j - i > 1 and (j - i) * int(k[i:j].max()) > 1 << 21:
            j = i + (j - i) // 2
        yield rows[i:j], k[i:j]
        i = j

def gather_users(*parts):
    """Each part's blocks, joined; under torchrun every process's, in user order (exact: integers and flags)."""
    shares = [[np.concatenate(p) for p in parts]]
    if dist.is_initialized():
        shares = [None] * dist.get_world_size()
        dist.all_gather_object(shares, [np.concatenate(p) for p in parts])
    return [np.concatenate(x) for x in zip(*shares)]

def routing_noise(cfg, rows):
    """MIND's evaluation routing logits (b, N, L), counter-based: SplitMix64 (Steele et al., OOPSLA '14) seeded with
    cfg.seed at 2c + 1, 2c + 2 for c = (row, n, l), then Box-Muller: a row's numbers, whatever the block or process."""
    size = cfg.n_interests * cfg.seq_len
    c = 2 * (np.asarray(rows)[:, None] * size + np.arange(size)).astype(np.uint64)  # (b, N L) even positions
    z = np.uint64(cfg.seed) + (c + np.uint64([[[1]], [[2]]])) * np.uint64(0x9E3779B97F4A7C15)  # (2, b, N L)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, 1)):  # the finaliser
        z = (z ^ (z >> np.uint64(shift))) * np.uint64(mult)                   # (2, b, N L), wrapping uint64
    u = (z >> np.uint64(11)) * 2.0 ** -53                                      # (2, b, N L) uniform in [0, 1)
    return (np.sqrt(-2 * np.log1p(-u[0])) * np.cos(2 * np.pi * u[1])).reshape(-1, cfg.n_interests, cfg.seq_len)


# -----------------------------------------------------------------------------
# Standalone: python bam_minimal.py DATA [--field=value ...] [--out=DIR]; exit code 2: bad input, 3: training failed
def parse_args(argv):
    """DATA [--field=value ...] [--out=DIR] -> (Config, data path, out dir). A bare --flag means true."""
    cfg, data = Config(), [a for a in argv if not a.startswith("--")]
    out = next((a[len("--out="):] for a in argv if a.startswith("--out=")), None)
    truth = {"": True, "1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    for key, _, value in (a[2:].partition("=") for a in argv if a.startswith("--") and not a.startswith("--out=")):
        if key not in asdict(cfg):
            raise InputError(f"--{key}: unknown option (fix: --out or a Config field, e.g. --selection=hard)")
        kind = type(getattr(cfg, key))
        try:
            setattr(cfg, key, truth[value.lower()] if kind is bool else kind(value))
        except (KeyError, ValueError):
            raise InputError(f"--{key}={value}: not a {kind.__name__} (fix: e.g. --tau=0.5, --multi_loss)") from None
    if len(data) != 1:
        raise InputError("expected one data file (fix: python bam_minimal.py DATA [--field=value ...])")
    return cfg, data[0], out or f"runs/minimal-{os.path.basename(data[0]).split('.')[0]}-{cfg.model}-{cfg.selection}"

if __name__ == "__main__":
    try:
        cfg, data_path, out = parse_args(sys.argv[1:])
        data = Dataset(read_official(data_path), name=data_path)
        print(f"{len(data.users)} users, {data.n_items} items; device {resolve_device(cfg)}; writing {out}")
        os.makedirs(out, exist_ok=True)  # before training: a bad --out fails now, not after the run
        model, result = train(cfg, data)
        torch.save(checkpoint(model, cfg, data, result["best_iter"]), os.path.join(out, "checkpoint.tmp"))
        with open(os.path.join(out, "metrics.tmp"), "w") as f:
            json.dump(result, f, indent=2)
        for name in ("checkpoint.pt", "metrics.json"):  # each renamed once whole: a crash leaves no half file
            os.replace(os.path.join(out, name.split(".")[0] + ".tmp"), os.path.join(out, name))
        print("test", result["test"])
    except (InputError, OSError, TrainingError) as e:  # 3: the data and options were fine, the training was not
        sys.exit(print(f"error: {e}", file=sys.stderr) or (3 if isinstance(e, TrainingError) else 2))
    except KeyboardInterrupt:
        sys.exit(130)
