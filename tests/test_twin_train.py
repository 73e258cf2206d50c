"""
bam_numpy trains ComiRec-SA + BaM end to end on its own (numpy init, batches, hand-written gradients,
Adam) and reaches the torch trainer's test accuracy within noise on synthetic data with planted
interests. Short runs (400 iterations, 1,000 users) so that the test takes seconds.

    python -m pytest tests/test_twin_train.py
"""
from dataclasses import asdict

import numpy as np

import bam_minimal as bm
from bam_experiments import baselines
import bam_numpy as bn
from bam_data import synth

SEEDS = (1, 2, 3)


def test_numpy_training_reaches_torch_accuracy(one_torch_thread):
    data = bm.Dataset(synth.generate(synth.SynthConfig(users=1000, items=400, topics=10, seed=1))[0])
    mostpop = bm.evaluate(baselines.popularity_scorer(data, "cpu"), data, "test", bm.Config(device="cpu"))[0]
    torch_r, numpy_r = [], []
    for seed in SEEDS:
        cfg = bm.Config(dim=32, seq_len=30, n_negatives=256, batch_size=128, max_iters=400, eval_every=200,
                        seed=seed, device="cpu")
        torch_r.append(bm.train(cfg, data, log=lambda s: None)[1]["test"])
        params, result = bn.train(bn.Config(**asdict(cfg)), data, np.float32, log=lambda s: None)
        numpy_r.append(result["test"])
        assert result["iters"] == 400 and result["best_iter"] in (200, 400)
        assert all(p.dtype == np.float32 for p in params.values())
    for metric in ("recall@20", "ndcg@20"):
        t, n = np.mean([r[metric] for r in torch_r]), np.mean([r[metric] for r in numpy_r])
        # one test set of 1,000 users: a standard deviation of about 0.016 per run on recall@20
        assert abs(n - t) < 0.04, (metric, t, n, torch_r, numpy_r)
        assert min(r[metric] for r in numpy_r) > 2 * mostpop[metric], (metric, numpy_r, mostpop)


def test_numpy_training_is_deterministic_and_learns_mind():
    data = bn.Dataset(synth.generate(synth.SynthConfig(users=300, items=150, topics=5, seed=2))[0])
    cfg = bn.Config(model="mind", dim=16, seq_len=20, n_negatives=64, batch_size=64, max_iters=150,
                    eval_every=50, seed=5)
    a = bn.train(cfg, data, np.float64, log=lambda s: None)
    b = bn.train(cfg, data, np.float64, log=lambda s: None)
    assert a[1]["test"] == b[1]["test"]
    assert all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
    assert [h["loss"] for h in a[1]["history"]][-1] < [h["loss"] for h in a[1]["history"]][0]
