"""
bam_numpy/encoders.py: the multi-interest encoders of the NumPy twin, forward and hand-written backward.

  ComiRec-SA (Cen et al., KDD '20): N attention heads over the history, one per interest.
  MIND (Li et al., CIKM '19): dynamic routing of the history into N capsules.

Parameters live in a dict under the official names (bam_minimal's state_dict keys), as numpy
arrays of one float dtype (float64 or float32): `embeddings.weight` (I + 1, d),
`position_embedding` (1, L, d), `linear1.0.weight` (4d, d), `linear2.weight` (N, 4d),
`capsule_network.linear.weight` (d, d), `capsule_network.relu.0.weight` (d, d, unused as in the
official runs), and BaM_l's `l1.weight` (d', d), `l1.bias` (d',), `l2.weight`, `l2.bias`.

Every forward returns (interests (B, N, d), attention (B, N, L), cache); the matching backward
takes the cache and the loss gradients of interests and attention and returns {name: gradient}
for the parameters that get one (the same set that torch's autograd gives a .grad).

    from bam_numpy.encoders import init_params, forward, backward
"""
import numpy as np
from numba import njit

# -----------------------------------------------------------------------------
# Parameters: the official names, shapes and initialisation.

MASK = -2.0 ** 32 + 1  # the official masking constant: padded positions get this attention logit


def param_shapes(cfg, n_items):
    d, N = cfg.dim, cfg.n_interests
    shapes = {"embeddings.weight": (n_items + 1, d)}
    if cfg.model == "comirec":
        shapes.update({"position_embedding": (1, cfg.seq_len, d), "linear1.0.weight": (4 * d, d),
                       "linear2.weight": (N, 4 * d)})
    else:
        shapes.update({"capsule_network.relu.0.weight": (d, d), "capsule_network.linear.weight": (d, d)})
    if cfg.selection == "bam-l":  # [BD24] Eq. (9): l1, l2 map interests and target to d'
        shapes.update({"l1.weight": (cfg.linear_size, d), "l1.bias": (cfg.linear_size,),
                       "l2.weight": (cfg.linear_size, d), "l2.bias": (cfg.linear_size,)})
    return shapes


def init_params(cfg, n_items, rng, dtype=np.float64):
    """Official init: kaiming-normal (fan-in, gain sqrt 2) on every matrix, the padding row 0 too;
    biases at zero. Same distribution as bam_minimal's reset_parameters, not the same numbers."""
    params = {}
    for name, shape in param_shapes(cfg, n_items).items():
        if len(shape) == 1:
            params[name] = np.zeros(shape, dtype)
            continue
        fan_in = shape[1] * int(np.prod(shape[2:]))  # torch: size(1) times the receptive field
        params[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
    return params

# -----------------------------------------------------------------------------
# Shared pieces.


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@njit(cache=True)
def _scatter_rows(out, index, values):
    for r in range(len(index)):
        out[index[r]] += values[r]


def scatter_rows(n_rows, index, values):
    """Sum the rows of `values` (P, d) into a (n_rows, d) array at rows `index` (P,): the backward
    pass of a row lookup, repeated indices included."""
    out = np.zeros((n_rows, values.shape[-1]), values.dtype)                   # (n_rows, d)
    _scatter_rows(out, np.ascontiguousarray(index), np.ascontiguousarray(values))
    return out


def embedding_grad(params, history, mask, dh):
    """Gradient of E[history] * mask: row i gets the sum of dh at the real positions holding item i.
    Padded positions hold item 0 and have mask 0, so row 0 gets nothing (torch's padding_idx=0)."""
    real = mask > 0                                                            # (B, L)
    return scatter_rows(len(params["embeddings.weight"]), history[real], dh[real])  # (I + 1, d)

# -----------------------------------------------------------------------------
# ComiRec-SA.


def comirec_forward(params, history, mask):
    """ComiRec-SA's self-attention: A = softmax_L(W2 tanh(W1 (h + p)^T)) (B, N, L), interests = A h."""
    E, P = params["embeddings.weight"], params["position_embedding"]          # (I + 1, d), (1, L, d)
    W1, W2 = params["linear1.0.weight"], params["linear2.weight"]             # (4d, d), (N, 4d)
    h = E[history]                                                            # (B, L, d)
    h *= mask[..., None]  # in place: padded positions become 0, and no second (B, L, d) array
    # The MLP runs on the real positions only; padded ones get the logit MASK, so exactly 0 attention.
    b, pos = np.nonzero(mask > 0)                                             # (R,), (R,) real positions
    x = h[b, pos] + P[0, pos]                                                 # (R, d) position added here only
    a1 = np.tanh(x @ W1.T)                                                    # (R, 4d)
    logits = np.full((*mask.shape, len(W2)), MASK, E.dtype)                   # (B, L, N)
    logits[b, pos] = a1 @ W2.T                                                # (R, N)
    attention = softmax(logits.transpose(0, 2, 1))                            # (B, N, L), over the sequence
    interests = attention @ h                                                 # (B, N, d), no position embedding
    cache = dict(history=history, mask=mask, h=h, b=b, l=pos, x=x, a1=a1, attention=attention)
    return interests, attention, cache


def comirec_backward(params, cache, d_interests, d_attention=None):
    """The gradients of the four parameters, given d interests (B, N, d) and d attention (B, N, L)."""
    W1, W2 = params["linear1.0.weight"], params["linear2.weight"]             # (4d, d), (N, 4d)
    A, h, b, pos = cache["attention"], cache["h"], cache["b"], cache["l"]
    dA = d_interests @ h.transpose(0, 2, 1)                                   # (B, N, L)
    if d_attention is not None:
        dA = dA + d_attention
    dh = A.transpose(0, 2, 1) @ d_interests                                   # (B, L, d)
    # Softmax over L: d logits = A * (dA - sum_l A dA). Padded logits are constants: no gradient.
    d_logits = A * (dA - (A * dA).sum(-1, keepdims=True))                     # (B, N, L)
    d_real = d_logits[b, :, pos]                                              # (R, N)
    a1, x = cache["a1"], cache["x"]
    d_z1 = (d_real @ W2) * (1 - a1 * a1)                                      # (R, 4d), tanh' = 1 - tanh^2
    dx = d_z1 @ W1                                                            # (R, d)
    dh[b, pos] += dx                                                          # the MLP read h at real positions
    d_pos = np.zeros_like(params["position_embedding"])                       # (1, L, d)
    np.add.at(d_pos[0], pos, dx)
    return {"embeddings.weight": embedding_grad(params, cache["history"], cache["mask"], dh),
            "position_embedding": d_pos,
            "linear1.0.weight": d_z1.T @ x,                                   # (4d, d)
            "linear2.weight": d_real.T @ a1}                                  # (N, 4d)

# -----------------------------------------------------------------------------
# MIND: dynamic routing, as in the official code.


def squash(z):
    """The capsule non-linearity (Sabour et al., NeurIPS '17), with the official eps: |z|^2 / (1 + |z|^2) z / |z|."""
    norm2 = (z * z).sum(-1, keepdims=True)                                    # (B, N, 1)
    return norm2 / (1 + norm2) / np.sqrt(norm2 + 1e-9) * z                    # (B, N, d)


def squash_backward(z, d_out):
    """squash(z) = f(|z|^2) z with f(a) = a / ((1 + a) sqrt(a + eps)):
    dz = f d_out + 2 z f'(a) (z . d_out), f'(a) = g (1 / (1 + a) - a / (2 (a + eps))), g = f / a."""
    a = (z * z).sum(-1, keepdims=True)                                        # (B, N, 1)
    g = 1 / ((1 + a) * np.sqrt(a + 1e-9))                                     # (B, N, 1)
    df = g * (1 / (1 + a) - a / (2 * (a + 1e-9)))                             # (B, N, 1) f'(a)
    return a * g * d_out + 2 * z * df * (z * d_out).sum(-1, keepdims=True)    # (B, N, d)


def mind_forward(params, history, mask, noise, routing_iters=3):
    """`noise` (B, N, L): the initial routing logits (official: fresh normals on every forward)."""
    E, Wc = params["embeddings.weight"], params["capsule_network.linear.weight"]  # (I + 1, d), (d, d)
    h = E[history]                                                            # (B, L, d)
    h *= mask[..., None]                                                      # padded positions become 0
    u = h @ Wc.T                                                              # (B, L, d), shared by all N capsules
    keep = (mask > 0)[:, None]                                                # (B, 1, L)
    logits = noise.astype(E.dtype)                                            # (B, N, L)
    for i in range(routing_iters):
        # Softmax over the sequence, then zero at padding without renormalising (official).
        w = np.where(keep, softmax(logits), 0.0).astype(E.dtype)              # (B, N, L)
        s = w @ u                                                             # (B, N, d)
        z = squash(s)                                                         # (B, N, d)
        if i < routing_iters - 1:
            logits = logits + z @ u.transpose(0, 2, 1)                        # (B, N, L)
    cache = dict(history=history, mask=mask, h=h, w=w, s=s)
    return z, w, cache


def mind_backward(params, cache, d_interests, d_attention=None):
    """Only the last routing pass sees u with a gradient (the earlier ones use stop-gradient u), and
    its weights w come from the noise and stopped passes: w is a constant, so the whole backward is
    squash, then s = w @ u, then u = h Wc^T. The attention has no gradient; d_attention is ignored."""
    Wc = params["capsule_network.linear.weight"]                              # (d, d)
    ds = squash_backward(cache["s"], d_interests)                             # (B, N, d)
    du = cache["w"].transpose(0, 2, 1) @ ds                                   # (B, L, d)
    h = cache["h"]                                                            # (B, L, d)
    d = h.shape[-1]
    dh = du @ Wc                                                              # (B, L, d)
    return {"embeddings.weight": embedding_grad(params, cache["history"], cache["mask"], dh),
            "capsule_network.linear.weight": du.reshape(-1, d).T @ h.reshape(-1, d)}  # (d, d)


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
# Dispatch on cfg.model, with the noise rule of bam_minimal's MIND.forward.


def forward(params, cfg, history, mask, noise=None):
    """-> interests (B, N, d), attention (B, N, L), cache. For MIND, `noise` is the (B, N, L) array of
    initial routing logits, or a numpy Generator (or None) to draw them from."""
    if cfg.model == "comirec":
        return comirec_forward(params, history, mask)
    if noise is None or isinstance(noise, np.random.Generator):
        rng = noise if noise is not None else np.random.default_rng()
        noise = rng.standard_normal((len(history), cfg.n_interests, history.shape[1]))  # (B, N, L)
    return mind_forward(params, history, mask, noise, cfg.routing_iters)


def backward(params, cfg, cache, d_interests, d_attention=None):
    if cfg.model == "comirec":
        return comirec_backward(params, cache, d_interests, d_attention)
    return mind_backward(params, cache, d_interests, d_attention)
