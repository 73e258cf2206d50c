"""
bam_tools/sasrec.py: SASRec, the one-interest baseline of the paper's Table 2. It is not BaM, so it
lives here rather than in bam_minimal.py; importing this module adds it to bam_minimal.MODELS, after
which `Config(model="sasrec", n_interests=1)` trains, evaluates and loads like the other models.

    import bam_tools.sasrec  # noqa: F401  (cli.py, table.py and checkpoints.py do this)
    python cli.py train --model sasrec --n-interests 1 --selection hard
"""
import torch
import torch.nn as nn

import bam_minimal as bm

# -----------------------------------------------------------------------------
# The model


class SASRec(bm.Encoder):
    """SASRec (Kang and McAuley, ICDM '18): causal self-attention, one interest from the last position.
    Layout after pmixer/SASRec.pytorch; histories are right-padded here, so positions count from the
    window's start."""

    def __init__(self, cfg, n_items):
        super().__init__(cfg, n_items)
        d = cfg.dim
        self.position_embedding = nn.Parameter(torch.empty(1, cfg.seq_len, d))   # (1, L, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(d, cfg.dropout) for _ in range(cfg.n_blocks))
        self.last_norm = nn.LayerNorm(d)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

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
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)   # (L, L) True: may not attend
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


bm.MODELS["sasrec"] = SASRec
