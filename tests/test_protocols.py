"""
ComiRec's evaluation protocol (bam_protocols.comirec_split, its twin bam_numpy.comirec_split): the split, the
targets, the sampler, the metrics (a hand-computed example, golden vectors, planted bugs: an IDCG over the hits, a rank
off by one, targets counted with repeats), both engines against a brute force and each other, and the
commands that take --protocol and --ndcg-as. The three published NDCGs, worked by hand: tests/test_ndcg_variants.py.

    python -m pytest tests/test_protocols.py
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import bam_minimal as bm
from bam_crosscheck import numpy_engine
from bam_evidence import per_user
from bam_evidence.metrics import user_metrics
from bam_numpy import comirec_split as twin_split
from bam_protocols import comirec_split, protocol

GOLDEN = Path(__file__).parent / "golden" / "comirec_protocol.json"


def data_of(lengths, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    return bm.Dataset({u: list(rng.integers(1, n_items + 1, n)) for u, n in enumerate(lengths)}, n_items=n_items)


def log2(x):
    return math.log(x, 2)

# -----------------------------------------------------------------------------
# The metrics: by hand, planted bugs, one target


def test_user_metrics_by_hand():
    """User 0: targets a, b, a (a repeated), ranks 0, 5, 0. User 1: targets c, d, ranks 15, 3."""
    ranks, counts, targets = [0, 5, 0, 15, 3], [3, 2], [7, 9, 7, 4, 2]
    got = user_metrics(ranks, counts, targets, ks=(10, 20), published=True)
    # user 0: 2 distinct targets, both in the top 10 and 20
    assert got["recall@10"][0] == 1.0 and got["hitrate@10"][0] == 1.0
    assert got["ndcg@10"][0] == pytest.approx((1 / log2(2) + 1 / log2(7)) / (1 / log2(2) + 1 / log2(3)), rel=1e-12)
    # ComiRec's: every occurrence hits, at time positions 0, 1, 2; IDCG over the 3 hits: exactly 1
    assert got["ndcg@10 (comirec-paper)"][0] == pytest.approx(1.0, rel=1e-12)
    # user 1: d (rank 3) is in the top 10, c (rank 15) only in the top 20
    assert got["recall@10"][1] == 0.5 and got["hitrate@10"][1] == 1.0 and got["recall@20"][1] == 1.0
    assert got["ndcg@10"][1] == pytest.approx((1 / log2(5)) / (1 / log2(2) + 1 / log2(3)), rel=1e-12)
    assert got["ndcg@20"][1] == pytest.approx((1 / log2(17) + 1 / log2(5)) / (1 / log2(2) + 1 / log2(3)), rel=1e-12)
    # ComiRec's at 10: d is at time position 1 -> 1 / log2(3); IDCG over its one hit = 1
    assert got["ndcg@10 (comirec-paper)"][1] == pytest.approx(1 / log2(3), rel=1e-12)
    assert set(got) == {f"{m}@{n}" for m in ("recall", "ndcg", "hitrate") for n in (10, 20)} | {
        f"ndcg@{n} ({v})" for n in (10, 20) for v in ("comirec-paper", "comirec-master")}


def test_user_metrics_idcg_over_min_n_targets_not_over_hits():
    """The planted bug of ComiRec's code (issue #25): an IDCG over the hits makes one hit at rank 0 out of
    three targets a perfect 1.0. The correct NDCG divides by the ideal DCG of min(N, 3) targets."""
    got = user_metrics([0, 50, 60], [3], [1, 2, 3], ks=(10,), published=True)
    assert got["ndcg@10"][0] == pytest.approx(1 / (1 + 1 / log2(3) + 1 / log2(4)), rel=1e-12)   # 0.469
    assert got["ndcg@10 (comirec-paper)"][0] == got["ndcg@10 (comirec-master)"][0] == 1.0
    # and with more targets than N, the ideal stops at N
    got = user_metrics([0] + [100] * 14, [15], list(range(1, 16)), ks=(10,))
    assert got["ndcg@10"][0] == pytest.approx(1 / sum(1 / log2(i + 2) for i in range(10)), rel=1e-12)


def test_user_metrics_count_distinct_items():
    """A repeated target is one item: hitting it once is 1 of 2 items, not 2 of 3 targets (ComiRec's recall)."""
    got = user_metrics([0, 99, 0], [3], [5, 6, 5], ks=(10,))
    assert got["recall@10"][0] == 0.5


def test_user_metrics_comirec_paper_ndcg_follows_time_not_rank():
    """ComiRec's original code (its paper's tables) gives a hit the discount of its position in time (issue #6):
    the same ranks in another time order change it; the correct NDCG and the master branch's do not change."""
    a = user_metrics([30, 0], [2], [1, 2], ks=(50,), published=True)
    b = user_metrics([0, 30], [2], [2, 1], ks=(50,), published=True)
    assert a["ndcg@50"][0] == pytest.approx(b["ndcg@50"][0], rel=1e-15)
    assert a["ndcg@50 (comirec-paper)"][0] == b["ndcg@50 (comirec-paper)"][0] == 1.0  # DCG = IDCG over 2 hits
    a = user_metrics([60, 0], [2], [1, 2], ks=(50,), published=True)   # only the later target hits
    assert a["ndcg@50 (comirec-paper)"][0] == pytest.approx(1 / log2(3), rel=1e-12)
    assert a["ndcg@50 (comirec-master)"][0] == 1.0                              # rank 0: 1 / log2(2), one hit
    assert a["ndcg@50"][0] == pytest.approx(1 / (1 + 1 / log2(3)), rel=1e-12)


def test_user_metrics_catch_an_off_by_one_rank():
    """Rank 9 is in the top 10 and rank 10 is not: a < that became <= would count it."""
    got = user_metrics([9, 10], [1, 1], [1, 1], ks=(10,))
    assert list(got["recall@10"]) == [1.0, 0.0]
    assert got["ndcg@10"][0] == pytest.approx(1 / log2(11), rel=1e-12)


@given(st.lists(st.integers(0, 3000), min_size=1, max_size=60))
def test_user_metrics_of_one_target_are_leave_one_out_metrics(ranks):
    """With one target per user, Recall@N and NDCG@N are bam_minimal.metrics_from_ranks' (and HitRate is Recall)."""
    n = len(ranks)
    got = user_metrics(ranks, np.ones(n, np.int64), np.arange(1, n + 1), ks=(10, 20))
    want = bm.metrics_from_ranks(ranks, ks=(10, 20))
    for k, v in want.items():
        assert float(got[k].mean()) == pytest.approx(v, rel=1e-12, abs=1e-15)
    assert np.array_equal(got["hitrate@10"], got["recall@10"])


# -----------------------------------------------------------------------------
# The split, the history ends, the targets, the sampler


@pytest.mark.parametrize("n", [1, 2, 9, 10, 11, 1090, 22363])
def test_split_rows_partition_the_users_as_comirec_cuts_them(n):
    parts = [comirec_split.split_rows(n, s) for s in comirec_split.SPLITS]
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))
    assert [len(p) for p in parts] == [int(n * 0.8), int(n * 0.9) - int(n * 0.8), n - int(n * 0.9)]
    assert all((np.diff(p) > 0).all() for p in parts)       # sorted, no repeats
    assert not parts[0].flags.writeable                    # cached: nobody may change it


def test_split_rows_shuffle_the_users():
    """The test users are spread over the file, not its last 10% (a split without the shuffle)."""
    test = comirec_split.split_rows(1000, "test")
    assert test.min() < 100 and test.max() >= 900 and not np.array_equal(test, np.arange(900, 1000))


def test_split_rows_are_one_split_whatever_the_seed():
    """The split depends on the number of users only: every seed and method of a table tests the same users."""
    data = data_of([8] * 50)
    for seed in (1, 2021):
        assert np.array_equal(bm.PROTOCOLS["comirec"]["users"](data, "test"), comirec_split.split_rows(50, "test"))


def test_history_end_is_int_of_eighty_percent():
    """numpy's float product rounds as Python's does: k = int(0.8 * len) exactly, 0.8 * 5 = 4 included."""
    lengths = np.arange(1, 100_000)
    assert comirec_split.history_end(lengths).tolist() == [int(n * 0.8) for n in lengths.tolist()]


def test_target_lists_are_each_users_last_twenty_percent():
    data = data_of([3, 10, 5, 23, 7])
    rows = np.array([4, 1, 3])
    k, counts, targets = comirec_split.target_lists(data, rows)
    want = []
    for r in rows:
        seq = data.items[data.start[r]:data.start[r + 1]].tolist()
        want += seq[int(len(seq) * 0.8):]
    assert targets.tolist() == want
    assert counts.tolist() == [data.lengths[r] - int(data.lengths[r] * 0.8) for r in rows]
    assert k.tolist() == [int(data.lengths[r] * 0.8) for r in rows]


def test_train_batch_draws_training_users_and_targets_from_four():
    data = data_of([3, 4, 5, 6, 9, 30] * 40)
    train = set(comirec_split.split_rows(len(data.users), "train").tolist())
    history, mask, target = comirec_split.train_batch(data, np.random.default_rng(0), 4000, 50)
    k = mask.sum(1).astype(int)                                                # history lengths = target positions
    assert k.min() == 4
    # the rows: recover each example's row from its target and history (all rows are distinct sequences)
    starts = {tuple(data.items[data.start[r]:data.start[r] + 4].tolist()): r for r in range(len(data.users))}
    rows = np.array([starts[tuple(h[:4].tolist())] for h in history])
    assert set(rows.tolist()) <= train and (data.lengths[rows] >= 5).all()
    assert (k <= data.lengths[rows] - 1).all() and (k == data.lengths[rows] - 1).any()
    assert (target == data.items[data.start[rows] + k]).all()


def test_train_batch_with_no_long_training_user_says_so():
    with pytest.raises(bm.InputError, match="no training user has 5 or more interactions"):
        comirec_split.train_batch(data_of([4] * 20), np.random.default_rng(0), 8, 10)

# -----------------------------------------------------------------------------
# Golden vectors: the split, the targets and the metrics, pinned


def golden_outputs():
    """What the golden file pins, computed from its inputs by bam_protocols.comirec_split."""
    inputs = json.loads(GOLDEN.read_text())["inputs"]
    out = {f"split_rows/{n}/{s}": comirec_split.split_rows(n, s).tolist() for n in inputs["n_users"]
           for s in comirec_split.SPLITS}
    out["history_end"] = comirec_split.history_end(inputs["lengths"]).tolist()
    metrics = user_metrics(inputs["ranks"], inputs["counts"], inputs["targets"], published=True)
    out.update({f"user_metrics/{k}": v.tolist() for k, v in metrics.items()})
    return out


def test_golden_vectors_of_the_protocol():
    """tests/golden/comirec_protocol.json was written by bam_protocols.comirec_split (`python tests/test_protocols.py`):
    a change of the split, the history end or a metric shows here, for both engines' shared functions."""
    expected = json.loads(GOLDEN.read_text())["expected"]
    got = golden_outputs()
    assert set(got) == set(expected)
    for key, want in expected.items():
        np.testing.assert_allclose(got[key], want, rtol=1e-12, err_msg=key)
    inputs = json.loads(GOLDEN.read_text())["inputs"]
    twin_metrics = twin_split.user_metrics(inputs["ranks"], inputs["counts"], inputs["targets"], published=True)
    for k, v in twin_metrics.items():
        np.testing.assert_allclose(v, expected[f"user_metrics/{k}"], rtol=1e-12, err_msg=k)

# -----------------------------------------------------------------------------
# Evaluation: brute force, both engines


def model_and_data(model="comirec", n_users=120, n_items=40):
    rng = np.random.default_rng(3)
    data = bm.Dataset({u: list(rng.integers(1, n_items + 1, rng.integers(3, 40))) for u in range(n_users)},
                      n_items=n_items)
    cfg = bm.Config(model=model, dim=8, n_interests=3, seq_len=12, device="cpu", protocol="comirec")
    torch.manual_seed(0)
    net = bm.build_model(cfg, data.n_items).double().eval()
    return net, cfg, data


def brute_force_ranks(net, cfg, data, rows):
    """Each target's rank by a Python loop over items (bam's rule: higher score, or equal and lower id)."""
    out = []
    for r in rows:
        seq = data.items[data.start[r]:data.start[r + 1]].tolist()
        k = int(len(seq) * 0.8)
        history, mask, _ = bm.windows(data, np.array([r]), np.array([k]), cfg.seq_len)
        routing = bm.routing_noise(cfg, np.array([r])) if cfg.model == "mind" else None
        with torch.no_grad():
            s = bm.model_scorer(net)(torch.as_tensor(history), torch.as_tensor(mask), routing)[0].numpy().copy()
        if cfg.history_mask == "exclude":
            s[seq[:k]] = -np.inf
        if cfg.history_mask == "official":
            s[history[0]] = 0.0
        else:
            s[0] = -np.inf
        for t in seq[k:]:
            out.append(len(s) if not np.isfinite(s[t]) else
                       int(sum(s[j] > s[t] or (s[j] == s[t] and j < t) for j in range(len(s)))))
    return np.array(out)


@pytest.mark.parametrize("model, mask", [("comirec", "none"), ("comirec", "exclude"), ("mind", "official")])
def test_evaluate_ranks_every_target_as_a_brute_force_does(model, mask):
    net, cfg, data = model_and_data(model)
    cfg = bm.Config(**{**cfg.__dict__, "history_mask": mask})
    metrics, ranks, _ = comirec_split.PROTOCOL.evaluate(bm.model_scorer(net), data, "test", cfg, block=5)
    rows = comirec_split.split_rows(len(data.users), "test")
    assert ranks.tolist() == brute_force_ranks(net, cfg, data, rows).tolist()
    _, counts, targets = comirec_split.target_lists(data, rows)
    want = user_metrics(ranks, counts, targets)
    assert metrics == dict({k: float(v.mean()) for k, v in want.items()}, nonfinite_users=0)


def test_rank_targets_use_target_ranks_rule_on_ties():
    """Equal scores: the lower id ranks first; another item's NaN ranks above; a NaN target never hits."""
    scores = torch.tensor([[-math.inf, 1.0, 2.0, 2.0, math.nan, 0.5]])
    got = protocol.rank_targets(scores.clone(), np.array([3, 2, 1, 4]), np.array([4]))
    assert got.tolist() == [2, 1, 3, 6]


@pytest.mark.parametrize("model", ["comirec", "mind"])
def test_evaluate_the_twin_gives_the_same_ranks_tops_and_metrics(model):
    net, cfg, data = model_and_data(model)
    for split in ("valid", "test"):
        t_metrics, t_ranks, t_tops = comirec_split.PROTOCOL.evaluate(bm.model_scorer(net), data, split, cfg, k_top=20)
        params = numpy_engine.export_arrays(net)
        n_metrics, n_ranks, n_tops = twin_split.evaluate(params, data, split, numpy_engine.numpy_config(cfg), k_top=20,
                                                         block=7)
        assert np.array_equal(t_ranks, n_ranks) and np.array_equal(t_tops, n_tops)
        assert n_metrics == t_metrics


def test_evaluate_numpy_follows_the_protocol_of_the_config():
    net, cfg, data = model_and_data()
    metrics, ranks, _ = numpy_engine.evaluate_numpy(net.float(), cfg, data, "test")
    assert "hitrate@50" in metrics and len(ranks) == comirec_split.target_lists(
        data, comirec_split.split_rows(len(data.users), "test"))[1].sum()

# -----------------------------------------------------------------------------
# Training under the protocol, and the commands


def test_train_under_the_protocol_tests_the_test_users(synthetic_small):
    data = bm.Dataset(synthetic_small[0])
    cfg = bm.Config(protocol="comirec", dim=8, max_iters=60, eval_every=30, device="cpu", history_mask="none")
    model, result = bm.train(cfg, data, log=lambda line: None)
    assert set(result["test"]) == {f"{m}@{n}" for m in ("recall", "ndcg", "hitrate") for n in (10, 20, 50)} | {
        "nonfinite_users"}
    again = comirec_split.PROTOCOL.evaluate(bm.model_scorer(model.eval()), data, "test", cfg)[0]
    assert again == result["test"]


def test_the_reference_alone_refuses_the_protocol():
    """bam_minimal.py run alone does not have ComiRec's protocol: one line that names the protocols it has."""
    saved = bm.PROTOCOLS.pop("comirec")
    try:
        with pytest.raises(bm.InputError, match="protocol=comirec is not one of loo "):
            bm.check_config(bm.Config(protocol="comirec"))
    finally:
        bm.PROTOCOLS["comirec"] = saved


def test_cli_train_evaluate_compare_under_the_protocol(tmp_path, good):
    import cli
    runner = CliRunner()
    run = tmp_path / "run"
    got = runner.invoke(cli.cli, ["train", "--data", str(good), "--protocol", "comirec", "--max-iters", "20",
                                  "--eval-every", "10", "--dim", "8", "--ndcg-as", "comirec", "--out", str(run)])
    assert got.exit_code == 0, got.output
    result = json.loads((run / "metrics.json").read_text())
    assert {"ndcg@50 (comirec-paper)", "ndcg@50 (comirec-master)"} <= set(result["test"])
    assert result["config"]["protocol"] == "comirec"
    found = per_user.load_run(str(run))
    assert found.protocol == "comirec" and found.counts.sum() == len(found.ranks) > len(found.users)
    out = tmp_path / "e.json"
    got = runner.invoke(cli.cli, ["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--json", str(out),
                                  "--top-n", "5"])
    assert got.exit_code == 0, got.output
    evaluation = json.loads(out.read_text())
    assert evaluation["protocol"] == "comirec" and "interest_entropy@5" in evaluation["metrics"]
    assert evaluation["metrics"]["recall@50"] == result["test"]["recall@50"]
    got = runner.invoke(cli.cli, ["compare", str(run), str(tmp_path / "e.per_user.npz")])
    assert got.exit_code == 0, got.output
    # the same checkpoint under leave-one-out is another evaluation: compare refuses the pair
    loo = tmp_path / "loo.json"
    got = runner.invoke(cli.cli, ["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--protocol", "loo",
                                  "--json", str(loo)])
    assert got.exit_code == 0, got.output
    got = runner.invoke(cli.cli, ["compare", str(run), str(tmp_path / "loo.per_user.npz")])
    assert got.exit_code == 2 and "different protocol" in got.output


def test_table_under_the_protocol_adds_comirec_ndcg_to_runs_made_without_it(tmp_path, good):
    """`table --ndcg-as comirec` over finished runs made without the flag reuses them and computes ComiRec's
    two NDCGs from their per-user ranks: the same numbers a run made with the flag writes."""
    from bam_experiments import table
    from bam_runs import datasets
    data = datasets.load_dataset(str(good), log=lambda line: None)
    base = bm.Config(protocol="comirec", history_mask="none", dim=8, max_iters=20, eval_every=10, device="cpu")
    table.run_table(base, data, ["ComiRec", "BaM"], 1, str(tmp_path / "t"), log=lambda line: None)
    text, rows, reused = table.run_table(base, data, ["ComiRec", "BaM"], 1, str(tmp_path / "t"),
                                         log=lambda line: None, ndcg_as=True)
    assert reused == 2 and "nDCG@50 (comirec-paper)" in text and "nDCG@50 (comirec-master)" in text
    assert "HitRate@50" in text and "Recall@10" not in text
    again = tmp_path / "again"
    CliRunner().invoke(__import__("cli").cli, ["train", "--data", str(good), "--protocol", "comirec",
                                               "--history-mask", "none", "--dim", "8", "--max-iters", "20",
                                               "--eval-every", "10", "--selection", "bam", "--ndcg-as", "comirec",
                                               "--out", str(again)])
    with_flag = json.loads((again / "metrics.json").read_text())["test"]
    for name in ("ndcg@50 (comirec-paper)", "ndcg@20 (comirec-master)"):
        assert rows["BaM"][name][0] == pytest.approx(with_flag[name], rel=1e-12)
    # beyond accuracy: each run's top-5 lists, as `evaluate --top-n 5` gives them for its checkpoint
    table.run_table(base, data, ["BaM"], 1, str(tmp_path / "t"), log=lambda line: None, top_n=5)
    beyond = json.loads((tmp_path / "t" / "table.json").read_text())["beyond"]["BaM"]
    from bam_experiments.single_run import EvaluationRequest, evaluate_checkpoint
    from bam_evidence import beyond as beyond_mod
    request = EvaluationRequest(str(tmp_path / "t" / "BaM" / "seed-2021" / "checkpoint.pt"), k_top=5)
    got = evaluate_checkpoint(request, log=print, note=lambda line: None)
    got = dict(got.metrics, **beyond_mod.list_metrics(got.tops, data.n_items))
    assert set(beyond) == {"coverage@5", "interest_entropy@5", "single_interest_users@5", "interest_gini@5"}
    assert all(beyond[k]["mean"] == pytest.approx(got[k], abs=1e-12) for k in beyond)


@pytest.mark.parametrize("command", ["train", "table", "evaluate"])
def test_ndcg_as_comirec_needs_the_protocol(command, good, tmp_path):
    import cli
    args = {"train": ["train", "--data", str(good)], "table": ["table", "--data", str(good)],
            "evaluate": ["evaluate", "--checkpoint", str(good), "--protocol", "loo"]}[command]
    got = CliRunner().invoke(cli.cli, args + ["--ndcg-as", "comirec", "--out", str(tmp_path / "x")]
                             if command != "evaluate" else args + ["--ndcg-as", "comirec"])
    assert got.exit_code == 2 and "--ndcg-as comirec" in got.output and "Traceback" not in got.output


def test_split_users_refuses_an_empty_split(tmp_path):
    """5 users leave 10% (none) to validate: one line, not a traceback from the shuffle of an empty sample."""
    import cli
    path = tmp_path / "five.txt"
    path.write_text("".join(f"{u} {1 + (u * 7 + j) % 20}\n" for u in range(1, 6) for j in range(8)))
    got = CliRunner().invoke(cli.cli, ["train", "--data", str(path), "--protocol", "comirec", "--max-iters", "5",
                                       "--eval-every", "5", "--dim", "8", "--out", str(tmp_path / "r")])
    assert got.exit_code == 2 and "valid split empty" in got.output and "Traceback" not in got.output


def test_train_with_ndcg_as_comirec_over_a_run_made_without_it(tmp_path, good):
    """A finished run is reused; --ndcg-as comirec then computes ComiRec's NDCG from its per-user ranks."""
    import cli
    args = ["train", "--data", str(good), "--protocol", "comirec", "--max-iters", "20", "--eval-every", "10",
            "--dim", "8", "--out", str(tmp_path / "r")]
    assert CliRunner().invoke(cli.cli, args).exit_code == 0
    got = CliRunner().invoke(cli.cli, args + ["--ndcg-as", "comirec"])
    assert got.exit_code == 0 and "finished already" in got.output and "ndcg@50 (comirec-paper)" in got.output


def test_the_twin_refuses_to_train_under_the_protocol(synthetic_small):
    """bam_numpy's training loop samples leave-one-out examples: under `comirec` it would train on the test
    users' targets. It says so instead."""
    import bam_numpy
    from bam_numpy import training
    with pytest.raises(bam_numpy.InputError, match="trains under leave-one-out only"):
        training.train(bam_numpy.Config(protocol="comirec"), bam_numpy.Dataset(synthetic_small[0]))


def test_crosscheck_and_balance_of_a_checkpoint_under_the_protocol(tmp_path, good):
    """Commands that load a checkpoint know its protocol: crosscheck adds the protocol's rows, balance and
    evaluate --top-n credit the test users' lists (a comirec run once crashed `balance`)."""
    import cli
    runner = CliRunner()
    run = tmp_path / "run"
    assert runner.invoke(cli.cli, ["train", "--data", str(good), "--protocol", "comirec", "--max-iters", "20",
                                   "--eval-every", "10", "--dim", "8", "--out", str(run)]).exit_code == 0
    got = runner.invoke(cli.cli, ["crosscheck", "--checkpoint", str(run / "checkpoint.pt")])
    assert got.exit_code == 0 and "comirec protocol: ndcg@50" in got.output, got.output
    got = runner.invoke(cli.cli, ["balance", "--checkpoint", str(run / "checkpoint.pt"), "--out",
                                  str(tmp_path / "b.png")])
    assert got.exit_code == 0, got.output


def test_per_user_files_of_an_older_bam_still_load(tmp_path):
    """Format bam-per-user-1 (one target per user, no counts) reads as counts of 1."""
    path = tmp_path / "old.npz"
    np.savez(path, users=np.array([1, 2]), targets=np.array([3, 4]), ranks=np.array([0, 7]),
             format=np.str_("bam-per-user-1"), protocol=np.str_("loo"), split=np.str_("test"),
             history_mask=np.str_("exclude"), fingerprint=np.str_("v2:ab"), source=np.str_(""),
             n_items=np.int64(10), **{"recall@10": np.array([1.0, 1.0])})
    got = per_user.load(str(path))
    assert got.counts.tolist() == [1, 1] and got.ranks.tolist() == [0, 7]


def test_check_paired_refuses_other_target_counts(tmp_path):
    def file(name, counts, targets):
        return per_user.load(per_user.save(
            str(tmp_path / name), users=[1, 2], counts=counts, targets=targets, ranks=[0] * len(targets),
            metrics={"recall@10": np.ones(2)}, protocol="comirec", split="test", history_mask="none",
            fingerprint="v2:ab", n_items=10))
    with pytest.raises(Exception, match="different counts"):
        per_user.check_paired(file("a.npz", [1, 2], [3, 4, 5]), file("b.npz", [2, 1], [3, 4, 5]))


def test_a_run_of_an_older_bam_without_protocol_is_reused(tmp_path, synthetic_small):
    """Config gained `protocol`: a finished run whose metrics.json has no such key was made with `loo`, and
    is read back, not refused or trained again."""
    from bam_runs import run_folder
    data = bm.Dataset(synthetic_small[0])
    cfg = bm.Config(dim=8, max_iters=20, eval_every=10, device="cpu")
    folder = run_folder.RunFolder(str(tmp_path / "r"), cfg, data, log=lambda line: None)
    bm.train(cfg, data, folder, log=lambda line: None)
    path = tmp_path / "r" / "metrics.json"
    saved = json.loads(path.read_text())
    del saved["config"]["protocol"]
    path.write_text(json.dumps(saved))
    assert run_folder.RunFolder(str(tmp_path / "r"), cfg, data, log=lambda line: None).finished() is not None


if __name__ == "__main__":  # (re)write the golden file: its inputs, and what bam_protocols.comirec_split computes
    rng = np.random.default_rng(17)
    counts = rng.integers(1, 9, 40)
    inputs = dict(n_users=[1, 7, 10, 333, 1090], lengths=rng.integers(1, 400, 50).tolist(), counts=counts.tolist(),
                  targets=rng.integers(1, 12, counts.sum()).tolist(), ranks=rng.integers(0, 80, counts.sum()).tolist())
    GOLDEN.parent.mkdir(exist_ok=True)

    def dump(sections):  # one line per key, so that a diff of the file shows which output moved
        return "{\n" + ",\n".join(f' "{name}": {{\n' + ",\n".join(f'  "{k}": {json.dumps(v)}' for k, v in d.items())
                                   + "\n }" for name, d in sections.items()) + "\n}\n"
    GOLDEN.write_text(dump(dict(inputs=inputs, expected={})))
    GOLDEN.write_text(dump(dict(inputs=inputs, expected=golden_outputs())))
    print(f"wrote {GOLDEN}")
