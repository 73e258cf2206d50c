"""One schema per record: metrics.json (bam_evidence.records.Result), checkpoint.pt (bam_runs.records.Checkpoint) and
last.pt (bam_runs.records.State) are each defined once, with a version. A field renamed in a writer fails in that
writer; a file with a field renamed stops resume and `table` with one line naming the file and the field; a run
folder made before the schema (tests/golden/before-schema, written by bam at 482854e) is read, resumed and
evaluated as before, to the same numbers."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import bam_minimal as bm
from bam_data import InputError
from bam_evidence import records
from bam_runs import records as run_records, run_folder
from cli import cli
from test_cli import TINY, one_line_error, run
from test_table_jobs import FLAGS, small_data

BEFORE = Path(__file__).parent / "golden" / "before-schema"  # good.txt; run/ (finished), cut/ (20 of 40 iterations)


@pytest.fixture
def before(tmp_path):
    """A copy of the run folders that bam wrote before records had a schema."""
    shutil.copytree(BEFORE, tmp_path / "before")
    return tmp_path / "before"


def table(data, out):
    return CliRunner().invoke(cli, [str(a) for a in ["table", "--data", data, "--out", out, *FLAGS[:2],
                                                      "--methods", "ComiRec", *FLAGS[4:], "--threads", 1]])

# -----------------------------------------------------------------------------
# A run folder made before the schema


def test_the_files_made_before_the_schema_have_none():
    assert "schema" not in json.loads((BEFORE / "run" / "metrics.json").read_text())
    for path in (BEFORE / "cut" / "last.pt", BEFORE / "run" / "checkpoint.pt"):
        assert "schema" not in torch.load(path, weights_only=True)


def test_a_run_made_before_the_schema_is_read_and_resumed_to_the_same_numbers(before, one_torch_thread):
    """The finished run is reused, the cut one resumes from its old last.pt to the finished run's numbers (both were
    trained with one thread), and the old checkpoint evaluates to them."""
    old = json.loads((before / "run" / "metrics.json").read_text())
    good = before / "good.txt"
    reused = run("train", "--data", good, "--out", before / "run", *TINY)
    assert reused.exit_code == 0 and "finished already" in reused.output, reused.output
    resumed = run("train", "--data", good, "--out", before / "cut", *TINY)
    assert resumed.exit_code == 0 and "resuming" in resumed.output, resumed.output
    new = records.read_result(before / "cut" / "metrics.json")
    assert new.test == old["test"] and new.best_iter == old["best_iter"] and new.mostpop == old["mostpop"]
    assert new.code["mixed"] and len(new.code_history) == 2  # the stretch before the schema, and this one
    got = run("evaluate", "--checkpoint", before / "run" / "checkpoint.pt", "--data", good, "--json",
              before / "e.json")
    assert got.exit_code == 0, got.output
    assert {k: v for k, v in json.loads((before / "e.json").read_text())["metrics"].items()} == old["test"]


def test_an_old_last_pt_whose_loop_state_lacks_a_field_is_refused_as_before(before):
    """An older bam rebuilt the loop's state with TrainState(**saved): a field missing (or added) was refused. The
    schema keeps that for old files: resuming with a default in its place would go on from another state."""
    saved = torch.load(before / "cut" / "last.pt", weights_only=True)
    del saved["state"]["best_iter"]
    torch.save(saved, before / "cut" / "last.pt")
    got = run("train", "--data", before / "good.txt", "--out", before / "cut", *TINY)
    assert got.exit_code == 2 and "state.best_iter" in got.output and "Traceback" not in got.output, got.output


def test_a_result_of_an_older_bam_reads_with_its_missing_fields_none():
    """metrics.json before the schema: config and test are what bam read back, the rest may be missing."""
    result = records.Result.from_dict(dict(config={}, test={"ndcg@20 (comirec)": 0.5}, extra=1), "metrics.json")
    assert result.test == {"ndcg@20 (comirec-paper)": 0.5} and result.history is None and result.data is None
    with pytest.raises(InputError, match="metrics.json: no field `test` in a bam-result/1 record .*older bam"):
        records.Result.from_dict(dict(config={}), "metrics.json")

# -----------------------------------------------------------------------------
# A field renamed in a writer


def renamed(monkeypatch, record, old, new):
    """The writer of `record` writes the field `old` as `new` (as a rename in one writer would)."""
    to_dict = record.to_dict

    def writes(self):
        return {(new if k == old else k): v for k, v in to_dict(self).items()}
    monkeypatch.setattr(record, "to_dict", writes)


def test_a_field_renamed_where_the_record_is_filled_fails_in_the_writer(tmp_path, synthetic_small, monkeypatch):
    """bam_minimal.finish or bam_minimal.checkpoint renaming a key fails in the run that writes it, before any file is
    written: not later, in the resume or the `table` that reads it."""
    data = bm.Dataset(synthetic_small[0])
    cfg = bm.Config(dim=8, max_iters=20, eval_every=10, device="cpu")
    finish = bm.finish

    def renaming_finish(*args):
        result, ranks = finish(*args)
        return {("best_iteration" if k == "best_iter" else k): v for k, v in result.items()}, ranks
    monkeypatch.setattr(bm, "finish", renaming_finish)
    with pytest.raises(records.RecordError, match=r"metrics.json: the writer gave \['best_iteration'\] and left out "
                                                  r"\['best_iter'\]"):
        bm.train(cfg, data, run_folder.RunFolder(str(tmp_path / "a"), cfg, data, log=lambda s: None),
                 log=lambda s: None)
    assert not (tmp_path / "a" / "metrics.json").exists()
    monkeypatch.setattr(bm, "finish", finish)
    checkpoint = bm.checkpoint
    monkeypatch.setattr(bm, "checkpoint", lambda *a: dict(checkpoint(*a), n_items=float(data.n_items)))
    with pytest.raises(records.RecordError, match=f"checkpoint.pt: the writer gave n_items={data.n_items}.0, not int"):
        bm.train(cfg, data, run_folder.RunFolder(str(tmp_path / "b"), cfg, data, log=lambda s: None),
                 log=lambda s: None)


def test_a_field_renamed_in_last_pt_stops_resume_in_one_line(tmp_path, good, monkeypatch):
    renamed(monkeypatch, run_records.State, "optimizer", "adam")
    out = tmp_path / "run"
    assert run("train", "--data", good, "--out", out, *TINY[:-4], "--max-iters", 20, "--eval-every", 20).exit_code == 0
    (out / "metrics.json").unlink()  # unfinished: the next train resumes from last.pt
    monkeypatch.undo()
    one_line_error(run("train", "--data", good, "--out", out, *TINY), "last.pt", "no field `optimizer`",
                   "unknown field `adam`", "bam-state/1", "--fresh")


def test_a_field_renamed_in_metrics_json_stops_table_in_one_line(tmp_path, monkeypatch):
    data = small_data(tmp_path)
    renamed(monkeypatch, records.Result, "test", "tests")
    assert table(data, tmp_path / "t").exit_code == 0
    monkeypatch.undo()
    again = table(data, tmp_path / "t")
    one_line_error(again, "ComiRec/seed-2021/metrics.json", "no field `test`", "unknown field `tests`",
                   "bam-result/1", after_progress=True)

# -----------------------------------------------------------------------------
# Another version, another record


def test_another_version_or_another_record_is_one_line(tmp_path, good):
    out = tmp_path / "run"
    assert run("train", "--data", good, "--out", out, *TINY).exit_code == 0
    saved = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps(dict(saved, schema="bam-result/2")))
    one_line_error(run("train", "--data", good, "--out", out, *TINY), "metrics.json", "a newer bam",
                   "this bam reads bam-result/1")
    (out / "metrics.json").write_text(json.dumps(dict(saved, seconds="soon")))
    one_line_error(run("train", "--data", good, "--out", out, *TINY), "metrics.json", "`seconds` is 'soon', not float")
    one_line_error(run("evaluate", "--checkpoint", out / "last.pt", "--data", good), "last.pt",
                   "a bam-state/1 record, not bam-checkpoint")
