"""
Golden vectors round-trip: `cli.py golden --out` writes them from bam_minimal; the references (bam_numpy
and bam_minimal itself) pass `golden --check`; deliberately wrong implementations (argmax in place of
BaM's sampling, tau ignored, the wrong tie rule) fail it with a message that names the output.

    python -m pytest tests/test_twin_golden.py
"""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from bam_numpy import golden, ranking

THIS = str(Path(__file__).resolve())


def argmax_impl(inputs):
    """Wrong: the argmax interest in place of BaM's sample."""
    return golden.reference(dict(inputs, config=dict(inputs["config"], selection="hard")))


def no_tau_impl(inputs):
    """Wrong: the selection softmax without the temperature."""
    return golden.reference(dict(inputs, config=dict(inputs["config"], tau=1.0)))


def higher_id_first_impl(inputs):
    """Wrong: among equal scores, the higher item id first."""
    out = golden.reference(inputs)
    scores = out["eval/scores"]
    ids = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    out["eval/top20"] = np.lexsort((-ids, -scores), axis=1)[:, :20]
    ties = inputs["ties"]["scores"]
    ids = np.broadcast_to(np.arange(ties.shape[1]), ties.shape)
    out["ties/top20"] = np.lexsort((-ids, -ties), axis=1)[:, :20]
    return out


def old_nonfinite_rule_impl(inputs):
    """Wrong (the rule before issue 14): NaN and +inf count as -inf, so they fall below the target."""
    out = golden.reference(inputs)
    ties = np.where(np.isfinite(inputs["ties"]["scores"]), inputs["ties"]["scores"], -np.inf)
    ids = np.broadcast_to(np.arange(ties.shape[1]), ties.shape)
    out["ties/top20"] = np.lexsort((ids, -ties), axis=1)[:, :20]
    s = ties[np.arange(len(ties)), inputs["ties"]["target"]][:, None]
    target = inputs["ties"]["target"][:, None]
    rank = ((ties > s) | ((ties == s) & (ids < target))).sum(1)
    out["ties/ranks"] = np.where(s[:, 0] == -np.inf, ties.shape[1], rank)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    runner = CliRunner()
    paths = {}
    for name, args in {"default": [], "tau": ["--tau", "0.5"], "official": ["--history-mask", "official"],
                       "mind": ["--model", "mind", "--loss", "full"]}.items():
        paths[name] = str(folder / f"{name}.npz")
        result = runner.invoke(cli.cli, ["golden", "--out", paths[name], *args])
        assert result.exit_code == 0, result.output
    return paths


def check(path, impl):
    return CliRunner().invoke(cli.cli, ["golden", "--check", path, "--impl", impl])


@pytest.mark.parametrize("name", ["default", "tau", "official", "mind"])
@pytest.mark.parametrize("impl", ["bam_numpy.golden:reference", "bam_crosscheck.golden_vectors:torch_reference"])
def test_references_pass(files, name, impl):
    result = check(files[name], impl)
    assert result.exit_code == 0, result.output
    assert "outputs match" in result.output


def test_argmax_in_place_of_sampling_fails(files):
    result = check(files["default"], f"{THIS}:argmax_impl")
    assert result.exit_code == 1, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("index"))
    assert "FAIL" in line and "rows differ" in line
    assert "FAILED" in result.output and "inverting the CDF" in result.output


def test_ignoring_tau_fails(files):
    result = check(files["tau"], f"{THIS}:no_tau_impl")
    assert result.exit_code == 1
    assert any(ln.startswith("probs") and "FAIL" in ln for ln in result.output.splitlines())


def test_wrong_tie_rule_fails(files):
    """The `ties` inputs hold exact ties (small integers) that reach the top-20."""
    inputs, expected = golden.load(files["default"])
    scores, top = inputs["ties"]["scores"], expected["ties/top20"]
    kth = np.take_along_axis(scores, top[:, -1:], 1)
    assert ((scores == kth).sum(1) > 1).any()  # a tie at the top-20 boundary
    assert expected["ties/ranks"][0] == scores.shape[1]  # a -inf target is never a hit
    result = check(files["default"], f"{THIS}:higher_id_first_impl")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(ln.startswith("ties/top20") and "FAIL" in ln for ln in lines)
    assert "lower item id comes first" in result.output


def test_nonfinite_rule_in_the_golden_vectors(files):
    """The `ties` inputs hold NaN and +inf, of targets and of other items: the old rule (NaN and +inf as
    -inf, below the target) fails both tie outputs; a NaN, +inf or -inf target is a miss."""
    inputs, expected = golden.load(files["default"])
    scores, target = inputs["ties"]["scores"], inputs["ties"]["target"]
    assert np.isnan(scores).any() and np.isposinf(scores).any()
    own = scores[np.arange(len(target)), target]
    assert (expected["ties/ranks"][~np.isfinite(own)] == scores.shape[1]).all() and (~np.isfinite(own)).sum() == 3
    above = np.isnan(scores) | np.isposinf(scores)
    assert (expected["ties/ranks"][np.isfinite(own)] >= above[np.isfinite(own)].sum(1)).all()
    result = check(files["default"], f"{THIS}:old_nonfinite_rule_impl")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(ln.startswith("ties/ranks") and "FAIL" in ln for ln in lines)
    assert any(ln.startswith("ties/top20") and "FAIL" in ln for ln in lines)


def test_file_layout(files):
    inputs, expected = golden.load(files["default"])
    cfg = inputs["config"]
    assert cfg["selection"] == "bam" and cfg["top_k"] == 20
    b, e = inputs["batch"], inputs["eval"]
    assert b["history"].shape == b["mask"].shape == (cfg["batch_size"], cfg["seq_len"])
    assert b["negatives"].shape == (cfg["n_negatives"],) and b["u"].shape == (cfg["batch_size"],)
    assert expected["eval/scores"].shape == (len(e["target"]), cfg["n_items"] + 1)
    assert set(expected) >= {"interests", "attention", "logits", "probs", "index", "loss", "eval/top20",
                             "eval/ranks", "eval/recall@10", "eval/ndcg@20", "grad/linear2.weight"}
    # argmax and sampling disagree somewhere, by construction
    assert (expected["index"] != expected["logits"].argmax(1)).any()
    assert (ranking.top_k(expected["eval/scores"], 20) == expected["eval/top20"]).all()


def test_bad_golden_input(tmp_path, files):
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["golden"])
    assert result.exit_code == 2 and "exactly one of --out" in result.output
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip\n")
    result = runner.invoke(cli.cli, ["golden", "--check", str(bad)])
    assert result.exit_code == 2 and str(bad) in result.output and "fix:" in result.output
    result = check(files["default"], "no_such_module_xyz:fn")
    assert result.exit_code == 2 and "cannot import" in result.output
    result = check(files["default"], f"{THIS}:no_such_function")
    assert result.exit_code == 2 and "no function" in result.output
