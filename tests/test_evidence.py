"""
Evidence (bam_evidence): per-user results, paired comparisons over users, intervals over seeds. Each
statistic is checked against an independent computation (by hand, or scipy called directly on the same
arrays), and against the planted mistakes it must not make: an off-by-one rank, an unpaired t-test, two
evaluations of different users compared as if paired.

    python -m pytest tests/test_evidence.py
"""
import itertools
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sp

import bam_data
import bam_minimal as bm
from bam_data import formats
from bam_evidence import per_user, stats
from cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def results(tmp_path, name, ranks, **identity):
    """A per-user file of `ranks` for users 1..U, every target item 7, and its PerUser."""
    ranks = np.asarray(ranks)
    ident = dict(protocol="loo", split="test", history_mask="exclude", fingerprint="v2:x", n_items=50)
    ident.update(identity)
    users = identity.pop("users", np.arange(1, len(ranks) + 1))
    ident.pop("users", None)
    path = per_user.save(str(tmp_path / name), users=users, targets=np.full(len(ranks), 7), ranks=ranks,
                         metrics=per_user.user_metrics(ranks, bm.metrics_from_ranks), **ident)
    return per_user.load(path)

# -----------------------------------------------------------------------------
# Per-user metrics


def test_user_metrics_by_hand():
    """Rank 0 is the top; rank 9 is the last hit of top-10, rank 10 the first miss (an off-by-one fails here)."""
    got = per_user.user_metrics([0, 9, 10, 19, 20, 51], bm.metrics_from_ranks)
    assert got["recall@10"].tolist() == [1, 1, 0, 0, 0, 0]
    assert got["recall@20"].tolist() == [1, 1, 1, 1, 0, 0]
    assert np.allclose(got["ndcg@10"], [1, 1 / math.log2(11), 0, 0, 0, 0], atol=0, rtol=1e-15)
    assert np.allclose(got["ndcg@20"], [1, 1 / math.log2(11), 1 / math.log2(12), 1 / math.log2(21), 0, 0],
                       atol=0, rtol=1e-15)


def test_the_mean_of_user_metrics_is_metrics_from_ranks():
    ranks = np.random.default_rng(0).integers(0, 60, 5000)
    per = per_user.user_metrics(ranks, bm.metrics_from_ranks)
    assert {k: v.mean() for k, v in per.items()} == pytest.approx(bm.metrics_from_ranks(ranks), abs=1e-15)

# -----------------------------------------------------------------------------
# Paired statistics


@pytest.fixture(scope="module")
def pairs():
    """Two evaluations of 3,000 users that agree on most users (as two models do): strongly paired."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 40, 3000)
    b = np.where(rng.random(3000) < 0.15, np.maximum(a - rng.integers(0, 8, 3000), 0), a)  # B lifts 15% of users
    return per_user.user_metrics(a, bm.metrics_from_ranks), per_user.user_metrics(b, bm.metrics_from_ranks)


def test_paired_statistics_are_scipys_on_the_same_arrays(pairs):
    (a, b), k = pairs, "ndcg@20"
    got = stats.paired(a[k], b[k], n_resamples=999, seed=3)
    d = b[k] - a[k]
    assert got["diff"] == pytest.approx(d.mean(), abs=1e-15) and got["mean_a"] == pytest.approx(a[k].mean())
    assert got["rel_diff"] == pytest.approx(d.mean() / a[k].mean())
    assert got["p_ttest"] == pytest.approx(sp.ttest_rel(b[k], a[k]).pvalue, rel=1e-12)
    ci = sp.bootstrap((d,), np.mean, n_resamples=999, method="percentile",
                      rng=np.random.default_rng(3)).confidence_interval
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    flip = sp.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=999,
                               rng=np.random.default_rng(3)).pvalue
    assert got["p_randomization"] == pytest.approx(flip, abs=0.01)  # other random flips, the same test


def test_the_t_test_is_paired_not_unpaired(pairs):
    """On paired data the unpaired t-test is far too timid: a planted ttest_ind fails here."""
    (a, b), k = pairs, "recall@10"
    got = stats.paired(a[k], b[k], n_resamples=99)["p_ttest"]
    assert got == pytest.approx(sp.ttest_rel(b[k], a[k]).pvalue, rel=1e-12)
    assert got < 1e-6 and sp.ttest_ind(b[k], a[k]).pvalue > 0.1  # unpaired: 0.22 on these data


def test_the_paired_t_test_by_hand():
    """d = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2) = 3.873 on 3 degrees of freedom."""
    t = 2.5 / (math.sqrt(5 / 3) / 2)
    got = stats.paired([0, 0, 0, 0], [1, 2, 3, 4], n_resamples=99)
    assert got["p_ttest"] == pytest.approx(2 * sp.t.sf(t, 3), rel=1e-12)
    assert got["p_ttest"] == pytest.approx(0.030466, abs=1e-6)


def test_the_randomization_test_is_exact_on_few_users():
    """Five users moved: every one of the 2^5 sign patterns, counted by hand; zeros never count."""
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4, 0, 0, 0])
    obs = abs(d.mean())
    extreme = sum(abs((np.array(signs) * d[:5]).sum() / len(d)) >= obs - 1e-12
                  for signs in itertools.product((1, -1), repeat=5))
    got = stats.paired(np.zeros(8), d, n_resamples=999)["p_randomization"]
    assert got == pytest.approx(extreme / 32, abs=1e-12)


def test_no_difference_is_p_one_and_an_empty_interval():
    got = stats.paired([0, 1, 0.5], [0, 1, 0.5])
    assert (got["diff"], got["ci_low"], got["ci_high"], got["p_ttest"], got["p_randomization"]) == (0, 0, 0, 1, 1)


def test_t_interval_by_hand():
    v = np.array([0.091, 0.094, 0.090, 0.097])
    half = sp.t.ppf(0.975, 3) * v.std(ddof=1) / 2
    assert stats.t_interval(v) == pytest.approx((v.mean(), v.mean() - half, v.mean() + half), rel=1e-12)
    assert stats.t_interval([0.5]) == (0.5, None, None)

# -----------------------------------------------------------------------------
# What may be compared


def test_a_round_trip_keeps_everything(tmp_path):
    r = results(tmp_path, "a.npz", [0, 3, 45])
    assert r.ranks.tolist() == [0, 3, 45] and r.users.tolist() == [1, 2, 3] and r.fingerprint == "v2:x"
    assert r.means() == pytest.approx(bm.metrics_from_ranks([0, 3, 45]))


@pytest.mark.parametrize("change, what", [
    (dict(split="valid"), "split"), (dict(history_mask="official"), "history mask"),
    (dict(protocol="comirec"), "protocol"), (dict(fingerprint="v2:y"), "fingerprint"),
    (dict(users=np.array([1, 2, 4])), "users")])
def test_different_evaluations_are_refused_in_one_line(tmp_path, change, what):
    a = results(tmp_path, "a.npz", [0, 3, 20])
    b = results(tmp_path, "b.npz", [1, 3, 20], **change)
    with pytest.raises(bam_data.InputError, match=f"different {what}"):
        stats.compare(a, b)
    result = run("compare", a.path, b.path)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and f"different {what}" in result.output


def test_different_targets_are_refused(tmp_path):
    a = results(tmp_path, "a.npz", [0, 3, 20])
    path = per_user.save(str(tmp_path / "b.npz"), users=a.users, targets=[7, 8, 7], ranks=a.ranks, metrics=a.metrics,
                         protocol="loo", split="test", history_mask="exclude", fingerprint="v2:x", n_items=50)
    with pytest.raises(bam_data.InputError, match="different targets .* first at user 2"):
        stats.compare(a, per_user.load(path))

# -----------------------------------------------------------------------------
# End to end: train writes the file, compare reads two runs


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, synthetic_small):
    from bam_experiments.single_run import train_run
    tmp = tmp_path_factory.mktemp("runs")
    data = tmp / "data.txt"
    formats.write_official(synthetic_small[0], str(data))
    out = {}
    for selection in ("hard", "bam"):
        cfg = bm.Config(dim=16, seq_len=20, batch_size=64, n_negatives=100, max_iters=200, eval_every=100,
                        selection=selection, device="cpu")
        out[selection] = (str(tmp / selection), train_run(cfg, str(data), str(tmp / selection), log=lambda s: None)[0])
    return data, out


def test_train_writes_each_users_result(two_runs):
    data, runs = two_runs
    folder, result = runs["bam"]
    got = per_user.load(f"{folder}/{per_user.FILE}")
    assert got.means() == pytest.approx({k: v for k, v in result.test.items() if "@" in k}, abs=1e-15)
    dataset = bm.Dataset(bm.read_official(str(data)))
    assert got.users.tolist() == dataset.users.tolist()
    assert got.targets.tolist() == dataset.items[dataset.start[1:] - 1].tolist()  # each user's last item
    assert (got.protocol, got.split, got.fingerprint) == ("loo", "test", result.data.fingerprint)


def test_compare_two_runs(two_runs, tmp_path):
    _, runs = two_runs
    out = tmp_path / "compare.json"
    result = run("compare", runs["hard"][0], runs["bam"][0], "--json", out, "--resamples", 199)
    assert result.exit_code == 0, result.output
    assert "ndcg@20" in result.output and "95% bootstrap interval" in result.output
    report = json.loads(out.read_text())
    assert set(report["metrics"]) == {"recall@10", "ndcg@10", "recall@20", "ndcg@20"}
    for name, r in report["metrics"].items():
        assert r["mean_a"] == pytest.approx(runs["hard"][1].test[name], abs=1e-12)
        assert r["mean_b"] == pytest.approx(runs["bam"][1].test[name], abs=1e-12)
        assert r["ci_low"] <= r["diff"] <= r["ci_high"] and 0 <= r["p_ttest"] <= 1 and 0 < r["p_randomization"] <= 1


def test_compare_names_a_folder_without_the_file(tmp_path, two_runs):
    result = run("compare", tmp_path, two_runs[1]["bam"][0])
    assert result.exit_code == 2 and "no per_user_test.npz" in result.output and "--per-user" in result.output

# -----------------------------------------------------------------------------
# Beyond accuracy: coverage@N and ComiRec's diversity@N, from the top-N lists


def test_coverage_by_hand():
    from bam_evidence import beyond
    assert beyond.coverage(np.array([[1, 2], [2, 3]]), 10) == pytest.approx(0.3)
    assert beyond.coverage(np.array([[0, 2], [2, 2]]), 4) == pytest.approx(0.25)  # padding 0 is not an item


def test_diversity_by_hand():
    """ComiRec's Diversity@N: per user, the share of pairs in different categories, then the mean."""
    from bam_evidence import beyond
    codes = np.array([-1, 0, 0, 1, 2, -1])         # items 1, 2: category 0; 3: 1; 4: 2; 5: none
    tops = np.array([[1, 2, 3], [3, 4, 1], [1, 2, 5], [5, 0, 4]])
    # user 1: pairs (1,2) same, (1,3), (2,3) differ: 2/3; user 2: all differ: 1; user 3: item 5 takes no part,
    # (1,2) same: 0; user 4: one categorised item, left out
    assert beyond.diversity(tops, codes) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert beyond.diversity(np.array([[5, 0]]), codes) is None
    # a planted "pairs with the same category" (the complement) or a mean over all pairs of all users fails here
    assert beyond.diversity(np.array([[1, 3, 4, 2]]), codes) == pytest.approx(5 / 6)


def test_categories_file_errors_are_one_line(tmp_path):
    from bam_data.categories import category_codes, read_categories
    good = tmp_path / "c.txt"
    good.write_text("# item category\n1 a\n2 b\n\n3 a\n")
    assert read_categories(good) == {1: "a", 2: "b", 3: "a"}
    assert category_codes(read_categories(good), 4).tolist() == [-1, 0, 1, 0, -1]
    for text, needle in (("1 a\n1 b\n", ":2: item 1 has a second category"), ("x a\n", ":1:"), ("0 a\n", ":1:"),
                         ("1 a b\n", ":1:"), ("", "no `item category` line"), (b"\xff\xfe1 a\n", "not UTF-8")):
        bad = tmp_path / "bad.txt"
        bad.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(bam_data.InputError, match=needle) as e:
            read_categories(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_evaluate_reports_coverage_and_diversity_alike_in_both_engines(two_runs, tmp_path):
    """data synth's categories are the planted topics; the torch and numba engines give the same top-50 lists."""
    data, runs = two_runs
    categories = tmp_path / "topics.txt"
    from bam_data.categories import write_categories
    from bam_data.synth import SynthConfig, generate
    truth = generate(SynthConfig(users=800, items=300, topics=10, mean_len=20, seed=1))[1]
    write_categories(categories, {i + 1: f"t{t}" for i, t in enumerate(truth["item_topic"])})
    got = {}
    for engine in ("torch", "numpy"):
        out = tmp_path / f"{engine}.json"
        result = run("evaluate", "--checkpoint", f"{runs['bam'][0]}/checkpoint.pt", "--categories", categories,
                     "--engine", engine, "--json", out)
        assert result.exit_code == 0, result.output
        got[engine] = json.loads(out.read_text())["metrics"]
        assert "coverage@50" in result.output and "diversity@50" in result.output
        assert (tmp_path / f"{engine}.per_user.npz").exists()  # --json puts each user's result beside it
    assert got["torch"]["coverage@50"] == got["numpy"]["coverage@50"] and 0 < got["torch"]["coverage@50"] <= 1
    assert got["torch"]["diversity@50"] == pytest.approx(got["numpy"]["diversity@50"], abs=1e-12)
    assert 0 < got["torch"]["diversity@50"] < 1


def test_list_balance_is_the_balance_figure_of_the_same_lists(two_runs):
    """evaluate --top-n's interest balance equals `balance`'s figures (Figure 1) for the same top-10 lists:
    the interests are computed again, block by block, with the evaluation's own routing."""
    from bam_experiments import balance
    from bam_runs import checkpoints, datasets
    net, cfg, dataset, _ = checkpoints.load_with_data(f"{two_runs[1]['bam'][0]}/checkpoint.pt", None,
                                                      datasets.load_dataset, bm.Config())
    share, top, _, _ = balance.interest_usage(net, dataset, cfg, k=10)
    want = balance.summary(share)
    got = balance.list_balance(net, cfg, dataset, "test", top, block=37)
    assert got == {"interest_entropy@10": pytest.approx(want["mean_entropy_bits"], abs=1e-12),
                   "single_interest_users@10": want["single_interest_users"],
                   "interest_gini@10": pytest.approx(want["gini_of_interest_totals"], abs=1e-12)}
    one = balance.list_balance(net, cfg, dataset, "test", top[:, :1])  # one item: one interest, every user
    assert one["single_interest_users@1"] == 1.0 and one["interest_entropy@1"] == 0.0


def test_data_synth_writes_the_planted_topics_as_categories(tmp_path):
    from bam_data.categories import read_categories
    result = run("data", "synth", "--out", tmp_path / "s.txt", "--users", 50, "--items", 30, "--topics", 3)
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "s.truth.json").read_text())
    want = {i + 1: f"topic{t}" for i, t in enumerate(truth["item_topic"])}
    assert read_categories(tmp_path / "s.categories.txt") == want  # fewer topics than max_topics: it crashed


def test_one_moved_user_or_one_user_is_no_crash_and_no_false_certainty():
    """scipy's randomization test wants two observations: one moved user crashed `compare` and `table`."""
    got = stats.paired(np.zeros(50), np.r_[np.zeros(49), 1.0], n_resamples=99)
    assert got["p_randomization"] == 1.0 and got["diff"] == pytest.approx(0.02)
    alone = stats.paired([0.0], [1.0])
    assert alone["p_ttest"] is None and alone["ci_low"] == alone["ci_high"] == 1.0  # no test is possible
    assert stats.paired([0.0, 0.0], [1.0, 1.0])["p_ttest"] is None  # no spread: no t statistic


def test_compare_refuses_a_per_user_file_that_is_not_its_runs(two_runs, tmp_path):
    """A per-user file left by an earlier run (train --fresh used to keep it) is never compared."""
    import shutil
    _, runs = two_runs
    folder = tmp_path / "copy"
    shutil.copytree(runs["bam"][0], folder)
    shutil.copy(f"{runs['hard'][0]}/{per_user.FILE}", folder / per_user.FILE)
    result = run("compare", runs["hard"][0], folder)
    assert result.exit_code == 2 and "not the run's own" in result.output
    assert per_user.FILE in __import__("bam_runs.run_folder", fromlist=["RUN_FILES"]).RUN_FILES  # --fresh removes it


def test_compare_seed_must_be_a_seed(two_runs):
    result = run("compare", two_runs[1]["hard"][0], two_runs[1]["bam"][0], "--seed", -1)
    assert result.exit_code == 2 and result.output.count("\n") == 1


def test_a_superscript_digit_is_not_an_item_id(tmp_path):
    from bam_data.categories import read_categories
    path = tmp_path / "c.txt"
    path.write_text("\u00b2 a\n")
    with pytest.raises(bam_data.InputError, match=":1:"):
        read_categories(path)


def test_prepare_categories_from_movielens_genres(tmp_path):
    """MovieLens: each movie's first listed genre, in bam's numbering of the .inter file."""
    from conftest import shared

    from bam_data.categories import read_categories
    inter, item = shared("ml-100k/ml-100k.inter"), shared("ml-100k/ml-100k.item")
    out = tmp_path / "ml.categories.txt"
    result = run("prepare", "categories", item, "--data", inter, "--out", out)
    assert result.exit_code == 0, result.output
    got = read_categories(out)
    item_map = formats.read(str(inter))[1]["item_map"]
    assert len(got) == 1682 and got[item_map["1"]] == "Animation" and got[item_map["2"]] == "Action"


def test_prepare_categories_from_amazon_metadata(tmp_path):
    """Amazon 2023: the leaf of the category path, with spaces as _, in the ids that prepare amazon2023 wrote."""
    from bam_data.categories import read_categories
    reviews = tmp_path / "r.csv"
    reviews.write_text("user_id,parent_asin,rating,timestamp\n" + "".join(
        f"u{u},A{(u + j) % 4},5,{1000 * j}\n" for u in range(6) for j in range(4)))
    assert run("prepare", "amazon2023", reviews, "--out", tmp_path / "r.txt", "--kcore", 1).exit_code == 0
    meta = tmp_path / "meta.jsonl"
    meta.write_text("\n".join(json.dumps(dict(parent_asin=a, categories=c)) for a, c in (
        ("A0", ["Beauty", "Skin Care"]), ("A1", ["Beauty", "Hair"]), ("A2", []), ("Z9", ["Other"]))) + "\n")
    result = run("prepare", "categories", meta, "--maps", tmp_path / "r.maps.json", "--out", tmp_path / "c.txt")
    assert result.exit_code == 0, result.output
    ours = {v: int(k) for k, v in json.loads((tmp_path / "r.maps.json").read_text())["items"].items()}
    assert read_categories(tmp_path / "c.txt") == {ours["A0"]: "Skin_Care", ours["A1"]: "Hair"}
    bad = run("prepare", "categories", reviews, "--maps", tmp_path / "r.maps.json", "--out", tmp_path / "d.txt")
    assert bad.exit_code == 2 and ":1: not a metadata record" in bad.output
