"""
On Amazon Beauty 2014 (../shared/data, 22,363 users, 12,101 items), numpy and torch evaluation of one
checkpoint (a short training run, saved and loaded back) give identical top-20 lists, identical ranks and
identical metrics for 4,000 users drawn at random (every user took 70 s of the suite's 4 minutes; the users are
scored independently, a block at a time, so 4,000 of them exercise every code path that 22,363 do, the blocks'
edges included).
float64 on both sides: in float32 the two BLAS libraries can round a score differently in the last
bit, and the tie rule then orders two near-equal items differently (tests/test_twin_agreement.py
covers float32 to 4 decimals). Skipped when ../shared is absent. Takes about 10 s.

    python -m pytest tests/test_twin_beauty.py
"""
from pathlib import Path

import numpy as np
import pytest

import bam_minimal as bm
from bam_data import formats
from bam_runs import checkpoints
from bam_runs import run_folder
from bam_crosscheck import numpy_engine

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "amazon-beauty-2014" / "Beauty.txt"

pytestmark = pytest.mark.skipif(not BEAUTY.exists(), reason=f"{BEAUTY} is absent (../shared is not mounted)")


def test_beauty_numpy_and_torch_rank_identically(one_torch_thread, tmp_path):
    data = bm.Dataset(formats.read(BEAUTY)[0], name="Beauty")
    assert (len(data.users), data.n_items, data.n_interactions) == (22363, 12101, 198502)
    # ComiRec-SA + BaM, N = 4, d = 64, L = 50, history mask `exclude`: 100 steps, then its checkpoint
    cfg = bm.Config(device="cpu", max_iters=100, eval_every=100, valid_users=500)
    bm.train(cfg, data, run_folder.RunFolder(str(tmp_path), cfg, data), log=lambda s: None)
    model, cfg, _, _ = checkpoints.load(str(tmp_path / "checkpoint.pt"))
    model = model.double()
    rows = np.sort(np.random.default_rng(0).choice(len(data.users), 4000, replace=False))   # (4000,)
    t_metrics, t_ranks, t_top = bm.evaluate(bm.model_scorer(model), data, "test", cfg, rows=rows, k_top=20)
    n_metrics, n_ranks, n_top = numpy_engine.evaluate_numpy(model, cfg, data, "test", rows=rows, k_top=20)
    assert n_top.shape == t_top.shape == (4000, 20)
    differ = np.flatnonzero((n_top != t_top).any(1))
    assert len(differ) == 0, f"{len(differ)} users' top-20 lists differ, e.g. user row {differ[:5]}"
    assert np.array_equal(n_ranks, t_ranks)
    assert n_metrics == t_metrics
