"""
docs/architecture.md against the code, so that the page cannot drift from it quietly:

  * the table of packages: its last column names, in backquotes, exactly the packages of the project that
    each package (or top-level file) imports, read from its .py files with `ast`: import statements anywhere,
    inside functions too (bam_cli imports the modules that load torch inside its commands);
  * the picture: each of its rows holds exactly one layer of pyproject.toml's import-linter layers contract,
    and the rows run in the contract's order, top to bottom.

Each failure names the line of the page to fix, and how. tests/test_lint.py checks the rules themselves
(import-linter) and that every package has a row.

    OMP_NUM_THREADS=1 python -m pytest -q -n 0 tests/test_architecture.py
"""
import ast
import re
import sys
import tomllib

from conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists())
MODULES = sorted(p.stem for p in ROOT.glob("*.py") if p.stem != "conftest")   # bam_minimal, cli, bench
UNITS = PACKAGES + MODULES

# -----------------------------------------------------------------------------
# What the code imports


def files_of(unit):
    return sorted((ROOT / unit).rglob("*.py")) if unit in PACKAGES else [ROOT / f"{unit}.py"]


def imports_of(unit):
    """{project package or module: where `unit` first imports it (file:line)}, itself left out."""
    found = {}
    for path in files_of(unit):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module] if node.level == 0 else []   # a relative import stays in its package
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root in UNITS and root != unit:
                    found.setdefault(root, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_imports_of_sees_imports_in_functions(tmp_path, monkeypatch):
    """The reader itself: a top-level import, two inside a function, and a relative import."""
    package = tmp_path / "bam_fake"
    package.mkdir()
    (package / "__init__.py").write_text("from . import inner\n")
    (package / "inner.py").write_text("import bam_data.formats\n\ndef f():\n    import bam_runs\n    "
                                      "from bam_minimal import Config\n    return Config, bam_runs\n")
    here = sys.modules[__name__]
    monkeypatch.setattr(here, "ROOT", tmp_path)
    monkeypatch.setattr(here, "PACKAGES", ["bam_fake"])
    monkeypatch.setattr(here, "UNITS", ["bam_fake", "bam_data", "bam_runs", "bam_minimal"])
    assert sorted(imports_of("bam_fake")) == ["bam_data", "bam_minimal", "bam_runs"]


# -----------------------------------------------------------------------------
# What the page says


def section(title):
    """(first line number, lines) of the part of the page under `## title`, up to the next `## `."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start + 1, lines[start:end]


def table():
    """{unit: (line number, the units named in backquotes in its row's last column)}."""
    first, lines = section("The packages")
    rows = {}
    for n, line in enumerate(lines, first):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if cells and (unit := re.fullmatch(r"`(\w+)(?:/|\.py)`", cells[0])):
            named = {m.split(".")[0] for m in re.findall(r"`([\w.]+)`", cells[-1])}
            rows[unit.group(1)] = n, named & set(UNITS) - {unit.group(1)}
    return rows


def picture():
    """{package: [line numbers]} of the contract's packages drawn in the picture (its one code block)."""
    first, lines = section("The picture")
    fences = [i for i, line in enumerate(lines) if line.startswith("```")][:2]   # the prose below it is not drawn
    drawn = {}
    for n, line in enumerate(lines[fences[0] + 1:fences[1]], first + fences[0] + 1):
        for name in re.findall(r"\bbam_\w+", line):
            drawn.setdefault(name, []).append(n)
    return drawn


def layers():
    """pyproject.toml's layers contract, top to bottom: [[package, ...] per layer]."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[p.strip() for p in re.split(r"[|:]", layer)] for layer in contract["layers"]]


# -----------------------------------------------------------------------------
# The checks


def test_the_table_names_what_each_package_imports():
    rows, fixes = table(), []
    for unit in UNITS:
        if unit not in rows:
            name, names = unit + ("/" if unit in PACKAGES else ".py"), [f"`{u}`" for u in sorted(imports_of(unit))]
            fixes.append(f"docs/architecture.md, the table under '## The packages': no row for `{name}`; add one "
                         f"whose last column names {', '.join(names) or 'nothing of the project'}")
            continue
        line, said = rows[unit]
        real = imports_of(unit)
        for missing in sorted(set(real) - said):
            fixes.append(f"docs/architecture.md:{line} (`{unit}`): add `{missing}` to the last column: "
                         f"{unit} imports it ({real[missing]})")
        for extra in sorted(said - set(real)):
            fixes.append(f"docs/architecture.md:{line} (`{unit}`): take `{extra}` out of the last column, or write "
                         f"it without backquotes: nothing in {unit} imports it")
    assert not fixes, "the page's table and the code disagree:\n" + "\n".join(fixes)


def test_the_picture_draws_the_layers_contract_in_order():
    drawn, fixes, previous = picture(), [], None
    for layer in layers():
        rows = set()
        for package in layer:
            if package not in drawn:
                fixes.append(f"docs/architecture.md, '## The picture': draw {package} on the row of its layer "
                             f"({' | '.join(layer)} in pyproject.toml)")
            elif len(drawn[package]) > 1:
                fixes.append(f"docs/architecture.md:{drawn[package][1]}: {package} is drawn on more than one row "
                             f"(lines {drawn[package]}): keep it on one")
            else:
                rows.add(drawn[package][0])
        if len(rows) > 1:
            fixes.append(f"docs/architecture.md:{min(rows)}: the layer {' | '.join(layer)} of pyproject.toml is "
                         f"drawn on lines {sorted(rows)}: put its packages on one row")
        if rows and previous is not None and min(rows) <= previous[0]:
            fixes.append(f"docs/architecture.md:{min(rows)}: the layer {' | '.join(layer)} must be drawn below "
                         f"{' | '.join(previous[1])} (line {previous[0]}), as pyproject.toml orders them")
        previous = (max(rows), layer) if rows else previous
    contract = {p for layer in layers() for p in layer}
    for package in sorted(set(drawn) & set(PACKAGES) - contract):
        fixes.append(f"pyproject.toml: {package} is drawn in the picture but is in no layer of the contract")
    assert not fixes, "the page's picture and pyproject.toml's layers disagree:\n" + "\n".join(fixes)
