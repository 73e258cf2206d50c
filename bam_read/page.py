"""
bam_read/page.py: bam_minimal.py as one static HTML page, annotated: its comments and docstrings on the left
as prose, its code on the right, section by section in the file's own order, and the equations it cites set
as MathML, each citation linked to its equation and each equation back to the lines that implement it. No
JavaScript and nothing fetched: the page is one file that opens offline.

    python cli.py read --out site/                  # writes site/index.html
    from bam_read import page
    text = page.render("bam_minimal.py")            # the page, as a string
    page.write("bam_minimal.py", "site")            # -> "site/index.html"

The page is generated from bam_minimal.py alone, read as text and never imported, and never edited by hand:
rerun the command after editing the file. How the file is cut (tests/test_read_page.py checks that every line
lands on the page once, in order):
  * a `# -----` rule starts a section, and the comment line after it is the section's heading;
  * full-line comments and docstrings are prose; every other line, blank ones included, is code, with its
    trailing comment;
  * within a section, prose followed by code is one row: prose left, code right. A def or class that opens
    with a docstring or a comment starts a row at its first line (decorators included), so that its
    signature sits beside its description.
The equations' LaTeX is in bam_read/equations.py: the file's own plain-text formulas cannot be typeset.
"""
import ast
import html
import io
import os
import re
import string
import tokenize
from dataclasses import dataclass, field

from latex2mathml.converter import convert
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from pygments.token import STANDARD_TYPES, Comment, String

from bam_data import InputError
from bam_data.files import atomic_text
from bam_read.equations import EQUATIONS

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bam_minimal.py")
PAGE = "index.html"
RULE = re.compile(r"# -{5,}\s*$")                     # a section rule, at column 0
CITATION = re.compile(r"(?:\[(?P<paper>\w+)\]\s*)?Eq\.\s*\((?P<first>\d+)\)(?:\s*-\s*\((?P<last>\d+)\))?")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
DOC_OPEN = re.compile(r"""^[rRuU]?("{3}|'{3}|"|')""")

# -----------------------------------------------------------------------------
# Reading the file: which line is code, prose or a rule, and where rows begin


@dataclass
class Source:
    """bam_minimal.py's lines (1-based through `line(n)`), sorted into kinds."""
    path: str
    lines: list
    comments: set = field(default_factory=set)      # full-line comments
    docs: dict = field(default_factory=dict)        # docstring line -> the docstring's first line
    anchors: set = field(default_factory=set)       # first lines of defs and classes that open with prose
    attached: set = field(default_factory=set)      # comments between such a def's signature and its body

    def line(self, n):
        return self.lines[n - 1]

    def kind(self, n):
        if n in self.comments and RULE.match(self.line(n)):
            return "rule"
        return "prose" if n in self.comments or n in self.docs else "code"


def read_source(path):
    """-> Source. A file that is not Python stops with one line (InputError)."""
    try:
        with open(path, encoding="utf-8") as f:   # universal newlines: \r\n reads as \n, as the tests read it
            text = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (fix: pass the path of bam_minimal.py)") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason}) (fix: save it as UTF-8)") from None
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    src = Source(path, lines)
    try:
        tree = ast.parse(text, path)
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (SyntaxError, tokenize.TokenError) as e:
        where = getattr(e, "lineno", None) or (e.args[1][0] if len(e.args) > 1 else "?")
        raise InputError(f"{path}:{where}: not Python ({e.args[0]}) (fix: python {path} must at least parse)") \
            from None
    # A comment token with nothing but indentation before it is a full-line comment (tokenize, not a regex:
    # a `#` inside a string is no comment).
    src.comments = {t.start[0] for t in tokens if t.type == tokenize.COMMENT and not t.line[:t.start[1]].strip()}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
            continue
        first = node.body[0]
        doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
               and isinstance(first.value.value, str) and whole_lines(src, first))
        if doc:
            src.docs.update({n: first.lineno for n in range(first.lineno, first.end_lineno + 1)})
        if isinstance(node, ast.Module):
            continue
        anchor = min([d.lineno for d in node.decorator_list] + [node.lineno])
        between = {n for n in range(node.lineno + 1, first.lineno) if n in src.comments}
        if doc or between:
            src.anchors.add(anchor)
            src.attached |= between
    return src


def whole_lines(src, node):
    """A docstring becomes prose only when no code shares its lines (`def f(): "doc"` stays code)."""
    return (not src.line(node.lineno)[:node.col_offset].strip()
            and not src.line(node.end_lineno)[node.end_col_offset:].strip())

# -----------------------------------------------------------------------------
# Sections and rows


@dataclass
class Row:
    prose: list = field(default_factory=list)    # line numbers
    code: list = field(default_factory=list)
    cites: list = field(default_factory=list)    # the equations its lines cite: [(paper, number)]


@dataclass
class Section:
    rule: int = None          # the `# -----` line (None: the file's opening, before the first rule)
    title: int = None         # the comment line after the rule
    rows: list = field(default_factory=list)


def sections(src):
    """-> [Section], every line of the file in exactly one place, in the file's order."""
    out, row = [Section()], Row()
    out[0].rows.append(row)
    for n in range(1, len(src.lines) + 1):
        kind = src.kind(n)
        if kind == "rule":
            out.append(Section(rule=n))
            out[-1].rows.append(row := Row())
            continue
        # A new row: at prose after code (unless it belongs to the signature just above), and at a def or
        # class that opens with prose, so that its signature moves down beside that prose.
        if row.code and (n in src.anchors or (kind == "prose" and n not in src.attached and n not in src.docs)):
            out[-1].rows.append(row := Row())
        if kind == "prose":
            if out[-1].rule == n - 1 and n in src.comments:
                out[-1].title = n
            row.prose.append(n)
        else:
            row.code.append(n)
    for s in out:
        s.rows = [r for r in s.rows if r.prose or r.code]
    return [s for s in out if s.rows or s.rule]


def short_title(text):
    """`Config. Defaults are...` -> `Config`: the section's name, for the contents and its id."""
    return re.split(r"[.:]\s", text + " ", maxsplit=1)[0].strip()

# -----------------------------------------------------------------------------
# Equations: citations, their keys, where each is set and which rows implement it


def citations(text):
    """-> [(match, key)]: key = (paper, "3") or (paper, "10-13"), as EQUATIONS is keyed."""
    return [(m, (m["paper"], m["first"] + (f"-{m['last']}" if m["last"] else ""))) for m in CITATION.finditer(text)]


def eq_id(key):
    return f"eq-{key[0].lower()}-{key[1]}"


def check_citations(src):
    """Every citation names its paper and has LaTeX in EQUATIONS, or the page is not made (one line)."""
    for n, text in enumerate(src.lines, 1):
        for m, key in citations(text):
            if not m["paper"]:
                raise InputError(f"{src.path}:{n}: `{m[0]}` names no paper (fix: write [KDD24] {m[0]} or "
                                 f"[BD24] {m[0]})")
            if key not in EQUATIONS:
                raise InputError(f"{src.path}:{n}: [{key[0]}] Eq. ({key[1]}) has no LaTeX (fix: add "
                                 f"{key!r} to EQUATIONS in bam_read/equations.py)")


def link_citations(escaped):
    """Each citation in already-escaped text becomes a link to its equation (escaping leaves them as they were)."""
    return CITATION.sub(lambda m: f'<a class="cite" href="#{eq_id(citations(m[0])[0][1])}">{m[0]}</a>', escaped)

# -----------------------------------------------------------------------------
# Code: highlighted by pygments, line by line


def highlighted_lines(src):
    """-> the HTML of each line: pygments' tokens of the whole file (so a line is lexed in its context), cut
    at newlines, each token a span with pygments' short class; citations in comments and strings linked."""
    lexer = PythonLexer(stripnl=False, stripall=False, ensurenl=True)
    out, current = [], []
    for ttype, value in lexer.get_tokens("\n".join(src.lines) + "\n"):
        cls = STANDARD_TYPES.get(ttype)
        while cls is None:            # a subtype pygments has no class for: its parent's
            ttype = ttype.parent
            cls = STANDARD_TYPES.get(ttype)
        for i, piece in enumerate(value.split("\n")):
            if i:
                out.append("".join(current))
                current = []
            if piece:
                text = html.escape(piece, quote=False)
                if ttype in Comment or ttype in String:
                    text = link_citations(text)
                current.append(f'<span class="{cls}">{text}</span>' if cls else text)
    return out[:len(src.lines)]


def code_html(row, lines):
    body = "\n".join(f'<span class="line" id="L{n}" data-n="{n}">{lines[n - 1]}</span>' for n in row.code)
    return f'<div class="code"><pre>{body}</pre></div>'

# -----------------------------------------------------------------------------
# Prose: comments and docstrings as paragraphs


def prose_text(src, n):
    """The words of a comment or docstring line: without `#`, its indentation and the docstring's quotes."""
    line = src.line(n)
    if n in src.docs:
        text = line.strip()
        if src.docs[n] == n:
            text = text[DOC_OPEN.match(text).end():]
        if src.docs.get(n + 1) != src.docs[n]:   # the docstring's last line
            text = re.sub(r"""("{3}|'{3}|"|')$""", "", text)
        return text.strip()
    return line.strip()[1:].strip()


def indented(src, n):
    """A line indented past its block's own indentation (a list, a reference) is set on a line of its own."""
    line = src.line(n)
    if n in src.docs:
        if src.docs[n] == n:
            return False
        opening = src.line(src.docs[n])
        return len(line) - len(line.lstrip()) > len(opening) - len(opening.lstrip())
    return line.strip().startswith("#  ")


def words_html(text):
    return link_citations(CODE_SPAN.sub(r"<code>\1</code>", html.escape(text, quote=False)))


def prose_html(src, row, title, figures):
    """Paragraphs: a new one at each docstring or comment block, and at a blank docstring line. The section's
    heading is the comment block after its rule, its first words (up to `.` or `:`) set as the name."""
    parts, para, group = [], [], None

    def close(tag="p"):
        if para:
            parts.append(f"<{tag}>" + "\n".join(para) + f"</{tag}>")
            para.clear()
    for n in row.prose:
        text = prose_text(src, n)
        this = src.docs.get(n, "comment")
        if n == title or (group == "title" and this == "comment" and n - 1 in row.prose):
            this = "title"     # the heading: the title line and the comment lines that go on from it
        if this != group or (para and n - 1 not in row.prose):
            close("h2" if group == "title" else "p")
        group = this
        words = words_html(text)
        if n == title:
            name = text[:len(short_title(text)) + 1]
            words = f'<strong>{words_html(name)}</strong>{words_html(text[len(name):])}'
        span = f'<span class="src{" indent" if indented(src, n) else ""}" id="L{n}">{words}</span>'
        if text:
            para.append(span)
        else:   # a blank line in a docstring: a paragraph break, its (empty) line kept in place
            close()
            parts.append(span)
    close("h2" if group == "title" else "p")
    return '<div class="prose">' + "".join(parts) + "".join(figures) + "</div>"


def figure_html(src, key, rows_citing):
    """An equation: its number, what it is, its MathML, and links to the code lines of every row that cites it."""
    eq = EQUATIONS[key]
    maths = "".join(convert(latex, display="block") for latex in eq.latex)
    spans = []
    for row in rows_citing:
        code = [n for n in row.code if src.line(n).strip()]
        if code:
            a, b = code[0], code[-1]
            spans.append(f'<a href="#L{a}">{a}{"" if a == b else f"–{b}"}</a>')
    where = (("lines " if len(spans) > 1 or "–" in spans[0] else "line ") + ", ".join(spans)) if spans else "no code"
    number = "(" + ")-(".join(key[1].split("-")) + ")"
    return (f'<figure class="equation" id="{eq_id(key)}"><figcaption><strong>[{key[0]}] Eq. {number}</strong> '
            f'{words_html(eq.what)}</figcaption>{maths}<p class="implemented">Implemented in {where}.</p></figure>')

# -----------------------------------------------------------------------------
# The page


def render(source=REFERENCE):
    """-> the page (HTML5) of the file at `source`, bam_minimal.py by default."""
    src = read_source(source)
    check_citations(src)
    secs, lines = sections(src), highlighted_lines(src)
    rows = [row for s in secs for row in s.rows]
    for row in rows:
        row.cites = [key for n in row.prose + row.code for _, key in citations(src.line(n))]
    # Each equation is set in the first row that cites it, and links to the code of every row that does.
    home = {}
    for i, row in enumerate(rows):
        for key in row.cites:
            home.setdefault(key, i)
    figures = {i: [figure_html(src, key, [r for r in rows if key in r.cites]) for key in home if home[key] == i]
               for i in set(home.values())}
    body, contents, ids, i = [], [], set(), 0
    for s in secs:
        name = short_title(prose_text(src, s.title)) if s.title else None
        sid = slug = "s-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") if name else "top")
        k = 2
        while sid in ids:
            sid, k = f"{slug}-{k}", k + 1
        ids.add(sid)
        if name:
            contents.append(f'<li><a href="#{sid}">{html.escape(name)}</a></li>')
        parts = [f'<hr class="rule" id="L{s.rule}">'] if s.rule else []
        for row in s.rows:
            parts.append(f'<div class="row">{prose_html(src, row, s.title, figures.get(i, []))}'
                         f'{code_html(row, lines)}</div>')
            i += 1
        body.append(f'<section id="{sid}">' + "".join(parts) + "</section>")
    name = html.escape(os.path.basename(source))
    return TEMPLATE.substitute(name=name, css=CSS + HtmlFormatter(style="default").get_style_defs(".code"),
                               lines=len(src.lines), contents="".join(contents), body="\n".join(body))


def write(source, out):
    """Render `source` into `out`/index.html (the folder is made if missing) -> the page's path."""
    if not out:
        raise InputError("--out is empty (fix: pass a folder, e.g. --out site/)")
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"{out}: is a file, not a folder (fix: remove it, or pass another --out)")
    text = render(source)          # before touching `out`: a bad source leaves no empty folder behind
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot make this folder ({e.strerror}) (fix: pass another --out)") from None
    path = os.path.join(out, PAGE)
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder (fix: remove it, or pass another --out)")
    atomic_text(path, text)
    return path

# -----------------------------------------------------------------------------
# The page's frame and style: two columns, prose at a reading width, code at its full 120 columns


TEMPLATE = string.Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${name}, annotated</title>
<!-- Generated from ${name} by `python cli.py read` (bam_read/page.py). Do not edit: edit ${name} and rerun. -->
<style>
${css}
</style>
</head>
<body>
<header>
<h1><code>${name}</code>, annotated</h1>
<p>Generated from <code>${name}</code> (${lines} lines) by <code>python cli.py read</code>: its comments and
docstrings on the left, its code on the right, in the file's order. A cited equation links to its rendering,
and each equation links back to the lines that implement it.</p>
<nav><ol>${contents}</ol></nav>
</header>
<main>
${body}
</main>
</body>
</html>
""")

CSS = """
:root { --code-bg: #f6f7f9; --rule: #dfe2e6; }
* { box-sizing: border-box; }
body { margin: 0; color: #1f2328; background: #fff;
       font: 15px/1.6 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { padding: 1.2rem 1.5rem 0.8rem; max-width: 60rem; }
header h1 { font-size: 1.5rem; margin: 0 0 .4rem; }
header p { margin: 0 0 .6rem; color: #4b5259; }
nav ol { margin: 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap; gap: .2rem 1.1rem; }
nav a { color: #0b57d0; text-decoration: none; }
section { border-top: 1px solid var(--rule); }
hr.rule { display: none; }
.row { display: grid; grid-template-columns: minmax(20rem, 1fr) minmax(0, calc(126ch + 1px));
       font: 12.5px/1.5 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.prose { padding: .5rem 1.5rem .7rem; overflow-wrap: anywhere;
         font: 15px/1.6 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.prose p { margin: 0 0 .6rem; }
.prose h2 { font-size: 1.05rem; font-weight: normal; margin: .3rem 0 .6rem; line-height: 1.45; }
.prose h2 strong { display: block; font-size: 1.3rem; margin-bottom: .15rem; }
.src.indent { display: block; padding-left: 1.4rem; }
code { font: 0.86em ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f0f1f3;
       padding: 0 .2em; border-radius: 3px; }
a.cite { color: #0b57d0; }
.code { background: var(--code-bg); border-left: 1px solid var(--rule); padding: .5rem 0; overflow-x: auto; }
.code pre { margin: 0; font: inherit; }
.line::before { content: attr(data-n); display: inline-block; width: 3ch; margin-right: 1.5ch; text-align: right;
                color: #a4a9b0; }
.line:target { background: #fff1a8; }
.code .cite { color: inherit; text-decoration: underline; }
figure.equation { margin: .4rem 0 .8rem; padding: .5rem .8rem; background: #fbf9ef;
                  border-left: 3px solid #d6c36f; scroll-margin-top: 1rem; }
figure.equation:target { background: #fff1a8; }
figcaption { font-size: .9rem; color: #4b5259; }
math[display="block"] { margin: .5rem 0; font-size: 1.1rem; }
.implemented { margin: .2rem 0 0; font-size: .85rem; }
@media (max-width: 60rem) { .row { grid-template-columns: minmax(0, 1fr); } .code { border-left: 0; } }
"""
