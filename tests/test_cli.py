"""The command line: bad input gives one line and exit code 2; the commands run end to end."""
import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import bam_minimal as bm
from cli import cli
from conftest import ROOT

TINY = ["--dim", "16", "--seq-len", "10", "--n-negatives", "50", "--batch-size", "32",
        "--max-iters", "40", "--eval-every", "20"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, *needles, after_progress=False, code=2):
    """Exit code 2 (bad input; 3: a training that failed) and one `error:` line with the needles; with
    `after_progress`, what a command printed before it found the problem may come first."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ") and (after_progress or len(lines) == 1), result.output
    assert sum(ln.startswith("error: ") for ln in lines) == 1
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    assert "Traceback" not in result.output
    return lines[-1]



@pytest.mark.parametrize("content, needles", [
    (b"", ("empty",)),
    (b"\x00\x01\x02binary\x00", (":1:", "binary")),
    (b"1 2\n1 3\n7\n", (":3:", "one field")),
    (b"1 2\n1 x\n", (":2:", "not two integer ids")),
    (b"1 2\n-1 3\n", (":2:", "negative id")),
    (b"1 2\n1 0\n", (":2:", "item id 0 is padding")),
])
def test_bad_data_files(tmp_path, content, needles):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    line = one_line_error(run("train", "--data", path, *TINY), str(path), *needles)
    assert "fix" in line or "binary" in line or "empty" in line
    one_line_error(run("data", "stats", path), str(path))


def test_missing_file():
    one_line_error(run("train", "--data", "no/such/file.txt"), "no/such/file.txt", "no such file")
    one_line_error(run("evaluate", "--checkpoint", "nope.pt", "--data", "x.txt"), "nope.pt", "no such")


def test_users_under_three_interactions_are_skipped_with_a_count(tmp_path, good):
    path = tmp_path / "some_short.txt"
    path.write_text(good.read_text() + "99 3\n99 4\n98 5\n")
    result = run("train", "--data", path, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.output
    assert "skipped 2 users with fewer than 3 interactions" in result.output


def test_train_then_evaluate_and_a_mismatched_checkpoint(tmp_path, good):
    out = tmp_path / "run"
    result = run("train", "--data", good, "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test", "valid", "iters", "seconds", "config", "mostpop"):
        assert key in metrics
    assert set(metrics["test"]) == set(metrics["valid"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20",
                                                             "nonfinite_users"}
    assert metrics["test"]["nonfinite_users"] == 0
    assert (out / "checkpoint.pt").exists() and (out / "curve.png").stat().st_size > 1000
    # evaluate reproduces the test metrics, and writes JSON
    result = run("evaluate", "--checkpoint", out / "checkpoint.pt", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e.json").read_text())["metrics"] == metrics["test"]
    # a rerun of a finished run does not train again
    result = run("train", "--data", good, "--out", out, *TINY)
    assert "finished already" in result.output
    # the checkpoint against data with another item count
    other = tmp_path / "other.txt"
    other.write_text(good.read_text() + "31 77\n31 78\n31 79\n")
    one_line_error(run("evaluate", "--checkpoint", out / "checkpoint.pt", "--data", other),
                   "checkpoint.pt", "40 items", "has 79", "fix")


def test_evaluate_an_official_bare_state_dict(tmp_path, good):
    """The official code saves model.state_dict(): the architecture comes from the shapes."""
    cfg = bm.Config(dim=16, n_interests=2, seq_len=10)
    torch.manual_seed(0)
    model = bm.build_model(cfg, 40)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    result = run("evaluate", "--checkpoint", tmp_path / "model.pt", "--data", good, "--history-mask", "official")
    assert result.exit_code == 0, result.output
    data = bm.Dataset(bm.read_official(good))
    expected = bm.evaluate(bm.model_scorer(model.eval()), data, "test", bm.Config(
        dim=16, n_interests=2, seq_len=10, history_mask="official"))[0]
    assert f"recall@20 {expected['recall@20']:.4f}" in result.output
    one_line_error(run("evaluate", "--checkpoint", tmp_path / "model.pt"), "model.pt", "--data")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    one_line_error(run("evaluate", "--checkpoint", tmp_path / "junk.pt", "--data", good), "junk.pt",
                   "not a PyTorch checkpoint")


def test_data_synth_and_stats(tmp_path):
    out = tmp_path / "s.txt"
    assert run("data", "synth", "--out", out, "--users", 50, "--items", 40, "--topics", 4).exit_code == 0
    truth = json.loads((tmp_path / "s.truth.json").read_text())
    assert len(truth["item_topic"]) == 40 and len(truth["user_topics"]) == 50
    result = run("data", "stats", out, "--json", tmp_path / "st.json")
    assert result.exit_code == 0 and json.loads((tmp_path / "st.json").read_text())["users"] == 50
    # the generator is deterministic given its seed
    again = tmp_path / "t.txt"
    run("data", "synth", "--out", again, "--users", 50, "--items", 40, "--topics", 4)
    assert again.read_text() == out.read_text()


def test_bad_option_values_exit_2():
    assert run("train", "--selection", "soft").exit_code == 2
    one_line_error(run("train", "--model", "sasrec"), "n_interests")


def test_a_run_is_never_resumed_or_reused_on_other_data(tmp_path, good):
    out = tmp_path / "run"
    assert run("train", "--data", good, "--out", out, *TINY).exit_code == 0
    other = tmp_path / "other.txt"
    lines = good.read_text().splitlines()
    other.write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n")  # user 1's first two items swapped
    one_line_error(run("train", "--data", other, "--out", out, *TINY), "other data", "--fresh")
    (out / "metrics.json").unlink()  # an unfinished run: resuming from last.pt is refused too
    one_line_error(run("train", "--data", other, "--out", out, *TINY), "last.pt", "other data", after_progress=True)
    assert run("train", "--data", other, "--out", out, "--fresh", *TINY).exit_code == 0


def test_os_errors_are_one_line(tmp_path, good):
    out = tmp_path / "run"
    assert run("train", "--data", good, "--out", out, *TINY).exit_code == 0
    one_line_error(run("evaluate", "--checkpoint", out / "checkpoint.pt", "--json", tmp_path / "no" / "e.json"),
                   str(tmp_path / "no"), "no such folder", "fix")
    (tmp_path / "taken").write_text("a file, not a folder")
    one_line_error(run("train", "--data", good, "--out", tmp_path / "taken", *TINY), "taken")


def test_official_files_with_extra_fields_are_detected(tmp_path):
    from bam_data import formats
    path = tmp_path / "rated.txt"
    path.write_text("1 5 4.0 100\n1 6 3.0 101\n1 7 5.0 102\n2 5 1.0 50\n2 8 2.0 60\n2 9 2.0 70\n")
    seqs, info = formats.read(path)
    assert info["format"] == "official" and seqs == {1: [5, 6, 7], 2: [5, 8, 9]}


def test_the_standalone_parser(tmp_path):
    cfg, data, out = bm.parse_args(["d.txt", "--multi_loss", "--dim=8", "--selection=hard"])
    assert cfg.multi_loss is True and cfg.dim == 8 and data == "d.txt" and out == "runs/minimal-d-comirec-hard"
    with pytest.raises(bm.InputError, match="unknown option"):
        bm.parse_args(["d.txt", "--nope=1"])


def test_the_synthetic_data_is_rewritten_when_the_generator_changes(tmp_path):
    from bam_runs.datasets import synthetic
    path = synthetic(str(tmp_path))
    first = open(path).read()
    truth = tmp_path / "synthetic.truth.json"
    stale = json.loads(truth.read_text())
    stale["config"]["users"] = 1
    truth.write_text(json.dumps(stale))
    (tmp_path / "synthetic.txt").write_text("1 1\n1 2\n1 3\n")
    assert open(synthetic(str(tmp_path))).read() == first


NO_TORCH = """
import runpy, sys
sys.argv = ["cli.py"] + sys.argv[1:]
try:
    runpy.run_path("cli.py", run_name="__main__")
except SystemExit as e:
    code = e.code
print("torch" in sys.modules, "bam_minimal" in sys.modules, code, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["table", "--help"], ["course", "grade", "--help"],
                                  ["data", "stats", "DATA"], ["data", "synth", "--out", "/no/such/folder/x.txt",
                                                              "--topics", "0"],
                                  ["evaluate", "--checkpoint", "x", "--json", "/no/such/folder/m.json"]])
def test_cli_answers_without_torch(args, tmp_path):
    """--help, the errors that need no model and `data stats` never import torch (2.4 s of every call)."""
    (tmp_path / "d.txt").write_text("".join(f"{u} {i}\n" for u in range(1, 4) for i in range(1, 6)))
    args = [str(tmp_path / "d.txt") if a == "DATA" else a for a in args]
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    torch_loaded, reference_loaded, code = done.stderr.strip().splitlines()[-1].split()
    assert (torch_loaded, reference_loaded) == ("False", "False"), done.stderr
    assert code == ("2" if "/no/such/folder" in " ".join(args) else "0"), done.stdout + done.stderr


def test_reference_config_read_from_the_source_is_the_class():
    """The options are built from bam_minimal.py's source (no import): the same fields, defaults, help and choices."""
    from dataclasses import fields
    from bam_cli import options
    parsed, choices = options.reference_config()
    assert [(name, default) for name, default, _ in parsed] == [(f.name, f.default) for f in fields(bm.Config)]
    assert choices == bm.CHOICES
    helps = dict((name, comment) for name, _, comment in parsed)
    assert helps["patience"].startswith("stop after more than") and helps["max_iters"] is None


def test_train_builds_sasrec_by_its_name(tmp_path, good):
    """`train --model sasrec` was refused ("comes with bam_experiments.sasrec: use cli.py"): the command
    checked the config before SASRec was registered."""
    result = run("train", "--data", good, "--model", "sasrec", "--n-interests", 1, "--selection", "hard",
                 "--max-iters", 20, "--eval-every", 10, "--dim", 8, "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "metrics.json").exists()
