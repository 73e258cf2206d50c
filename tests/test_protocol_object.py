"""
A protocol is one object (bam_protocols.Protocol): everything it decides is asked of it, and no module outside
bam_protocols (and the reference's and the twin's own leave-one-out) compares a protocol's name. So a protocol
defined here, in this file alone, runs through `train`, `evaluate`, `compare` and `table` with no other file
changed: leave-two-out, each user's last two items as the test targets, the two before as the validation's.

    python -m pytest tests/test_protocol_object.py
"""
import ast
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bam_minimal as bm
import bam_protocols
from bam_evidence import per_user

ROOT = Path(__file__).resolve().parents[1]
# Where a protocol's name may be compared: its own object, and the reference's and the twin's own leave-one-out.
OWNERS = ("bam_protocols", "bam_minimal.py", "bam_numpy", "tests")
SKIPPED = (".venv", "runs", "site", "node_modules")

# -----------------------------------------------------------------------------
# No name comparisons outside bam_protocols


def names_a_protocol(node):
    # ast.unparse, not ast.get_source_segment: that one splits the whole file at every call (20 s over the repo)
    return "protocol" in ast.unparse(node).lower()


def literal_names(node):
    """The strings of a literal: "loo", or ("loo", "comirec"); else none."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]


def comparisons(source, path="<source>"):
    """`path:line: code` of each place that asks for a protocol by its name: a comparison of a protocol with a
    string (==, !=, in), a string that is only a protocol's name compared with anything, a protocol table looked
    up by a literal name (PROTOCOL_COLUMNS["loo"]), and a protocol set by name in a call (protocol="comirec")."""
    names = set(bam_protocols.PROTOCOLS)
    only_protocols = names - set(bm.CHOICES["model"])                         # "comirec" is a model's name too
    found = []
    for node in ast.walk(ast.parse(source)):
        hit = False
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            hit = any(names_a_protocol(a) and literal_names(b) for a in sides for b in sides if a is not b) \
                or any(set(literal_names(side)) & only_protocols for side in sides)
        elif isinstance(node, ast.Subscript):  # bm.PROTOCOLS[cfg.protocol]["evaluate"] asks the registry, by key
            hit = names_a_protocol(node.value) and bool(set(literal_names(node.slice)) & names)
        elif isinstance(node, ast.keyword):
            hit = node.arg == "protocol" and bool(literal_names(node.value))
        if hit:
            found.append(f"{path}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def python_files():
    # top level first, so that .venv (CI makes it inside the clone: 14 s of site-packages to walk) is never entered
    for top in sorted(ROOT.iterdir()):
        if top.name in OWNERS + SKIPPED or top.name.startswith("."):
            continue
        for path in sorted(top.rglob("*.py")) if top.is_dir() else [top] if top.suffix == ".py" else []:
            yield path.relative_to(ROOT)


def test_no_module_outside_bam_protocols_compares_a_protocols_name():
    found = [hit for path in python_files() for hit in comparisons((ROOT / path).read_text(), path)]
    assert not found, "ask the protocol object instead (bam_protocols.get(name)):\n" + "\n".join(found)


def test_the_scan_finds_each_kind_of_name_comparison():
    planted = '\n'.join(['if cfg.protocol == "comirec": pass', 'ok = protocol != "loo"',
                         'many = cfg.protocol in ("comirec",)', 'loo = "loo" == name',
                         'columns = PROTOCOL_COLUMNS["loo"]', 'cfg = replace(cfg, protocol="comirec")'])
    assert len(comparisons(planted)) == 6
    clean = '\n'.join(['twinned = cfg.model in ("comirec", "mind")', 'p = bam_protocols.get(cfg.protocol)',
                       'same = a.protocol == b.protocol', 'columns = p.columns',
                       'evaluate = bm.PROTOCOLS[cfg.protocol]["evaluate"]'])
    assert comparisons(clean) == []
    assert len(list(python_files())) > 50 and Path("bam_runs/run_folder.py") in set(python_files())

# -----------------------------------------------------------------------------
# A third protocol, defined here alone


class LeaveTwoOut(bam_protocols.Protocol):
    """Each user's last two items are the test targets, the two before them the validation targets; a training
    target is any earlier item but the first."""
    name, title = "leave-two-out", "leave-two-out: each user's last two items"
    columns = ("recall@10", "ndcg@10", "hitrate@10")

    def users(self, data, split):
        return np.flatnonzero(data.lengths >= 6)                               # two to test, two to validate

    def targets(self, data, split, rows):
        rows = np.asarray(rows, np.int64)
        k = data.lengths[rows] - (4 if split == "valid" else 2)                # (U,) the history is seq[:k]
        at = data.start[rows] + k                                              # (U,) the first target
        return k, np.full(len(rows), 2), data.items[np.stack([at, at + 1], 1).ravel()]  # (U,), (U,), (2U,)

    def batch(self, data, rng, batch_size, seq_len):
        pool = self.users(data, "train")
        rows = pool[rng.integers(0, len(pool), batch_size)]                    # (B,)
        return bm.windows(data, rows, rng.integers(1, data.lengths[rows] - 4), seq_len)  # k in [1, len - 5]


@pytest.fixture(scope="module", autouse=True)
def leave_two_out():
    """Registered as a user would register it, for this file's tests only: the other files see the built-in ones."""
    yield bam_protocols.register(LeaveTwoOut())
    bam_protocols.unregister(LeaveTwoOut.name)


TINY = ["--max-iters", "20", "--eval-every", "10", "--dim", "8", "--seq-len", "10", "--n-negatives", "40",
        "--batch-size", "32"]


def cli(*argv):
    import cli as entry
    return CliRunner().invoke(entry.cli, [str(a) for a in argv])


def test_a_protocol_defined_here_runs_train_evaluate_compare_and_table(tmp_path, good):
    run = tmp_path / "run"
    got = cli("train", "--data", good, "--protocol", "leave-two-out", *TINY, "--out", run)
    assert got.exit_code == 0, got.output
    result = json.loads((run / "metrics.json").read_text())
    assert result["config"]["protocol"] == "leave-two-out" and "hitrate@10" in result["test"]
    assert "hitrate@10" in result["mostpop"] and "hitrate@10" in result["history"][0]  # baseline, validation
    found = per_user.load_run(str(run))                                        # its metrics are its ranks'
    assert found.protocol == "leave-two-out" and found.counts.tolist() == [2] * 30
    out = tmp_path / "e.json"
    got = cli("evaluate", "--checkpoint", run / "checkpoint.pt", "--json", out, "--top-n", "5")
    assert got.exit_code == 0 and "test (leave-two-out, exclude)" in got.output, got.output
    evaluation = json.loads(out.read_text())
    assert evaluation["metrics"]["recall@10"] == result["test"]["recall@10"]
    assert "interest_entropy@5" in evaluation["metrics"]                       # the history ends, per user
    got = cli("compare", run, tmp_path / "e.per_user.npz")
    assert got.exit_code == 0 and "leave-two-out protocol" in got.output, got.output
    got = cli("table", "--data", good, "--protocol", "leave-two-out", "--methods", "ComiRec,BaM", "--seeds", "1",
              *TINY, "--out", tmp_path / "t")
    assert got.exit_code == 0, got.output
    text = (tmp_path / "t" / "table.md").read_text()
    assert LeaveTwoOut.title in text and "HitRate@10" in text and "Recall@20" not in text


def test_kept_evidence_of_a_protocol_defined_here_is_reported_where_it_is_unknown(tmp_path, good):
    """`report pack` keeps the protocol's title and metrics, so `report` (a fresh process, where only the built-in
    protocols are registered) names and tests it: it knew two titles by heart before."""
    from bam_evidence import kept, report
    got = cli("table", "--data", good, "--protocol", "leave-two-out", "--methods", "ComiRec,BaM", "--seeds", "2",
              *TINY, "--out", tmp_path / "t")
    assert got.exit_code == 0, got.output
    out = tmp_path / "evidence" / "l2o.npz"
    got = cli("report", "pack", tmp_path / "t", "--name", "l2o", "--out", out)
    assert got.exit_code == 0, got.output
    bam_protocols.unregister(LeaveTwoOut.name)                                # as in a process that never saw it
    try:
        blocks, rows = report.blocks(str(out.parent), n_resamples=99)
        got = cli("report", "pack", tmp_path / "t", "--name", "again", "--out", tmp_path / "again.npz")
        assert got.exit_code == 2 and "'leave-two-out' is not registered in this process" in got.output, got.output
        assert not (tmp_path / "again.npz").exists()
    finally:
        bam_protocols.register(LeaveTwoOut())
    assert f"({LeaveTwoOut.title}, 2 seeds, 30 test users)" in blocks["l2o"]
    assert {r["metric"] for r in rows["l2o"]} == set(LeaveTwoOut.columns)
    header = kept.load(str(out)).table                                         # an older file's header lacks them
    assert header["protocol_title"] == LeaveTwoOut.title and header["protocol_columns"] == list(LeaveTwoOut.columns)


def test_what_a_protocol_does_not_have_is_refused_in_one_line(tmp_path, good):
    got = cli("train", "--data", good, "--protocol", "leave-two-out", "--ndcg-as", "comirec", "--out", tmp_path)
    assert got.exit_code == 2 and "fix: --protocol comirec" in got.output and "Traceback" not in got.output
    got = cli("train", "--data", good, "--protocol", "leave-three-out", "--out", tmp_path)
    assert got.exit_code == 2 and "protocol=leave-three-out is not one of loo, comirec, leave-two-out" in got.output
    with pytest.raises(bm.InputError, match="is not one of"):
        bam_protocols.get("leave-three-out")
