"""
The published NDCGs, each under its own label (bam_evidence.metrics): ComiRec's original code (`comirec-paper`),
ComiRec's code after its issue #6 (`comirec-master`) and REMI's (`remi`), each worked by hand on a user with a
repeated target and a miss; REMI's set order; old `(comirec)` files and metrics.json read as the paper branch's.
Then the per-user file's metrics, computed again from its ranks when it is read: a file whose ranks were
improved but whose metrics were left alone is refused, by `load` and by `cli.py compare`.

    python -m pytest tests/test_ndcg_variants.py
"""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import bam_data
import bam_minimal as bm
from bam_evidence import metrics, per_user
from cli import cli


def log2(x):
    return math.log(x, 2)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])

# -----------------------------------------------------------------------------
# Each variant by hand


# User A: targets in time order 50, 33, 9, 33 (33 taken twice); its top-3 list is 10, 33, 9, so the ranks of
# its targets are 70 (a miss), 1, 2, 1. User B: one target, 7, at rank 40: a miss. N = 3.
RANKS, COUNTS, TARGETS, TOPS = [70, 1, 2, 1, 40], [4, 1], [50, 33, 9, 33, 7], [[10, 33, 9], [10, 33, 9]]
IDEAL = [1, 1 + 1 / log2(3), 1 + 1 / log2(3) + 1 / log2(4)]   # IDCG of 1, 2, 3 hits: 1, 1.631, 2.131


def test_the_correct_ndcg_by_hand():
    """A's distinct items are 50, 33, 9: IDCG over min(3, 3) = 2.131. 33 (rank 1) and 9 (rank 2) hit:
    DCG = 1 / log2(3) + 1 / log2(4) = 1.131, NDCG 0.531. B: no hit, 0."""
    got = metrics.user_metrics(RANKS, COUNTS, TARGETS, ks=(3,))
    assert got["ndcg@3"][0] == pytest.approx((1 / log2(3) + 1 / log2(4)) / IDEAL[2], rel=1e-12)
    assert got["recall@3"][0] == pytest.approx(2 / 3, rel=1e-12) and got["ndcg@3"][1] == 0.0


def test_comirec_paper_by_hand():
    """ComiRec's original loop runs over A's targets in time order, repeats included: 50 (j = 0) misses,
    33 (j = 1) adds 1 / log2(3), 9 (j = 2) adds 1 / log2(4), 33 again (j = 3) adds 1 / log2(5): 1.562 over the
    IDCG of its 3 hits (2.131) = 0.733. The ranks play no part but to say which targets hit. B: 0."""
    got = metrics.user_metrics(RANKS, COUNTS, TARGETS, ks=(3,), published=True)["ndcg@3 (comirec-paper)"]
    assert got[0] == pytest.approx((1 / log2(3) + 1 / log2(4) + 1 / log2(5)) / IDEAL[2], rel=1e-12)
    assert got[1] == 0.0


def test_comirec_master_by_hand():
    """ComiRec's loop after issue #6 runs over the top-3 list 10, 33, 9, and asks of each item whether it is
    a target (a set: 33 counts once): 33 at position 1 adds 1 / log2(3), 9 at position 2 adds 1 / log2(4):
    1.131 over the IDCG of its 2 hits (1.631) = 0.693. Position r in the list is the rank r. B: 0."""
    got = metrics.user_metrics(RANKS, COUNTS, TARGETS, ks=(3,), published=True)["ndcg@3 (comirec-master)"]
    assert got[0] == pytest.approx((1 / log2(3) + 1 / log2(4)) / IDEAL[1], rel=1e-12)
    assert got[1] == 0.0


def test_remi_by_hand():
    """REMI's loop runs over a Python set of the top-3 ids, in the set's order. Ints sit in the set's table
    of 8 slots at id mod 8: 33 in slot 1, 10 in slot 2; 9's slot 1 is taken, so CPython probes on (to slot 6).
    The set iterates slot by slot: 33, 10, 9, not in rank order (10, 33, 9). So 33 is at position 0 and adds
    1 / log2(2) = 1, 9 at position 2 adds 1 / log2(4): 1.5 over the IDCG of 2 hits (1.631) = 0.920. B: 0."""
    shown = set()
    for item in TOPS[0]:
        shown.add(item)
    assert list(shown) == [33, 10, 9]  # CPython's set order, which REMI's metric depends on
    got = metrics.remi_ndcg(TOPS, COUNTS, TARGETS, 3)
    assert got[0] == pytest.approx((1 + 1 / log2(4)) / IDEAL[1], rel=1e-12)
    assert got[1] == 0.0


def test_the_four_numbers_of_one_user_differ():
    """The same user, the same ranks: 0.531 (correct), 0.733 (paper), 0.693 (master), 0.920 (REMI)."""
    got = metrics.published(metrics.VARIANTS, RANKS, COUNTS, TARGETS, TOPS, ks=(3,))
    values = [metrics.user_metrics(RANKS, COUNTS, TARGETS, ks=(3,))["ndcg@3"][0]] + [v[0] for v in got.values()]
    assert list(got) == ["ndcg@3 (comirec-paper)", "ndcg@3 (comirec-master)", "ndcg@3 (remi)"]
    assert np.round(values, 3).tolist() == [0.531, 0.733, 0.693, 0.92]


def test_remi_in_another_set_order():
    """Top-2 list 2, 9: the set iterates 9 (slot 1), then 2 (slot 2). A user whose one target is 2, at rank 0,
    scores 1 under ComiRec's master formula but 1 / log2(3) = 0.631 under REMI's; with ids whose slots follow
    the ranks (1, 2, 3) the two agree."""
    assert metrics.remi_ndcg([[2, 9]], [1], [2], 2)[0] == pytest.approx(1 / log2(3), rel=1e-12)
    assert metrics.user_metrics([0], [1], [2], ks=(2,), published=True)["ndcg@2 (comirec-master)"][0] == 1.0
    master = metrics.user_metrics([2, 1], [2], [3, 2], ks=(3,), published=True)["ndcg@3 (comirec-master)"]
    assert metrics.remi_ndcg([[1, 2, 3]], [2], [3, 2], 3)[0] == pytest.approx(master[0], rel=1e-12)


def test_remi_skips_padding_and_wants_long_enough_lists():
    """Item 0 (padding, ranked last) is not an item: REMI's code skips it. The set {5, 3} iterates 3 (slot 3),
    then 5, so target 3 is at position 0 and scores 1; kept, 0 would take slot 0 and push 3 to position 1."""
    assert metrics.remi_ndcg([[5, 0, 3]], [1], [3], 3)[0] == 1.0
    with pytest.raises(ValueError, match="top-3 list"):
        metrics.remi_ndcg([[5, 3]], [1], [3], 3)


def test_the_comirec_variants_are_the_loops_they_are_read_from():
    """On random users (repeats and misses included), the vectorised formulas against plain loops over what the
    published code iterates: the targets in time order (paper), the top-N list by rank (master)."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        n_items, n = 30, int(rng.integers(1, 12))
        order = rng.permutation(np.arange(1, n_items + 1))                      # the user's full ranking
        targets = rng.integers(1, n_items + 1, int(rng.integers(1, 7)))         # (T,) time order
        rank = {item: r for r, item in enumerate(order.tolist())}
        ranks = np.array([rank[t] for t in targets.tolist()])                  # (T,)
        listed, wanted = order[:n].tolist(), set(targets.tolist())
        got = metrics.user_metrics(ranks, [len(targets)], targets, ks=(n,), published=True)
        paper = [j for j, t in enumerate(targets.tolist()) if t in set(listed)]
        master = [r for r, item in enumerate(listed) if item in wanted]
        for name, hits in (("comirec-paper", paper), ("comirec-master", master)):
            want = sum(1 / log2(j + 2) for j in hits) / sum(1 / log2(i + 2) for i in range(len(hits))) if hits else 0
            assert got[f"ndcg@{n} ({name})"][0] == pytest.approx(want, rel=1e-12, abs=1e-15), name

# -----------------------------------------------------------------------------
# Names: --ndcg-as, and the old label


def test_ndcg_as_names_aliases_and_lists():
    assert metrics.variants(["comirec"]) == ("comirec-paper", "comirec-master")
    assert metrics.variants(["remi,comirec-paper"]) == ("comirec-paper", "remi")
    assert metrics.variants(["remi", "comirec"]) == metrics.VARIANTS and metrics.variants([]) == ()
    with pytest.raises(ValueError, match="'comirec-dev' is not a published NDCG"):
        metrics.variants(["comirec-dev"])


def test_the_old_label_is_the_paper_branch():
    assert metrics.current_name("ndcg@50 (comirec)") == "ndcg@50 (comirec-paper)"
    assert metrics.current_name("recall@50") == "recall@50"
    got = metrics.recompute(["ndcg@3 (comirec)"], RANKS, COUNTS, TARGETS)["ndcg@3 (comirec)"]
    assert np.array_equal(got, metrics.user_metrics(RANKS, COUNTS, TARGETS, (3,), True)["ndcg@3 (comirec-paper)"])

# -----------------------------------------------------------------------------
# Per-user files: every stored metric is computed again from the ranks


IDENTITY = dict(protocol="comirec", split="test", history_mask="none", fingerprint="v2:x", n_items=80)


def comirec_file(path, ranks, names=("recall@50", "ndcg@50", "hitrate@50", "ndcg@20 (comirec-paper)")):
    """A per-user file of 3 users (2, 1 and 3 targets) with the metrics of `ranks`, as a writer writes it."""
    counts, targets = np.array([2, 1, 3]), np.array([3, 4, 4, 9, 1, 2])
    got = metrics.user_metrics(ranks, counts, targets, ks=(20, 50), published=True)
    return per_user.save(str(path), users=[1, 2, 5], counts=counts, targets=targets, ranks=ranks,
                         metrics={k: got[k] for k in names}, **IDENTITY)


def resave(path, **changes):
    """The file with some arrays replaced, the rest byte for byte: what a hand edit leaves."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(path, **dict(arrays, **changes))


def run_folder_of(folder, ranks):
    """A finished run folder: per_user_test.npz and a metrics.json whose test metrics are its means."""
    folder.mkdir()
    comirec_file(folder / per_user.FILE, ranks)
    (folder / "metrics.json").write_text(json.dumps(dict(test=per_user.load(str(folder / per_user.FILE)).means())))
    return folder


def test_improved_ranks_with_the_old_metrics_are_refused(tmp_path):
    """The defect: ranks made better by hand, metric arrays left alone, passed (the means still matched
    metrics.json) and were compared by their metrics. Now load computes the metrics from the ranks."""
    path = comirec_file(tmp_path / "a.npz", [30, 60, 41, 0, 70, 45])
    resave(path, ranks=np.array([0, 1, 2, 0, 3, 4]))                          # every target in the top 5 now
    with pytest.raises(bam_data.InputError) as e:
        per_user.load(path)
    message = str(e.value)
    assert message.startswith(f"{path}: per-user `recall@50` of user 1 is 0.5, but its ranks give 1")
    assert "\n" not in message and "fix:" in message


def test_compare_refuses_a_doctored_run_folder_in_one_line(tmp_path):
    a = run_folder_of(tmp_path / "a", [30, 60, 41, 0, 70, 45])
    b = run_folder_of(tmp_path / "b", [30, 60, 41, 0, 70, 45])
    assert run("compare", a, b, "--resamples", 99).exit_code == 0
    resave(b / per_user.FILE, ranks=np.array([0, 1, 2, 0, 3, 4]))
    result = run("compare", a, b, "--resamples", 99)
    assert result.exit_code == 2 and "Traceback" not in result.output and result.output.count("\n") == 1
    assert "recall@50" in result.output and str(b / per_user.FILE) in result.output


def test_metrics_changed_without_the_ranks_are_refused(tmp_path):
    path = comirec_file(tmp_path / "a.npz", [30, 60, 41, 0, 70, 45])
    resave(path, **{"ndcg@20 (comirec-paper)": np.array([1.0, 0.0, 0.5])})
    with pytest.raises(bam_data.InputError, match=r"`ndcg@20 \(comirec-paper\)` of user 1 is 1, but its ranks give 0"):
        per_user.load(path)


@pytest.mark.parametrize("name, why", [("ndcg@50 (remi)", "needs each user's top-N list"),
                                       ("precision@10", "not a metric of ranks"),
                                       ("recall@50 (comirec-paper)", "not a metric of ranks"),
                                       ("ndcg@50 (comirec-dev)", "not a metric of ranks")])
def test_a_metric_the_ranks_do_not_give_is_refused(tmp_path, name, why):
    path = comirec_file(tmp_path / "a.npz", [30, 60, 41, 0, 70, 45])
    resave(path, **{name: np.array([0.5, 0.5, 0.5])})
    with pytest.raises(bam_data.InputError, match=f"^{path}: per-user metric .*{why}") as e:
        per_user.load(path)
    assert "\n" not in str(e.value)


def test_an_old_comirec_file_and_its_metrics_json_read_as_the_paper_branch(tmp_path):
    """bam before the three labels wrote `ndcg@N (comirec)`, ComiRec's original formula: it loads as
    `(comirec-paper)`, recomputed, and its folder's metrics.json still matches it."""
    folder = tmp_path / "old"
    folder.mkdir()
    ranks = [30, 60, 41, 0, 70, 45]
    path = comirec_file(folder / per_user.FILE, ranks, names=("recall@50", "ndcg@50 (comirec-paper)"))
    with np.load(path, allow_pickle=False) as f:
        arrays = {("ndcg@50 (comirec)" if k == "ndcg@50 (comirec-paper)" else k): f[k] for k in f.files}
    np.savez(path, **arrays)                                                   # the old file, as it was written
    got = per_user.load(path)
    assert set(got.metrics) == {"recall@50", "ndcg@50 (comirec-paper)"}
    paper = metrics.user_metrics(ranks, got.counts, got.targets, (50,), True)["ndcg@50 (comirec-paper)"]
    assert np.array_equal(got.metrics["ndcg@50 (comirec-paper)"], paper)
    (folder / "metrics.json").write_text(json.dumps(dict(test={"recall@50": float(got.metrics["recall@50"].mean()),
                                                               "ndcg@50 (comirec)": float(paper.mean())})))
    assert per_user.load_run(str(folder)).means() == got.means()


def test_an_old_runs_result_gets_the_master_ndcg_beside_its_paper_one(tmp_path):
    """`train`/`table --ndcg-as comirec` over a finished run of an older bam: its `(comirec)` numbers are kept as
    `(comirec-paper)`, and `(comirec-master)` is computed from its per-user ranks (run_folder.with_published_ndcg)."""
    from bam_runs import run_folder
    folder = run_folder_of(tmp_path / "old", [30, 60, 41, 0, 70, 45])
    old = {k.replace("(comirec-paper)", "(comirec)"): v for k, v in json.loads((folder / "metrics.json").read_text())
           ["test"].items()}
    from bam_evidence import records
    result = records.Result.from_dict(dict(config={}, test=dict(old)), str(folder / "metrics.json"))  # as read
    got = run_folder.with_published_ndcg(result, str(folder)).test
    assert got["ndcg@20 (comirec-paper)"] == old["ndcg@20 (comirec)"] and "ndcg@20 (comirec)" not in got
    found = per_user.load(str(folder / per_user.FILE))
    want = metrics.user_metrics(found.ranks, found.counts, found.targets, published=True)
    assert {k: got[k] for k in got if "master" in k} == {f"ndcg@{n} (comirec-master)": float(
        want[f"ndcg@{n} (comirec-master)"].mean()) for n in metrics.KS}


def test_a_metric_the_file_lacks_is_computed_on_request(tmp_path):
    """ComiRec's master NDCG of a run made without it: m[name] gives it, `in` and iteration do not list it."""
    got = per_user.load(comirec_file(tmp_path / "a.npz", [30, 60, 41, 0, 70, 45]))
    want = metrics.user_metrics(got.ranks, got.counts, got.targets, (50,), True)["ndcg@50 (comirec-master)"]
    assert np.array_equal(got.metrics["ndcg@50 (comirec-master)"], want)
    assert "ndcg@50 (comirec-master)" not in got.metrics and len(got.metrics) == 4
    with pytest.raises(KeyError):
        got.metrics["ndcg@50 (remi)"]


@pytest.mark.parametrize("protocol", ["loo", "comirec"])
def test_every_writer_writes_what_load_computes_again(tmp_path, protocol):
    """run_folder.save_per_user (train, table, `evaluate --per-user`, either engine's ranks) writes only
    metrics of ranks: REMI's NDCG, asked for, stays out of the file."""
    import bam_protocols
    from bam_runs import run_folder
    rng = np.random.default_rng(0)
    data = bm.Dataset({u: list(rng.integers(1, 60, 12)) for u in range(40)}, n_items=60)
    cfg = bm.Config(protocol=protocol, history_mask="none")
    p = bam_protocols.get(protocol)
    size = p.targets(data, "test", p.users(data, "test"))[1].sum()
    ranks = rng.integers(0, 61, size)
    written = run_folder.save_per_user(str(tmp_path / "p.npz"), data, "test", cfg, ranks, "v2:x",
                                       ndcg_as=metrics.VARIANTS if protocol == "comirec" else ())
    got = per_user.load(str(tmp_path / "p.npz"))
    assert set(got.metrics) == set(written) and all(np.array_equal(got.metrics[k], v) for k, v in written.items())
    assert not any("remi" in k for k in written)
    assert protocol == "loo" or {"ndcg@50 (comirec-paper)", "ndcg@10 (comirec-master)"} <= set(written)

# -----------------------------------------------------------------------------
# The command line


@pytest.fixture(scope="module")
def comirec_run(tmp_path_factory):
    """A short run under ComiRec's protocol on 60 items (REMI's NDCG@50 needs top-50 lists)."""
    tmp = tmp_path_factory.mktemp("variants")
    data = tmp / "d.txt"
    data.write_text("".join(f"{u} {1 + (u * 7 + j * 3) % 60}\n" for u in range(1, 41) for j in range(8)))
    result = run("train", "--data", data, "--protocol", "comirec", "--history-mask", "none", "--max-iters", 20,
                 "--eval-every", 10, "--dim", 8, "--out", tmp / "run")
    assert result.exit_code == 0, result.output
    return tmp, data


@pytest.mark.parametrize("engine", ["torch", "numpy"])
def test_evaluate_with_every_published_ndcg(comirec_run, engine):
    """Either engine's ranks and lists (the twin's through bam_crosscheck); the per-user file it writes loads."""
    tmp, _ = comirec_run
    out = tmp / f"{engine}.json"
    result = run("evaluate", "--checkpoint", tmp / "run" / "checkpoint.pt", "--ndcg-as", "comirec",
                 "--ndcg-as", "remi", "--top-n", 5, "--json", out, "--engine", engine)
    assert result.exit_code == 0, result.output
    got = json.loads(out.read_text())["metrics"]
    names = {f"ndcg@{n} ({v})" for n in (10, 20, 50) for v in metrics.VARIANTS}
    assert names <= set(got) and all(0 <= got[k] <= 1 for k in names) and "coverage@5" in got
    saved = per_user.load(str(tmp / f"{engine}.per_user.npz"))               # REMI's is in the JSON only
    assert not any("remi" in k for k in saved.metrics) and "ndcg@50 (comirec-master)" in saved.metrics
    assert saved.metrics["ndcg@50 (comirec-paper)"].mean() == pytest.approx(got["ndcg@50 (comirec-paper)"], abs=1e-15)


@pytest.mark.parametrize("command", ["train", "table"])
def test_remi_is_for_evaluate_only(comirec_run, command):
    tmp, data = comirec_run
    result = run(command, "--data", data, "--protocol", "comirec", "--ndcg-as", "comirec-paper,remi",
                 "--out", tmp / f"{command}-remi")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--ndcg-as remi: REMI's NDCG needs each user's top-N list" in result.output
    assert "cli.py evaluate --checkpoint" in result.output


def test_an_unknown_ndcg_is_refused(comirec_run):
    tmp, _ = comirec_run
    result = run("evaluate", "--checkpoint", tmp / "run" / "checkpoint.pt", "--ndcg-as", "remix")
    assert result.exit_code == 2 and "'remix' is not a published NDCG" in result.output
