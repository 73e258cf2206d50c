"""
bam_course/notebook.py: the PyTorch track's assignment as one Jupyter notebook (`build`), and the notebook
back to the .py file that the grader grades (`extract`). Cells follow otter-grader's conventions; each
cell's role is in its metadata under "bam_course". docs/course.md, "The notebook format".
"""
import ast
import os
import re

import nbformat

from bam_course.spec import CourseError

KEY = "bam_course"            # cell metadata: {"role": answer | given | setup | check, "part": key}
IGNORE = "otter_ignore"       # otter's tag for a cell that grading does not run
SEPARATOR = "\n\n\n"


def cell(kind, source, role, part="", tags=()):
    make = dict(markdown=nbformat.v4.new_markdown_cell, code=nbformat.v4.new_code_cell,
                raw=nbformat.v4.new_raw_cell)[kind]
    c = make(source.strip("\n"))
    c.metadata[KEY] = dict(role=role, **({"part": part} if part else {}))
    if role == "given":
        c.metadata.update(editable=False, deletable=False)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def chunks(text, parts):
    """bam_student.py's text -> [(role, part key, source)]: the answer definitions and the reference's code
    between them (split at its section rulers), and the main guard."""
    tree, lines = ast.parse(text), text.splitlines()
    spans = []
    for part in parts:
        name = part.target.split(".")[0]
        node = next(n for n in tree.body if getattr(n, "name", None) == name)
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        spans.append((first, node.end_lineno, "answer", part.key))
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
            spans.append((node.lineno, node.end_lineno, "main", ""))
    out, at = [], 1
    for first, last, role, key in sorted(spans):
        given = "\n".join(lines[at - 1:first - 1])
        out += [("given", "", g) for g in re.split(r"\n(?=# -{20,}\n)", given) if g.strip()]
        out.append((role, key, "\n".join(lines[first - 1:last])))
        at = last + 1
    out += [("given", "", "\n".join(lines[at - 1:]))] if "\n".join(lines[at - 1:]).strip() else []
    return out


def sections(markdown):
    """The handout's Markdown -> (the intro, {part number: its section}, the rest)."""
    pieces = re.split(r"\n(?=### Part \d+:|## (?!Parts))", markdown)
    intro = pieces[0].replace("\n## Parts\n", "\n")
    parts = {int(re.match(r"### Part (\d+):", p).group(1)): p for p in pieces[1:] if p.startswith("### Part")}
    return intro, parts, "\n".join(p for p in pieces[1:] if not p.startswith("### Part"))


def build(text, parts, markdown, repository, name="bam_student.ipynb"):
    """The notebook: `text` is bam_student.py without its header (skeleton.blank's), `markdown` the handout
    rendered for the notebook, `repository` where the kit's check is imported from by the setup cell."""
    graded = [p for p in parts if p.track == "torch" and p.target]
    intro, by_number, rest = sections(markdown)
    cells = [cell("markdown", intro, "handout"),
             cell("markdown", "## Setup\n\nThe self-check cells (`grader.check(...)`, after each part) run the kit's "
                  "public vectors on the **saved** notebook, as `course check` and the grader do: save (Ctrl-S) "
                  "before you run one. This cell and they are not part of your file.", "handout"),
             cell("code", f"import sys\n\nsys.path.insert(0, {repository!r})   # the repository: the kit's "
                  f"self-check\nfrom bam_course.notebook import Notebook  # noqa: E402\n\ngrader = Notebook({name!r})",
                  "setup", tags=[IGNORE])]
    for role, key, source in chunks(text, graded):
        if role == "answer":
            part = next(p for p in graded if p.key == key)
            cells.append(cell("markdown", by_number.get(part.number, f"### Part {part.number}: `{key}`"), "handout"))
            cells.append(cell("code", source, "answer", key))
            cells.append(cell("code", f'grader.check("{key}")', "check", key, tags=[IGNORE]))
        elif role == "main":
            cells.append(cell("markdown", "The script's entry point, `python bam_student.py data.txt`: part of your "
                              "file, not run in the notebook (a raw cell).", "handout"))
            cells.append(cell("raw", source, "given"))
        else:
            cells.append(cell("code", source, "given"))
    for part in parts:  # the end-to-end part; the NumPy track's parts (their file stays bam_numpy_student.py)
        if part not in graded and part.number in by_number:
            cells.append(cell("markdown", by_number[part.number], "handout", part.key))
        if part.track == "torch" and not part.target:
            cells.append(cell("code", f'# grader.check("{part.key}")   # the end-to-end part: minutes; uncomment '
                              "to run it", "check", part.key, tags=[IGNORE]))
    cells.append(cell("markdown", rest, "handout"))
    for i, c in enumerate(cells):
        c.id = f"{c.metadata[KEY]['role']}-{c.metadata[KEY].get('part') or i}"
    nb = nbformat.v4.new_notebook(cells=cells, metadata=dict(
        kernelspec=dict(name="python3", display_name="Python 3", language="python"),
        language_info=dict(name="python")))
    nbformat.validate(nb)
    return nb


def extract(path):
    """The student's file in the notebook at `path`: every code cell, and the raw main guard, in order, but the
    setup and self-check cells (role setup / check, or otter's tag otter_ignore). CourseError: not a notebook."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # not JSON, not a notebook
        raise CourseError(f"{path}: not a Jupyter notebook ({type(e).__name__}) (fix: pass bam_student.ipynb "
                          "as saved by Jupyter)") from None
    kept = [c for c in nb.cells if (c.cell_type == "code" or c.metadata.get(KEY, {}).get("role") == "given")
            and c.metadata.get(KEY, {}).get("role") not in ("setup", "check", "handout")
            and IGNORE not in c.metadata.get("tags", [])]
    if not kept:
        raise CourseError(f"{path}: no code cells (fix: pass the notebook that `course make --format notebook` "
                          "wrote, with your code in it)")
    magic = ("%", "!")  # an IPython magic or shell escape (%time, !pip) is not Python: commented out
    return SEPARATOR.join("\n".join("# " * x.lstrip().startswith(magic) + x for x in c.source.splitlines())
                          for c in kept) + "\n"


class Notebook:
    """The self-check's handle, shaped like otter's: grader = Notebook("bam_student.ipynb"), then
    grader.check("select_interest") grades that part of the saved notebook on the public vectors."""

    def __init__(self, path, vectors="public_vectors.npz"):
        self.path, self.vectors = os.path.abspath(path), os.path.abspath(vectors)

    def check(self, key):
        from bam_course import grader
        tests, info = grader.grade(self.path, parts=key, track="torch", vectors=self.vectors)
        grader.print_table(tests, info)


def write_py(path, folder):
    """extract(path) written to <folder>/<notebook's name>.py -> that path (the grader grades it)."""
    out = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".py")
    with open(out, "w") as f:
        f.write(extract(path))
    return out
