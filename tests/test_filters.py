"""
bam_data/filters.py: ComiRec's preprocessing filter (`--filter comirec`). A hand-made dataset worked out
in a comment, its invariants under hypothesis (against the iterative k-core of bam_data.amazon), the data
fingerprint that keeps runs on filtered and unfiltered data apart, and the option from the command line.

    OMP_NUM_THREADS=1 python -m pytest -q -p no:xdist tests/test_filters.py
"""
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, strategies as st

import bam_minimal as bm
from bam_data import InputError, read as formats_read
from bam_data.amazon import kcore
from bam_data.filters import COMIREC_MIN, apply, comirec_filter
from bam_data.source import DataSource
from bam_runs import run_folder
from bam_runs.datasets import load_dataset
from test_cli import TINY, one_line_error, run

# -----------------------------------------------------------------------------
# A hand-made dataset

# Interactions of each item, repeats included, over every user (ComiRec counts the raw records):
#   item 1: u1 u2 u3 u4 u5          5  kept
#   item 2: u1 u2 u3 u4 u5 u6       6  kept
#   item 3: u1 u2 u3 u5 u5          5  kept (4 distinct users: a repeat counts again)
#   item 4: u1 u2 u3 u4 u6          5  kept (one of them from u6, whom bam_minimal.Dataset alone would skip)
#   item 5: u1 u2 u3 u4 u5          5  kept
#   item 9: u2 u3 u4 u4             4  dropped
# Then each user's interactions with the kept items:
#   u1 [1 2 3 4 5]    5  kept
#   u2 [1 2 3 4 5]    5  kept (item 9 dropped)
#   u3 [2 1 3 4 5]    5  kept (item 9 dropped)
#   u4 [1 5 2 4]      4  dropped: 6 interactions in the data, 4 once item 9 is gone
#   u5 [1 2 3 3 5]    5  kept (4 distinct items: a repeat counts again)
#   u6 [4 2]          2  dropped
# ComiRec filters once. In the result, items 1, 2 and 5 have 4 interactions left and item 4 has 3 (u4 and u6
# are gone), and they stay. A second round (or a 5-core) would drop them, then every user, and leave nothing.
HAND = {1: [1, 2, 3, 4, 5], 2: [1, 2, 9, 3, 4, 5], 3: [2, 1, 3, 9, 4, 5], 4: [1, 9, 5, 9, 2, 4],
        5: [1, 2, 3, 3, 5], 6: [4, 2]}
HAND_FILTERED = {1: [1, 2, 3, 4, 5], 2: [1, 2, 3, 4, 5], 3: [2, 1, 3, 4, 5], 5: [1, 2, 3, 3, 5]}


def test_the_hand_made_dataset():
    before = json.dumps(HAND)
    assert comirec_filter(HAND) == HAND_FILTERED
    assert json.dumps(HAND) == before                      # pure: the input is not changed
    left = Counter(i for s in HAND_FILTERED.values() for i in s)
    assert left == {1: 4, 2: 4, 3: 5, 4: 3, 5: 4}          # below 5 after one pass, and kept: no second round
    assert comirec_filter(HAND_FILTERED) == {}             # what a second round would do
    assert not kcore_seqs(HAND, COMIREC_MIN)               # and the 5-core: nothing


def test_through_the_loader(tmp_path):
    """load_dataset filters the data as read, before bam_minimal.Dataset skips users under 3: u6's item 4 counts."""
    path = tmp_path / "hand.txt"
    path.write_text("".join(f"{u} {i}\n" for u, s in HAND.items() for i in s))
    notes = []
    data = load_dataset(DataSource(str(path), filter="comirec"), log=notes.append)
    assert data.users.tolist() == [1, 2, 3, 5] and data.items.tolist() == sum(HAND_FILTERED.values(), [])
    assert data.n_items == 5                                # ids are kept: the largest kept id
    assert any("kept 4 of 6 users, 5 of 6 items and 20 of 30 interactions" in n for n in notes), notes
    assert len(load_dataset(str(path)).users) == 5          # no filter: u6 alone is skipped (under 3)


def test_a_data_source_keeps_its_format_and_filter_for_another_file(tmp_path):
    """A checkpoint's own data (no --data) is read with the command's --format and --filter: DataSource.at."""
    source = DataSource(None, "official", "comirec")
    assert source.synthetic and not source.at("b.txt").synthetic
    assert source.at("b.txt") == DataSource("b.txt", "official", "comirec")
    path = tmp_path / "hand.txt"
    path.write_text("".join(f"{u} {i}\n" for u, s in HAND.items() for i in s))
    seqs, info = source.at(str(path)).read()               # read, then filtered
    assert seqs == apply(formats_read(path)[0], "comirec", path) and info["notes"]


def test_nothing_left_is_one_input_error():
    with pytest.raises(InputError, match=r"^x\.txt: nothing is left after ComiRec's filter .*\(fix: "):
        apply({1: [1, 2, 3], 2: [3, 4, 5]}, "comirec", "x.txt")
    with pytest.raises(InputError, match="unknown filter"):
        apply(HAND, "kcore", "x.txt")
    assert apply(HAND, "none", "x.txt") is HAND

# -----------------------------------------------------------------------------
# Properties (hypothesis)


def kcore_seqs(seqs, k):
    """The iterative k-core of bam_data.amazon (what `prepare` uses), as {user: [items]} in each user's order."""
    pairs = [(u, i) for u, s in seqs.items() for i in s]
    if not pairs:
        return {}
    users, items = (np.array(x) for x in zip(*pairs))      # (T,), (T,)
    keep = kcore(users, items, k)                          # (T,)
    out = {}
    for (u, i), ok in zip(pairs, keep):
        if ok:
            out.setdefault(u, []).append(i)
    return out


datasets = st.dictionaries(st.integers(0, 30), st.lists(st.integers(1, 12), min_size=1, max_size=14), max_size=25)


@given(datasets)
def test_the_filter_is_comirecs_one_pass(seqs):
    out = comirec_filter(seqs)
    counts = Counter(i for s in seqs.values() for i in s)
    frequent = {i for i, n in counts.items() if n >= COMIREC_MIN}
    for user, items in seqs.items():                       # each user: its items seen 5+ times, kept if 5+ remain
        kept = [i for i in items if i in frequent]
        assert out.get(user) == (kept if len(kept) >= COMIREC_MIN else None)
    assert all(len(s) >= COMIREC_MIN for s in out.values())
    assert all(counts[i] >= COMIREC_MIN for s in out.values() for i in s)
    # One pass keeps a superset of the 5-core: what every round of the k-core keeps, the first round keeps
    core = kcore_seqs(seqs, COMIREC_MIN)
    assert all(not Counter(s) - Counter(out.get(u, [])) for u, s in core.items())
    # and its result is the 5-core exactly when a second pass would change nothing (a fixed point)
    assert (comirec_filter(out) == out) == (out == core)

# -----------------------------------------------------------------------------
# The fingerprint: runs on filtered and unfiltered data are never mixed


def test_the_fingerprint_is_of_the_filtered_data(tmp_path):
    filtered, whole = bm.Dataset(HAND_FILTERED, name="hand"), bm.Dataset(HAND, name="hand")
    assert run_folder.fingerprint(filtered) != run_folder.fingerprint(whole)
    with pytest.raises(bm.InputError, match="other data"):
        run_folder.check_same_run("metrics.json", {}, run_folder.fingerprint(filtered), bm.Config(), whole)
    # data that the filter leaves as it is keeps its fingerprint: the same data, so nothing to keep apart
    same = {u: [1, 2, 3, 4, 5] for u in range(1, 6)}
    assert comirec_filter(same) == same
    assert run_folder.fingerprint(bm.Dataset(comirec_filter(same))) == run_folder.fingerprint(bm.Dataset(same))

# -----------------------------------------------------------------------------
# The command line


@pytest.fixture
def small_synthetic(tmp_path):
    """Synthetic data on which the filter does something: 300 users of 6 items on average among 400 items
    (133 users, 101 items and 740 of 1,792 interactions are kept)."""
    path = tmp_path / "syn.txt"
    result = run("data", "synth", "--out", path, "--users", 300, "--items", 400, "--topics", 10, "--mean-len", 6)
    assert result.exit_code == 0, result.output
    return path


def test_train_evaluate_and_table_with_the_filter(tmp_path, small_synthetic, one_torch_thread):
    out, comirec = tmp_path / "run", ["--protocol", "comirec", "--history-mask", "none"]
    result = run("train", "--data", small_synthetic, "--filter", "comirec", "--out", out, *comirec, *TINY)
    assert result.exit_code == 0, result.output
    assert "--filter comirec kept 133 of 300 users, 101 of 342 items and 740 of 1,792 interactions" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["data"]["users"], metrics["data"]["interactions"]) == (133, 740)
    # the same folder without the filter: other data, refused, not reused
    one_line_error(run("train", "--data", small_synthetic, "--out", out, *comirec, *TINY), "other data",
                   after_progress=True)
    # in a folder of its own it trains, and `compare` refuses to pair the two runs
    assert run("train", "--data", small_synthetic, "--out", tmp_path / "whole", *comirec, *TINY).exit_code == 0
    one_line_error(run("compare", out, tmp_path / "whole"), "different fingerprint")
    # evaluate needs the filter again; with it, the run's test metrics
    ckpt = out / "checkpoint.pt"
    one_line_error(run("evaluate", "--checkpoint", ckpt), str(ckpt), after_progress=True)
    result = run("evaluate", "--checkpoint", ckpt, "--filter", "comirec", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e.json").read_text())["metrics"] == metrics["test"]
    # export checks --data against the checkpoint's: the filtered file only with the filter
    weights = ["export", "--checkpoint", ckpt, "--data", small_synthetic, "--out", tmp_path / "w.npz"]
    one_line_error(run(*weights), str(ckpt))
    assert not (tmp_path / "w.npz").exists()
    result = run(*weights, "--filter", "comirec")
    assert result.exit_code == 0 and (tmp_path / "w.npz").exists(), result.output
    # table: one method, one seed, on the filtered data; the same folder without the filter is refused
    table = ["table", "--data", small_synthetic, "--methods", "ComiRec", "--seeds", 1, "--out", tmp_path / "t",
             *comirec, *TINY]
    result = run(*table, "--filter", "comirec")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "t" / "table.json").read_text())["dataset"] == str(small_synthetic)
    one_line_error(run(*table), "other data", after_progress=True)


def test_the_option_is_checked_and_documented():
    one_line_error(run("train", "--filter", "kcore"), "--filter", "comirec")
    for command in ("train", "evaluate", "table"):
        text = run(command, "--help").output
        assert "--filter [none|comirec]" in text and "never implied by --protocol comirec" in " ".join(text.split())
