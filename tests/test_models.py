"""Interest selection, the encoders, and checkpoint compatibility with the official code."""
import numpy as np
import pytest
import torch

import bam_minimal as bm

# Critical values of the chi-square distribution at p = 0.001, by degrees of freedom.
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52}


def chi_square(index, probs):
    counts = np.bincount(index, minlength=len(probs))
    expected = len(index) * np.asarray(probs)
    return float(((counts - expected) ** 2 / expected).sum())


def test_hard_selection_is_the_argmax():
    logits = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    index, _ = bm.select_interest(logits, "hard", 1.0, torch.rand(500))
    assert torch.equal(index, logits.argmax(-1))
    # ties go to the first interest
    index, _ = bm.select_interest(torch.tensor([[1.0, 3.0, 3.0]]), "hard", 1.0, torch.rand(1))
    assert index.item() == 1


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_bam_sampling_frequencies_match_the_softmax(tau):
    """[KDD24] Eq. (3): n ~ softmax(tau * M_u^T e_target). A chi-square test with a fixed seed."""
    gen = torch.Generator().manual_seed(7)
    logits = torch.tensor([[0.3, -1.0, 1.2, 0.1]]).repeat(40000, 1)
    index, probs = bm.select_interest(logits, "bam", tau, torch.rand(40000, generator=gen))
    p = torch.softmax(tau * logits[0], -1).numpy()
    assert np.allclose(probs[0].numpy(), p)
    assert chi_square(index.numpy(), p) < CHI2_999[3]
    # and the test can fail: the same draws are far from uniform
    assert chi_square(index.numpy(), np.full(4, 0.25)) > CHI2_999[3]


def test_tau_moves_the_distribution_between_uniform_and_argmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    top = [bm.select_interest(logits, "bam", tau, torch.rand(1))[1][0, 0].item() for tau in (0.0, 0.5, 1, 4, 50)]
    assert top[0] == pytest.approx(0.25)
    assert all(a < b for a, b in zip(top, top[1:]))
    assert top[-1] > 0.999


def test_inverse_cdf_draw_is_deterministic_in_u():
    probs_logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    draws = [bm.select_interest(probs_logits, "bam", 1.0, torch.tensor([u]))[0].item()
             for u in (0.0, 0.0999, 0.1001, 0.2999, 0.3001, 0.5999, 0.6001, 0.9999999)]
    assert draws == [0, 0, 1, 1, 2, 2, 3, 3]


def test_tau_schedules_are_linear_between_the_ends():
    cfg = bm.Config(tau=1.0, tau_hard=9.0, tau_schedule="hard-to-soft", tau_anneal_iters=100)
    assert [bm.tau_at(cfg, t) for t in (0, 50, 100, 500)] == [9.0, 5.0, 1.0, 1.0]
    cfg.tau_schedule = "soft-to-hard"
    assert [bm.tau_at(cfg, t) for t in (0, 50, 100)] == [1.0, 5.0, 9.0]


def batch(B=6, L=8, lengths=(1, 3, 8, 5, 2, 8), n_items=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.arange(L)[None] < torch.tensor(lengths)[:, None]).float()
    history = torch.randint(1, n_items + 1, (B, L), generator=gen) * mask.long()
    return history, mask


def test_comirec_gives_padded_positions_zero_attention():
    cfg = bm.Config(dim=16, n_interests=3, seq_len=8)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 30)
    history, mask = batch()
    interests, attention = model(history, mask)
    assert interests.shape == (6, 3, 16) and attention.shape == (6, 3, 8)
    assert (attention[mask[:, None].expand_as(attention) == 0] == 0).all()
    assert torch.allclose(attention.sum(-1), torch.ones(6, 3))
    # changing what sits in padded positions changes nothing
    noisy = history + (1 - mask.long()) * 7
    assert torch.equal(model(noisy, mask)[0], interests)


def test_comirec_equals_the_dense_official_computation():
    """Running the MLP on real positions only equals the official dense MLP + masking."""
    cfg = bm.Config(dim=16, n_interests=3, seq_len=8)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 30)
    history, mask = batch()
    h = model.embeddings(history) * mask[..., None]
    dense = model.linear2(model.linear1(h + model.position_embedding.repeat(6, 1, 1))).transpose(2, 1)
    dense = torch.where(mask[:, None].repeat(1, 3, 1) == 0, torch.full_like(dense, -2 ** 32 + 1), dense)
    expected = torch.softmax(dense, -1) @ h
    assert torch.allclose(model(history, mask)[0], expected, atol=1e-6)


def official_state_dict(model, n_items=30, d=16, N=3, L=8):
    """A state_dict built by hand from the official parameter names and shapes."""
    if model == "comirec":
        return {"embeddings.weight": torch.randn(n_items + 1, d), "position_embedding": torch.randn(1, L, d),
                "linear1.0.weight": torch.randn(4 * d, d), "linear2.weight": torch.randn(N, 4 * d)}
    return {"embeddings.weight": torch.randn(n_items + 1, d), "capsule_network.relu.0.weight": torch.randn(d, d),
            "capsule_network.linear.weight": torch.randn(d, d)}


@pytest.mark.parametrize("model", ["comirec", "mind"])
def test_official_state_dicts_load_strictly(model):
    cfg = bm.Config(model=model, dim=16, n_interests=3, seq_len=8)
    sd = official_state_dict(model)
    net = bm.build_model(cfg, 30)
    assert set(net.state_dict()) == set(sd)
    net.load_state_dict(sd, strict=True)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())


def test_bam_l_has_the_shapes_of_the_authors_checkpoints():
    net = bm.build_model(bm.Config(selection="bam-l"), 100)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if k.startswith("l")}
    assert shapes == {"l1.weight": (16, 64), "l1.bias": (16,), "l2.weight": (16, 64), "l2.bias": (16,),
                      "linear1.0.weight": (256, 64), "linear2.weight": (4, 256)}
    assert (net.l1.bias == 0).all()  # the extended code zeroes every 1-d parameter


def test_initialisation_is_kaiming_normal_on_every_matrix():
    torch.manual_seed(0)
    net = bm.build_model(bm.Config(), 20000)
    std = net.embeddings.weight.std().item()
    assert std == pytest.approx((2 / 64) ** 0.5, rel=0.02)  # fan_in = d, gain sqrt(2)
    assert net.embeddings.weight[0].abs().sum() > 0           # padding row is initialised too
    assert net.position_embedding.std().item() == pytest.approx((2 / (50 * 64)) ** 0.5, rel=0.05)


def test_mind_routing_noise_is_an_input():
    """MIND's initial routing logits are `routing=`; without them, they are drawn from `gen`."""
    cfg = bm.Config(model="mind", dim=16, n_interests=3, seq_len=8)
    torch.manual_seed(0)
    net = bm.build_model(cfg, 30)
    history, mask = batch()
    routing = torch.randn(6, 3, 8)
    a, w = net(history, mask, routing=routing)
    assert torch.equal(a, net(history, mask, torch.Generator().manual_seed(9), routing=routing)[0])  # gen unused
    assert not torch.equal(a, net(history, mask, routing=torch.randn(6, 3, 8))[0])
    assert (w[mask[:, None].expand_as(w) == 0] == 0).all()
    g = torch.Generator().manual_seed(3)
    b = net(history, mask, g)[0]
    assert torch.equal(b, net(history, mask, torch.Generator().manual_seed(3))[0])


def test_mind_gradient_flows_only_through_the_last_routing_pass():
    cfg = bm.Config(model="mind", dim=8, n_interests=2, seq_len=5, routing_iters=3)
    torch.manual_seed(0)
    net = bm.build_model(cfg, 10)
    history, mask = batch(B=2, L=5, lengths=(5, 3), n_items=10)
    noise = torch.randn(2, 2, 5)
    h = (net.embeddings(history) * mask[..., None]).detach().requires_grad_()
    z, w = net.capsule_network(h, mask, noise)
    z.sum().backward()
    # with the routing weights frozen, the gradient is that of w @ squash-input through linear only
    u = net.capsule_network.linear(h)
    w_const = w.detach()
    y = bm.squash(w_const @ u)
    grad = torch.autograd.grad(y.sum(), h)[0]
    assert torch.allclose(h.grad, grad, atol=1e-6)


def test_mind_evaluation_does_not_depend_on_the_block_size():
    """MIND's routing noise is counter-based, keyed by (seed, row): blocks (and devices) see the same numbers."""
    rng = np.random.default_rng(0)
    seqs = {u: list(rng.choice(np.arange(1, 50), rng.integers(3, 20), replace=False)) for u in range(1, 60)}
    data = bm.Dataset(seqs)
    cfg = bm.Config(model="mind", dim=8, n_interests=3, seq_len=10)
    torch.manual_seed(0)
    net = bm.build_model(cfg, data.n_items).eval()
    ranks = [bm.evaluate(bm.model_scorer(net), data, "test", cfg, block=b)[1] for b in (7, 59)]
    assert np.array_equal(*ranks)
    double = bm.evaluate(bm.model_scorer(net.double()), data, "test", cfg, block=11)[1]  # float64 MIND works
    assert (double == ranks[0]).mean() > 0.9
