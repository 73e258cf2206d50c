"""
Every entry point reads a data file into the Dataset that bam_data.read's sequences make: `cli.py train`,
`cli.py evaluate`, `bench.py`, `python -m bam_numpy`, bam_numpy's benchmark (bam_numpy.load_data) and, for
the official format it reads, bam_minimal.py's standalone `__main__`. Each is run through its own code
(its command line, its own call of the loader) and stopped at the first place that receives the Dataset;
the Dataset is compared, array by array, with one built here from bam_data.read's {user: [items]} (so that a
drift in a Dataset class shows too). The files are the tricky ones: extra fields, interleaved users, a
byte-order mark, a 0-indexed per-user file, an Amazon CSV with string ids and ties, a RecBole .inter with
its header, users too short to keep; and every real dataset in ../shared/data (skipped where it is absent).

    python -m pytest tests/test_data_entry_points.py
"""
import runpy
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import bam_minimal as bm
import bam_numpy as bn
import bench
import cli
from bam_data import formats
from bam_runs import checkpoints
from bam_runs import run_folder
from conftest import ROOT, SHARED, bam_numpy_main

NOT_INTERACTIONS = {"README.md", "ml-100k.item"}  # a description, and item features
DATA_FILES = sorted(str(p.relative_to(SHARED)) for p in SHARED.rglob("*")
                    if p.is_file() and p.name not in NOT_INTERACTIONS) if SHARED.exists() else []

# name -> text. "official" in the name: bam_minimal.py's standalone reader reads it too.
TRICKY = {
    "official-extra-fields.txt": "1 5 4 1500000000\n2 9 1 1500000000\n1 6 5 1500000001\n\n1 7 3 1500000002 x y\n"
                                 "2 3 2 1500000004\n2 4\n3 8 1 1\n3 8 1 2\n",
    "official-pairs-bom-user-0.txt": "\ufeff0 3\n0 1\n0 2\n7 2\n7 3\n7 4\n7 1\n9 5\n",
    "per-user-0-indexed.txt": "1 0 4 2 9\n2 3 3 1\n3 5 0\n4 7 8 6 5 4\n",
    "amazon.csv": "user_id,parent_asin,rating,timestamp\nAX,B2,5,30\nBY,B1,4,10\nAX,B1,3,10\nAX,B3,5,10\n"
                  "BY,B2,1,5\nBY,B3,2,20\nCZ,B9,4,1\nAX,B4,1,40\n",
    "recbole.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu2\ti1\t1\t3.5\nu1\ti2\t2\t2\n"
                     "u1\ti3\t5\t1\nu2\ti2\t4\t1\nu1\ti1\t3\t2\nu2\ti3\t3\t2\nu1\ti4\t3\t0.5\nu3\ti1\t1\t1\n",
}


class Stop(Exception):
    """Raised where an entry point hands over its Dataset: nothing after the reading runs."""

    def __init__(self, data):
        super().__init__("stopped with the dataset")
        self.data = data


def capture(monkeypatch, obj, name):
    """Replace obj.name by a function that stops with its `data` argument (by name or position)."""
    import inspect
    params = list(inspect.signature(getattr(obj, name)).parameters)

    def stop(*args, **kwargs):
        raise Stop(kwargs.get("data", dict(zip(params, args)).get("data")))
    monkeypatch.setattr(obj, name, stop)

# -----------------------------------------------------------------------------
# Each entry point, through its own code: -> the Dataset it would train or evaluate on, or ("error", code)


def via_cli(argv):
    result = CliRunner().invoke(cli.cli, [str(a) for a in argv])
    if isinstance(result.exception, Stop):
        return result.exception.data
    assert result.exit_code == 2 and result.output.count("error: ") == 1, (result.output, result.exception)
    return "error", 2


def cli_train(path, tmp_path, monkeypatch):
    capture(monkeypatch, run_folder, "RunFolder")  # RunFolder(out, cfg, dataset): the first that gets the data
    return via_cli(["train", "--data", path, "--out", tmp_path / "run"])


def cli_evaluate(path, tmp_path, monkeypatch):
    """evaluate's own loader (the function it passes to checkpoints.load_with_data) on `path`."""
    def load_with_data(ckpt, data_path, read_data, *args, **kwargs):
        raise Stop(read_data(data_path))
    monkeypatch.setattr(checkpoints, "load_with_data", load_with_data)
    (tmp_path / "none.pt").write_bytes(b"")  # there (evaluate checks that first); never read
    return via_cli(["evaluate", "--checkpoint", tmp_path / "none.pt", "--data", path])


def bench_py(path, tmp_path, monkeypatch):
    capture(monkeypatch, bench, "our_train_step")  # our_train_step(cfg, data, ...): bench.py's first use
    monkeypatch.setattr(sys, "argv", ["bench.py", "--data", str(path), "--no-numpy"])
    try:
        bench.main()
    except Stop as stop:
        return stop.data
    except SystemExit as e:
        assert e.code == 2
        return "error", 2
    raise AssertionError("bench.py went past its data")


def numpy_main(path, tmp_path, monkeypatch):
    try:
        return bam_numpy_main([path], monkeypatch)[1]
    except (bn.InputError, formats.InputError):
        return "error", 2


def numpy_load_data(path, tmp_path, monkeypatch):
    try:
        return bn.load_data(path)
    except (bn.InputError, formats.InputError):
        return "error", 2


def minimal_main(path, tmp_path, monkeypatch, capsys=None):
    """bam_minimal.py run as a script (runpy: its own `__main__` block, its own classes), stopped when it
    calls its `train`; the Dataset is taken from that call."""
    script = str(ROOT / "bam_minimal.py")

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "train" and frame.f_code.co_filename == script:
            raise Stop(frame.f_locals["data"])
    monkeypatch.setattr(sys, "argv", [script, str(path), f"--out={tmp_path / 'minimal'}"])
    sys.settrace(tracer)
    try:
        runpy.run_path(script, run_name="__main__")
    except Stop as stop:
        return stop.data
    except SystemExit as e:
        assert e.code == 2
        return "error", 2
    finally:
        sys.settrace(None)
    raise AssertionError("bam_minimal.py went past its data")


ENTRY_POINTS = dict(cli_train=cli_train, cli_evaluate=cli_evaluate, bench_py=bench_py, numpy_main=numpy_main,
                    numpy_load_data=numpy_load_data)

# -----------------------------------------------------------------------------
# What they must all give


def expected(path, fmt="auto"):
    """The Dataset's arrays from bam_data.read's sequences, built here: users with 3 or more items, in user
    order, their items laid end to end; the item count from every user, skipped ones included."""
    try:
        seqs = formats.read(path, fmt)[0]
    except formats.InputError:
        return "error", 2
    kept = {u: seqs[u] for u in sorted(seqs) if len(seqs[u]) >= 3}
    if not kept:
        return "error", 2
    lengths = [len(s) for s in kept.values()]
    return dict(users=list(kept), lengths=lengths, start=[0, *np.cumsum(lengths).tolist()],
                items=[i for s in kept.values() for i in s], n_items=max(max(s) for s in seqs.values()),
                skipped=len(seqs) - len(kept), trainable=[r for r, n in enumerate(lengths) if n >= 4],
                n_interactions=sum(lengths))


def arrays(data):
    """The Dataset's fields as lists, with their dtypes checked: int64 ids, whatever class holds them."""
    if isinstance(data, tuple):
        return data
    for name in ("users", "lengths", "start", "items"):
        assert np.asarray(getattr(data, name)).dtype == np.int64, name
    out = {k: np.asarray(getattr(data, k)).tolist() for k in ("users", "lengths", "start", "items", "trainable")}
    return dict(out, n_items=data.n_items, skipped=data.skipped, n_interactions=data.n_interactions)


def check_entry_points(path, tmp_path, monkeypatch, points, fmt="auto"):
    want = expected(path, fmt)
    for name, entry in points.items():
        with monkeypatch.context() as m:
            assert arrays(entry(str(path), tmp_path, m)) == want, f"{name} read {path} differently"
    return want


@pytest.fixture(params=sorted(TRICKY))
def tricky(request, tmp_path):
    path = tmp_path / request.param
    path.write_text(TRICKY[request.param], encoding="utf-8")
    return path


def test_every_entry_point_reads_a_tricky_file_as_bam_data_does(tricky, tmp_path, monkeypatch):
    points = dict(ENTRY_POINTS, **({"minimal_main": minimal_main} if "official" in tricky.name else {}))
    want = check_entry_points(tricky, tmp_path, monkeypatch, points)
    assert want != ("error", 2) and want["skipped"] >= 1  # each file keeps some users and skips one


def test_the_tricky_files_are_what_they_say():
    """The cases test what they claim: the format detected, and the reader's decisions (shift, map, sort)."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        read = {}
        for name, text in TRICKY.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
            read[name] = formats.read(Path(tmp) / name)
    assert read["official-extra-fields.txt"][0] == {1: [5, 6, 7], 2: [9, 3, 4], 3: [8, 8]}
    assert read["official-pairs-bom-user-0.txt"][0] == {0: [3, 1, 2], 7: [2, 3, 4, 1], 9: [5]}
    assert read["per-user-0-indexed.txt"][1]["notes"]  # shifted by one
    assert read["per-user-0-indexed.txt"][0][1] == [1, 5, 3, 10]
    assert read["amazon.csv"][1]["format"] == "amazon" and read["recbole.inter"][1]["format"] == "recbole"
    assert read["amazon.csv"][0][1] == [1, 2, 3, 4]  # AX by time, ties in file order: B1, B3, B2, B4
    assert read["recbole.inter"][0][1] == [1, 2, 3, 4]  # u1 by time: i4, i3, i2, i1


def test_every_entry_point_refuses_a_bad_file_with_one_line(tmp_path, monkeypatch):
    path = tmp_path / "bad.txt"
    path.write_text("1 5\n1 x\n1 7\n")
    assert check_entry_points(path, tmp_path, monkeypatch, dict(ENTRY_POINTS, minimal_main=minimal_main)) \
        == ("error", 2)


def test_a_drift_in_one_entry_point_fails_the_comparison(tricky, tmp_path, monkeypatch):
    """The comparison can fail: bench.py reading every file as the official format is caught on each file
    of another format (it reads other sequences, or refuses the file)."""
    def official_only(path, fmt="auto", log=None):
        return bm.Dataset(formats.read(path, "official")[0], name=str(path))
    monkeypatch.setattr(bench, "load_dataset", official_only)
    try:
        got = arrays(bench_py(str(tricky), tmp_path, monkeypatch))
    except formats.InputError:
        got = "refused"
    assert (got == expected(tricky)) == (formats.detect(tricky) == "official")


def test_the_shared_data_is_there_or_skipped():
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent")
    assert len(DATA_FILES) >= 7, DATA_FILES  # Beauty, LastFM, ml-100k, Office, All_Beauty and its split


@pytest.mark.parametrize("name", DATA_FILES)
def test_every_entry_point_reads_the_real_data_as_bam_data_does(name, tmp_path, monkeypatch):
    """The split files of All_Beauty hold one item per user: no entry point can train on them, all say so."""
    want = check_entry_points(SHARED / name, tmp_path, monkeypatch, ENTRY_POINTS)
    assert (want == ("error", 2)) == name.endswith((".valid.csv", ".test.csv"))


@pytest.mark.parametrize("name", DATA_FILES)
def test_bam_minimal_reads_official_files_as_bam_data_does(name, tmp_path, monkeypatch):
    """Each dataset written back in the official format with two extra fields (rating, time), read by
    bam_minimal.py's standalone run."""
    seqs = formats.read(SHARED / name)[0]
    path = tmp_path / "official.txt"
    path.write_text("".join(f"{u} {i} 5 {1500000000 + t}\n" for u, s in seqs.items() for t, i in enumerate(s)))
    if max(len(s) for s in seqs.values()) > 1:  # one line per user is `user item1 ...` to the detector
        assert formats.detect(path) == "official"
    assert bm.read_official(str(path)) == formats.read(path, "official")[0] == seqs
    check_entry_points(path, tmp_path, monkeypatch, {"minimal_main": minimal_main}, "official")


def test_bam_minimal_reads_a_byte_order_mark_as_bam_data_does(tmp_path):
    """bam_minimal.read_official decodes with utf-8-sig (a BOM made line 1 `not two integer ids` there)."""
    path = tmp_path / "bom.txt"
    path.write_text("\ufeff1 5 4 1500000000\n1 6 5 1500000001\n1 7 3 1500000002\n", encoding="utf-8")
    assert formats.read(path)[0] == {1: [5, 6, 7]}
    assert bm.read_official(str(path)) == {1: [5, 6, 7]}
