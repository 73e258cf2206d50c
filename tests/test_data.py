"""The data pipeline: the reader, the leave-one-out split, and the vectorised batches."""
import csv

import numpy as np

import bam_minimal as bm
from bam_data import formats, train_counts
from conftest import shared


def test_split_equals_the_official_leave_last_out_files():
    """Amazon 2023 All_Beauty: our valid/test targets and histories equal the official split files."""
    seqs, info = formats.read(shared("amazon2023-all-beauty/All_Beauty.csv"))
    data = bm.Dataset(seqs)
    asin = {v: k for k, v in info["item_map"].items()}
    user = {v: k for k, v in info["user_map"].items()}
    for split, path in (("valid", "All_Beauty.valid.csv"), ("test", "All_Beauty.test.csv")):
        with open(shared(f"amazon2023-all-beauty/last_out_w_his/{path}")) as f:
            official = {r["user_id"]: (r["parent_asin"], r["history"].split()) for r in csv.DictReader(f)}
        k = bm.split_targets(data, split)
        history, mask, target = bm.windows(data, np.arange(len(data.users)), k, int(k.max()))
        ours = {user[u]: (asin[t], [asin[i] for i in h[m > 0]])
                for u, h, m, t in zip(data.users, history, mask, target)}
        assert len(ours) == len(official) == 253
        assert ours == official


def test_windows_take_the_last_items_right_padded():
    data = bm.Dataset({1: [5, 6, 7, 8, 9, 10], 2: [3, 4, 5]})
    history, mask, target = bm.windows(data, np.array([0, 0, 1]), np.array([5, 2, 1]), 3)
    assert history.tolist() == [[7, 8, 9], [5, 6, 0], [3, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0]]
    assert target.tolist() == [10, 7, 4]


def test_train_batches_stay_inside_the_training_part():
    """Targets come from seq[:-2] at positions k >= 1; users with < 2 training items are never drawn."""
    seqs = {u: list(range(100 * u + 1, 100 * u + 1 + n)) for u, n in enumerate([3, 4, 9, 60], 1)}
    data = bm.Dataset(seqs)
    history, mask, target = bm.train_batch(data, np.random.default_rng(0), 5000, 50)
    owner = target // 100
    assert set(owner.tolist()) == {2, 3, 4}  # user 1 has one training item: no target k >= 1
    position = target - 100 * owner - 1      # 0-based position of the target in its sequence
    n_train = np.array([len(seqs[u]) - 2 for u in owner])
    assert (position >= 1).all() and (position < n_train).all()
    # every position 1..n-3 is drawn for the long user, and the history is what precedes the target
    assert set(position[owner == 4].tolist()) == set(range(1, 58))
    lengths = mask.sum(1)
    assert (lengths == np.minimum(position, 50)).all()
    last = history[np.arange(len(history)), lengths.astype(int) - 1]
    assert (last == target - 1).all()


def test_train_counts_use_only_the_training_part():
    data = bm.Dataset({1: [1, 2, 3, 4], 2: [2, 3, 1]})
    assert train_counts(data).tolist() == [0, 1, 2, 0, 0]


def test_user_lines_need_not_be_contiguous(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("1 5\n2 7\n1 6\n2 8\n1 9\n2 3\n")
    assert bm.read_official(path) == {1: [5, 6, 9], 2: [7, 8, 3]}


def test_per_user_zero_indexed_files_are_shifted(tmp_path):
    path = tmp_path / "office.txt"
    path.write_text("0 0 4 2 7\n1 3 0 5\n")
    seqs, info = formats.read(path)
    assert info["format"] == "per-user"
    assert seqs == {0: [1, 5, 3, 8], 1: [4, 1, 6]}
    assert "0-indexed" in info["notes"][0]
