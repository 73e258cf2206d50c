"""
bam_protocols/loo.py: leave-one-out ([KDD24], the BaM papers' protocol) as a Protocol object. Its rules are
bam_minimal.py's own, readable there (Data: train_batch, split_targets; Evaluation: evaluate); this object only
points to them, so that the layers above ask every protocol the same questions (docs/protocols.md).

    from bam_protocols import loo
    loo.PROTOCOL.evaluate(scorer, data, "test", cfg)      # bam_minimal.evaluate
"""
import numpy as np

import bam_minimal as bm
from bam_evidence import per_user
from bam_evidence.metrics import PROTOCOL_COLUMNS
from bam_protocols.protocol import Protocol


class LeaveOneOut(Protocol):
    """Every user in every split; one target each: seq[-2] validates, seq[-1] tests (bam_minimal.split_targets)."""
    name, title = "loo", "leave-one-out"
    columns = PROTOCOL_COLUMNS["loo"]     # the BaM paper's Table 2
    many_targets = False
    users = staticmethod(bm.PROTOCOLS["loo"]["users"])   # the reference's own three functions
    batch = staticmethod(bm.train_batch)
    evaluate = staticmethod(bm.evaluate)

    def targets(self, data, split, rows):
        rows = np.asarray(rows, np.int64)
        k = bm.split_targets(data, split)[rows]                                # (U,) the target's position
        return k, np.ones(len(rows), np.int64), data.items[data.start[rows] + k]  # (U,), (U,), (U,)

    def label(self):
        return ""  # an evaluation line says nothing of the default protocol

    def user_metrics(self, ranks, counts, targets, ndcg_as=()):
        """bam_minimal.metrics_from_ranks of each user (`ndcg_as` is refused before: no variant applies)."""
        return per_user.user_metrics(ranks, bm.metrics_from_ranks)

    def twin(self, params, data, split, ncfg, rows=None, k_top=0):
        import bam_numpy  # numba: only for --engine numpy
        return bam_numpy.evaluate(params, data, split, ncfg, rows=rows, k_top=k_top)  # MIND: the same noise


PROTOCOL = LeaveOneOut()
