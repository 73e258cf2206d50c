"""
The twin's commands: `export` (weights under the official names, loaded by bam_numpy),
`crosscheck` (its table and exit codes), `evaluate --engine numpy` (the torch engine's metrics), and
bad input (one line, exit code 2).

    python -m pytest tests/test_twin_cli.py
"""
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bam_minimal as bm
import bam_numpy as bn
import cli
from bam_numpy import encoders
from bam_data import synth
from bam_runs import run_folder
from bam_crosscheck import numpy_engine

ROOT = Path(__file__).resolve().parents[1]


def make_checkpoint(folder, **overrides):
    """A checkpoint after 10 training steps on small synthetic data, and its data file."""
    data_path = folder / "data.txt"
    if not data_path.exists():
        synth.write(*synth.generate(synth.SynthConfig(users=250, items=120, seed=2)), str(data_path))
    data = bm.Dataset(bm.read_official(str(data_path)), name=str(data_path))
    cfg = replace(bm.Config(dim=16, seq_len=20, n_negatives=100, batch_size=32, max_iters=10, eval_every=10,
                            device="cpu"), **overrides)
    model, _ = bm.train(cfg, data, log=lambda s: None)
    path = folder / f"{cfg.model}-{cfg.selection}.pt"
    run_folder.save(bm.checkpoint(model, cfg, data, 10), str(path))
    return str(path), model, cfg, data


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    return {"comirec": make_checkpoint(folder), "mind": make_checkpoint(folder, model="mind"),
            "bam-l": make_checkpoint(folder, selection="bam-l")}


@pytest.mark.parametrize("kind", ["comirec", "mind", "bam-l"])
def test_export_round_trip(checkpoints, tmp_path, kind):
    path, model, cfg, data = checkpoints[kind]
    out = tmp_path / "weights.npz"
    result = CliRunner().invoke(cli.cli, ["export", "--checkpoint", path, "--out", str(out)])
    assert result.exit_code == 0, result.output
    params, ncfg, n_items = bn.load_weights(str(out))
    state = model.state_dict()
    assert set(params) == set(state)
    assert all(np.array_equal(params[k], v.numpy()) for k, v in state.items())
    assert asdict(ncfg) == asdict(cfg) and n_items == data.n_items
    assert not list(tmp_path.glob(".tmp-*"))  # the temporary file is gone
    # and back: the numpy weights make the same torch model
    back = numpy_engine.import_arrays(params, ncfg, n_items)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("kind", ["comirec", "mind"])
def test_evaluate_engines_agree(checkpoints, tmp_path, kind):
    path = checkpoints[kind][0]
    runner, got = CliRunner(), {}
    for engine in ("torch", "numpy"):
        out = tmp_path / f"{engine}.json"
        result = runner.invoke(cli.cli, ["evaluate", "--checkpoint", path, "--engine", engine, "--json", str(out)])
        assert result.exit_code == 0, result.output
        got[engine] = json.loads(out.read_text())["metrics"]
    for name, value in got["torch"].items():
        assert abs(got["numpy"][name] - value) < 1.5e-4, (name, got)


def test_crosscheck_command(checkpoints):
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["crosscheck", "--checkpoint", checkpoints["bam-l"][0], "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(ln for ln in lines if ln.startswith("quantity"))
    assert all(w in header for w in ("max abs err", "max rel err", "tolerance", "result"))
    assert any(ln.startswith("grad linear1.0.weight [bam-l, sampled]") and ln.endswith("pass") for ln in lines)
    assert lines[-1].startswith("all ") and lines[-1].endswith("checks pass")
    result = runner.invoke(cli.cli, ["crosscheck", "--checkpoint", checkpoints["mind"][0], "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert "rel 0.0001" in result.output and "4 decimals" in result.output


def test_crosscheck_exits_1_on_a_mismatch(checkpoints, monkeypatch):
    squash = encoders.squash
    monkeypatch.setattr(encoders, "squash", lambda z: squash(z) * (1 + 1e-6))
    result = CliRunner().invoke(cli.cli, ["crosscheck", "--checkpoint", checkpoints["mind"][0]])
    assert result.exit_code == 1
    assert "FAIL" in result.output and result.output.splitlines()[-1].startswith("FAILED: interests")


def test_bad_input_exits_2(checkpoints, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", "x.npz"])
    assert result.exit_code == 2 and "none.pt" in result.output and "fix:" in result.output
    assert len(result.output.strip().splitlines()) == 1
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\0\1\2 not a zip")
    with pytest.raises(bn.InputError, match="junk.npz.*fix:"):
        bn.load_weights(str(junk))
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(bn.InputError, match="not a bam_numpy weights file"):
        bn.load_weights(str(other))
    # a sasrec checkpoint: bam_numpy twins comirec and mind only
    data = checkpoints["comirec"][3]
    cfg = bm.Config(model="sasrec", n_interests=1, dim=8, seq_len=10, device="cpu")
    path = tmp_path / "sasrec.pt"
    run_folder.save(bm.checkpoint(bm.build_model(cfg, data.n_items), cfg, data, 0), str(path))
    result = runner.invoke(cli.cli, ["crosscheck", "--checkpoint", str(path)])
    assert result.exit_code == 2 and "comirec and mind only" in result.output
    # a checkpoint whose item count does not match the data
    result = runner.invoke(cli.cli, ["crosscheck", "--checkpoint", checkpoints["comirec"][0], "--data",
                                     str(ROOT.parent / "shared" / "no-such-file.txt")])
    assert result.exit_code == 2


def test_export_of_a_sasrec_checkpoint_says_the_twin_has_no_sasrec(tmp_path):
    """In a fresh process SASRec was not registered, and export said "use cli.py" to a cli.py user."""
    import subprocess
    import sys
    data = bm.Dataset({u: [1 + (u + j) % 9 for j in range(5)] for u in range(1, 8)})
    cfg = bm.Config(model="sasrec", n_interests=1, dim=8, seq_len=10, device="cpu")
    from bam_experiments import sasrec
    sasrec.register()
    run_folder.save(bm.checkpoint(bm.build_model(cfg, data.n_items), cfg, data, 0), str(tmp_path / "s.pt"))
    out = subprocess.run([sys.executable, "cli.py", "export", "--checkpoint", str(tmp_path / "s.pt"), "--out",
                          str(tmp_path / "w.npz")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "comirec and mind only" in out.stderr, out.stderr
