"""
A non-finite number never helps (issue 14): in both engines a NaN or +inf score of another item ranks
above the target, a non-finite target is a miss, -inf (the mask) ranks below everything; evaluation
counts the users whose scores were not all finite; training stops before it validates, tests or saves
non-finite weights, with a TrainingError, not bad input: one line and exit code 3, from `cli.py train` and from
`python bam_minimal.py` alike; MIND's evaluation noise is a counter-based stream keyed by (seed, row).

    OMP_NUM_THREADS=1 python -m pytest tests/test_nonfinite.py
"""
import math
import os

import numpy as np
import pytest
import torch

import bam_minimal as bm
import bam_numpy as bn
from bam_numpy import ranking as bnr
from bam_numpy import training as bnt
from bam_numpy.encoders import routing_noise as twin_routing_noise
from bam_runs import run_folder
from bam_crosscheck import numpy_engine
from conftest import ROOT

NAN, INF = math.nan, math.inf


# -----------------------------------------------------------------------------
# The rule, in the torch reference, the numpy plain functions and the numba kernel.


def kernel_rank_top(scores, target, k_top=0):
    """bam_numpy's fused kernel on given (b, I + 1) scores: one interest, no history (mode none, which
    masks item 0 only) -> (ranks, tops, nonfinite flags)."""
    b = len(scores)
    ranks, tops, bad = np.empty(b, np.int64), np.empty((b, k_top), np.int64), np.empty(b, np.bool_)
    zeros = np.zeros(b, np.int64)
    bnr.rank_block(np.ascontiguousarray(scores), 1, np.zeros(1, np.int64), zeros, zeros, target, bnr.NONE, 5,
                   ranks, tops, bad, 1)
    return ranks, tops, bad


def ranks_by_engine(scores, target):
    """Ranks of the targets from every engine: torch, numpy, numba (column 0 is -inf, as masking does)."""
    scores = scores.copy()
    scores[:, 0] = -INF
    return {"torch": bm.target_rank(torch.as_tensor(scores), torch.as_tensor(target)).numpy(),
            "numpy": bn.target_rank(scores.copy(), target),
            "numba": kernel_rank_top(scores, target)[0]}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_target_rank_nonfinite_other_items_rank_above(seed, dtype):
    """Raising other items' scores from their value to huge-but-finite, then to +inf or NaN, never helps
    the target: its rank never goes down (monotone), in every engine."""
    rng = np.random.default_rng(seed)
    b, n = 40, 57
    base = rng.standard_normal((b, n)).astype(dtype)                           # (b, I + 1)
    base[rng.random((b, n)) < 0.1] = -INF                                      # some masked items
    target = rng.integers(1, n, b)                                             # (b,)
    base[np.arange(b), target] = rng.standard_normal(b)                        # finite targets
    others = rng.random((b, n)) < 0.3
    others[np.arange(b), target] = False
    huge = np.finfo(dtype).max / 2
    stages = [base]
    for value in (huge, INF, NAN):
        s = base.copy()
        s[others] = value
        stages.append(s)
    for engine in ("torch", "numpy", "numba"):
        r = [ranks_by_engine(s, target)[engine] for s in stages]
        assert (r[1] >= r[0]).all(), engine                                    # huge: above the target
        assert np.array_equal(r[2], r[1]), engine                              # +inf: still above
        assert np.array_equal(r[3], r[1]), engine                              # NaN: still above
    # every engine agrees, case by case
    for s in stages:
        got = ranks_by_engine(s, target)
        assert np.array_equal(got["torch"], got["numpy"]) and np.array_equal(got["torch"], got["numba"])


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_target_rank_nonfinite_target_is_a_miss(value):
    scores = np.array([[-INF, 1.0, 2.0, 0.5, 3.0], [-INF, 1.0, 2.0, 0.5, 3.0]])
    target = np.array([2, 3])
    scores[0, 2] = value
    for engine, r in ranks_by_engine(scores, target).items():
        assert r[0] == 5, engine                                               # a miss: the number of columns
        assert r[1] == 3, engine                                               # 2.0, 3.0 and 1.0 above 0.5


def test_top_k_nonfinite_order():
    """NaN and +inf count as one value above every finite score (lower id first among them), then the
    finite scores, then -inf (the mask); ties keep the lower id first."""
    row = np.array([-INF, 1.0, NAN, INF, 2.0, INF, NAN, -INF, 1.0, 0.0])
    want = [2, 3, 5, 6, 4, 1, 8, 9, 0, 7]
    scores = np.stack([row, row[::-1].copy()])
    rev = scores[1]
    want_rev = sorted(range(10), key=lambda i: (-(INF if np.isnan(rev[i]) else rev[i]), i))
    for got in (bm.top_k(torch.as_tensor(scores), 10).numpy(), bn.top_k(scores, 10)):
        assert got[0].tolist() == want and got[1].tolist() == want_rev
    masked = scores.copy()
    masked[:, 0] = -INF
    tops = kernel_rank_top(masked, np.array([1, 1]), k_top=6)[1]
    assert np.array_equal(tops, bm.top_k(torch.as_tensor(masked), 6).numpy())


# -----------------------------------------------------------------------------
# Evaluation counts the users whose scores were not all finite.


def test_evaluate_counts_nonfinite_users(synthetic_small):
    data = bm.Dataset(synthetic_small[0])
    cfg = bm.Config(dim=8, seq_len=10, device="cpu")
    k = bm.split_targets(data, "test")

    def scorer(history, mask, noise):  # NaN for the users whose last history item is even
        scores = torch.arange(data.n_items + 1, dtype=torch.float32).repeat(len(history), 1)  # (b, I + 1)
        last = history.gather(1, (mask.sum(1).long() - 1)[:, None])[:, 0]   # (b,)
        scores[last % 2 == 0, 3] = NAN
        return scores
    last = data.items[data.start[:-1] + k - 1]
    metrics, ranks, _ = bm.evaluate(scorer, data, "test", cfg, block=37)
    assert metrics["nonfinite_users"] == int((last % 2 == 0).sum()) > 0
    clean = bm.evaluate(lambda h, m, n: torch.ones(len(h), data.n_items + 1), data, "test", cfg)[0]
    assert clean["nonfinite_users"] == 0


def test_evaluate_nonfinite_weights_both_engines(synthetic_small):
    """Weights whose products overflow (a finite row of 1e38): both engines count every user, and their
    ranks are identical (float64 twin against the float32 torch model's overflowing scores is not
    exact, so both run float64 with a row of 1e308)."""
    data = bm.Dataset(synthetic_small[0])
    cfg = bm.Config(dim=8, seq_len=10, device="cpu")
    torch.manual_seed(0)
    model = bm.build_model(cfg, data.n_items).double().eval()
    with torch.no_grad():
        model.embeddings.weight[7] = 1e308
    t_metrics, t_ranks, t_tops = bm.evaluate(bm.model_scorer(model), data, "test", cfg, k_top=20)
    n_metrics, n_ranks, n_tops = bn.evaluate(numpy_engine.export_arrays(model), data, "test",
                                             numpy_engine.numpy_config(cfg), k_top=20)
    assert t_metrics["nonfinite_users"] == n_metrics["nonfinite_users"] > 0
    assert np.array_equal(t_ranks, n_ranks) and np.array_equal(t_tops, n_tops)
    assert t_metrics == n_metrics


# -----------------------------------------------------------------------------
# Training stops before non-finite weights are validated, tested or saved as best.


def test_train_stops_on_nonfinite_weights(synthetic_small, tmp_path, monkeypatch):
    data = bm.Dataset(synthetic_small[0])
    cfg = bm.Config(dim=16, seq_len=10, batch_size=32, n_negatives=50, eval_every=50, max_iters=150, device="cpu")
    built = []
    build = bm.build_model
    monkeypatch.setattr(bm, "build_model", lambda *a: built.append(build(*a)) or built[-1])

    def plant(it):  # after the step: its loss was finite, the weights are not
        if it == 100:
            with torch.no_grad():
                built[0].embeddings.weight[5, 0] = NAN
    with pytest.raises(bm.TrainingError, match=r"iteration 100\b.*embeddings.weight") as e:
        bm.train(cfg, data, run_folder.RunFolder(str(tmp_path), cfg, data), log=lambda s: None, on_step=plant)
    assert not isinstance(e.value, bm.InputError)  # the data and the options were fine
    best = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert best["iter"] == 50 and all(v.isfinite().all() for v in best["model"].values())
    assert not (tmp_path / "metrics.json").exists()


def test_twin_train_stops_on_nonfinite_weights(synthetic_small, monkeypatch):
    data = bn.Dataset(synthetic_small[0])
    cfg = bn.Config(dim=16, seq_len=10, batch_size=32, n_negatives=50, eval_every=50, max_iters=150)
    step, calls = bnt.adam_step, []

    def planted(params, *a, **kw):
        step(params, *a, **kw)
        calls.append(1)
        if len(calls) == 50:
            params["embeddings.weight"][5, 0] = INF
    monkeypatch.setattr(bnt, "adam_step", planted)
    with pytest.raises(bn.InputError, match=r"iteration 50\b.*embeddings.weight"):
        bnt.train(cfg, data, log=lambda s: None)


# -----------------------------------------------------------------------------
# A failed training is not bad input: one line and exit code 3 (bad input's is 2), never a traceback.


def test_train_diverged_loss_exits_3_from_cli_train(tmp_path, good):
    """bam_minimal.train's loss check: --lr 1e20 makes the loss non-finite within a few steps."""
    from test_cli import TINY, one_line_error, run
    result = run("train", "--data", good, "--out", tmp_path / "run", *TINY, "--lr", "1e20")
    line = one_line_error(result, "iteration", "the loss is", "lower --lr", after_progress=True, code=3)
    assert "nan" in line or "inf" in line
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_checked_scorer_nonfinite_weights_exit_3_from_cli_train(tmp_path, good, monkeypatch):
    """bam_minimal.checked_scorer: weights that turn NaN while the loss stays finite stop the run at the next
    validation, before it is saved, with the same one line and exit code 3."""
    from test_cli import TINY, run
    step, calls = bm.train_step, []

    def planted(model, *args):  # after step 40, just before its validation: the loss was finite, the weights are not
        loss = step(model, *args)
        calls.append(1)
        if len(calls) == 40:
            with torch.no_grad():
                model.embeddings.weight[5, 0] = NAN
        return loss
    monkeypatch.setattr(bm, "train_step", planted)
    result = run("train", "--data", good, "--out", tmp_path / "run", *TINY)  # validations at 20 and 40
    assert result.exit_code == 3, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error: ")]  # the progress lines interleave
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert all(needle in errors[0] for needle in ("iteration 40", "embeddings.weight", "not finite")), errors[0]
    best = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert best["iter"] == 20 and all(v.isfinite().all() for v in best["model"].values())


def test_training_errors_are_exit_3_and_input_errors_exit_2_in_the_group():
    """bam_cli.options.Group: the reference's TrainingError is exit code 3, its InputError 2, each one line."""
    import click
    from click.testing import CliRunner

    from bam_cli.options import Group

    @click.group(cls=Group)
    def root():
        pass

    @root.command()
    @click.argument("kind")
    def fail(kind):
        raise (bm.TrainingError if kind == "training" else bm.InputError)(f"{kind}: what went wrong (fix: this)")
    for kind, code in (("training", 3), ("input", 2)):
        result = CliRunner().invoke(root, ["fail", kind])
        assert result.exit_code == code, result.output
        assert result.output == f"error: {kind}: what went wrong (fix: this)\n"


def test_main_of_bam_minimal_diverged_exits_3(tmp_path, good):
    """`python bam_minimal.py` alone: a diverged loss is one line on stderr and exit code 3; bad input stays 2."""
    import subprocess
    import sys
    flags = ["--dim=16", "--seq_len=10", "--n_negatives=50", "--batch_size=32", "--max_iters=40", "--eval_every=20"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for extra, code, needle in ((["--lr=1e20"], 3, "the loss is"), (["--lr=-1"], 2, "lr=-1.0 must be positive")):
        out = subprocess.run([sys.executable, str(ROOT / "bam_minimal.py"), str(good), *flags, *extra,
                              f"--out={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == code, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out.stderr
        assert "Traceback" not in out.stderr


# -----------------------------------------------------------------------------
# MIND's evaluation noise: a counter-based stream keyed by (seed, row).


def test_routing_noise_is_counter_based():
    cfg, rows = bm.Config(model="mind", seed=7, n_interests=4, seq_len=50), np.arange(3000)
    whole = bm.routing_noise(cfg, rows)                                        # (U, N, L)
    assert whole.shape == (3000, 4, 50) and whole.dtype == np.float64
    parts = np.concatenate([bm.routing_noise(cfg, rows[a:a + 113]) for a in range(0, 3000, 113)])
    assert np.array_equal(whole, parts)                                        # no dependence on blocks
    assert np.array_equal(bm.routing_noise(cfg, rows[[5, 2, 5]]), whole[[5, 2, 5]])
    assert np.array_equal(twin_routing_noise(bn.Config(**vars(cfg)), rows), whole)  # the twin's copy
    assert not np.array_equal(bm.routing_noise(bm.Config(model="mind", seed=8, n_interests=4, seq_len=50), rows),
                              whole)
    x = whole.ravel()
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01                    # 600,000 standard normals
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 0.01                        # neighbours independent
    assert abs((x < -1.96).mean() - 0.025) < 0.002 and abs((x > 1.96).mean() - 0.025) < 0.002
    big = bm.routing_noise(cfg, np.array([2**31 - 1]))                         # the largest row id is fine
    assert np.isfinite(big).all() and not np.array_equal(big[0], whole[0])


def test_mind_evaluation_same_ranks_any_block_and_in_the_twin(synthetic_small):
    data = bm.Dataset(synthetic_small[0])
    cfg = bm.Config(model="mind", dim=8, n_interests=3, seq_len=10, device="cpu")
    torch.manual_seed(0)
    model = bm.build_model(cfg, data.n_items).double().eval()
    ranks = [bm.evaluate(bm.model_scorer(model), data, "test", cfg, block=b, k_top=5)[1:] for b in (16, 301)]
    assert np.array_equal(ranks[0][0], ranks[1][0]) and np.array_equal(ranks[0][1], ranks[1][1])
    n_ranks = bn.evaluate(numpy_engine.export_arrays(model), data, "test", numpy_engine.numpy_config(cfg), k_top=5)[1:]
    assert np.array_equal(n_ranks[0], ranks[0][0]) and np.array_equal(n_ranks[1], ranks[0][1])
    rows = np.arange(0, len(data.users), 3)  # a subset: each user keeps its own row's noise
    sub = bm.evaluate(bm.model_scorer(model), data, "test", cfg, rows=rows, block=50)[1]
    assert np.array_equal(sub, ranks[0][0][rows])


@pytest.mark.parametrize("engine", ["torch", "numpy"])
def test_cli_evaluate_notes_nonfinite_users(tmp_path, engine):
    """Finite weights whose products overflow (a row of 1e38, float32): `evaluate` prints one note with
    the count (the users whose interests push that item's score past float32) and records it in the
    JSON; a clean model prints none."""
    from click.testing import CliRunner

    import cli
    rng = np.random.default_rng(0)
    lines = [f"{u} {i}" for u in range(1, 41) for i in rng.choice(np.arange(1, 41), 6, replace=False)]
    (tmp_path / "data.txt").write_text("\n".join(lines) + "\n")
    cfg = bm.Config(dim=16, n_interests=2, seq_len=10)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 40)
    for name, row in (("clean", None), ("overflow", 1e38)):
        if row is not None:
            with torch.no_grad():
                model.embeddings.weight[9] = row
        torch.save(model.state_dict(), tmp_path / f"{name}.pt")
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(cli.cli, ["evaluate", "--checkpoint", str(tmp_path / f"{name}.pt"), "--data",
                                              str(tmp_path / "data.txt"), "--json", str(out), "--engine", engine])
        assert result.exit_code == 0, result.output
        count = __import__("json").loads(out.read_text())["metrics"]["nonfinite_users"]
        notes = [ln for ln in result.output.splitlines() if ln.startswith("note:") and "NaN or infinite" in ln]
        data = bm.Dataset(bm.read_official(tmp_path / "data.txt"))
        want = bm.evaluate(bm.model_scorer(model.eval()), data, "test", cfg)[0]["nonfinite_users"]
        if row is None:
            assert want == count == 0 and not notes
        else:  # the numpy engine's float32 BLAS may round a borderline sum the other way
            assert want > 0 and (count == want if engine == "torch" else abs(count - want) <= 1)
            assert len(notes) == 1 and f"note: {count} users" in notes[0]
