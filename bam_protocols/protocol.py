"""
bam_protocols/protocol.py: what an evaluation protocol is, as one object. Everything a protocol decides is an
attribute or a method of its Protocol, and nothing outside bam_protocols asks for a protocol by name:

  name, title           `--protocol NAME` (the Config value), and how a table names it
  users(data, split)    the rows of the users a split evaluates (sorted); `train` is the training pool
  batch(data, rng, B, L)  the training sampler: windows of B examples, as bam_minimal.train_batch
  targets(data, split, rows)  -> (k, counts, targets): each user's history end seq[:k], how many targets it
                        has, and the targets one user after another, in time order
  evaluate(scorer, data, split, cfg, rows, k_top, block)  -> (metrics, ranks (T,), top-k or None): every
                        target ranked against the full catalogue (here for many targets per user)
  user_metrics(ranks, counts, targets, ndcg_as)  what the per-user file records of each user
  columns, variants, variant_columns  the metrics a table reports and tests; the published NDCGs that
                        `--ndcg-as` may add (bam_evidence.metrics.VARIANTS), and those a table shows
  popularity_counts(data)  what the most-popular baseline counts (None: leave-one-out's training part)
  label()               how an evaluation line names it
  twin                  the NumPy twin's evaluator (bam_numpy), or None: `--engine numpy` refuses the protocol

A new protocol is a subclass that sets name, title and columns and defines users, batch and targets (the
rest follows), registered once with bam_protocols.register; tests/test_protocol_object.py defines one.
"""
import numpy as np
import torch

import bam_minimal as bm
from bam_evidence import metrics as formulas


class Protocol:
    """An evaluation protocol with many targets per user; leave-one-out (bam_protocols.loo) overrides the rest."""
    name = ""                 # `--protocol NAME`, recorded in a run's config and its per-user file
    title = ""                # how a table names it: "Test metrics on DATA (TITLE)"
    columns = ()              # the metrics a table reports and tests (bam_evidence.differences)
    variants = ()             # the published NDCGs `--ndcg-as` may add beside the correct one
    variant_columns = ()      # those a table shows with --ndcg-as (never tested)
    many_targets = True       # its users have many targets each: ranked by evaluate below
    twin = None               # the twin's evaluator: (params, data, split, numpy Config, rows, k_top) -> evaluate's

    def users(self, data, split):
        raise NotImplementedError

    def batch(self, data, rng, batch_size, seq_len):
        raise NotImplementedError

    def targets(self, data, split, rows):
        raise NotImplementedError

    def label(self):
        return f"{self.name}, "

    def popularity_counts(self, data):
        return None

    def user_metrics(self, ranks, counts, targets, ndcg_as=()):
        """{name: (U,)}: the correct metrics, and the published NDCGs of `ndcg_as` that ranks give."""
        return dict(formulas.user_metrics(ranks, counts, targets), **formulas.published(ndcg_as, ranks, counts,
                                                                                          targets))

    @torch.no_grad()
    def evaluate(self, scorer, data, split, cfg, rows=None, k_top=0, block=None):
        """bam_minimal.evaluate's steps (windows -> score -> mask -> rank, a block of users at a time) with every
        target of a user: -> (metrics, ranks (T,) of the targets of self.targets(data, split, rows), top-k ids or
        None). `rows`: default every user of `split`. metrics["nonfinite_users"] as in bam_minimal.evaluate."""
        device = bm.resolve_device(cfg)
        rows = self.users(data, split) if rows is None else np.asarray(rows, np.int64)
        k, counts, targets = self.targets(data, split, rows)                 # (U,), (U,), (T,)
        offsets = np.concatenate([[0], np.cumsum(counts)])                    # (U + 1,)
        ranks, tops, bad = [np.zeros(0, np.int64)], [np.zeros((0, min(k_top, data.n_items + 1)), np.int64)], [[]]
        for at, kb in bm.user_blocks(cfg, data, np.arange(len(rows)), k, block):  # positions in `rows`, ours
            r, i = rows[at], at[0]                                             # (b,) the block's rows
            history, mask, _ = (torch.as_tensor(a, device=device) for a in bm.windows(data, r, kb, cfg.seq_len))
            full = torch.as_tensor(bm.windows(data, r, kb, int(kb.max()))[0], device=device)  # (b, max k)
            scores = scorer(history, mask, bm.routing_noise(cfg, r) if cfg.model == "mind" else None)  # (b, I + 1)
            bad.append(bm.nonfinite_rows(scores))                              # (b,)
            scores = bm.mask_history(scores, full, history, cfg.history_mask)  # (b, I + 1)
            ranks.append(rank_targets(scores, targets[offsets[i]:offsets[i + len(r)]], counts[i:i + len(r)]))
            if k_top:
                tops.append(bm.top_k(scores, k_top).cpu().numpy())            # (b, k_top)
        ranks, tops, bad = bm.gather_users(ranks, tops, bad)  # (T,), (U, k_top), (U,) in user order
        metrics = {name: float(v.mean()) for name, v in formulas.user_metrics(ranks, counts, targets).items()}
        return dict(metrics, nonfinite_users=int(bad.sum())), ranks, tops if k_top else None


def rank_targets(scores, targets, counts):
    """The rank (bam_minimal.target_rank's rule) of each target of a block of users: targets (T_b,) one user
    after another, counts (b,) -> ranks (T_b,). Each target is ranked on a copy of its user's row, at most
    2^22 scores at a time: the work follows the number of targets, not the longest user's."""
    user = torch.as_tensor(np.repeat(np.arange(len(counts)), counts), device=scores.device)  # (T_b,)
    targets = torch.as_tensor(np.asarray(targets, np.int64), device=scores.device)           # (T_b,)
    step = max(1, (1 << 22) // scores.shape[1])
    return torch.cat([bm.target_rank(scores[user[i:i + step]], targets[i:i + step])          # (c,) each
                      for i in range(0, len(targets), step)]).cpu().numpy()                   # (T_b,)
