"""
The house rules that a tool can check, run from pytest so that `python -m pytest` fails when one breaks:
ruff (pyflakes and pycodestyle at the project's line length) and import-linter (the layers of
docs/architecture.md, configured in pyproject.toml), plus what import-linter cannot see: bam_minimal.py is a
single file (its own imports are checked here with ast), the project's modules are imported by `import`
statements, never by a name in a string (grep, an editor and import-linter see every import), and the course kit
hides every package of the repository from the student's process.

    python -m pytest tests/test_lint.py
"""
import ast
import os
import subprocess
import sys

from conftest import ROOT

BIN = os.path.dirname(sys.executable)
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists())
MODULES = sorted(p.stem for p in ROOT.glob("*.py"))


def run(tool, *args):
    return subprocess.run([os.path.join(BIN, tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_finds_nothing():
    out = run("ruff", "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_layers_hold():
    out = run("lint-imports", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_every_package_is_in_the_contract():
    """A new package that the contract does not name would be unchecked."""
    text = (ROOT / "pyproject.toml").read_text()
    listed = text[text.index("root_packages"):text.index("include_external_packages")]
    assert [p for p in PACKAGES if f'"{p}"' not in listed] == []


def imported_roots(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0]


def test_the_reference_imports_only_torch_numpy_and_the_standard_library():
    roots = set(imported_roots(ROOT / "bam_minimal.py"))
    assert roots - set(sys.stdlib_module_names) - {"torch", "numpy"} == set()


def test_the_reference_stays_at_most_560_lines():
    """bam_minimal.py is the file a person reads in one sitting (README, docs/architecture.md): what it gains,
    it pays for in lines elsewhere, or the new code belongs in a package above it."""
    lines = len((ROOT / "bam_minimal.py").read_text().splitlines())
    assert lines <= 560, f"bam_minimal.py has {lines} lines, more than 560 (fix: make room, or move code out)"


def string_imports(tree):
    """The calls that import a module named by a string constant: importlib.import_module("x"), __import__("x"),
    and the Later("x") that bam_cli once used (-> [(line, name)])."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            callee = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if callee in ("import_module", "__import__", "Later") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def test_the_project_imports_its_own_modules_by_statement():
    """A module of the project named in a string is out of sight of grep, an editor's navigation and import-linter:
    each is imported by an `import` statement, inside the function that needs it when it must load late (the
    command line, so that --help loads no torch). Importing code by a name given at run time (the course grader's
    student files, `golden --impl`) is not a constant, and stays allowed."""
    for path in list(ROOT.glob("bam_*/**/*.py")) + [ROOT / f"{m}.py" for m in MODULES if m != "conftest"]:
        for line, name in string_imports(ast.parse(path.read_text(encoding="utf-8"))):
            assert name.split(".")[0] not in PACKAGES + MODULES, (
                f"{path.relative_to(ROOT)}:{line} imports {name} by name (fix: an import statement, inside the "
                "function that needs it)")


def test_string_imports_sees_every_form():
    """The check above can fail."""
    tree = ast.parse("import importlib\nimportlib.import_module('bam_runs.x')\n__import__('bam_data')\n"
                     "Later('bam_minimal')\nimportlib.import_module(name)\n")
    assert [name for _, name in string_imports(tree)] == ["bam_runs.x", "bam_data", "bam_minimal"]


def test_the_course_kit_hides_every_package():
    """The student's process must not import the answer key or the grader: every package and top-level
    module of the repository is on the kit's lists (a new package would otherwise be importable there)."""
    from bam_course import harness, skeleton
    ours = set(PACKAGES) | (set(MODULES) - {"conftest"})
    assert ours - set(harness.REPOSITORY) == set()
    assert ours - set(skeleton.REPOSITORY) == set()


def test_the_architecture_doc_has_a_row_for_every_package():
    """docs/architecture.md's table is where a newcomer looks first: a package without a row is unexplained."""
    rows = [line for line in (ROOT / "docs" / "architecture.md").read_text().splitlines() if line.startswith("| `")]
    assert [p for p in PACKAGES if not any(line.startswith(f"| `{p}/`") for line in rows)] == []
