"""
bam_data, the torch-free data layer: one reader for every format (byte order marks, ids below 2^31,
official files with extra fields), the repeated-targets warning, atomic writes and the temporary
files a killed writer leaves, and output folders that a failed command does not leave behind.

    python -m pytest tests/test_bam_data.py
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import bam_numpy as bn
from bam_data import InputError, files, formats, repeated_targets
from bam_runs.datasets import load_dataset
from cli import cli

ROOT = Path(__file__).resolve().parents[1]
BOM = "\ufeff"


def official_with_extra_fields(users=6, first=1):
    """`user item rating time` lines: 4 per user, in time order."""
    lines = []
    for u in range(first, first + users):
        for j in range(4):
            lines.append(f"{u} {5 + u + j} {1 + j % 5} {1500000000 + 10 * u + j}\n")
    return "".join(lines)

# -----------------------------------------------------------------------------
# One reader


def test_bam_numpy_reads_an_official_file_with_extra_fields_as_pairs(tmp_path):
    """bam_numpy used to guess `one line per user` from the field count: user 1 got [7, 3, 1500000002]."""
    path = tmp_path / "ratings.txt"
    path.write_text("1 5 4 1500000000\n1 6 5 1500000001\n1 7 3 1500000002\n" + official_with_extra_fields(first=2))
    data = bn.load_data(str(path))
    assert data.users[0] == 1 and data.items[data.start[0]:data.start[1]].tolist() == [5, 6, 7]
    assert data.n_items == 15 and len(data.users) == 7
    assert formats.read(path)[0][1] == [5, 6, 7]


@pytest.mark.parametrize("name, text, expected", [
    ("pairs.txt", "1 5\n1 6\n1 7\n2 8\n2 9\n2 5\n", {1: [5, 6, 7], 2: [8, 9, 5]}),
    ("per_user.txt", "1 5 6 7\n2 8 9 5\n", {1: [5, 6, 7], 2: [8, 9, 5]}),
    ("ml.inter", "user_id:token\titem_id:token\ttimestamp:float\nu1\ta\t1\nu1\tb\t2\nu2\tb\t1\n",
     {1: [1, 2], 2: [2]}),
    ("beauty.csv", "user_id,parent_asin,rating,timestamp\nu1,a,5,10\nu1,b,4,20\nu2,b,3,5\n", {1: [1, 2], 2: [2]}),
    ("reviews.jsonl", '{"user_id": "u1", "parent_asin": "a", "timestamp": 1}\n'
                      '{"user_id": "u1", "parent_asin": "b", "timestamp": 2}\n', {1: [1, 2]}),
])
def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path, name, text, expected):
    """Windows editors start UTF-8 files with U+FEFF: it made line 1 `not two integer ids`, and the
    first column of a header (user_id) `missing`."""
    plain, marked = tmp_path / name, tmp_path / f"bom-{name}"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(BOM + text, encoding="utf-8")
    assert formats.read(plain)[0] == formats.read(marked)[0] == expected
    assert formats.read(marked)[1]["format"] == formats.read(plain)[1]["format"]


def test_a_file_holding_only_a_byte_order_mark_is_empty(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf\n")
    with pytest.raises(InputError, match="empty"):
        formats.read(path)


@pytest.mark.parametrize("text, fmt", [
    (f"1 5\n1 {2 ** 31}\n", "official"),
    (f"{2 ** 31} 5\n{2 ** 31} 6\n", "official"),
    (f"1 5 6 {2 ** 31}\n2 5 6 7\n", "per-user"),
    (f"1 5 6 {2 ** 40}\n2 5 6 7\n", "per-user"),
])
def test_ids_of_2_to_the_31_are_refused_by_every_reader(tmp_path, text, fmt):
    """Before anything allocates an (I + 1, d) table; bam_numpy's own per-user reader lacked the check."""
    path = tmp_path / "big.txt"
    path.write_text(text)
    for read in (lambda: formats.read(path), lambda: formats.read(path, fmt), lambda: bn.load_data(str(path))):
        with pytest.raises(InputError, match=r"big.txt:\d: id too large.*2\^31"):
            read()


def test_a_zero_indexed_id_just_below_2_to_the_31_is_refused_after_the_shift(tmp_path):
    path = tmp_path / "office.txt"
    path.write_text(f"0 0 4 {2 ** 31 - 1}\n1 3 0 5\n")
    with pytest.raises(InputError, match="2\\^31"):
        formats.read(path)


def test_the_numpy_dataset_refuses_a_huge_item_count():
    with pytest.raises(InputError, match="2\\^31"):
        bn.Dataset({1: [1, 2, 3]}, n_items=2 ** 31)


def test_bam_numpy_no_longer_has_its_own_readers():
    from bam_numpy import data
    assert not hasattr(data, "read_any") and not hasattr(data, "read_per_user")
    assert bn.InputError is InputError  # one error class for every torch-free layer

# -----------------------------------------------------------------------------
# The repeated-targets warning


def test_a_file_concatenated_twice_gets_a_warning(tmp_path, capsys):
    """Every test target is then in its user's history: `exclude` masks it and every metric is 0.0000,
    with no word about why."""
    once = official_with_extra_fields(users=20)
    assert repeated_targets(formats.read_official(_write(tmp_path / "once.txt", once))) is None
    path = _write(tmp_path / "twice.txt", once + once)
    warning = repeated_targets(formats.read(path)[0])
    assert warning and "100%" in warning and "concatenated twice" in warning and "--history-mask none" in warning
    assert "\n" not in warning
    load_dataset(str(path), log=print)
    out = capsys.readouterr().out
    assert f"warning: {warning}" in out.splitlines()
    load_dataset(str(tmp_path / "once.txt"), log=print)
    assert "warning" not in capsys.readouterr().out


def test_a_few_repeated_targets_are_not_a_warning():
    seqs = {u: [1, 2, 3, 1 if u < 5 else 4] for u in range(10)}  # 40% repeat: a habit, not a bug
    assert repeated_targets(seqs) is None
    seqs = {u: [1, 2, 3, 1 if u < 6 else 4] for u in range(10)}
    assert "60%" in repeated_targets(seqs)


def _write(path, text):
    path.write_text(text)
    return path

# -----------------------------------------------------------------------------
# Files: atomic writes, temporaries of killed writers, output folders


def test_atomic_write_makes_a_readable_file_and_leaves_no_temporary_on_an_error(tmp_path):
    path = tmp_path / "out.txt"
    files.atomic_text(str(path), "hello\n")
    assert path.read_text() == "hello\n" and (path.stat().st_mode & 0o777) == 0o644

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        files.atomic_write(str(path), broken)
    assert path.read_text() == "hello\n" and sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_a_writer_killed_mid_write_leaves_a_temporary_that_clean_stale_temps_removes(tmp_path):
    """kill -9 runs no cleanup: the `.tmp-<pid>-*` file stays until clean_stale_temps sees its pid gone."""
    code = ("import sys, time; from bam_data.files import atomic_write\n"
            "def slow(f):\n    f.write(b'x' * 100); f.flush(); print('writing', flush=True); time.sleep(60)\n"
            "atomic_write(sys.argv[1], slow)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out.txt")], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".tmp-{proc.pid}-")
    mine = tmp_path / f".tmp-{os.getpid()}-abcdefgh"  # a live writer's file, fresh: kept
    mine.write_bytes(b"in progress")
    assert files.clean_stale_temps(str(tmp_path)) == [str(tmp_path / left[0])]
    assert os.listdir(tmp_path) == [mine.name]


def test_clean_stale_temps_removes_old_temporaries_only(tmp_path):
    old, fresh, data = tmp_path / ".tmp-abcdefgh", tmp_path / ".tmp-x1y2z3w4.npz", tmp_path / "data.txt"
    for p in (old, fresh, data):
        p.write_text("x")
    ancient = time.time() - 120
    os.utime(old, (ancient, ancient))
    os.utime(data, (ancient, ancient))
    (tmp_path / ".tmp-folder").mkdir()
    assert files.clean_stale_temps(str(tmp_path)) == [str(old)]
    assert sorted(os.listdir(tmp_path)) == [".tmp-folder", fresh.name, data.name]
    assert files.clean_stale_temps(str(tmp_path), max_age_s=0) == [str(fresh)]
    assert files.clean_stale_temps(str(tmp_path / "absent")) == []


def test_a_failed_prepare_leaves_no_empty_output_folder(tmp_path):
    """`cli.py prepare amazon2023` created the output folder before reading the input."""
    src = tmp_path / "header_only.csv"
    src.write_text("user_id,parent_asin,rating,timestamp\n")
    out = tmp_path / "new" / "deeper" / "beauty.txt"
    result = CliRunner().invoke(cli, ["prepare", "amazon2023", str(src), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "no interactions" in result.output
    assert sorted(os.listdir(tmp_path)) == ["header_only.csv"]


def test_a_prepare_that_works_creates_the_folder(tmp_path):
    src = tmp_path / "b.csv"
    src.write_text("user_id,parent_asin,rating,timestamp\n" +
                   "".join(f"u{u},i{i},5,{10 * i}\n" for u in range(3) for i in range(4)))
    out = tmp_path / "new" / "b.txt"
    result = CliRunner().invoke(cli, ["prepare", "amazon2023", str(src), "--out", str(out), "--kcore", "1"])
    assert result.exit_code == 0, result.output
    assert formats.read(out)[0] == {u: [1, 2, 3, 4] for u in (1, 2, 3)}
    assert (tmp_path / "new" / "b.maps.json").exists()


# -----------------------------------------------------------------------------
# Found in review: each of these failed before its fix


def test_non_finite_or_huge_timestamps_are_one_line(tmp_path):
    import gzip
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("user_id,parent_asin,rating,timestamp\nu1,i1,5,1\nu1,i2,5,inf\n")
    with pytest.raises(InputError, match=":3:"):
        formats.read(str(csv_path))
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"user_id": "u", "parent_asin": "i", "timestamp": 1e400}\n')
    with pytest.raises(InputError, match=":1:"):
        formats.read(str(jsonl))
    inter = tmp_path / "a.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ti1\t3\nu\ti2\tnan\n")
    with pytest.raises(InputError, match=":3:.*finite"):
        formats.read(str(inter))
    whole = gzip.compress(b'{"user_id": "u", "parent_asin": "i", "timestamp": 1}\n' * 2000)
    (tmp_path / "t.jsonl.gz").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputError, match="gzip"):
        formats.read(str(tmp_path / "t.jsonl.gz"))


def test_both_official_readers_split_lines_alike(tmp_path):
    import bam_minimal as bm
    path = tmp_path / "ff.txt"
    path.write_text("1 5\x0c2 3\n1 6\n1 7\n2 8\n2 9\n2 10\n")
    assert formats.read(str(path))[0] == bm.read_official(str(path))
