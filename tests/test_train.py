"""Training end to end: it learns, it is deterministic on the CPU, and a resumed run loses nothing."""
import json
import os

import pytest
import torch

import bam_minimal as bm
from bam_experiments import baselines, sasrec
from bam_runs import checkpoints, run_folder

sasrec.register()  # the SASRec cases below build it by its Config name


def small_cfg(**kw):
    base = dict(dim=32, seq_len=20, batch_size=64, n_negatives=200, eval_every=100, max_iters=300, device="cpu")
    base.update(kw)
    return bm.Config(**base)


def test_a_short_run_beats_most_popular_by_a_clear_margin():
    """About 10 s on one thread: the built-in synthetic data, BaM, the default model size, 600 iterations (4.5x
    most popular's Recall@20 and 4.9x its nDCG@20 when written)."""
    from bam_data.synth import generate
    data = bm.Dataset(generate()[0], name="synthetic")
    cfg = bm.Config(max_iters=600, eval_every=200, device="cpu")
    pop = bm.evaluate(baselines.popularity_scorer(data, "cpu"), data, "test", cfg)[0]
    _, result = bm.train(cfg, data, log=lambda s: None)
    assert result["test"]["recall@20"] > 2.5 * pop["recall@20"]
    assert result["test"]["ndcg@20"] > 2.5 * pop["ndcg@20"]
    assert result["iters"] == 600 and [h["iter"] for h in result["history"]] == [200, 400, 600]


def test_same_seed_same_numbers(synthetic_small):
    data = bm.Dataset(synthetic_small[0])
    runs = [bm.train(small_cfg(selection="bam"), data, log=lambda s: None)[1] for _ in range(2)]
    timeless = [[{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]] for r in runs]
    assert runs[0]["test"] == runs[1]["test"] and timeless[0] == timeless[1]
    other = bm.train(small_cfg(selection="bam", seed=1), data, log=lambda s: None)[1]
    assert other["test"] != runs[0]["test"]


@pytest.mark.parametrize("model", [dict(model="mind"), dict(model="sasrec", n_interests=1)])
def test_a_resumed_run_equals_an_uninterrupted_one(synthetic_small, tmp_path, model):
    """Stop after 200 iterations (as a crash after the second validation would), then resume.
    MIND draws routing noise and SASRec dropout masks: both streams must resume where they were."""
    data = bm.Dataset(synthetic_small[0])
    cfg = small_cfg(selection="bam", **model)
    _, whole = bm.train(cfg, data, run_folder.RunFolder(str(tmp_path / "whole"), cfg, data), log=lambda s: None)
    cut = small_cfg(selection="bam", max_iters=200, **model)
    bm.train(cut, data, run_folder.RunFolder(str(tmp_path / "cut"), cut, data), log=lambda s: None)
    os.remove(tmp_path / "cut" / "metrics.json")
    lines = []
    _, resumed = bm.train(cfg, data, run_folder.RunFolder(str(tmp_path / "cut"), cfg, data, log=lines.append),
                          log=lines.append)
    assert lines[0].startswith("resuming") and "iteration 200" in lines[0]
    assert resumed["test"] == whole["test"]
    assert [h["recall@10"] for h in resumed["history"]] == [h["recall@10"] for h in whole["history"]]
    with open(tmp_path / "cut" / "metrics.json") as f:
        assert json.load(f)["test"] == whole["test"]
    best = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert best["iter"] == whole["best_iter"]


def test_resume_refuses_another_config(synthetic_small, tmp_path):
    data = bm.Dataset(synthetic_small[0])
    cfg, other = small_cfg(max_iters=100), small_cfg(max_iters=100, lr=0.01)
    bm.train(cfg, data, run_folder.RunFolder(str(tmp_path), cfg, data), log=lambda s: None)
    with pytest.raises(bm.InputError, match="another config"):
        bm.train(other, data, run_folder.RunFolder(str(tmp_path), other, data), log=lambda s: None)


def test_early_stopping_and_best_checkpoint(synthetic_small, tmp_path):
    """patience=0 stops at the first validation that does not improve; the test uses the best model."""
    data = bm.Dataset(synthetic_small[0])
    cfg = small_cfg(patience=0, eval_every=20, max_iters=2000, lr=0.05)
    _, result = bm.train(cfg, data, run_folder.RunFolder(str(tmp_path), cfg, data), log=lambda s: None)
    history = result["history"]
    assert result["iters"] < 2000 and history[-1]["recall@10"] <= max(h["recall@10"] for h in history[:-1])
    best = max(history, key=lambda h: h["recall@10"])
    assert result["best_iter"] == best["iter"]
    model = checkpoints.load(str(tmp_path / "checkpoint.pt"))[0]
    valid = bm.evaluate(bm.model_scorer(model), data, "valid", cfg)[0]
    assert valid["recall@10"] == best["recall@10"]


@pytest.mark.parametrize("variant", [dict(model="sasrec", n_interests=1, selection="hard"),
                                     dict(selection="bam-l", multi_loss=True),
                                     dict(selection="expected", loss="full"),
                                     dict(selection="hard", remi_beta=0.1, remi_lambda=100.0),
                                     dict(selection="bam", tau_schedule="hard-to-soft", tau_anneal_iters=100)])
def test_every_variant_trains(synthetic_small, variant):
    data = bm.Dataset(synthetic_small[0])
    _, result = bm.train(small_cfg(max_iters=100, **variant), data, log=lambda s: None)
    assert result["test"]["recall@20"] > 0 and all(h["loss"] == h["loss"] for h in result["history"])


def test_validate_scores_one_fixed_sample(synthetic_small, monkeypatch):
    """Every validation scores the same `valid_sample` users, drawn once from the seed, and the twin
    validates the same ones; a sample as large as the data is every user, in order."""
    import bam_numpy
    from bam_numpy import training
    seen = {"torch": [], "numpy": []}
    real_bm, real_np = bm.evaluate, training.evaluate

    def spy(name, real):
        def evaluate(scorer, data, split, cfg, rows=None, *a, **k):
            if split == "valid":
                seen[name].append(None if rows is None else list(rows))
            return real(scorer, data, split, cfg, rows, *a, **k)
        return evaluate
    monkeypatch.setitem(bm.PROTOCOLS["loo"], "evaluate", spy("torch", real_bm))  # what validate calls
    monkeypatch.setattr(training, "evaluate", spy("numpy", real_np))
    data = bm.Dataset(synthetic_small[0])
    cfg = small_cfg(max_iters=40, eval_every=20, valid_sample=100)
    bm.train(cfg, data, log=lambda s: None)
    training.train(bam_numpy.Config(**{k: v for k, v in vars(cfg).items() if k != "device"}),
                   bam_numpy.Dataset(synthetic_small[0]), log=lambda s: None)
    first = seen["torch"][0]
    assert len(seen["torch"]) == 2 and all(rows == first for rows in seen["torch"] + seen["numpy"])
    assert len(first) == 100 == len(set(first)) and first == sorted(first)
    other = bm.train(small_cfg(max_iters=20, eval_every=20, valid_sample=100, seed=7), data, log=lambda s: None)
    assert other and seen["torch"][-1] != first  # another seed, another sample
    bm.train(small_cfg(max_iters=20, eval_every=20, valid_sample=len(data.users)), data, log=lambda s: None)
    assert seen["torch"][-1] == list(range(len(data.users)))
