"""The losses: sampled / full softmax, REMI, the multi-interest loss, and `expected` selection."""
import math

import pytest
import torch

import bam_minimal as bm
from bam_experiments import sasrec

sasrec.register()  # the SASRec cases below build it by its Config name


def setup(selection="bam", **kw):
    cfg = bm.Config(dim=8, n_interests=3, seq_len=6, selection=selection, n_negatives=12, **kw)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 20).double()
    gen = torch.Generator().manual_seed(1)
    mask = (torch.arange(6)[None] < torch.tensor([6, 2, 4, 1])[:, None]).double()
    history = torch.randint(1, 21, (4, 6), generator=gen) * mask.long()
    target = torch.randint(1, 21, (4,), generator=gen)
    negatives = torch.randint(0, 21, (12,), generator=gen)
    u = torch.rand(4, generator=gen, dtype=torch.float64)
    return cfg, model, history, mask, target, negatives, u


def loss_of(cfg, model, history, mask, target, negatives, u, tau=1.0):
    interests, attention = model(history, mask)
    return bm.bam_loss(model, cfg, interests, attention, target, negatives, u, tau)


def test_sampled_softmax_by_hand():
    cfg, model, history, mask, target, negatives, u = setup("hard")
    interests, _ = model(history, mask)
    E = model.embeddings.weight
    total = 0.0
    for b in range(4):
        n = int(torch.argmax(interests[b] @ E[target[b]]))
        s = interests[b, n]
        logits = torch.cat([(s @ E[target[b]])[None], E[negatives] @ s])
        total += -torch.log_softmax(logits, 0)[0]
    assert loss_of(cfg, model, history, mask, target, negatives, u).item() == pytest.approx(total.item() / 4)


def test_full_softmax_excludes_padding_and_counts_the_target_once():
    cfg, model, history, mask, target, negatives, u = setup("hard", loss="full")
    interests, _ = model(history, mask)
    E = model.embeddings.weight
    total = 0.0
    for b in range(4):
        s = interests[b, int(torch.argmax(interests[b] @ E[target[b]]))]
        total += -torch.log_softmax(E[1:] @ s, 0)[target[b] - 1]
    assert loss_of(cfg, model, history, mask, target, negatives, u).item() == pytest.approx(total.item() / 4)


def test_remi_weights_by_hand_and_beta_zero_is_plain():
    gen = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(5, 7, generator=gen, dtype=torch.float64)
    beta = 0.7
    w = torch.exp(beta * neg) / torch.exp(beta * neg).mean(-1, keepdim=True)  # mean-one weights
    expected = -torch.log(torch.exp(pos) / (torch.exp(pos) + (w * torch.exp(neg)).sum(-1)))
    assert torch.allclose(bm.softmax_loss(pos, neg, beta), expected)
    plain = -torch.log_softmax(torch.cat([pos[:, None], neg], 1), 1)[:, 0]
    assert torch.allclose(bm.softmax_loss(pos, neg, 0.0), plain)
    assert not torch.allclose(bm.softmax_loss(pos, neg, beta), plain)


def test_remi_reweighting_keeps_its_gradient():
    """As in the REMI and BaM code, the weights are not detached: the gradient differs from the one
    with frozen weights, and equals the gradient of the by-hand formula."""
    neg = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    pos = torch.zeros(1, dtype=torch.float64)
    g = torch.autograd.grad(bm.softmax_loss(pos, neg, 2.0).sum(), neg)[0]
    frozen = torch.log(6 * torch.softmax(2.0 * neg, -1)).detach()
    assert bm.softmax_loss(pos, neg + frozen).item() == pytest.approx(bm.softmax_loss(pos, neg, 2.0).item())
    g_frozen = torch.autograd.grad(bm.softmax_loss(pos, neg + frozen).sum(), neg)[0]
    assert not torch.allclose(g, g_frozen)
    w = torch.exp(2.0 * neg) / torch.exp(2.0 * neg).mean()
    by_hand = torch.log(1 + (w * torch.exp(neg)).sum())
    assert torch.allclose(g, torch.autograd.grad(by_hand, neg)[0])


def test_routing_regulariser_by_hand_and_lambda_zero():
    A = torch.softmax(torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)), -1)
    expected = 0.0
    for b in range(2):
        C = A[b] - A[b].mean(1, keepdim=True)
        expected += (torch.diagonal(C @ C.T / 8) ** 2).sum()
    assert bm.routing_regulariser(A, 8).item() == pytest.approx(expected.item())
    cfg, model, history, mask, target, negatives, u = setup("hard")
    base = loss_of(cfg, model, history, mask, target, negatives, u)
    cfg.remi_lambda = 0.0
    assert loss_of(cfg, model, history, mask, target, negatives, u).item() == base.item()
    cfg.remi_lambda = 100.0
    interests, attention = model(history, mask)
    reg = bm.routing_regulariser(attention, cfg.dim)
    assert loss_of(cfg, model, history, mask, target, negatives, u).item() == pytest.approx(
        base.item() + 100 * reg.item())


def test_multi_interest_loss_by_hand():
    """[BD24] Eq. (10)-(13): score(i) = logsumexp_n m_u^n . e_i, added to the selected-interest loss."""
    cfg, model, history, mask, target, negatives, u = setup("hard")
    single = loss_of(cfg, model, history, mask, target, negatives, u)
    cfg.multi_loss = True
    interests, _ = model(history, mask)
    E = model.embeddings.weight
    extra = 0.0
    for b in range(4):
        logits = torch.stack([torch.logsumexp(interests[b] @ E[i], 0) for i in [target[b], *negatives]])
        extra += -torch.log_softmax(logits, 0)[0]
    assert loss_of(cfg, model, history, mask, target, negatives, u).item() == pytest.approx(
        single.item() + extra.item() / 4)


def test_expected_selection_gradient_is_the_probability_weighted_mix():
    cfg, model, history, mask, target, negatives, u = setup("expected")
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss_of(cfg, model, history, mask, target, negatives, u), params)
    interests, _ = model(history, mask)
    E = model.embeddings.weight
    probs = torch.softmax(interests @ E[target][..., None], 1)[..., 0].detach()   # (B, N)
    mix = [torch.zeros_like(p) for p in params]
    for n in range(3):
        interests, _ = model(history, mask)
        pos, neg = bm.item_scores(interests[:, n:n + 1], target, negatives, E, "sampled")
        per = bm.softmax_loss(pos, neg)[:, 0]                                      # (B,)
        g = torch.autograd.grad((probs[:, n] * per).mean(), params)
        mix = [m + gi for m, gi in zip(mix, g)]
    for a, b in zip(grads, mix):
        assert torch.allclose(a, b, atol=1e-12)


def test_bam_l_correlation_goes_through_the_maps():
    cfg, model, history, mask, target, negatives, u = setup("bam-l")
    interests, _ = model(history, mask)
    e = model.embeddings.weight[target]
    logits = bm.interest_logits(model, model.cfg.selection, interests, e)
    by_hand = torch.stack([model.l1(interests[b]) @ model.l2(e[b]) for b in range(4)])
    assert torch.allclose(logits, by_hand)
    # the sample is not differentiable: l1 and l2 get no gradient, as in the official code
    loss = loss_of(cfg, model, history, mask, target, negatives, u)
    loss.backward()
    assert model.l1.weight.grad is None and model.l2.weight.grad is None


def dense_sasrec(model, history, mask):
    """SASRec the plain way, for the test: every padded position through nn.MultiheadAttention with a
    causal mask, then the last real position. bam_experiments/sasrec.py packs real positions instead."""
    L, d = history.shape[1], model.cfg.dim
    length = mask.sum(1).long()
    pos = ((model.cfg.seq_len - length)[:, None] + torch.arange(L)).clamp(max=model.cfg.seq_len - 1)
    x = (model.embeddings(history) * d ** 0.5 + model.position_embedding[0, pos]) * mask[..., None]
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    for block in model.blocks:
        q = block.attn_norm(x)
        x = block.ffn_norm(q + block.attn(q, x, x, attn_mask=causal, need_weights=False)[0])
        x = (x + block.ffn[3](block.ffn[1](block.ffn[0](x)))) * mask[..., None]
    return model.last_norm(x[torch.arange(len(x)), length - 1])[:, None]


def test_sasrec_packed_equals_dense():
    """Packing real positions and bucketing rows by length changes no number (float64): forward and gradients."""
    cfg = bm.Config(model="sasrec", n_interests=1, dim=16, seq_len=9, dropout=0.0)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 40).double()
    lengths = torch.tensor([1, 2, 3, 4, 5, 7, 8, 9, 9, 3])  # every bucket, ties, a full window
    mask = (torch.arange(9) < lengths[:, None]).double()
    history = torch.randint(1, 41, (10, 9)) * mask.long()
    packed, _ = model(history, mask)
    assert packed.shape == (10, 1, 16)
    dense = dense_sasrec(model, history, mask)
    assert torch.allclose(packed, dense, atol=1e-12, rtol=0)
    grads = [torch.autograd.grad((out ** 2).sum(), list(model.parameters()), allow_unused=True)
             for out in (packed, dense)]
    for a, b in zip(*grads):
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, atol=1e-10, rtol=0))


def test_sasrec_is_causal():
    """A row's interest depends on its own items only, and changes when an earlier item does."""
    cfg = bm.Config(model="sasrec", n_interests=1, dim=16, seq_len=7, dropout=0.0)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 40).eval()
    history = torch.tensor([[3, 5, 7, 9, 11, 13, 15]])
    mask = torch.tensor([[1.0] * 4 + [0.0] * 3])
    before, _ = model(history, mask)
    after, _ = model(torch.tensor([[3, 5, 7, 9, 1, 2, 4]]), mask)   # only padding changed
    assert torch.equal(before, after)
    earlier, _ = model(torch.tensor([[3, 6, 7, 9, 11, 13, 15]]), mask)
    assert not torch.allclose(before, earlier)


def test_sasrec_dropout_draws_from_the_step_generator():
    """Training dropout comes from the generator train_step passes (each process's own stream), never
    from torch's global one; the same generator state gives the same masks; evaluation has none."""
    cfg = bm.Config(model="sasrec", n_interests=1, dim=16, seq_len=7, dropout=0.5)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 40).train()
    history, mask = torch.tensor([[3, 5, 7, 9, 11, 0, 0]] * 4), torch.tensor([[1.0] * 5 + [0.0] * 2] * 4)
    state = torch.get_rng_state()
    a = model(history, mask, torch.Generator().manual_seed(1))[0]
    b = model(history, mask, torch.Generator().manual_seed(1))[0]
    c = model(history, mask, torch.Generator().manual_seed(2))[0]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])  # rows draw their own masks
    model.eval()
    assert torch.equal(model(history, mask, torch.Generator().manual_seed(1))[0], model(history, mask)[0])


def test_full_softmax_never_puts_mass_on_padding():
    cfg, model, history, mask, target, negatives, u = setup("hard", loss="full")
    interests, _ = model(history, mask)
    pos, neg = bm.item_scores(interests[:, :1], target, negatives, model.embeddings.weight, "full")
    assert (neg[..., 0] == -math.inf).all()
    assert (neg.gather(-1, target[:, None, None]) == -math.inf).all()


def test_sasrec_gradients_are_the_same_on_every_run_with_two_threads():
    """SASRec's runs differed from the second step on, with one seed and two threads: the position embedding
    was read by indexing, whose gradient is a multi-threaded scatter-add (summed in any order). It is an
    embedding lookup now, as the items are, and every gradient is the same bit for bit on every run."""
    import numpy as np
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = bm.Config(model="sasrec", n_interests=1, selection="hard", dim=32, seq_len=30, device="cpu")
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        data = bm.Dataset({u: list(rng.integers(1, 300, rng.integers(5, 60))) for u in range(1, 400)})
        model = bm.build_model(cfg, data.n_items).eval()
        history, mask, target = (torch.as_tensor(a) for a in bm.train_batch(data, rng, 256, cfg.seq_len))
        negatives = torch.randint(1, data.n_items + 1, (200,), generator=torch.Generator().manual_seed(1))
        grads = []
        for _ in range(8):
            model.zero_grad(set_to_none=True)
            interests, attention = model(history, mask)
            bm.bam_loss(model, cfg, interests, attention, target, negatives, torch.zeros(len(target)), 1.0).backward()
            grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        assert [k for g in grads for k in g if not torch.equal(g[k], grads[0][k])] == []
    finally:
        torch.set_num_threads(threads)
