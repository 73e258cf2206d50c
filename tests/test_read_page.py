"""
The annotated page (`cli.py read`, bam_read/page.py): every line of bam_minimal.py on it once and in order, code
verbatim on the right and comments and docstrings as prose on the left; every cited equation set as MathML and
linked both ways; the page valid HTML5 (html5lib, strict); an edit to a comment shows; bad input is one line.

    python -m pytest -q -n 0 tests/test_read_page.py
"""
import ast
import io
import re
import shutil
import subprocess
import sys
import time
import tokenize

import html5lib
import pytest
from click.testing import CliRunner

from bam_read import page
from bam_read.equations import EQUATIONS
from cli import cli
from conftest import ROOT

REFERENCE = ROOT / "bam_minimal.py"
MATHML = "{http://www.w3.org/1998/Math/MathML}math"


@pytest.fixture(scope="module")
def html():
    return page.render(str(REFERENCE))


@pytest.fixture(scope="module")
def tree(html):
    return parse(html)


def parse(text):
    """The page as an element tree, parsed as a browser would; any HTML5 parse error raises."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)


def text_of(el):
    return "".join(el.itertext())


def source_lines(path=REFERENCE):
    return path.read_text(encoding="utf-8").split("\n")[:-1]

# -----------------------------------------------------------------------------
# What the test knows of the file, found independently of the generator (tokenize and ast)


def prose_lines(path=REFERENCE):
    """-> the lines that are full-line comments or docstrings: the lines the page may set as prose."""
    text = path.read_text(encoding="utf-8")
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT and not tok.line[:tok.start[1]].strip():
            lines.add(tok.start[0])
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                lines |= set(range(first.lineno, first.end_lineno + 1))
    return lines


def words(line):
    """A comment or docstring line as prose shows it: no `#`, no quotes, no backticks, no outer spaces."""
    text = line.strip()
    text = text[1:] if text.startswith("#") else re.sub(r'^[rRuU]?"""|"""$', "", text)
    return re.sub(r"`([^`\n]+)`", r"\1", text).strip()


def cited(path=REFERENCE):
    """-> {(paper, number)} of every `[PAPER] Eq. (n)` and `Eq. (n)-(m)` in the file, by a regex of the test's own."""
    text = path.read_text(encoding="utf-8")
    found = {(p, a + (f"-{b}" if b else "")) for p, a, b in re.findall(r"\[(\w+)\]\s*Eq\.\s*\((\d+)\)(?:-\((\d+)\))?",
                                                                      text)}
    assert len(re.findall(r"Eq\.\s*\(", text)) == len(re.findall(r"\[\w+\]\s*Eq\.\s*\(", text)), \
        "an `Eq. (` without its paper's tag"
    return found

# -----------------------------------------------------------------------------
# Every line once, in order


def test_every_line_once_and_in_order(tree):
    lines, prose = source_lines(), prose_lines()
    placed = [(int(el.get("id")[1:]), el) for el in tree.iter() if re.fullmatch(r"L\d+", el.get("id") or "")]
    numbers = [n for n, _ in placed]
    assert sorted(numbers) == list(range(1, len(lines) + 1)), "every line once"
    code_numbers = [n for n, el in placed if el.get("class") == "line"]
    assert code_numbers == sorted(code_numbers), "the code in the file's order"
    prose_numbers = [n for n, el in placed if el.get("class") != "line"]
    assert prose_numbers == sorted(prose_numbers), "the prose (and the section rules) in the file's order"
    # A row (prose beside code) holds one stretch of the file, and the rows follow each other: a docstring sits
    # left of its `def` line, so the page's order differs from the file's only within a row.
    spans = []
    for el in tree.iter():
        if el.tag == "hr" or el.get("class") == "row":
            spans.append(sorted(int(x.get("id")[1:]) for x in el.iter() if re.fullmatch(r"L\d+", x.get("id") or "")))
    assert all(s == list(range(s[0], s[-1] + 1)) for s in spans)
    assert all(a[-1] + 1 == b[0] for a, b in zip(spans, spans[1:]))
    code = prose_seen = 0
    for n, el in placed:
        line = lines[n - 1]
        if el.get("class") == "line":                       # code: verbatim
            assert text_of(el) == line, (n, text_of(el), line)
            code += 1
        elif el.tag == "hr":                                # a section rule
            assert re.fullmatch(r"# -{5,}\s*", line), (n, line)
        else:                                               # prose: a comment or docstring line, its words
            assert el.get("class", "").split()[0] == "src" and n in prose, (n, line)
            assert " ".join(text_of(el).split()) == " ".join(words(line).split()), (n, text_of(el), line)
            prose_seen += 1
    assert code > 300 and prose_seen > 50      # the file is mostly code, and it is commented


def test_code_sits_right_of_its_prose(tree):
    """Each row is prose then code; a code cell holds only source lines; sections follow the file's rules."""
    rows = [el for el in tree.iter("div") if el.get("class") == "row"]
    assert len(rows) > 40
    for row in rows:
        assert [c.get("class") for c in row] == ["prose", "code"]
        assert all(el.get("class") == "line" for el in row[1].iter("span") if el.get("id"))
    titles = [text_of(a) for a in tree.iter("a") if (a.get("href") or "").startswith("#s-")]
    rules = [n for n, line in enumerate(source_lines(), 1) if re.fullmatch(r"# -{5,}\s*", line)]
    assert len(titles) == len(rules) and titles[0] == "Config"

# -----------------------------------------------------------------------------
# Equations: the table matches the file, each is rendered and linked both ways


def test_every_cited_equation_has_latex_and_every_entry_is_cited():
    assert cited() == set(EQUATIONS)


def test_equations_are_mathml_and_linked_both_ways(tree):
    ids = {el.get("id"): el for el in tree.iter() if el.get("id")}
    rows = [el for el in tree.iter("div") if el.get("class") == "row"]
    for key in cited():
        eid = f"eq-{key[0].lower()}-{key[1]}"
        figure = ids[eid]
        maths = list(figure.iter(MATHML))
        assert len(maths) == len(EQUATIONS[key].latex) and all("\\" not in text_of(m) for m in maths), eid
        # citation -> equation: every citation of it in the file is a link to it
        links = [a for a in tree.iter("a") if a.get("href") == f"#{eid}"]
        mentions = sum(len(re.findall(rf"\[{key[0]}\]\s*Eq\.\s*\({key[1].split('-')[0]}\)", line))
                       for line in source_lines())
        assert len(links) == mentions > 0, (eid, len(links), mentions)
        # equation -> code: each back-link is a code line of a row that cites the equation, and each such row is linked
        back = [a.get("href")[1:] for a in figure.iter("a") if (a.get("href") or "").startswith("#L")]
        citing = [r for r in rows if any(a.get("href") == f"#{eid}" for a in r.iter("a"))]
        assert back and len(back) == len(citing), eid
        for target, row in zip(back, citing):
            assert ids[target].get("class") == "line" and ids[target] in list(row[1].iter("span")), (eid, target)


def planted(tmp_path, comment):
    """A copy of bam_minimal.py with a comment line of ours before its first section rule (module level)."""
    lines = source_lines()
    first_rule = next(i for i, line in enumerate(lines) if re.fullmatch(r"# -{5,}\s*", line))
    copy = tmp_path / "bam_minimal.py"
    copy.write_text("\n".join(lines[:first_rule] + [comment] + lines[first_rule:]) + "\n", encoding="utf-8")
    return str(copy)


def test_a_citation_without_latex_or_paper_is_refused(tmp_path):
    with pytest.raises(page.InputError, match=r"bam_minimal.py:\d+: \[BD24\] Eq. \(99\) has no LaTeX"):
        page.render(planted(tmp_path, "# as [BD24] Eq. (99) says"))
    with pytest.raises(page.InputError, match=r"bam_minimal.py:\d+: `Eq. \(3\)` names no paper"):
        page.render(planted(tmp_path, "# as Eq. (3) says"))


# -----------------------------------------------------------------------------
# The page as a whole


def test_the_page_is_valid_html5_with_no_script_and_nothing_fetched(html, tree):
    assert html.startswith("<!DOCTYPE html>")
    assert not list(tree.iter("script")) and not list(tree.iter("link")) and not list(tree.iter("img"))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "@import" not in html
    ids = [el.get("id") for el in tree.iter() if el.get("id")]
    assert len(ids) == len(set(ids))
    hrefs = [a.get("href") for a in tree.iter("a")]
    assert all(h.startswith("#") and h[1:] in ids for h in hrefs), "every link lands on the page"


def test_a_planted_edit_to_a_comment_shows(tmp_path):
    """An edited comment of the file, the first under a section rule, shows on the page made from the copy."""
    lines = source_lines()
    n = next(i for i, line in enumerate(lines) if re.fullmatch(r"# -{5,}\s*", line)) + 1
    assert lines[n].startswith("# ")
    lines[n] = "# PLANTED-WORDS " + lines[n][2:]
    copy = tmp_path / "bam_minimal.py"
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = page.render(str(copy))
    assert "PLANTED-WORDS" not in page.render(str(REFERENCE))
    assert text_of(parse(text).find(f".//*[@id='L{n + 1}']")).startswith("PLANTED-WORDS ")


def test_the_command_writes_the_page_fast(tmp_path):
    out = tmp_path / "site"
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["read", "--out", str(out)])
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'index.html'}" in result.output
    parse((out / "index.html").read_text(encoding="utf-8"))
    assert seconds < 5, f"{seconds:.2f} s: the page should take well under a few seconds"


def test_the_command_reads_the_file_as_text_without_torch(tmp_path):
    """`cli.py read` in a fresh process: bam_minimal.py is read, never imported, and torch is never loaded."""
    probe = ("import runpy, sys; sys.argv = ['cli.py', 'read', '--out', sys.argv[1]]\n"
             "try:\n    runpy.run_path('cli.py', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
             "print('torch' in sys.modules, 'bam_minimal' in sys.modules, code, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.stderr.strip().splitlines()[-1].split() == ["False", "False", "0"], done.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_bad_out_is_one_line_and_exit_2(tmp_path):
    in_the_way = tmp_path / "site"
    in_the_way.write_text("not a folder")
    for out in (in_the_way, in_the_way / "below"):
        result = CliRunner().invoke(cli, ["read", "--out", str(out)])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {out}") and "fix" in lines[0], result.output
    assert in_the_way.read_text() == "not a folder"


def test_a_source_that_is_not_python_is_one_line(tmp_path):
    bad = tmp_path / "bam_minimal.py"
    shutil.copy(REFERENCE, bad)
    bad.write_text(bad.read_text() + "def broken(:\n")
    with pytest.raises(page.InputError, match=r"bam_minimal.py:\d+: not Python"):
        page.render(str(bad))
    with pytest.raises(page.InputError, match="no such file"):
        page.render(str(tmp_path / "missing.py"))
