"""
Where bam_numpy had drifted from bam_minimal.py: a bare boolean flag, the config checks (and finite
temperatures), the mode of the .npz files it writes, imports that reach up into the packages above it,
and golden files with a bad config or a missing entry. numpy only.

    python -m pytest tests/test_numpy_drifts.py
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import bam_numpy_main

import bam_numpy as bn
from bam_numpy import golden, weights

ROOT = Path(__file__).resolve().parents[1]


def parsed_config(argv, tmp_path, monkeypatch):
    """The Config that `python -m bam_numpy DATA ARGV...` would train with."""
    path = tmp_path / "d.txt"
    path.write_text("".join(f"{u} {1 + (u * 7 + j) % 30}\n" for u in range(1, 21) for j in range(6)))
    return bam_numpy_main([path, *argv], monkeypatch)[0]

# -----------------------------------------------------------------------------
# Flags


@pytest.mark.parametrize("arg, value", [
    ("--multi_loss", True),  # bam_minimal.py turns the loss ON with a bare flag; bam_numpy turned it off
    ("--multi_loss=1", True), ("--multi_loss=true", True), ("--multi_loss=YES", True),
    ("--multi_loss=0", False), ("--multi_loss=false", False), ("--multi_loss=No", False),
])
def test_a_bare_flag_is_true_as_in_bam_minimal(arg, value, tmp_path, monkeypatch):
    assert parsed_config([arg], tmp_path, monkeypatch).multi_loss is value


@pytest.mark.parametrize("arg", ["--multi_loss=maybe", "--multi_loss=2", "--dim=x", "--dim", "--out"])
def test_a_bad_flag_value_is_an_input_error(arg, tmp_path, monkeypatch):
    with pytest.raises(bn.InputError, match=arg.partition("=")[0]):
        parsed_config([arg], tmp_path, monkeypatch)

# -----------------------------------------------------------------------------
# Config checks


POSITIVE = ("dim", "n_interests", "seq_len", "batch_size", "n_negatives", "max_iters", "eval_every",
            "linear_size", "routing_iters", "n_blocks", "tau_anneal_iters", "lr")
NON_NEGATIVE = ("tau", "tau_hard", "patience", "valid_users", "remi_beta", "remi_lambda", "weight_decay", "seed")


@pytest.mark.parametrize("field, value, says", [
    *[(k, 0, "must be positive") for k in POSITIVE],
    *[(k, -1, "must be 0 or more") for k in NON_NEGATIVE],
    *[(k, v, "must be a finite number") for k in ("tau", "tau_hard", "lr", "weight_decay", "remi_beta",
                                                   "remi_lambda") for v in (float("nan"), float("inf"))],
    ("tau", 1e300, "must be at most 10000"), ("tau_hard", 1e5, "must be at most 10000"),
    ("dropout", 1.0, "in [0, 1)"), ("dropout", -0.1, "in [0, 1)"), ("dropout", float("nan"), "in [0, 1)"),
    ("dim", 8.5, "must be an integer"), ("multi_loss", "yes", "must be true or false"),
])
def test_config_checks(field, value, says):
    """tau = nan, inf or 1e300 silently turned BaM's sampling into `always interest 0`."""
    with pytest.raises(bn.InputError) as e:
        bn.check_config(bn.Config(**{field: value}))
    message = str(e.value)
    assert message.startswith(f"bad config: {field}=") and says in message, message
    assert "(fix: " in message and "\n" not in message


def test_tau_nan_message_and_good_configs_pass():
    with pytest.raises(bn.InputError) as e:
        bn.check_config(bn.Config(tau=float("nan")))
    assert str(e.value).startswith("bad config: tau=nan must be a finite number (fix: ")
    for cfg in (bn.Config(), bn.Config(tau=1e4, dropout=0.0, seed=0, patience=0, model="mind")):
        bn.check_config(cfg)


def test_the_command_line_refuses_a_nan_tau_with_one_line(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("".join(f"{u} {1 + (u * 7 + j) % 30}\n" for u in range(1, 21) for j in range(6)))
    out = subprocess.run([sys.executable, "-m", "bam_numpy", str(path), "--tau=nan"], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: bad config: tau=nan"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

# -----------------------------------------------------------------------------
# Files and imports


def test_weights_files_are_readable_by_others(tmp_path):
    cfg = bn.Config(dim=4, seq_len=5)
    params = bn.init_params(cfg, 10, np.random.default_rng(0), np.float32)
    path = tmp_path / "w.npz"
    bn.save_weights(str(path), params, cfg, 10)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert os.listdir(tmp_path) == ["w.npz"]


def imported_roots(folder):
    """The top-level module names that the .py files of `folder` import, anywhere in the file."""
    roots = set()
    for path in Path(folder).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", ["bam_numpy", "bam_data"])
def test_no_upward_imports(package):
    """bam_numpy/training.py imported a module above it; bam_data's readers imported bam_minimal."""
    roots = imported_roots(ROOT / package)
    above = {"torch", "bam_minimal", "bam_runs", "bam_experiments", "bam_crosscheck", "bam_bench", "bam_cli",
             "bam_course", "cli", "bench"}
    assert roots and not roots & above, roots

# -----------------------------------------------------------------------------
# Golden files


def golden_arrays():
    """A small golden file's entries, made with bam_numpy's own reference (torch is not needed)."""
    cfg = dict(model="comirec", dim=4, n_interests=2, seq_len=5, n_negatives=6, history_mask="exclude",
               n_items=12, top_k=5, batch_size=3)
    params = bn.init_params(bn.Config(**{k: v for k, v in cfg.items() if k not in ("n_items", "top_k")}), 12,
                            np.random.default_rng(0), np.float64)
    rng = np.random.default_rng(1)
    history = rng.integers(1, 13, (3, 5))
    inputs = dict(config=cfg, weights=params,
                  batch=dict(history=history, mask=np.ones((3, 5)), target=np.array([1, 2, 3]),
                             negatives=rng.integers(0, 13, 6), u=rng.random(3)),
                  eval=dict(history=history, mask=np.ones((3, 5)), target=np.array([4, 5, 6]), full_history=history),
                  ties=dict(scores=rng.integers(0, 3, (2, 13)).astype(float), target=np.array([1, 2])))
    arrays = {"format": np.array(golden.FORMAT), "config": np.array(json.dumps(cfg))}
    for group in ("weights", "batch", "eval", "ties"):
        arrays.update({f"{group}/{k}": np.asarray(v) for k, v in inputs[group].items()})
    arrays.update({f"expected/{k}": np.asarray(v) for k, v in golden.reference(inputs).items()})
    return arrays


def write(tmp_path, arrays, name="g.npz"):
    path = tmp_path / name
    weights.atomic_savez(str(path), arrays)
    return path


def test_a_good_golden_file_passes(tmp_path):
    assert golden.check(str(write(tmp_path, golden_arrays())), golden.reference, log=lambda s: None)


@pytest.mark.parametrize("change, says", [
    (lambda a: a.pop("batch/history"), "no `batch/history` entry"),
    (lambda a: a.pop("config"), "no `config` entry"),
    (lambda a: a.pop("weights/linear2.weight"), "weights/linear2.weight"),
    (lambda a: a.update(config=np.array("{not json")), "not JSON"),
    (lambda a: a.update(config=np.array(json.dumps(dict(n_items=12)))), "needs n_items and top_k"),
    (lambda a: a.update(config=np.array(json.dumps(dict(json.loads(str(a["config"])), tau="hot")))),
     "bad config: tau='hot' must be a number"),
    (lambda a: a.update(config=np.array(json.dumps(dict(json.loads(str(a["config"])), dim=0)))),
     "bad config: dim=0 must be positive"),
    (lambda a: a.update(config=np.array(json.dumps(dict(json.loads(str(a["config"])), model="gpt")))),
     "bad config: model=gpt is not one of"),
])
def test_a_broken_golden_file_is_one_line(tmp_path, change, says):
    """A missing entry or a bad config was a KeyError or TypeError traceback."""
    arrays = golden_arrays()
    change(arrays)
    path = write(tmp_path, arrays)
    with pytest.raises(bn.InputError) as e:
        golden.check(str(path), golden.reference, log=lambda s: None)
    assert str(e.value).startswith(str(path)) and says in str(e.value) and "\n" not in str(e.value)


def test_the_golden_command_line_reports_a_broken_file_in_one_line(tmp_path):
    arrays = golden_arrays()
    arrays.pop("eval/target")
    path = write(tmp_path, arrays)
    out = subprocess.run([sys.executable, "-m", "bam_numpy.golden", str(path)], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "eval/target" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
