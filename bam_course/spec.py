"""
bam_course/spec.py: the parts of the course, in order: what each grades (a function, or ComiRecSA's forward),
its points per subtest (one Gradescope row each, named "<key>: <subtest>"), its equation and what the
student writes. Torch-free.
"""
from dataclasses import dataclass, field

from bam_data import InputError


class CourseError(InputError):
    """Bad input to the course commands, in one line: exit code 2, like any InputError (bam_cli/options.py)."""


@dataclass(frozen=True)
class Part:
    key: str                 # the name the student's file defines (function or class)
    number: int
    track: str               # torch | numpy
    source: str              # the reference file, relative to the repository root
    target: str              # what is blanked: "name" or "Class.method"; "" for the end-to-end part
    title: str
    points: dict = field(default_factory=dict)  # subtest -> points
    equation: str = ""
    todo: str = ""

    @property
    def max_points(self):
        return sum(self.points.values())


PARTS = [
    Part("ComiRecSA", 1, "torch", "bam_minimal.py", "ComiRecSA.forward",
         "ComiRec-SA's self-attention encoder",
         {"attention": 5, "interests": 5, "gradients": 5},
         "h = E[history] * mask; A = softmax over the sequence of W2 tanh(W1 (h + P)^T), with the logit "
         "MASK = -2^32 + 1 at padded positions; interests = A h (no position embedding in the values)",
         "return (interests (B, N, d), attention (B, N, L)); each row of attention sums to 1 over L and is "
         "0 at padding; linear1 = tanh(W1 .), linear2 = W2 ."),
    Part("select_interest", 2, "torch", "bam_minimal.py", "select_interest",
         "choose the interest that scores the target",
         {"hard": 5, "bam": 10},
         "probs = softmax(tau * logits); hard: index = argmax_n logits (first on ties) [KDD24 Eq. 1]; "
         "bam / bam-l: index = #{n : cumsum(probs)_n <= u}, clamped to N - 1 [KDD24 Eq. 3]",
         "return (index (B,) int64, probs (B, N)); probs = softmax(tau * logits) for every selection"),
    Part("softmax_loss", 3, "torch", "bam_minimal.py", "softmax_loss",
         "the sampled-softmax loss",
         {"sampled": 4, "full": 3, "remi": 3},
         "loss = logsumexp([pos, neg_1, ..., neg_S]) - pos; REMI (beta > 0): neg_j + log S + "
         "log_softmax(beta * neg)_j replaces neg_j, and the weights stay in the graph",
         "return the loss of every row, shape pos.shape (...); neg is (..., S) and may hold -inf"),
    Part("bam_loss", 4, "torch", "bam_minimal.py", "bam_loss",
         "the training loss of one batch",
         {"hard": 3, "bam": 4, "expected": 4, "extras": 4},
         "logits = M_u^T stopgrad(e_target); n = select_interest(logits, selection, tau, u); "
         "loss = mean over the batch of softmax_loss(m_u^n . e_target, m_u^n . e_negatives); "
         "expected: sum_n stopgrad(p_n) loss_n; multi_loss adds softmax_loss of the logsumexp over the "
         "interests of each score; remi_lambda adds remi_lambda * routing_regulariser(attention, dim)",
         "return the scalar loss (); gradients reach the interests and the item embeddings, never the "
         "selection (use interest_logits, select_interest, item_scores, softmax_loss)"),
    Part("mask_history", 5, "torch", "bam_minimal.py", "mask_history",
         "hide the items a user has already seen",
         {"exclude": 4, "official": 3, "none": 3},
         "exclude: scores[b, full_history[b]] = -inf (item 0 too); official: scores[b, window[b]] = 0; "
         "exclude and none: scores[:, 0] = -inf",
         "change scores (b, I + 1) in place and return it"),
    Part("target_rank", 6, "torch", "bam_minimal.py", "target_rank",
         "the rank of each target among all items",
         {"distinct": 5, "ties": 5, "non-finite": 5},
         "rank_b = #{j : s_bj > s_bt, or s_bj is NaN or +inf} + #{j < t : s_bj = s_bt} (0-based): a NaN or "
         "+inf score of another item ranks above the target, -inf (masked) below everything; a target whose own "
         "score is not finite is a miss: rank = the number of columns",
         "return the ranks (b,) int64"),
    Part("metrics_from_ranks", 7, "torch", "bam_minimal.py", "metrics_from_ranks",
         "Recall@K and nDCG@K from 0-based ranks",
         {"recall": 5, "ndcg": 5},
         "Recall@K = mean_b [r_b < K]; nDCG@K = mean_b [r_b < K] / log2(r_b + 2)",
         'return {"recall@K": float, "ndcg@K": float} for every K in ks'),
    Part("train", 8, "torch", "bam_minimal.py", "",
         "end to end: your whole file trains hard and BaM on planted topics",
         {"BaM beats most popular": 3, "BaM recovers the topics": 3, "BaM balances its interests": 4}),
    Part("softmax_loss_backward", 9, "numpy", "bam_numpy/loss.py", "softmax_loss_backward",
         "the backward pass of the softmax loss (NumPy)",
         {"golden": 5, "finite differences": 5},
         "p = softmax([pos, neg']); d pos = d_loss (p_0 - 1); g_j = d_loss p_j; with REMI (beta > 0), "
         "q = softmax(beta * neg) and d neg_k = (1 + beta) g_k - beta q_k sum_j g_j, else d neg = g",
         "return (d_pos shaped like pos, d_neg shaped like neg)"),
    Part("comirec_backward", 10, "numpy", "bam_numpy/encoders.py", "comirec_backward",
         "the backward pass of ComiRec-SA (NumPy)",
         {"golden": 10, "finite differences": 10},
         "dA = dI h^T (+ d_attention); dh = A^T dI; d logits = A (dA - sum_l A dA) at real positions; "
         "dz1 = (d logits W2) (1 - a1^2); dx = dz1 W1 feeds h and the position embedding; "
         "dW2 = d logits^T a1; dW1 = dz1^T x; dE sums dh over the items at real positions",
         "return {'embeddings.weight': (I + 1, d), 'position_embedding': (1, L, d), "
         "'linear1.0.weight': (4d, d), 'linear2.weight': (N, 4d)}; cache holds what comirec_forward "
         "stored: history, mask, h (masked embeddings), b, l (real positions), x, a1, attention"),
]

BY_KEY = {p.key: p for p in PARTS}
TRACKS = ("torch", "numpy")


def parts_of(track):
    return [p for p in PARTS if p.track == track]


def select(keys, track):
    """The parts of `track` named in `keys` (comma-separated), or every part of `track`."""
    names = [k.strip() for k in (keys or "").split(",") if k.strip()]
    unknown = [k for k in names if k not in BY_KEY]
    if unknown:
        raise CourseError(f"--parts: unknown part {unknown[0]} (fix: choose from {', '.join(BY_KEY)})")
    return [BY_KEY[k] for k in names if BY_KEY[k].track == track] if names else parts_of(track)
