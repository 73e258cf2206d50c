"""
Finite-difference checks of every hand-written gradient in bam_numpy, in float64 with central
differences: normwise relative error max|analytic - numeric| / max|numeric| < 1e-6.

The function differentiated is the one torch differentiates: the selection (index and, for
`expected`, the probabilities) is frozen, since it is a sample / detached; for MIND the routing
weights of the last pass are frozen, since all earlier passes run on stop-gradient u.
numpy only.  python -m pytest tests/test_numpy_gradients.py
"""
from dataclasses import replace

import numpy as np
import pytest

import bam_numpy as bn
from bam_numpy import encoders, loss as bl

N_ITEMS, B, L, S = 25, 5, 6, 7


def problem(cfg, seed=0):
    """Small random weights and a batch with some padded positions."""
    rng = np.random.default_rng(seed)
    params = encoders.init_params(cfg, N_ITEMS, rng, np.float64)
    for name in params:  # nonzero biases (BaM_l), so that their handling is exercised
        if params[name].ndim == 1:
            params[name] = rng.standard_normal(params[name].shape) * 0.1
    lengths = np.array([L, 3, 1, 5, 2])                                       # (B,)
    mask = (np.arange(L) < lengths[:, None]).astype(np.float64)               # (B, L)
    history = np.where(mask > 0, rng.integers(1, N_ITEMS + 1, (B, L)), 0)    # (B, L)
    target = rng.integers(1, N_ITEMS + 1, B)                                  # (B,)
    negatives = rng.integers(0, N_ITEMS + 1, S)                               # (S,) item 0 may be drawn
    negatives[0] = 0
    noise = rng.standard_normal((B, cfg.n_interests, L))                      # (B, N, L)
    u = rng.random(B)                                                         # (B,)
    return params, history, mask, target, negatives, noise, u


def frozen_loss(params, cfg, batch, frozen):
    """The loss with the selection and MIND's last routing weights fixed at `frozen`."""
    history, mask, target, negatives, noise, u = batch
    if cfg.model == "mind":
        E, Wc = params["embeddings.weight"], params["capsule_network.linear.weight"]
        h = E[history] * mask[..., None]                                      # (B, L, d)
        interests, attention = encoders.squash(frozen["w"] @ (h @ Wc.T)), frozen["w"]
    else:
        interests, attention, _ = encoders.forward(params, cfg, history, mask, noise)
    original = bl.select_interest
    bl.select_interest = lambda *args: (frozen["index"], frozen["probs"])
    try:
        return bl.bam_loss(params, cfg, interests, attention, target, negatives, u, cfg.tau)[0]
    finally:
        bl.select_interest = original


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        keep = x[i]
        x[i] = keep + eps
        up = f()
        x[i] = keep - eps
        down = f()
        x[i] = keep
        g[i] = (up - down) / (2 * eps)
    return g


CASES = [
    dict(selection="hard"),
    dict(selection="bam", tau=0.7),
    dict(selection="bam", loss="full"),
    dict(selection="expected"),
    dict(selection="expected", loss="full", multi_loss=True),
    dict(selection="bam", multi_loss=True),
    dict(selection="hard", loss="full", multi_loss=True),
    dict(selection="bam", remi_beta=0.5),
    dict(selection="bam", remi_beta=0.3, multi_loss=True),
    dict(selection="bam", remi_lambda=2.0),
    dict(selection="bam-l"),
    dict(model="mind", selection="bam"),
    dict(model="mind", selection="hard", loss="full"),
    dict(model="mind", selection="expected", multi_loss=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_gradients_match_finite_differences(case):
    cfg = replace(bn.Config(dim=5, n_interests=3, seq_len=L, n_negatives=S, linear_size=4), **case)
    params, history, mask, target, negatives, noise, u = problem(cfg)
    loss, grads, info = bn.loss_and_grads(params, cfg, history, mask, target, negatives, u, cfg.tau, noise)
    # The selection is a sample (and `expected` detaches its probabilities): freeze it.
    frozen = dict(index=info["index"], probs=info["probs"], w=info["attention"])
    batch = (history, mask, target, negatives, noise, u)
    assert np.isclose(frozen_loss(params, cfg, batch, frozen), loss, rtol=1e-12, atol=0)
    expected = {"comirec": {"embeddings.weight", "position_embedding", "linear1.0.weight", "linear2.weight"},
                "mind": {"embeddings.weight", "capsule_network.linear.weight"}}[cfg.model]
    assert set(grads) == expected  # MIND's relu and BaM_l's l1, l2 get no gradient, as in torch
    for name, g in grads.items():
        numeric = numeric_grad(lambda: frozen_loss(params, cfg, batch, frozen), params[name])
        scale = np.abs(numeric).max()
        assert scale > 0, name
        rel = np.abs(g - numeric).max() / scale
        assert rel < 1e-6, f"{name}: relative error {rel:.2e}"


def test_pieces_match_finite_differences():
    """squash, the REMI-weighted softmax loss, logsumexp over -inf entries and the routing regulariser,
    each on its own."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 3, 4))
    d_out = rng.standard_normal(z.shape)
    f = lambda: (encoders.squash(z) * d_out).sum()  # noqa: E731
    assert np.abs(encoders.squash_backward(z, d_out) - numeric_grad(f, z)).max() < 1e-8

    pos, neg, w = rng.standard_normal((4, 2)), rng.standard_normal((4, 2, 6)), rng.standard_normal((4, 2))
    d_pos, d_neg = bl.softmax_loss_backward(pos, neg, 0.7, w)
    f = lambda: (bl.softmax_loss(pos, neg, 0.7) * w).sum()  # noqa: E731
    assert np.abs(d_pos - numeric_grad(f, pos)).max() < 1e-8
    assert np.abs(d_neg - numeric_grad(f, neg)).max() < 1e-8

    x = rng.standard_normal((3, 4, 5))
    x[0, :, 1] = -np.inf  # a column of -inf: logsumexp is -inf there and its gradient 0
    d = rng.standard_normal((3, 5))
    d[0, 1] = 0.0
    g = bl.logsumexp_backward(x, d, 1)
    assert np.isfinite(g).all() and (g[0, :, 1] == 0).all()
    finite = np.isfinite(x)
    f = lambda: (np.where(np.isfinite(bl.logsumexp(x, 1)), bl.logsumexp(x, 1), 0) * d).sum()  # noqa: E731
    assert np.abs((g - numeric_grad(f, x))[finite]).max() < 1e-8

    a = rng.random((2, 3, 5))
    f = lambda: bl.routing_regulariser(a, 4)  # noqa: E731
    assert np.abs(bl.routing_regulariser_backward(a, 4) - numeric_grad(f, a)).max() < 1e-8


def test_a_wrong_gradient_is_caught():
    """The check can fail: a gradient off by a factor 1 + 1e-5 is reported."""
    cfg = bn.Config(dim=5, n_interests=3, seq_len=L, n_negatives=S)
    params, history, mask, target, negatives, noise, u = problem(cfg)
    _, grads, info = bn.loss_and_grads(params, cfg, history, mask, target, negatives, u, cfg.tau, noise)
    frozen = dict(index=info["index"], probs=info["probs"], w=info["attention"])
    numeric = numeric_grad(lambda: frozen_loss(params, cfg, (history, mask, target, negatives, noise, u), frozen),
                           params["linear2.weight"])
    wrong = grads["linear2.weight"] * (1 + 1e-5)
    assert np.abs(wrong - numeric).max() / np.abs(numeric).max() > 1e-6
