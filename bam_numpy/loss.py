"""
bam_numpy/loss.py: interest selection and the training loss of the NumPy twin, with hand-written
gradients.

  [KDD24] Lee, Yun and Kang. Balanced Interest Learning for Multi-interest Recommendation. KDD '24.
  [BD24]  Lee, Yun and Kang. Towards True Multi-interest Recommendation. IEEE BigData '24.

Each function mirrors bam_minimal.py's function of the same name; the `*_backward` functions are
the hand-written vector-Jacobian products that torch's autograd computes there. `bam_loss` returns
the loss with the gradients of the interests, the attention and the item embeddings;
`loss_and_grads` runs an encoder forward, `bam_loss` and the encoder backward: one training step's
`loss.backward()`.

    from bam_numpy.loss import loss_and_grads
    loss, grads, info = loss_and_grads(params, cfg, history, mask, target, negatives, u, tau)
"""
import math

import numpy as np

from bam_numpy import encoders
from bam_numpy.encoders import softmax

# -----------------------------------------------------------------------------
# Interest selection: which interest scores the target.


def interest_logits(params, selection, interests, target_emb):
    """Correlation of each interest with the target. [KDD24] Eq. (1): M_u^T e_target.
    [BD24] Eq. (9), BaM_l: the same product after two learned maps to d'."""
    if selection == "bam-l":
        a = interests @ params["l1.weight"].T + params["l1.bias"]            # (B, N, d')
        c = target_emb @ params["l2.weight"].T + params["l2.bias"]           # (B, d')
        return (a @ c[..., None])[..., 0]                                    # (B, N)
    return (interests @ target_emb[..., None])[..., 0]                       # (B, N)


def select_interest(logits, selection, tau, u):
    """Returns the selected index (B,) and the selection probabilities (B, N).
    `hard`: [KDD24] Eq. (1), the argmax (np.argmax takes the first on ties, as torch does).
    `bam`, `bam-l`: [KDD24] Eq. (3), n ~ softmax(tau * M_u^T e_target), drawn by inverting the CDF at
    u ~ U[0, 1): index = #{n : cumsum(probs)_n <= u}, clamped to N - 1 against rounding."""
    probs = softmax(tau * logits)                                            # (B, N)
    if selection == "hard":
        return logits.argmax(-1), probs
    index = (np.cumsum(probs, -1) <= u[:, None]).sum(-1)                    # (B,)
    return np.minimum(index, logits.shape[-1] - 1), probs

# -----------------------------------------------------------------------------
# Scores and the softmax loss.


def logsumexp(x, axis=-1):
    """log sum exp along `axis`; a slice of all -inf gives -inf, as torch.logsumexp does."""
    m = x.max(axis, keepdims=True)                                          # (..., 1)
    m = np.where(np.isfinite(m), m, 0.0).astype(x.dtype)
    with np.errstate(divide="ignore"):
        return (np.log(np.exp(x - m).sum(axis, keepdims=True)) + m).squeeze(axis)


def item_scores(user, target, negatives, item_emb, loss):
    """user (B, K, d) -> target scores (B, K) and negative scores (B, K, S).
    `full` uses every item but the target and the padding item 0 as a negative (-inf elsewhere)."""
    pos = (user * item_emb[target][:, None]).sum(-1)                         # (B, K)
    if loss == "sampled":
        return pos, user @ item_emb[negatives].T                             # (B, K, S)
    neg = user @ item_emb.T                                                  # (B, K, I + 1)
    neg[np.arange(len(target)), :, target] = -np.inf
    neg[..., 0] = -np.inf
    return pos, neg


def item_scores_backward(user, target, negatives, item_emb, loss, d_pos, d_neg):
    """-> d user (B, K, d) and d item_emb (I + 1, d). Dropped entries of `full` get no gradient."""
    e_target = item_emb[target]                                              # (B, d)
    d_user = d_pos[..., None] * e_target[:, None]                            # (B, K, d)
    d = user.shape[-1]
    d_emb = encoders.scatter_rows(len(item_emb), target, (d_pos[..., None] * user).sum(1))  # (I + 1, d)
    if loss == "sampled":
        e_neg = item_emb[negatives]                                          # (S, d)
        d_user += d_neg @ e_neg                                              # (B, K, d)
        d_neg_emb = d_neg.reshape(-1, len(negatives)).T @ user.reshape(-1, d)  # (S, d)
        return d_user, d_emb + encoders.scatter_rows(len(item_emb), negatives, d_neg_emb)
    d_neg = d_neg.copy()                                                     # (B, K, I + 1)
    d_neg[np.arange(len(target)), :, target] = 0.0  # the backward of the -inf fill: no gradient
    d_neg[..., 0] = 0.0
    d_user += d_neg @ item_emb                                               # (B, K, d)
    return d_user, d_emb + d_neg.reshape(-1, len(item_emb)).T @ user.reshape(-1, d)


def remi_weights(neg, beta):
    """REMI (Xie et al., RecSys '23): negative j gets logit s_j + log w_j with w_j = S softmax(beta s)_j."""
    z = beta * neg                                                           # (..., S)
    return neg + math.log(neg.shape[-1]) + (z - logsumexp(z)[..., None])    # (..., S)


def softmax_loss(pos, neg, beta=0.0):
    """-log softmax of the target among [target, negatives]; no accidental-hit removal (official).
    The uniform proposal's log q is the same for every item, so its correction cancels."""
    if beta:
        neg = remi_weights(neg, beta)                                        # (..., S)
    logits = np.concatenate([pos[..., None], neg], -1)                       # (..., 1 + S)
    return logsumexp(logits) - pos                                           # (...)


def softmax_loss_backward(pos, neg, beta, d_loss):
    """-> d pos (...), d neg (..., S). d loss / d logits = softmax - onehot(target). The REMI weights
    stay in the graph: d neg_k = (1 + beta) g_k - beta q_k sum_j g_j with q = softmax(beta neg)."""
    neg_w = remi_weights(neg, beta) if beta else neg                         # (..., S)
    logits = np.concatenate([pos[..., None], neg_w], -1)                     # (..., 1 + S)
    p = np.exp(logits - logsumexp(logits)[..., None])                        # (..., 1 + S)
    d_pos = d_loss * (p[..., 0] - 1)                                         # (...)
    g = d_loss[..., None] * p[..., 1:]                                       # (..., S)
    if beta:
        q = softmax(beta * neg)                                              # (..., S)
        g = (1 + beta) * g - beta * q * g.sum(-1, keepdims=True)
    return d_pos, g


def logsumexp_backward(x, d_out, axis):
    """d/dx of logsumexp(x, axis): softmax(x) along axis; 0 where every entry is -inf (those entries are
    the dropped items of `full`, whose gradient the -inf fill removes anyway)."""
    lse = np.expand_dims(logsumexp(x, axis), axis)                           # (..., 1, ...)
    w = np.where(np.isfinite(lse), np.exp(x - np.where(np.isfinite(lse), lse, 0.0)), 0.0)
    return w * np.expand_dims(d_out, axis)


def routing_regulariser(attention, dim):
    """REMI's routing regularisation: sum_b ||diag(Cov(A_b))||^2 with A_b (N, L) centred over the
    sequence and Cov = A A^T / d (as the REMI code divides by the hidden size)."""
    centred = attention - attention.mean(-1, keepdims=True)                 # (B, N, L)
    return (((centred * centred).sum(-1) / dim) ** 2).sum()


def routing_regulariser_backward(attention, dim, d_out=1.0):
    centred = attention - attention.mean(-1, keepdims=True)                 # (B, N, L)
    v = (centred * centred).sum(-1, keepdims=True) / dim                    # (B, N, 1)
    g = d_out * 2 * v * 2 * centred / dim                                    # (B, N, L) d / d centred
    return g - g.mean(-1, keepdims=True)                                     # the centring's backward

# -----------------------------------------------------------------------------
# The loss of one batch, with its gradients.


def bam_loss(params, cfg, interests, attention, target, negatives, u, tau):
    """The training loss of one batch: select an interest, score the target against the negatives.
    Returns (loss, grads, info): grads holds "interests" (B, N, d), "attention" (B, N, L) or None, and
    "embeddings.weight" (I + 1, d), the part that reaches the item table directly; info holds the
    logits, probs and index of the selection. The selection itself gets no gradient: the target
    embedding is detached, the index is a sample or an argmax, and `expected` detaches the
    probabilities. So BaM_l's l1, l2 get no gradient, as in bam_minimal."""
    E = params["embeddings.weight"]                                          # (I + 1, d)
    B = len(target)
    logits = interest_logits(params, cfg.selection, interests, E[target])    # (B, N)
    index, probs = select_interest(logits, cfg.selection, tau, u)            # (B,), (B, N)
    beta, rows = cfg.remi_beta, np.arange(B)
    d_interests = np.zeros_like(interests)                                   # (B, N, d)
    d_emb = np.zeros_like(E)                                                 # (I + 1, d)
    if cfg.selection == "expected":
        # The loss of every interest, weighted by its (constant) selection probability.
        pos, neg = item_scores(interests, target, negatives, E, cfg.loss)    # (B, N), (B, N, S)
        per = softmax_loss(pos, neg, beta)                                   # (B, N)
        loss = (probs * per).sum(-1)                                         # (B,)
        d_pos, d_neg = softmax_loss_backward(pos, neg, beta, probs / B)      # d mean = 1 / B
        d_interests, d_emb = item_scores_backward(interests, target, negatives, E, cfg.loss, d_pos, d_neg)
    else:
        selection = interests[rows, index][:, None]                          # (B, 1, d)
        pos, neg = item_scores(selection, target, negatives, E, cfg.loss)    # (B, 1), (B, 1, S)
        loss = softmax_loss(pos, neg, beta)[:, 0]                            # (B,)
        d_pos, d_neg = softmax_loss_backward(pos, neg, beta, np.full((B, 1), 1.0 / B, E.dtype))
        d_sel, d_emb = item_scores_backward(selection, target, negatives, E, cfg.loss, d_pos, d_neg)
        d_interests[rows, index] = d_sel[:, 0]                               # only the selected interest
    if cfg.multi_loss:
        # [BD24] Eq. (10)-(13): an item's score over all interests is logsumexp_n m_u^n . e_i.
        pos, neg = item_scores(interests, target, negatives, E, cfg.loss)    # (B, N), (B, N, S)
        pos_u, neg_u = logsumexp(pos, 1), logsumexp(neg, 1)                  # (B,), (B, S)
        loss = loss + softmax_loss(pos_u, neg_u, beta)                       # (B,)
        d_pos_u, d_neg_u = softmax_loss_backward(pos_u, neg_u, beta, np.full(B, 1.0 / B, E.dtype))
        d_pos = logsumexp_backward(pos, d_pos_u, 1)                          # (B, N)
        d_neg = logsumexp_backward(neg, d_neg_u, 1)                          # (B, N, S)
        d_i, d_e = item_scores_backward(interests, target, negatives, E, cfg.loss, d_pos, d_neg)
        d_interests, d_emb = d_interests + d_i, d_emb + d_e
    loss = loss.mean()
    d_attention = None
    if cfg.remi_lambda:
        loss = loss + cfg.remi_lambda * routing_regulariser(attention, cfg.dim)
        d_attention = routing_regulariser_backward(attention, cfg.dim, cfg.remi_lambda)
    grads = {"interests": d_interests, "attention": d_attention, "embeddings.weight": d_emb}
    return loss, grads, dict(logits=logits, probs=probs, index=index)


def loss_and_grads(params, cfg, history, mask, target, negatives, u, tau, noise=None):
    """Forward, loss and backward of one batch: (loss, {parameter name: gradient}, info). info also
    holds the interests and attention. Parameters without a gradient (MIND's unused relu, BaM_l's
    l1/l2) are absent, as their .grad is None in torch, so that Adam skips them too."""
    interests, attention, cache = encoders.forward(params, cfg, history, mask, noise)  # (B, N, d), (B, N, L)
    loss, g, info = bam_loss(params, cfg, interests, attention, target, negatives, u, tau)
    grads = encoders.backward(params, cfg, cache, g["interests"], g["attention"])
    grads["embeddings.weight"] = grads["embeddings.weight"] + g["embeddings.weight"]
    info.update(interests=interests, attention=attention)
    return loss, grads, info
