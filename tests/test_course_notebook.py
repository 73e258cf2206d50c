"""
Tests of the course kit's notebook format (`course make --format notebook`, `course grade x.ipynb`) and of its
known-wrong variants, derived from the reference's current source (bam_course/common.py, Bug). The notebook is
graded as the .py file of its code cells, through the same grader; the function parts only (the end-to-end part
is test_course.py's). About a minute on one thread (55 s measured).

    OMP_NUM_THREADS=1 python -m pytest -q -n 0 tests/test_course_notebook.py
"""
import ast
import json

import nbclient
import nbformat
import numpy as np
import pytest
from click.testing import CliRunner

import cli
from bam_course import common, grader, notebook, skeleton, spec
from bam_course.spec import CourseError
from conftest import ROOT

REFERENCE = ROOT / "bam_minimal.py"
FUNCTION_PARTS = [p for p in spec.parts_of("torch") if p.target]
FUNCTIONS = ",".join(p.key for p in FUNCTION_PARTS)
# Grading a notebook is grading the file extracted from it (test_the_notebook_holds_the_assignment checks that
# file statement by statement, every part); the grading tests below need only show the notebook path end to end,
# on a few parts: each part graded costs about 2 s of a 4-minute suite. The .py tests grade every part.
SOME = "select_interest,target_rank,metrics_from_ranks"


def invoke(*args):
    return CliRunner().invoke(cli.cli, ["course", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    out = tmp_path_factory.mktemp("nbkit")
    result = invoke("make", "--out", out, "--format", "notebook")
    assert result.exit_code == 0, result.output
    return out


def role(cell):
    return cell.metadata.get(notebook.KEY, {})


def solved(kit, name, bug=None):
    """The kit's notebook with the reference's definitions pasted into the answer cells; bug = (part, old, new):
    one edit planted in that part's cell. -> the saved notebook's path."""
    nb = nbformat.read(kit / "bam_student.ipynb", as_version=4)
    source = REFERENCE.read_text()
    tree = ast.parse(source)
    for cell in nb.cells:
        if role(cell).get("role") == "answer":
            top = spec.BY_KEY[role(cell)["part"]].target.split(".")[0]
            cell.source = ast.get_source_segment(source, next(n for n in tree.body if getattr(n, "name", "") == top))
            if bug and bug[0] == role(cell)["part"]:
                assert cell.source.count(bug[1]) == 1
                cell.source = cell.source.replace(bug[1], bug[2])
    path = kit / name
    nbformat.write(nb, path)
    return path

# -----------------------------------------------------------------------------
# The notebook: cells, metadata, and the file it stands for


def test_the_notebook_holds_the_assignment(kit):
    assert not (kit / "bam_student.py").exists() and (kit / "public_vectors.npz").is_file()
    assert "bam_student.ipynb" in (kit / "gradescope" / "run_autograder").read_text()
    nb = nbformat.read(kit / "bam_student.ipynb", as_version=4)
    nbformat.validate(nb)
    cells, roles = nb.cells, [role(c).get("role") for c in nb.cells]
    student = skeleton.blank(REFERENCE.read_text(), spec.parts_of("torch"), "bam_minimal.py")[0]
    definitions = {n.name: ast.dump(n) for n in ast.parse(student).body if hasattr(n, "name")}
    for part in FUNCTION_PARTS:   # one answer cell: the .py skeleton's definition; its Markdown before, its check after
        i = next(i for i, c in enumerate(cells) if role(c) == {"role": "answer", "part": part.key})
        node = ast.parse(cells[i].source).body[0]
        assert ast.dump(node) == definitions[node.name]
        assert f'NotImplementedError("Part {part.number}:' in cells[i].source
        assert cells[i - 1].cell_type == "markdown" and f"### Part {part.number}: `{part.key}`" in cells[i - 1].source
        assert part.equation in " ".join(cells[i - 1].source.split())
        assert cells[i + 1].source == f'grader.check("{part.key}")' and cells[i + 1].metadata.tags == ["otter_ignore"]
    assert roles.count("answer") == len(FUNCTION_PARTS) and len({c.id for c in cells}) == len(cells)
    for cell in cells:   # otter's conventions: locked reference cells; the self-check cells ignored by grading
        if role(cell)["role"] == "given":
            assert cell.metadata.editable is False and cell.metadata.deletable is False
        if role(cell)["role"] in ("setup", "check"):
            assert "otter_ignore" in cell.metadata.tags
    assert any(c.cell_type == "raw" and c.source.startswith('if __name__ == "__main__":') for c in cells)
    # the untouched notebook stands for bam_student.py: the same module, statement by statement
    assert ast.dump(ast.parse(notebook.extract(kit / "bam_student.ipynb"))) == ast.dump(ast.parse(student))


def test_extract_keeps_added_cells_drops_self_checks_and_refuses_non_notebooks(kit, tmp_path):
    nb = nbformat.read(kit / "bam_student.ipynb", as_version=4)
    nb.cells.insert(5, nbformat.v4.new_code_cell("%matplotlib inline\nHELPER = 3"))
    path = tmp_path / "added.ipynb"
    nbformat.write(nb, path)
    text = notebook.extract(path)
    assert "# %matplotlib inline\nHELPER = 3" in text and "grader.check" not in text and "bam_course" not in text
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(CourseError, match="not a Jupyter notebook"):
        notebook.extract(bad)
    result = invoke("grade", bad)
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output

# -----------------------------------------------------------------------------
# Grading a notebook: the same grader, on the extracted file


def test_untouched_notebook_grades_to_zero(kit, tmp_path):
    out = tmp_path / "results.json"
    result = invoke("grade", kit / "bam_student.ipynb", "--parts", SOME, "--seed", 4, "--json", out)
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert res["score"] == 0 and len(res["tests"]) == sum(len(spec.BY_KEY[k].points) for k in SOME.split(","))
    assert all("not implemented" in t["output"] for t in res["tests"]), res["tests"]


def test_reference_pasted_into_the_notebook_gets_full_marks(kit):
    tests, info = grader.grade(str(solved(kit, "solved.ipynb")), parts=SOME, seed=3)
    assert info["file"].endswith("solved.ipynb") and info["cases"] == "hidden"
    assert all(t.score == t.max_score for t in tests), [(t.name, t.output) for t in tests if t.score < t.max_score]


def test_a_planted_bug_in_a_cell_costs_only_its_part(kit):
    path = solved(kit, "bug.ipynb", ("target_rank", "(ids < target[tied, None])", "(ids > target[tied, None])"))
    tests, _ = grader.grade(str(path), parts=SOME, seed=11)
    lost = {t.name: t.output for t in tests if t.score < t.max_score}
    assert set(lost) == {"target_rank: ties"}, lost
    assert "ties broken the other way" in lost["target_rank: ties"]


def test_the_notebook_runs_top_to_bottom_and_its_self_checks_pass(kit, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = solved(kit, "bam_student.ipynb")   # the self-checks read the saved notebook: this one
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=300, startup_timeout=120,
                            resources={"metadata": {"path": str(kit)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code) and not [o for c in code for o in c.outputs if o.output_type == "error"]
    checks = [c for c in code if role(c).get("role") == "check" and not c.source.startswith("#")]
    assert len(checks) == len(FUNCTION_PARTS)
    for c in checks:
        printed = "".join(o.text for o in c.outputs if o.output_type == "stream")
        part = spec.BY_KEY[role(c)["part"]]
        assert "public" in printed and "FAIL" not in printed, printed
        total = next(line.split() for line in printed.splitlines() if line.startswith("total"))
        assert total == ["total", f"{part.max_points:g}", f"{part.max_points:g}"], printed

# -----------------------------------------------------------------------------
# Known-wrong variants: derived from the reference's current source, so they cannot drift from it


def test_every_variant_derives_from_the_reference_and_is_still_a_bug():
    grader.check_variants(spec.PARTS)   # every edit finds its snippet, as often as recorded
    for part in (p for p in spec.PARTS if p.target):
        g, ref = grader.graded_part(part), grader.reference(part)
        assert g.bugs, part.key
        cases = [grader.prepared(g, ref, c) for c in g.cases(np.random.default_rng([0, part.number]), public=True)]
        differs = [0] * len(g.bugs)
        for case in cases:
            want = grader.expected_outputs(g, ref, case)
            applies = [b for b in g.bugs if b.when is None or b.when(case.args)]
            for (out, hint), bug in zip(g.variants(ref, case.args), applies):
                out = {**out, **g.derive(case.args, out)}
                assert hint == bug.hint
                differs[g.bugs.index(bug)] += any(not common.matches(out[k], want[k], *g.tol(k)) for k in out)
        assert all(differs), (part.key, [b.hint for b, d in zip(g.bugs, differs) if not d])


@pytest.mark.parametrize("source, old, new, key, snippet", [
    ("bam_minimal.py", "        hit = rank < k\n", "        hit = k > rank\n", "metrics_from_ranks", "hit = rank < k"),
    ("bam_minimal.py", "probs = torch.softmax(tau * logits, -1)", "probs = (tau * logits).softmax(-1)",
     "select_interest", "softmax(tau * logits"),
    ("bam_numpy/encoders.py", "    dh[b, pos] += dx", "    dh[b, pos] = dh[b, pos] + dx", "comirec_backward",
     "dh[b, pos] += dx"),
])
def test_a_change_to_the_reference_that_breaks_a_variant_fails_loudly(tmp_path, source, old, new, key, snippet):
    """A copy of the reference with a change that keeps its meaning but not a variant's snippet: the kit refuses
    it (course make calls check_variants), naming the function and the snippet."""
    text = (ROOT / source).read_text()
    assert text.count(old) == 1
    copy = tmp_path / "reference.py"
    copy.write_text(text.replace(old, new))
    read = lambda rel: copy.read_text() if rel == source else (ROOT / rel).read_text()  # noqa: E731
    with pytest.raises(CourseError, match=key) as e:
        grader.check_variants(spec.PARTS, read=read)
    assert repr(snippet) in str(e.value) and "the reference changed" in str(e.value), str(e.value)
    grader.check_variants(spec.PARTS)   # the repository's own reference still passes
