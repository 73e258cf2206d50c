"""The data fingerprint (issue 14): one-to-one by construction, and checked wherever a model meets data.

The landed hash laid the users, the lengths and the items end to end with no sizes, so two datasets
whose integers concatenate alike shared it; and nothing compared a checkpoint's fingerprint with the
data it was evaluated, exported, analysed or cross-checked on. Each test here failed on that code.

    OMP_NUM_THREADS=1 python -m pytest tests/test_fingerprint.py
"""
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import example, given, strategies as st

import bam_minimal as bm
from bam_data import formats
from bam_runs import run_folder
from test_cli import TINY, one_line_error, run

# The pair of the issue: the same integers once the arrays are laid end to end.
ISSUE_A = {5: [3, 5, 7, 1, 2, 7, 3, 4, 5, 6]}
ISSUE_B = {5: [7, 1, 2], 10: [7, 3, 4, 5, 6]}


def old_fingerprint(data):
    """The landed hash, verbatim (item count, then users, lengths and items with no sizes): what old
    run folders and checkpoints carry."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.int64(data.n_items).tobytes())
    for a in (data.users, data.lengths, data.items):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


def shifted(seqs):
    """The dataset with one more user whose users, lengths and items, laid end to end, are the same
    integers as those of `seqs`: `seqs`'s first length becomes the new last user id, its first two
    items the last two lengths. `seqs` must allow it (see `collidable`)."""
    users = sorted(seqs)
    lengths = [len(seqs[u]) for u in users]
    items = [i for u in users for i in seqs[u]]
    b_users, b_lengths, b_items = users + [lengths[0]], lengths[1:] + items[:2], items[2:]
    assert b_users == sorted(set(b_users)) and min(b_lengths) >= 3 and sum(b_lengths) == len(b_items)
    assert max(b_items) == max(items)  # the same item count
    ends = np.cumsum([0] + b_lengths)
    return {u: b_items[ends[r]:ends[r + 1]] for r, u in enumerate(b_users)}


def collidable(rng, n_users, first_len, n_items, max_len):
    """Users 1..n_users whose first user's length (first_len > n_users) and first two items (a + b =
    first_len - 2) make `shifted` possible; the largest item sits after those two."""
    a = (first_len - 2) // 2
    b = first_len - 2 - a
    n_items = max(n_items, a, b)
    seqs = {1: [a, b, n_items] + rng.integers(1, n_items + 1, first_len - 3).tolist()}
    for u in range(2, n_users + 1):
        seqs[u] = rng.integers(1, n_items + 1, rng.integers(3, max_len + 1)).tolist()
    return seqs


def same(a, b):
    return a.n_items == b.n_items and all(np.array_equal(getattr(a, k), getattr(b, k))
                                          for k in ("users", "lengths", "items"))

# -----------------------------------------------------------------------------
# One-to-one


def test_fingerprint_tells_the_issue_pair_apart():
    a, b = bm.Dataset(ISSUE_A), bm.Dataset(ISSUE_B)
    assert old_fingerprint(a) == old_fingerprint(b)  # the defect, reproduced
    assert run_folder.fingerprint(a) != run_folder.fingerprint(b)


def test_fingerprint_tells_a_realistic_shifted_pair_apart():
    """A 300-user file and a 301-user file of about 5,600 interactions, the same item count."""
    seqs = collidable(np.random.default_rng(0), 300, 320, 500, 34)
    a, b = bm.Dataset(seqs), bm.Dataset(shifted(seqs))
    assert (len(a.users), len(b.users), a.n_items) == (300, 301, b.n_items)
    assert 5000 < b.n_interactions < a.n_interactions < 6500
    assert old_fingerprint(a) == old_fingerprint(b)
    assert run_folder.fingerprint(a) != run_folder.fingerprint(b)


def test_fingerprint_records_its_version():
    data = bm.Dataset(ISSUE_A)
    fp = run_folder.fingerprint(data)
    assert fp.startswith(f"{run_folder.FINGERPRINT_VERSION}:") and run_folder.fingerprint_version(fp) == "v2"
    assert run_folder.fingerprint_version(old_fingerprint(data)) == "v1"
    assert run_folder.fingerprint_version(None) is None
    assert run_folder.fingerprint_version("v9:abc") == run_folder.fingerprint_version(17) == "unknown"


@st.composite
def collidable_seqs(draw):
    """Small datasets that `shifted` turns into another with the same integers end to end."""
    n_users = draw(st.integers(1, 4))
    first_len = draw(st.integers(8, 14))
    seed = draw(st.integers(0, 2**16))
    return collidable(np.random.default_rng(seed), n_users, first_len, draw(st.integers(1, 9)), 6)


small_seqs = st.dictionaries(st.integers(0, 4), st.lists(st.integers(1, 4), min_size=1, max_size=5),
                             min_size=1, max_size=3).filter(lambda s: any(len(v) >= 3 for v in s.values()))
pairs = st.one_of(st.tuples(small_seqs, small_seqs),                      # mostly different, sometimes equal
                  small_seqs.map(lambda s: (s, {u: list(v) for u, v in s.items()})),  # equal
                  collidable_seqs().map(lambda s: (s, shifted(s))))      # the same integers end to end


@example((ISSUE_A, ISSUE_B))  # examples: the hypothesis profile of tests/conftest.py
@given(pairs)
def test_fingerprint_is_one_to_one(pair):
    a, b = (bm.Dataset(s) for s in pair)
    assert (run_folder.fingerprint(a) == run_folder.fingerprint(b)) == same(a, b)

# -----------------------------------------------------------------------------
# Run folders: other data, and the old hash


@pytest.fixture
def shifted_files(tmp_path):
    """Two trainable files with the same old fingerprint: 30 users, and 31."""
    seqs = collidable(np.random.default_rng(1), 30, 40, 40, 12)
    paths = tmp_path / "a.txt", tmp_path / "b.txt"
    formats.write_official(seqs, str(paths[0]))
    formats.write_official(shifted(seqs), str(paths[1]))
    data = [bm.Dataset(bm.read_official(str(p))) for p in paths]
    assert old_fingerprint(data[0]) == old_fingerprint(data[1]) and data[0].n_items == data[1].n_items
    return paths


def test_train_on_the_shifted_file_is_not_the_finished_run(tmp_path, shifted_files):
    out = tmp_path / "run"
    assert run("train", "--data", shifted_files[0], "--out", out, *TINY).exit_code == 0
    one_line_error(run("train", "--data", shifted_files[1], "--out", out, *TINY), "metrics.json", "other data")


def test_table_never_reuses_a_finished_run_of_other_data(tmp_path, shifted_files):
    args = ["--seeds", 1, "--methods", "BaM", "--out", tmp_path / "t", *TINY]
    assert run("table", "--data", shifted_files[0], *args).exit_code == 0
    result = run("table", "--data", shifted_files[1], *args)
    assert result.exit_code == 2 and "reused" not in result.output, result.output
    line = result.output.splitlines()[-1].split("error: ", 1)[-1]  # after the progress bar
    folder = str(tmp_path / "t" / "BaM" / "seed-2021")
    assert line.startswith(folder) and "other data" in line, result.output
    assert "--fresh" not in line and f"delete {folder}" in line  # table has no --fresh: the fix says what to delete



@pytest.fixture
def swapped(tmp_path, good):
    """`good` with user 1's first two items swapped: other data, the same item count."""
    lines = good.read_text().splitlines()
    path = tmp_path / "swapped.txt"
    path.write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
    return path


@pytest.fixture
def trained(tmp_path, good):
    out = tmp_path / "run"
    assert run("train", "--data", good, "--out", out, *TINY).exit_code == 0
    return out


def rewrite(path, **changes):
    """Change entries of a saved .pt (the weights' checksum does not cover them)."""
    saved = torch.load(path, weights_only=True)
    saved.update(changes)
    torch.save(saved, path)


def test_a_run_folder_with_the_old_hash_is_refused(good, trained):
    data = bm.Dataset(bm.read_official(str(good)))
    metrics = json.loads((trained / "metrics.json").read_text())
    metrics["data"]["fingerprint"] = old_fingerprint(data)
    (trained / "metrics.json").write_text(json.dumps(metrics))
    rewrite(trained / "last.pt", data=old_fingerprint(data))
    one_line_error(run("train", "--data", good, "--out", trained, *TINY), "metrics.json", "old", "v1", "--fresh")
    (trained / "metrics.json").unlink()  # an unfinished run: its last.pt is refused too
    one_line_error(run("train", "--data", good, "--out", trained, *TINY), "last.pt", "old", "--fresh",
                   after_progress=True)
    assert run("train", "--data", good, "--out", trained, "--fresh", *TINY).exit_code == 0
    assert json.loads((trained / "metrics.json").read_text())["data"]["fingerprint"] == run_folder.fingerprint(data)

# -----------------------------------------------------------------------------
# Wherever a model meets data


def test_evaluate_refuses_a_checkpoint_trained_on_other_data(tmp_path, good, swapped, trained):
    ckpt = trained / "checkpoint.pt"
    for engine in ("torch", "numpy"):
        one_line_error(run("evaluate", "--checkpoint", ckpt, "--data", swapped, "--engine", engine),
                       str(ckpt), str(good), str(swapped), "--other-data")
    result = run("evaluate", "--checkpoint", ckpt, "--data", swapped, "--other-data", "--json", tmp_path / "o.json")
    assert result.exit_code == 0, result.output
    assert any(ln.startswith("note: --other-data") and str(swapped) in ln for ln in result.stderr.splitlines())
    saved = json.loads((tmp_path / "o.json").read_text())
    assert saved["other_data"] is True and saved["data_check"] == "other"
    assert run("evaluate", "--checkpoint", ckpt, "--json", tmp_path / "s.json").exit_code == 0
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["other_data"] is False and saved["data_check"] == "same"
    # the file the checkpoint names, changed since training, is other data too
    good.write_text(swapped.read_text())
    one_line_error(run("evaluate", "--checkpoint", ckpt), str(ckpt), str(good), "--other-data")


def test_export_balance_and_crosscheck_refuse_other_data(tmp_path, good, swapped, trained):
    ckpt = trained / "checkpoint.pt"
    one_line_error(run("export", "--checkpoint", ckpt, "--data", swapped, "--out", tmp_path / "w.npz"),
                   str(ckpt), str(swapped))
    result = run("export", "--checkpoint", ckpt, "--data", swapped, "--other-data", "--out", tmp_path / "w.npz")
    assert result.exit_code == 0 and "note: --other-data" in result.stderr, result.output
    assert run("export", "--checkpoint", ckpt, "--out", tmp_path / "w.npz").exit_code == 0
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:  # the weights keep the fingerprint of their data
        assert str(z["__data_fingerprint__"]) == run_folder.fingerprint(bm.Dataset(bm.read_official(str(good))))
    one_line_error(run("balance", "--checkpoint", ckpt, "--data", swapped, "--out", tmp_path / "b.png"),
                   str(ckpt), str(swapped))
    result = run("balance", "--checkpoint", ckpt, "--data", swapped, "--other-data", "--out", tmp_path / "b.png",
                 "--json", tmp_path / "b.json")
    assert result.exit_code == 0 and "note: --other-data" in result.stderr, result.output
    assert json.loads((tmp_path / "b.json").read_text())[str(ckpt)]["other_data"] is True
    one_line_error(run("crosscheck", "--checkpoint", ckpt, "--data", swapped), str(ckpt), str(swapped))


def test_a_checkpoint_without_a_fingerprint_says_its_data_cannot_be_checked(tmp_path, good):
    cfg = bm.Config(dim=16, n_interests=2, seq_len=10)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 40)
    torch.save(model.state_dict(), tmp_path / "model.pt")  # an official bare state_dict
    data = bm.Dataset(bm.read_official(str(good)), name=str(good))
    run_folder.save(bm.checkpoint(model, cfg, data, 0), str(tmp_path / "standalone.pt"))  # bam_minimal.py's
    for name in ("model.pt", "standalone.pt"):
        result = run("evaluate", "--checkpoint", tmp_path / name, "--data", good, "--json", tmp_path / "e.json")
        assert result.exit_code == 0, result.output
        assert any(ln.startswith("note: ") and "no data fingerprint" in ln and "cannot be checked" in ln
                   for ln in result.stderr.splitlines()), result.output
        assert json.loads((tmp_path / "e.json").read_text())["data_check"] == "unchecked"


def test_a_checkpoint_with_the_old_hash_is_checked_as_far_as_it_goes(tmp_path, good, swapped, trained):
    ckpt = tmp_path / "old.pt"
    shutil.copy(trained / "checkpoint.pt", ckpt)
    data = bm.Dataset(bm.read_official(str(good)))
    rewrite(ckpt, fingerprint=old_fingerprint(data))
    result = run("evaluate", "--checkpoint", ckpt, "--data", good)  # the old hash matches: a note says how weak
    assert result.exit_code == 0 and "note: " in result.stderr and "old" in result.stderr, result.output
    one_line_error(run("evaluate", "--checkpoint", ckpt, "--data", swapped), str(ckpt), str(swapped))  # it differs
    rewrite(ckpt, fingerprint="v9:0123")  # a version this bam does not know
    one_line_error(run("evaluate", "--checkpoint", ckpt, "--data", good), str(ckpt), "unknown", "--other-data")
    assert run("evaluate", "--checkpoint", ckpt, "--data", good, "--other-data").exit_code == 0
