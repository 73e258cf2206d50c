"""
bam_minimal (torch) and bam_numpy agree on the same weights and batch: forward, selection (the same
uniform draw), both losses, every gradient, full-item scores, top-20 lists, ranks and metrics in both
history-mask modes; float64 to 1e-10 relative with identical lists and metrics, float32 to 1e-4 with
metrics equal to 4 decimals. Also: the data functions, the Config, Adam, and MIND's evaluation noise.

    python -m pytest tests/test_twin_agreement.py
"""
from dataclasses import asdict, fields, replace

import numpy as np
import pytest
import torch

import bam_minimal as bm
import bam_numpy as bn
from bam_data import synth
from bam_numpy import encoders, training
from bam_crosscheck import agreement, numpy_engine


@pytest.fixture(scope="module")
def data():
    return bm.Dataset(synth.generate(synth.SynthConfig(users=300, items=150, seed=5))[0], name="synthetic-small")


def model_for(cfg, n_items, seed=0):
    torch.manual_seed(seed)
    return bm.build_model(cfg, n_items)


CASES = [
    dict(),                                                   # comirec + bam: hard and bam, sampled and full
    dict(selection="expected", multi_loss=True, tau=0.5),
    dict(selection="bam-l", history_mask="official"),
    dict(remi_beta=0.5, remi_lambda=1.0),
    dict(model="mind"),
    dict(model="mind", selection="expected", multi_loss=True),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_torch_and_numpy_agree(data, case, dtype):
    cfg = replace(bm.Config(dim=16, seq_len=20, n_negatives=200, device="cpu"), **case)
    rows, ok = agreement.crosscheck(model_for(cfg, data.n_items), cfg, data, dtype=dtype, batch_size=48,
                                    log=lambda s: None)
    assert ok, [r for r in rows if not r["ok"]]
    names = " ".join(r["quantity"] for r in rows)
    for part in ("interests", "loss [", "grad embeddings.weight", "[hard,", "[bam,", "sampled]", "full]",
                 "[exclude]", "[official]", "top-20 lists", "recall@20"):
        if part == "full]" and cfg.remi_beta:
            continue  # REMI reweights sampled negatives only
        assert part in names, part
    if dtype == "float64":
        assert all(r["abs_err"] == 0 for r in rows if "lists" in r["quantity"] or "@" in r["quantity"])


def test_crosscheck_can_fail(data, monkeypatch):
    """A numpy gradient wrong by 1e-8 relative makes the float64 cross-check fail, on exactly those rows."""
    cfg = bm.Config(dim=16, seq_len=20, n_negatives=200, device="cpu")
    model = model_for(cfg, data.n_items)
    backward = encoders.comirec_backward

    def slightly_wrong(*args, **kwargs):
        grads = backward(*args, **kwargs)
        grads["linear2.weight"] = grads["linear2.weight"] * (1 + 1e-8)
        return grads
    monkeypatch.setattr(encoders, "comirec_backward", slightly_wrong)
    rows, ok = agreement.crosscheck(model, cfg, data, batch_size=32, log=lambda s: None)
    assert not ok
    assert {r["quantity"] for r in rows if not r["ok"]} == {f"grad linear2.weight [{s}, {loss}]"
                                                           for s in ("bam", "hard") for loss in ("sampled", "full")}


def test_same_batches_and_reader(data, tmp_path):
    for seed in range(3):
        a = bm.train_batch(data, np.random.default_rng(seed), 64, 20)
        b = bn.train_batch(data, np.random.default_rng(seed), 64, 20)
        assert all((x == y).all() and x.dtype == y.dtype for x, y in zip(a, b))
    path = tmp_path / "pairs.txt"
    path.write_text("1 3\n1 4\n1 9 x\n2 5\n\n2 3\n2 4\n")
    assert bm.read_official(str(path)) == bn.read_official(str(path))
    d1, d2 = bm.Dataset(bm.read_official(str(path))), bn.Dataset(bn.read_official(str(path)))
    for field in ("users", "lengths", "start", "items", "trainable"):
        assert (getattr(d1, field) == getattr(d2, field)).all()
    assert d1.n_items == d2.n_items and d1.skipped == d2.skipped
    for split in ("valid", "test"):
        assert (bm.split_targets(data, split) == bn.split_targets(data, split)).all()
    path.write_text("1 0\n")
    with pytest.raises(bn.InputError, match="item id 0 is padding"):
        bn.read_official(str(path))


def test_config_mirrors_bam_minimal():
    assert [(f.name, f.default) for f in fields(bn.Config)] == [(f.name, f.default) for f in fields(bm.Config)]
    assert bn.config.CHOICES == bm.CHOICES
    assert bn.MASK == bm.MASK
    for cfg in (bm.Config(), bm.Config(tau_schedule="hard-to-soft"), bm.Config(tau_schedule="soft-to-hard")):
        for it in (0, 10, 5000, 20000):
            assert bn.tau_at(bn.Config(**asdict(cfg)), it) == bm.tau_at(cfg, it)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_adam_step_matches_torch(fused, dtype):
    rng = np.random.default_rng(0)
    shapes = {"a": (5, 3), "b": (7,), "never": (2, 2)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    tparams = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in params.items()}
    params = {k: v.astype(tparams[k].detach().numpy().dtype) for k, v in params.items()}
    opt = torch.optim.Adam(tparams.values(), lr=3e-3, weight_decay=0.01, fused=fused)
    state = training.adam_init(params)
    for step in range(6):
        grads = {k: rng.standard_normal(shapes[k]).astype(params[k].dtype) for k in ("a", "b")}
        if step == 2:
            grads.pop("b")  # no gradient this step: torch skips it, and so does adam_step
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k]) if k in grads else None
        opt.step()
        training.adam_step(params, grads, state, 3e-3, weight_decay=0.01)
    tol = 1e-13 if dtype == torch.float64 else 1e-6
    for k in params:
        want = tparams[k].detach().numpy()
        assert np.abs(params[k] - want).max() <= tol * np.abs(want).max(), k
    assert state["step"] == {"a": 6, "b": 5, "never": 0}


def test_mind_evaluation_noise_is_bam_minimals(data):
    """numpy_engine.eval_noise gives the routing logits that bam_minimal.evaluate hands MIND, so the numpy
    engine gives the torch engine's numbers for MIND."""
    cfg = bm.Config(model="mind", dim=16, seq_len=20, device="cpu")
    model = model_for(cfg, data.n_items).eval()
    noise = numpy_engine.eval_noise(cfg, data)
    seen = []
    forward = model.forward
    model.forward = lambda h, m, routing: seen.append(routing) or forward(h, m, routing=routing)
    t_metrics, t_ranks, _ = bm.evaluate(bm.model_scorer(model), data, "test", cfg, block=37)
    assert np.array_equal(np.concatenate(seen), noise)  # per block, counter-based: the same as drawn at once
    model.forward = forward
    n_metrics, n_ranks, _ = numpy_engine.evaluate_numpy(model, cfg, data, "test")
    assert abs(n_metrics["recall@20"] - t_metrics["recall@20"]) < 1.5e-4
    assert (n_ranks != t_ranks).mean() < 0.01
