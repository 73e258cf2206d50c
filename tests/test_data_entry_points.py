"""
Every entry point reads a data file the same way: cli.py's load_dataset, bench.py's reader,
`python -m bam_numpy` and bam_numpy's benchmark (bam_numpy.load_data) give identical sequences on
every real dataset in ../shared/data (skipped where that folder is absent), and bam_minimal's own
read_official equals bam_data's on official-format files, extra fields included.

    python -m pytest tests/test_data_entry_points.py
"""
import pytest

import bam_minimal as bm
import bam_numpy as bn
import bench
import cli
from bam_data import formats
from conftest import SHARED, bam_numpy_main

NOT_INTERACTIONS = {"README.md", "ml-100k.item"}  # a description, and item features
DATA_FILES = sorted(str(p.relative_to(SHARED)) for p in SHARED.rglob("*")
                    if p.is_file() and p.name not in NOT_INTERACTIONS) if SHARED.exists() else []


def numpy_command_line_data(path, monkeypatch):
    """The Dataset that `python -m bam_numpy PATH` would train on."""
    return bam_numpy_main([path], monkeypatch)[1]


def outcome(load):
    """The sequences of the Dataset that `load()` returns, or the one-line error it raises (the split
    files of All_Beauty hold one item per user: no entry point can train on them, all must say so)."""
    try:
        data = load()
    except (bm.InputError, formats.InputError) as e:
        return "error", str(e)
    return data.users.tolist(), data.lengths.tolist(), data.items.tolist(), data.n_items, data.skipped


def test_the_shared_data_is_there_or_skipped():
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent")
    assert len(DATA_FILES) >= 7, DATA_FILES  # Beauty, LastFM, ml-100k, Office, All_Beauty and its split


@pytest.mark.parametrize("name", DATA_FILES)
def test_every_entry_point_reads_the_same_sequences(name, monkeypatch, capsys):
    path = str(SHARED / name)
    reference = outcome(lambda: cli.load_dataset(path, quiet=True))
    assert outcome(lambda: bench.load_dataset(path)) == reference  # bench.py and the twin commands
    assert outcome(lambda: numpy_command_line_data(path, monkeypatch)) == reference
    assert outcome(lambda: bn.load_data(path)) == reference
    if not name.endswith((".valid.csv", ".test.csv")):
        assert reference[0] != "error"


@pytest.mark.parametrize("name", DATA_FILES)
def test_bam_minimal_reads_official_files_as_bam_data_does(name, tmp_path):
    """Each dataset written back in the official format with two extra fields (rating, time)."""
    seqs = formats.read(SHARED / name)[0]
    path = tmp_path / "official.txt"
    path.write_text("".join(f"{u} {i} 5 {1500000000 + t}\n" for u, s in seqs.items() for t, i in enumerate(s)))
    if max(len(s) for s in seqs.values()) > 1:  # one line per user is `user item1 ...` to the detector
        assert formats.detect(path) == "official"
    assert bm.read_official(str(path)) == formats.read(path, "official")[0] == seqs


def test_official_files_with_extra_fields_and_interleaved_users(tmp_path):
    path = tmp_path / "ratings.txt"
    path.write_text("1 5 4 1500000000\n2 9 1 1500000000\n1 6 5 1500000001\n\n1 7 3 1500000002 x y\n"
                    "2 3 2 1500000004\n2 4\n")
    assert bm.read_official(str(path)) == formats.read(path)[0] == {1: [5, 6, 7], 2: [9, 3, 4]}
    assert formats.read(path)[1]["format"] == "official"


def test_bam_minimal_reads_a_byte_order_mark_as_bam_data_does(tmp_path):
    """FOR THE LEAD: fails until bam_minimal.read_official decodes with utf-8-sig (a BOM made line 1
    `not two integer ids` there)."""
    path = tmp_path / "bom.txt"
    path.write_text("\ufeff1 5 4 1500000000\n1 6 5 1500000001\n1 7 3 1500000002\n", encoding="utf-8")
    assert formats.read(path)[0] == {1: [5, 6, 7]}
    assert bm.read_official(str(path)) == {1: [5, 6, 7]}
