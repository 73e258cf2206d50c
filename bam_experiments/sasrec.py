"""
bam_experiments/sasrec.py: SASRec, the one-interest baseline of the paper's Table 2. It is not BaM, so it
lives here rather than in bam_minimal.py. `register()` adds it to bam_minimal.MODELS, after which
`Config(model="sasrec", n_interests=1)` trains, evaluates and loads like the other models. Importing
this module changes nothing: the command line (bam_cli), table's worker processes and bench.py call
register() once, at start.

    from bam_experiments import sasrec
    sasrec.register()
    python cli.py train --model sasrec --n-interests 1 --selection hard

Why it is written out by hand rather than with nn.TransformerEncoder: a training window holds few real
items (3.4 of 50 on average in Beauty) and, with causal attention, padding never changes a real
position. So every per-position layer (embedding, layer norms, feed-forward, dropout) runs on the real
positions only, packed into one (P, d) matrix, and attention runs on rows grouped by length (buckets),
each cut to its longest history. Dropout draws from the generator the training step passes in (each
process's own stream, saved in last.pt), only where it acts.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import bam_minimal as bm

# -----------------------------------------------------------------------------
# The model


class SASRec(bm.MultiInterestModel):
    """SASRec (Kang and McAuley, ICDM '18): causal self-attention, one interest from the last position.
    Layout after pmixer/SASRec.pytorch; histories are right-padded here, so positions count from the
    window's start."""

    def __init__(self, cfg, n_items):
        super().__init__(cfg, n_items)
        d = cfg.dim
        self.position_embedding = nn.Parameter(torch.empty(1, cfg.seq_len, d))   # (1, L, d)
        self.blocks = nn.ModuleList(SASRecBlock(d) for _ in range(cfg.n_blocks))
        self.last_norm = nn.LayerNorm(d)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def forward(self, history, mask, gen=None, routing=None):
        """`gen`: the training step's generator (dropout draws from it); `routing` is MIND's, and ignored."""
        gen = gen if self.training else None
        drop = Dropout(self.cfg.dropout if self.training else 0.0, gen)
        length = mask.sum(1).long()                                            # (B,) >= 1: k >= 1 always
        real = mask > 0                                                        # (B, L) right-padded
        # Positions count back from the most recent item (at seq_len - 1), as with SASRec's left padding.
        pos = (self.cfg.seq_len - length)[:, None] + torch.arange(mask.shape[1], device=mask.device)  # (B, L)
        # Both tables are read by embedding lookups: indexing would make the position table's gradient a
        # multi-threaded scatter-add, summed in a different order on every run (tests/test_losses.py).
        x = self.embeddings(history[real]) * self.cfg.dim ** 0.5 \
            + F.embedding(pos[real], self.position_embedding[0])                 # (P, d)
        x = drop(x)                                                            # (P, d)
        groups = Buckets(length, x.dtype)
        for block in self.blocks:
            x = block(x, groups, drop)                                         # (P, d)
        last = torch.cumsum(length, 0) - 1                                     # (B,) packed index of each last item
        return self.last_norm(x[last])[:, None], None                          # (B, 1, d)


class SASRecBlock(nn.Module):
    """Pre-norm attention and feed-forward, as pmixer's: x = LN(x) + Attn(LN(x), x, x); x = LN(x) + FFN(LN(x)).
    `attn` keeps nn.MultiheadAttention's parameters (in_proj_weight, out_proj) so that checkpoints load."""

    def __init__(self, d):
        super().__init__()
        self.attn_norm, self.ffn_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 1, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Identity(), nn.Linear(d, d))  # indices as before

    def forward(self, x, groups, drop):
        q = self.attn_norm(x)                                                  # (P, d)
        x = q + self.attention(q, x, groups, drop)                             # (P, d)
        x = self.ffn_norm(x)                                                   # (P, d)
        ffn = self.ffn                                                         # dropout after the ReLU and the output
        return x + drop(ffn[3](drop(ffn[1](ffn[0](x)))))                       # (P, d)

    def attention(self, q, x, groups, drop):
        """One causal head over each history: softmax(q k^T / sqrt(d)) v, rows in buckets of like length."""
        w, b = self.attn.in_proj_weight, self.attn.in_proj_bias                # (3d, d), (3d,)
        d = q.shape[1]
        qkv = torch.cat([F.linear(q, w[:d], b[:d]) / math.sqrt(d), F.linear(x, w[d:], b[d:])], 1)  # (P, 3d)
        outs = []
        for group, (n, width) in zip(qkv[groups.index].split(groups.sizes), groups.shapes):  # one gather for all
            qs, ks, vs = group.view(n, width, 3 * d).split(d, -1)              # (n, l, d) each
            a = drop(torch.baddbmm(groups.causal[width], qs, ks.transpose(1, 2)).softmax(-1))  # (n, l, l)
            outs.append((a @ vs).view(-1, d))                                  # (n * l, d)
        return self.attn.out_proj(torch.cat(outs)[groups.inverse])             # (P, d) back in packed order


class Buckets:
    """The rows of a batch grouped by history length, for attention. A group spans lengths (l / 2, l], and
    lengths 1 to 4 share one (each group costs a few small ops more, and such rows are cheap), so no row
    longer than 4 carries more than half padding and there are at most log2(L) groups. `index` (S,)
    lists, group after group, each row's packed positions 0..l-1 (past a row's length its last item again:
    causal attention never reads those slots); `inverse` (P,) maps every packed position to its slot;
    `causal[width]` (l, l) is 0 on and below the diagonal and -inf above it."""

    def __init__(self, length, dtype):
        device = length.device
        start = torch.cumsum(length, 0) - length                               # (B,) packed index of item 0
        top = torch.exp2(torch.log2(length.clamp(min=4).double()).ceil()).long()  # (B,) the power of two >= length
        index, self.sizes, self.shapes, self.causal = [], [], [], {}
        for size in torch.unique(top).tolist():
            rows = torch.nonzero(top == size)[:, 0]                            # (n,)
            n, width = len(rows), int(length[rows].max())
            t = torch.arange(width, device=device)                             # (l,)
            index.append((start[rows, None] + torch.minimum(t, length[rows, None] - 1)).view(-1))  # (n * l,)
            self.sizes.append(n * width)
            self.shapes.append((n, width))
            self.causal[width] = torch.full((width, width), -math.inf, dtype=dtype, device=device).triu(1)  # (l, l)
        self.index = torch.cat(index)                                          # (S,)
        slot = torch.arange(len(self.index), device=device)                    # (S,)
        first = torch.cat([torch.ones(1, dtype=torch.bool, device=device), self.index[1:] != self.index[:-1]])
        self.inverse = torch.empty(int(length.sum()), dtype=torch.long, device=device)  # (P,)
        self.inverse[self.index[first]] = slot[first]  # a repeated (padding) slot follows its real one


class Dropout:
    """Inverted dropout drawn from `gen` (the process's own stream): x * (u >= p) / (1 - p), u uniform."""

    def __init__(self, p, gen):
        self.p, self.gen = p, gen

    def __call__(self, x):
        if not self.p:
            return x
        keep = torch.rand(x.shape, device=x.device, generator=self.gen) >= self.p   # x's shape
        return x * keep / (1 - self.p)


def register():
    """Add SASRec to bam_minimal.MODELS (idempotent), so that build_model, train and the checkpoint
    loader can build it by its Config name."""
    bm.MODELS["sasrec"] = SASRec
