"""
Fuzzing every reader of a file (hypothesis): random bytes, and near-valid files (a valid file of the
format, then truncated, a byte flipped, a field or a line inserted, a huge number, a negative id, a NaN,
unicode, empty lines, ...). Each reader either reads or stops with the one-line InputError
(bam_minimal.InputError or bam_data.InputError) that names the file; never another exception. What it
reads is checked too: ids in range, a model whose weights are finite and of the model's shapes.

  the data formats  bam_data.read (official pairs, one line per user, RecBole .inter, Amazon CSV and
                    .jsonl, any of them gzipped), the Dataset of cli.py and of the twin
  prepare           bam_data.amazon.prepare_amazon2023 (CSV, .jsonl, .jsonl.gz)
  checkpoints       bam_runs.run_folder.load and bam_runs.checkpoints.load (ours, official state_dicts)
  the twin          bam_numpy.weights.load_weights, bam_numpy.golden.load and, on what loads, golden.check
                    with bam_numpy's implementation (a verdict, never a traceback from inside it)

The number of examples comes from the hypothesis profile (tests/conftest.py): `ci` by default (200 a
test, the same ones on every run: about 1,230 inputs and 15 s in all), `--hypothesis-profile=thorough`
(3,000 a test, fresh ones, about 2-4 minutes) for a long search. A crash that fuzzing found is kept as an
@example of the test that found it, with the exception it raised.

    python -m pytest tests/test_fuzz.py --hypothesis-show-statistics
    python -m pytest tests/test_fuzz.py --hypothesis-profile=thorough
"""
import gzip
import io
import json
import math
import os
import tempfile
from dataclasses import asdict

import numpy as np
import pytest
import torch
from hypothesis import event, example, given
from hypothesis import strategies as st

import bam_data
import bam_minimal as bm
from bam_numpy import golden
from bam_numpy.data import Dataset as TwinDataset
from bam_numpy.weights import load_weights, save_weights
from bam_runs import checkpoints
from bam_runs import datasets
from bam_data import amazon as prepare
from bam_data.source import DataSource
from bam_runs import run_folder

ERRORS = (bm.InputError, bam_data.InputError)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def put(folder, name, data):
    """Write `data` (bytes) as folder/name, replacing what an earlier example left there."""
    path = folder / name
    path.write_bytes(data)
    return path


def reads_or_one_line(fn, path):
    """fn(path), or None when it raised our InputError: one line, naming the file. Any other exception
    fails the test (hypothesis shows the input)."""
    try:
        return fn(path)
    except ERRORS as e:
        message = str(e)
        assert message and message.isprintable(), repr(message)  # no line break, no control character
        assert str(path) in message, message
        return None

# -----------------------------------------------------------------------------
# Valid files of each format, and their mutations


def sequences():
    """{user: [items]}: small, with repeats, gaps in the ids and users of one item."""
    return st.dictionaries(st.integers(0, 40), st.lists(st.integers(1, 30), min_size=1, max_size=6),
                           min_size=1, max_size=6)


def official(seqs, extra):
    return "".join(f"{u} {i}{' 5 1500000000' if extra else ''}\n" for u, s in seqs.items() for i in s)


def per_user(seqs, extra):
    return "".join(f"{u} {' '.join(map(str, s))}\n" for u, s in seqs.items())


def amazon_csv(seqs, extra):
    rows = [f"U{u},B{i},5,{t}\n" for u, s in seqs.items() for t, i in enumerate(s)]
    return "user_id,parent_asin,rating,timestamp\n" + "".join(rows)


def recbole(seqs, extra):
    rows = [f"u{u}\ti{i}\t{t}.5\n" for u, s in seqs.items() for t, i in enumerate(s)]
    return "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(rows)


def jsonl(seqs, extra):
    return "".join(json.dumps(dict(user_id=f"U{u}", parent_asin=f"B{i}", rating=5.0, timestamp=1000 * t)) + "\n"
                   for u, s in seqs.items() for t, i in enumerate(s))


# name -> (writer, file name): every reader and the gzipped forms
FORMATS = {"official": (official, "data.txt"), "per-user": (per_user, "data.txt"), "csv": (amazon_csv, "data.csv"),
           "recbole": (recbole, "data.inter"), "jsonl": (jsonl, "data.jsonl"),
           "jsonl.gz": (jsonl, "data.jsonl.gz"), "official.gz": (official, "data.txt.gz")}
NASTY = [b" 7", b"\t", b",", b" ", b"99999999999999999999", b"2147483648", b"-1", b"-0", b"nan", b"NaN", b"inf",
         b"-inf", b"1e400", b"1.5", b"0", "\u00e9\u2603\U0001f600".encode(), b"\xff\xfe", b"\xef\xbb\xbf", b"\n",
         b"\n\n", b"\r\n", b"\r", b"\x00", b'"', b"'", b"{", b"}", b"[", b"]", b":", b"null", b"true", b"\\",
         b"\x1c", b"\x85", "\u2028".encode(), b"9" * 5000, b"[" * 3000, b"a" * 140000, b"0x10", b"1_0", b"+3",
         b'{"user_id": 1, "parent_asin": [2], "timestamp": 3}\n', b"user_id:token\n"]


@st.composite
def mutated(draw, valid):
    """Bytes of a valid file with one to four mutations: cut, flip a byte, insert, delete, repeat a line."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "repeat-line"]))
        at = draw(st.integers(0, len(data)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(NASTY) | st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "repeat-line":
            lines = bytes(data).splitlines(keepends=True)
            if lines:
                line = lines[at % len(lines)]
                data[at:at] = line
    return bytes(data)


@st.composite
def data_files(draw, names=tuple(sorted(FORMATS))):
    """(format name, file name, bytes, kind): a valid file, a mutated one, or random bytes; gzipped for .gz."""
    name = draw(st.sampled_from(names))
    writer, filename = FORMATS[name]
    text = writer(draw(sequences()), draw(st.booleans())).encode()
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "random"]))
    data = text if kind == "valid" else draw(mutated(text)) if kind == "mutated" else draw(st.binary(max_size=200))
    if filename.endswith(".gz"):
        compressed = gzip.compress(data)
        data = draw(st.sampled_from([compressed, compressed, compressed[:len(compressed) // 2], data]))
    return name, filename, data, kind


def check_sequences(seqs):
    """What every reader promises: {int user >= 0: non-empty [int items in 1 .. 2^31 - 1]}."""
    assert isinstance(seqs, dict) and seqs
    for user, items in seqs.items():
        assert type(user) is int and 0 <= user < bam_data.formats.MAX_ID
        assert items and all(type(i) is int and 0 < i < bam_data.formats.MAX_ID for i in items)

# -----------------------------------------------------------------------------
# The data formats


@given(data_files())  # each @example is a crash that fuzzing found, or its kin (the comment says which)
@example(("csv", "data.csv", b"user_id,parent_asin,rating,timestamp\nU1," + b"b" * 140000 + b",5,1\n",
          "mutated"))  # csv.Error: field larger than field limit
@example(("csv", "data.csv", b"user_id,parent_asin,rating,timestamp\nU1,B1,5,1\n" * 2000 + b"U2,B\x002,5,1\n",
          "mutated"))  # csv.Error: a NUL byte past the first 64 KiB, which check_text_file reads
@example(("jsonl", "data.jsonl", b'{"user_id": 1, "parent_asin": "a", "timestamp": 1}\n'
          b'{"user_id": "x", "parent_asin": "a", "timestamp": 1}\n', "mutated"))  # TypeError: int < str in the sort
@example(("jsonl", "data.jsonl", b'{"user_id": [1], "parent_asin": "a", "timestamp": 1}\n',
          "mutated"))  # TypeError: unhashable type: 'list'
@example(("jsonl", "data.jsonl", b"[" * 100000 + b"\n", "mutated"))  # RecursionError in json.loads
@example(("official.gz", "data.txt.gz", gzip.compress(b"1 2\n1 3\n1 4\n" * 30000)[:-100],
          "mutated"))  # a .txt.gz was read as raw bytes; now gunzipped, and cut: the gzip line
@example(("recbole", "data.inter", b"user_id:token\titem_id:token\n" + b"\xff\n", "mutated"))
@example(("recbole", "data.inter", b"user_id:token\titem_id:token\n", "mutated"))  # {}: no interactions
@example(("official", "data.txt", b"\x1c\n", "mutated"))  # whitespace to str.split, not to bytes.strip
@example(("csv", "data.csv", b'user_id,parent_asin,rating,timestamp\nU1,B1,"5\nU2",x\n', "mutated"))  # 2-line error
def test_every_format_reads_or_stops_with_one_line(folder, case):
    name, filename, data, kind = case
    path = put(folder, filename, data)
    for fmt in ("auto", *({"official": ["official"], "per-user": ["per-user"], "recbole": ["recbole"]}.get(name, []))):
        got = reads_or_one_line(lambda p: bam_data.read(p, fmt), path)
        if fmt == "auto":
            event(f"{kind} file: {'read' if got else 'InputError'}")
        if got is None:
            continue
        seqs, info = got
        check_sequences(seqs)
        assert info["format"] in bam_data.FORMATS
        for build in (lambda p: TwinDataset(seqs, name=str(p)), lambda p: datasets.load_dataset(DataSource(p, fmt))):
            reads_or_one_line(build, path)  # users with fewer than 3 items: the one line, nothing else


@given(sequences(), st.sampled_from(["official", "per-user", "csv", "recbole", "jsonl"]))
def test_a_gzipped_file_reads_as_the_file(folder, seqs, name):
    """A .gz of any format is the same data as the file (it was read as raw bytes, or refused)."""
    writer, filename = FORMATS[name]
    text = writer(seqs, False).encode()
    plain = bam_data.read(put(folder, filename, text))
    assert bam_data.read(put(folder, filename + ".gz", gzip.compress(text)))[0] == plain[0]


@given(data_files(("csv", "jsonl", "jsonl.gz")), st.integers(1, 3), st.booleans())
def test_prepare_amazon2023_writes_or_stops_with_one_line(folder, case, k, dedup):
    name, filename, data, kind = case
    path = put(folder, filename, data)
    out = folder / "prepared.txt"
    got = reads_or_one_line(lambda p: prepare.prepare_amazon2023(p, str(out), k, dedup), path)
    event("prepared" if got else "InputError")
    if got is not None:
        check_sequences(bam_data.read(out, "official")[0])
        assert json.loads((folder / "prepared.maps.json").read_text())["kcore"] == k

# -----------------------------------------------------------------------------
# Checkpoints: our files and the official state_dicts, torch.load without code


TINY = bm.Config(dim=4, n_interests=2, seq_len=3)


def tiny_checkpoint(model="comirec", bare=False):
    """A valid checkpoint of a tiny model: ours (with checksum) or an official bare state_dict."""
    cfg = bm.Config(**{**asdict(TINY), "model": model})
    torch.manual_seed(0)
    weights = bm.build_model(cfg, 5).state_dict()
    if bare:
        return weights
    return dict(format="bam-1", config=asdict(cfg), n_items=5, iter=1, data="tiny.txt", model=weights,
                checksum=run_folder.checksum(weights))


def saved(obj, legacy=False):
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


VALID_CHECKPOINTS = [saved(tiny_checkpoint(m, bare), legacy) for m in ("comirec", "mind") for bare in (False, True)
                     for legacy in (False, True)]
ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.sampled_from(
    [0, -1, 1 << 31, 1 << 40, 1 << 63, math.nan, math.inf, -math.inf, 1e300, 0.5]), st.floats(), st.text(max_size=5),
    st.lists(st.integers(), max_size=2), st.builds(torch.zeros, st.integers(0, 3)))
TENSORS = st.builds(lambda shape, dtype, fill: torch.full(shape, fill).to(dtype),
                    st.lists(st.integers(0, 6), max_size=3).map(tuple),
                    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool,
                                     torch.complex64]),
                    st.sampled_from([0.0, 1.0, 1e38, math.nan, math.inf]))


@st.composite
def odd_checkpoints(draw):
    """A checkpoint whose structure is valid pickle of allowed types, with fields changed, dropped or added."""
    obj = tiny_checkpoint(draw(st.sampled_from(["comirec", "mind"])), bare=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from([obj] + [v for v in (obj.get("config"), obj.get("model")) if isinstance(v, dict)]
                                      if "format" in obj else [obj]))
        key = draw(st.sampled_from(sorted(target) + ["extra", "capsule_network.linear.weight", "l1.weight"]))
        action = draw(st.sampled_from(["value", "tensor", "drop"]))
        if action == "drop":
            target.pop(key, None)
        else:
            target[key] = draw(ODD_VALUES if action == "value" else TENSORS)
    return saved(obj, legacy=draw(st.booleans()))


def checkpoint_bytes():
    return st.one_of(st.sampled_from(VALID_CHECKPOINTS), st.sampled_from(VALID_CHECKPOINTS).flatmap(mutated),
                     odd_checkpoints(), st.binary(max_size=300))


def check_model(got):
    model, cfg, n_items, info = got
    bm.check_config(bm.Config(**{**asdict(cfg), "device": "auto"}))
    for name, w in model.state_dict().items():
        assert w.is_floating_point() and bool(torch.isfinite(w).all()), name
    assert model.embeddings.weight.shape == (n_items + 1, cfg.dim)


@given(checkpoint_bytes())
@example(saved(dict(tiny_checkpoint(), n_items=math.inf)))
@example(saved(dict(tiny_checkpoint(), n_items=1 << 40)))
@example(saved(dict(tiny_checkpoint(), config=dict(asdict(TINY), dim=1 << 40))))
@example(saved({**tiny_checkpoint(bare=True), "embeddings.weight": torch.zeros(2, 3, dtype=torch.int64)}))
@example(saved({**tiny_checkpoint(bare=True), "embeddings.weight": torch.zeros(6, 4, dtype=torch.complex64)}))
@example(saved(dict(tiny_checkpoint(), n_items=-3)))
@example(b"J")  # a legacy pickle cut inside an integer: struct.error from the unpickler
@example(saved(dict(tiny_checkpoint(), n_items=torch.tensor(1e38))))  # RuntimeError from int(tensor)
@example(saved({**tiny_checkpoint(bare=True), "embeddings.weight": torch.zeros(0, 4)}))  # no row: n_items -1
@example(saved({**tiny_checkpoint(bare=True), "position_embedding": torch.zeros(3)}))  # its shape[1] is read
@example(saved({**tiny_checkpoint(bare=True), "embeddings.weight": torch.tensor(1.0)}))
@example(saved(dict(tiny_checkpoint(), config=dict(asdict(TINY), loss="rampled"))))  # the error named no file
@example(saved(dict(tiny_checkpoint(), config=dict(asdict(TINY), tau_schedule="\ufbc3\x1b[2J"))))  # echoed raw
def test_checkpoints_load_or_stop_with_one_line(folder, data):
    path = put(folder, "checkpoint.pt", data)
    reads_or_one_line(run_folder.load, str(path))
    got = reads_or_one_line(checkpoints.load, str(path))
    event("loaded" if got else "InputError")
    if got is not None:
        check_model(got)

# -----------------------------------------------------------------------------
# The twin's weights and the golden vectors (.npz, numpy only)


def npz(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def valid_weights():
    from bam_numpy.config import Config
    from bam_numpy.encoders import init_params
    cfg = Config(dim=4, n_interests=2, seq_len=3)
    with tempfile.TemporaryDirectory(prefix="bam-fuzz-") as tmp:
        path = os.path.join(tmp, "weights.npz")
        save_weights(path, init_params(cfg, 5, np.random.default_rng(0), np.float32), cfg, 5)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def odd_array(shape, dtype, fill):
    """np.full(shape, fill) as `dtype`; a NaN or 1e38 cast to an integer or float16 is whatever numpy makes."""
    with np.errstate(all="ignore"):
        return np.full(shape, fill).astype(dtype)


ODD_ARRAYS = st.one_of(
    st.sampled_from([np.array(5), np.array([5, 6]), np.array("x"), np.array("{}"), np.array("[1]"), np.array(math.nan),
                     np.array(math.inf), np.array(-3), np.array(1 << 62), np.array(True), np.zeros((0,)),
                     np.array('{"dim": "4"}'), np.array('{"dim": 1e400}'), np.array('{"model": "sasrec"}'),
                     np.array('{"n_items": 5, "top_k": 20, "dim": -1}'), np.array("bam-npz-1"),
                     np.array("bam-golden-1"), np.array(["bam-npz-1"])]),
    st.builds(odd_array, st.lists(st.integers(0, 6), max_size=3).map(tuple),
              st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.bool_, np.complex64, np.uint8, "U3"]),
              st.sampled_from([0.0, 1.0, 1e38, math.nan, math.inf])))


@st.composite
def odd_npz(draw, valid):
    arrays = dict(valid)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(arrays) + ["extra"]))
        if draw(st.booleans()):
            arrays.pop(key, None)
        else:
            arrays[key] = draw(ODD_ARRAYS)
    return npz(arrays)


def npz_bytes(valid):
    good = npz(valid)
    return st.one_of(st.just(good), mutated(good), odd_npz(valid), st.binary(max_size=300))


@given(npz_bytes(valid_weights()))
@example(npz({**valid_weights(), "__n_items__": np.array(math.inf)}))
@example(npz({**valid_weights(), "__config__": np.array('{"dim": "4"}')}))  # the config's error named no file
@example(npz({**valid_weights(), "position_embedding": np.zeros((1, 3, 4), np.int64)}))  # integer weights loaded
def test_twin_weights_load_or_stop_with_one_line(folder, data):
    path = put(folder, "weights.npz", data)
    got = reads_or_one_line(load_weights, str(path))
    event("loaded" if got else "InputError")
    if got is not None:
        from bam_numpy.encoders import param_shapes
        params, cfg, n_items = got
        want = param_shapes(cfg, n_items)
        assert set(want) <= set(params)
        for name, shape in want.items():
            assert params[name].shape == shape and params[name].dtype.kind == "f", name
            assert np.isfinite(params[name]).all(), name


@pytest.fixture(scope="module")
def golden_arrays(tmp_path_factory):
    """The arrays of a golden vectors file, as `cli.py golden` writes them."""
    from bam_crosscheck import golden_vectors
    path = tmp_path_factory.mktemp("golden") / "vectors.npz"
    golden_vectors.write_golden(str(path))
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_golden_inputs_of_the_wrong_shape_or_type_are_one_line(folder, golden_arrays):
    """Found by fuzzing: a golden file whose inputs did not fit its config loaded, and the checker then
    failed inside the implementation (IndexError, TypeError, ValueError from numpy)."""
    config = np.array(json.dumps(dict(json.loads(str(golden_arrays["config"])), top_k="20")))
    for key, bad in (("batch/history", golden_arrays["batch/history"][:, :3]), ("eval/target", np.full(48, 999)),
                     ("ties/target", np.zeros(6)), ("weights/embeddings.weight", np.array([["x"]])),
                     ("expected/loss", np.array("x")), ("expected/index", np.ones(16, bool)), ("config", config)):
        path = put(folder, "vectors.npz", npz({**golden_arrays, key: bad}))
        with pytest.raises(bam_data.InputError, match=f"^{path}: .*(`{key}`|top_k)"):
            golden.load(str(path))


@given(st.data())
def test_golden_vectors_load_or_stop_with_one_line(folder, golden_arrays, data):
    path = put(folder, "vectors.npz", data.draw(npz_bytes(golden_arrays)))
    got = reads_or_one_line(golden.load, str(path))
    event("loaded" if got else "InputError")
    if got is not None:  # then the checker runs bam_numpy's implementation on it: a verdict, never a traceback
        assert reads_or_one_line(lambda p: golden.check(p, golden.reference, log=lambda line: None), str(path)) in (
            True, False)

# -----------------------------------------------------------------------------
# The per-user results file (bam_evidence.per_user): what `compare` reads


def valid_per_user():
    """Format 1 (leave-one-out): ranks 1, 30, 41; the metrics are the ranks' (load computes them again)."""
    metrics = dict(zip(("recall@10", "ndcg@10"), (np.array([1.0, 0.0, 0.0]), np.array([1 / math.log2(3), 0.0, 0.0]))))
    return dict(users=np.array([1, 2, 5]), targets=np.array([3, 4, 4]), ranks=np.array([1, 30, 41]),
                format=np.str_("bam-per-user-1"), protocol=np.str_("loo"), split=np.str_("test"),
                history_mask=np.str_("exclude"), fingerprint=np.str_("v2:ab"), source=np.str_(""),
                n_items=np.int64(40), **metrics)


def valid_per_user_many_targets():
    """Format 2 (ComiRec's protocol): 3 users with 2, 1 and 3 targets, and the metrics of their ranks at 50:
    user 1 hits its first target only; user 2 its one; user 5 its first and third (time positions 0 and 2), so
    ComiRec's original NDCG (the old label `(comirec)`) is (1 + 1 / log2(4)) over the IDCG of 2 hits."""
    metrics = dict(zip(("recall@50", "ndcg@50 (comirec)"), (np.array([0.5, 1.0, 2 / 3]),
                                                            np.array([1.0, 1.0, 1.5 / (1 + 1 / math.log2(3))]))))
    return dict(users=np.array([1, 2, 5]), counts=np.array([2, 1, 3]), targets=np.array([3, 4, 4, 9, 1, 2]),
                ranks=np.array([1, 60, 41, 0, 70, 8]), format=np.str_("bam-per-user-2"), protocol=np.str_("comirec"),
                split=np.str_("test"), history_mask=np.str_("none"), fingerprint=np.str_("v2:ab"),
                source=np.str_(""), n_items=np.int64(100), **metrics)


@given(st.one_of(npz_bytes(valid_per_user()), npz_bytes(valid_per_user_many_targets())))
def test_per_user_files_load_or_stop_with_one_line(folder, data):
    from bam_evidence import per_user
    path = put(folder, "per_user_test.npz", data)
    got = reads_or_one_line(per_user.load, str(path))
    event("loaded" if got else "InputError")
    if got is not None:
        n = len(got.users)
        assert got.counts.shape == (n,) and (got.counts >= 1).all()
        assert got.targets.shape == got.ranks.shape == (got.counts.sum(),) and got.ranks.dtype == np.int64
        assert all(v.shape == (n,) and np.isfinite(v).all() and ((0 <= v) & (v <= 1)).all()
                   for v in got.metrics.values())
        assert isinstance(got.n_items, int) and all(isinstance(getattr(got, k), str) for k in per_user.IDENTITY[:-1])
        from bam_evidence import metrics  # what loaded is what the ranks give, under today's names
        again = metrics.recompute(list(got.metrics), got.ranks, got.counts, got.targets)
        assert all(np.array_equal(v, again[k]) and "(comirec)" not in k for k, v in got.metrics.items())


def test_the_valid_per_user_files_load(tmp_path):
    """The fuzz test's seeds load as they are (else every mutation of them would be refused for that alone)."""
    from bam_evidence import per_user
    for name, valid in (("one.npz", valid_per_user()), ("many.npz", valid_per_user_many_targets())):
        path = put(tmp_path, name, npz(valid))
        got = per_user.load(str(path))
        assert set(got.metrics) == {k.replace("(comirec)", "(comirec-paper)") for k in valid if "@" in k}


# -----------------------------------------------------------------------------
# The kept evidence of a table (bam_evidence.kept): what `cli.py report` reads


def valid_evidence():
    """Two runs (BaM, REMI, one seed each) of 3 users with one target each; every recorded test metric is what
    the run's ranks give, so the file loads as it is."""
    ranks = np.array([[0, 12, 30], [3, 40, 2]], np.int32)                       # (R, T)
    def test(r):
        return {"recall@10": float(np.mean(r < 10)), "ndcg@10": float(np.mean(np.where(r < 10, 1 / np.log2(r + 2), 0)))}
    runs = [dict(method=m, seed=2021, config=dict(seed=2021, protocol="loo"), test=test(ranks[i]), best_iter=1000,
                 iters=2000, seconds=1.0, threads=1, code=None) for i, m in enumerate(("REMI", "BaM"))]
    table = dict(name="x", dataset="x.txt", seeds=1, methods=["REMI", "BaM"], columns=["ndcg@10", "recall@10"],
                 command="", top_n=0, beyond={}, config=None)
    return dict(format=np.str_("bam-evidence-1"), users=np.array([1, 2, 5]), counts=np.array([1, 1, 1]),
                targets=np.array([3, 4, 4]), ranks=ranks, n_items=np.int64(40), runs=np.str_(json.dumps(runs)),
                table=np.str_(json.dumps(table)), protocol=np.str_("loo"), split=np.str_("test"),
                history_mask=np.str_("exclude"), fingerprint=np.str_("v2:ab"))


def test_the_valid_evidence_file_loads(tmp_path):
    from bam_evidence import kept
    got = kept.load(str(put(tmp_path, "e.npz", npz(valid_evidence()))))
    assert set(got.runs) == {"REMI", "BaM"} and got.protocol == "loo"


@given(npz_bytes(valid_evidence()))
def test_evidence_files_load_or_stop_with_one_line(folder, data):
    from bam_evidence import kept, metrics
    path = put(folder, "evidence.npz", data)
    got = reads_or_one_line(kept.load, str(path))
    event("loaded" if got else "InputError")
    if got is not None:  # every run's metrics are its ranks', and its recorded test metrics their means
        for meta, runs in ((m, got.runs[m["method"]]) for m in got.runs_meta):
            for run in runs:
                again = metrics.recompute(list(run.metrics), run.ranks, run.counts, run.targets)
                assert all(np.array_equal(v, again[k]) for k, v in run.metrics.items())


@given(st.one_of(mutated(b"# item category\n1 topic0\n2 topic1\n3 topic0\n10 x-y\n"), st.binary(max_size=200)))
def test_categories_files_read_or_stop_with_one_line(folder, data):
    from bam_data.categories import category_codes, read_categories
    path = put(folder, "items.categories.txt", data)
    got = reads_or_one_line(read_categories, str(path))
    event("loaded" if got else "InputError")
    if got is not None:
        assert got and all(isinstance(i, int) and i >= 1 and c and " " not in c for i, c in got.items())
        codes = category_codes(got, 12)
        assert codes[0] == -1 and codes.shape == (13,) and codes.max() < len(set(got.values()))


ITEM_FILE = b"item_id:token\tmovie_title:token_seq\tclass:token_seq\n1\tToy Story\tAnimation Comedy\n2\tHeat\tAction\n"
META_FILE = b'{"parent_asin": "A1", "categories": ["Beauty", "Skin Care"]}\n{"parent_asin": "A2", "categories": []}\n'


@given(st.sampled_from(["item", "meta"]).flatmap(
    lambda kind: st.tuples(st.just(kind), st.one_of(mutated(ITEM_FILE if kind == "item" else META_FILE),
                                                    st.binary(max_size=200)))))
def test_category_sources_read_or_stop_with_one_line(folder, case):
    from bam_data.categories import from_amazon_meta, from_recbole_items
    kind, data = case
    path = put(folder, "ml.item" if kind == "item" else "meta.jsonl", data)
    reader = from_recbole_items if kind == "item" else from_amazon_meta
    got = reads_or_one_line(lambda p: reader(p, {"1": 1, "2": 2, "A1": 1, "A2": 2}), str(path))
    event(f"{kind} {'loaded' if got is not None else 'InputError'}")
    if got is not None:
        assert set(got) <= {1, 2} and all(c and not any(ch.isspace() for ch in c) for c in got.values())

# -----------------------------------------------------------------------------
# The records of a run folder: metrics.json (bam_evidence.records.Result) and last.pt (bam_runs.records.State),
# current and of an older bam (no `schema`); checkpoint.pt's record is fuzzed through checkpoints.load above


def valid_result(legacy=False):
    """A metrics.json as this bam writes it (records.Result), or without its schema as an older bam did."""
    metrics = {"recall@10": 0.5, "ndcg@10": 0.25, "nonfinite_users": 0}
    result = dict(schema="bam-result/1", test=metrics, valid=dict(metrics), iters=40, best_iter=20, seconds=1.5,
                  config=asdict(bm.Config()), history=[dict(iter=20, loss=3.9, **metrics)],
                  data=dict(name="d.txt", users=30, items=40, interactions=180, skipped_users=0,
                            fingerprint="v2:" + "0" * 32), device="cpu", torch="2", finished=True,
                  code=dict(commit=None, dirty=None, mixed=False), code_history=None,
                  validation=dict(users=30, how="every user"), world_size=1, threads=None, mostpop=dict(metrics))
    return {k: v for k, v in result.items() if k != "schema"} if legacy else result


def valid_state(legacy=False):
    """A last.pt as this bam writes it (records.State), or without its schema."""
    state = dict(schema="bam-state/1", model={"embeddings.weight": torch.zeros(3, 2)}, checksum="0" * 32,
                 optimizer=dict(state={}, param_groups=[]), processes=[dict(
                     rng=np.random.default_rng(0).bit_generator.state, gen=torch.Generator().get_state(),
                     torch_rng=torch.get_rng_state(), cuda_rng=None)],
                 state=asdict(bm.TrainState()), config=asdict(bm.Config()), data="v2:" + "0" * 32, device="cpu",
                 threads=None, code=[])
    return {k: v for k, v in state.items() if k != "schema"} if legacy else state


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(), st.text(max_size=5),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.floats(),
                                                                            max_size=2))


@st.composite
def odd_records(draw, valid, values):
    """A valid record's dict with one to three fields (top level, or in a nested dict) dropped, renamed or changed."""
    obj = valid(legacy=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        nested = [v for v in obj.values() if isinstance(v, dict)] + \
            [v for v in obj.get("processes", ()) if isinstance(v, dict)]
        target = draw(st.sampled_from([obj] + nested))
        key = draw(st.sampled_from(sorted(target) + ["extra", "schema"]))
        action = draw(st.sampled_from(["value", "drop", "rename"]))
        if action == "drop":
            target.pop(key, None)
        elif action == "rename" and key in target:
            target[key + "_"] = target.pop(key)
        else:
            target[key] = draw(values)
    return obj


def check_record(record):
    """What a record reader returned: every field of its annotation, or None (a field an older bam lacked)."""
    from dataclasses import fields, is_dataclass
    from bam_evidence.records import conforms
    for f in fields(record):
        value = getattr(record, f.name)
        if is_dataclass(f.type):
            assert value is None or isinstance(value, f.type), f.name
            if value is not None:
                check_record(value)
        elif value is not None and not (f.name == "processes" and all(is_dataclass(p) for p in value)):
            assert conforms(value, f.type), (f.name, value)


@given(st.one_of(st.builds(lambda r: json.dumps(r).encode(), odd_records(valid_result, JSON_VALUES)),
                 st.sampled_from([json.dumps(valid_result(legacy)).encode() for legacy in (False, True)])
                 .flatmap(mutated)))
def test_metrics_json_reads_or_stops_with_one_line(folder, data):
    from bam_evidence import records
    got = reads_or_one_line(records.read_result, str(put(folder, "metrics.json", data)))
    event("read" if got else "InputError")
    if got is not None:
        check_record(got)


def test_the_valid_records_read(tmp_path):
    """The fuzz tests' seeds read as they are (else every mutation of them would be refused for that alone)."""
    from bam_evidence import records
    from bam_runs.records import State
    for legacy in (False, True):
        check_record(records.read_result(str(put(tmp_path, "metrics.json", json.dumps(valid_result(legacy))
                                                 .encode()))))
        check_record(State.from_dict(run_folder.load(str(put(tmp_path, "last.pt", saved(valid_state(legacy))))),
                                     "last.pt"))


@given(st.one_of(st.builds(saved, odd_records(valid_state, ODD_VALUES)),
                 st.sampled_from([saved(valid_state(legacy)) for legacy in (False, True)]).flatmap(mutated)))
def test_last_pt_reads_or_stops_with_one_line(folder, data):
    from bam_runs.records import State
    path = str(put(folder, "last.pt", data))
    got = reads_or_one_line(lambda p: State.from_dict(run_folder.load(p, "run state (last.pt)"), p), path)
    event("read" if got else "InputError")
    if got is not None:
        check_record(got)
