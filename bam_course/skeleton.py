"""
bam_course/skeleton.py: the student files, cut out of the reference source with `ast`: each graded body is
replaced by comments (the part, the equation, what to return) and `raise NotImplementedError`; signatures,
docstrings and every line outside the bodies stay. docs/course.md, "What `course make` writes".
"""
import ast
import os
import sys
import textwrap

from bam_course.harness import REPOSITORY
from bam_course.spec import CourseError

# -----------------------------------------------------------------------------
# Finding and cutting one body


def find(tree, target, path):
    """The FunctionDef named `target` ("name" at the top level, or "Class.method")."""
    node, *rest = target.split(".")
    scope = tree.body
    for name in [node] + rest:
        found = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name]
        if not found:
            raise CourseError(f"{path}: no {target} to blank (fix: update bam_course/spec.py)")
        scope = found[0].body
    return found[0]


def segment(source, target, path):
    """The text of `target` in `source`, dedented, decorators included."""
    node = find(ast.parse(source), target, path)
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return textwrap.dedent("\n".join(source.splitlines()[first - 1:node.end_lineno])) + "\n"


def body_lines(node, lines):
    """(first, last) 1-based lines of the body to remove: everything after the signature and the
    docstring, comments that open the body included."""
    body = node.body
    has_doc = ast.get_docstring(node) is not None
    if has_doc and len(body) == 1:
        raise CourseError(f"line {node.lineno}: {node.name} has only a docstring; nothing to blank")
    first = body[1].lineno if has_doc else body[0].lineno
    floor = body[0].end_lineno + 1 if has_doc else node.lineno + 1
    while first - 1 >= floor and lines[first - 2].strip().startswith("#"):  # comments above the first statement
        first -= 1
    return first, node.end_lineno


def comment(indent, label, text, width=112):
    wrapped = textwrap.wrap(text, width - len(indent) - 2 - len(label))
    pad = " " * len(label)
    return [f"{indent}# {label if i == 0 else pad}{line}" for i, line in enumerate(wrapped)]


def replacement(node, part):
    """The lines that take the body's place: the part, the equation, what to do, the raise."""
    indent = " " * node.body[0].col_offset
    out = [f"{indent}# Part {part.number} ({part.max_points} points): {part.title}."]
    out += comment(indent, "Implements: ", part.equation)
    out += comment(indent, "TODO: ", part.todo)
    out.append(f'{indent}raise NotImplementedError("Part {part.number}: {part.key}: {part.title}")')
    return out


def blank(source, parts, path):
    """`source` with the body of every part's target replaced. Returns (text, removed bodies)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    cuts = []
    for part in parts:
        if not part.target:
            continue
        node = find(tree, part.target, path)
        first, last = body_lines(node, lines)
        cuts.append((first, last, replacement(node, part), part.key))
    removed = {}
    for first, last, new, key in sorted(cuts, reverse=True):  # bottom up, so line numbers hold
        removed[key] = "\n".join(lines[first - 1:last])
        lines[first - 1:last] = new
    text = "\n".join(lines) + "\n"
    ast.parse(text)  # a skeleton that does not parse would be a bug here, not the student's
    return text, removed

# -----------------------------------------------------------------------------
# The PyTorch track: bam_student.py


def torch_student(source, parts):
    """bam_minimal.py's text with the graded bodies blanked, and a header that says so."""
    text, _ = blank(source, [p for p in parts if p.track == "torch"], "bam_minimal.py")
    numbers = ", ".join(str(p.number) for p in parts if p.track == "torch" and p.target)
    header = (f"# bam_student.py: bam_minimal.py with the bodies of Parts {numbers} removed, written by\n"
              "# `python cli.py course make`. Fill in every NotImplementedError; HANDOUT.md has the parts,\n"
              "# the points and how grading works. Self-check: python cli.py course check bam_student.py\n")
    return header + text

# -----------------------------------------------------------------------------
# The NumPy track: bam_numpy_student.py, the hand-written backward passes


def module_name(path):
    return os.path.splitext(path)[0].replace("/", ".")


def bindings(tree, module):
    """Module-level name -> the import line that brings it into another file."""
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
            prefix = f"from {node.module} " if isinstance(node, ast.ImportFrom) else ""
            for a in node.names:
                out[a.asname or a.name] = f"{prefix}import {a.name}" + (f" as {a.asname}" if a.asname else "")
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = f"from {module} import {node.name}"
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = f"from {module} import {t.id}"
    return out


def loaded_names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def definitions(root, module, names, seen, blocks, outside):
    """Append to `blocks` the module-level definitions of `module` that `names` refer to, with everything they
    use in turn (definitions first; a name imported from another module of this repository is followed into
    it), and to `outside` the import lines of what comes from outside this repository."""
    with open(os.path.join(root, module.replace(".", "/") + ".py")) as f:
        source = f.read()
    tree, lines = ast.parse(source), source.splitlines()
    known = bindings(tree, module)
    for name in sorted(names):
        if name not in known or (module, name) in seen:  # seen grows as the loop goes
            continue
        seen.add((module, name))
        line = known[name]
        if not line.startswith(f"from {module} import "):
            origin = line[5:].split(" import ")[0] if line.startswith("from ") else ""
            if origin.split(".")[0] in REPOSITORY:  # another module of this repository: its definition
                definitions(root, origin, {line.split(" import ")[1].split(" as ")[0]}, seen, blocks, outside)
            else:
                outside.add(line)
            continue
        node = next(n for n in tree.body if getattr(n, "name", None) == name or (
            isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)))
        definitions(root, module, loaded_names(node) - {name}, seen, blocks, outside)
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        blocks.append("\n".join(lines[first - 1:node.end_lineno]))


def helpers(root, part):
    """The helpers the reference's body uses (softmax, embedding_grad, ...), written out in full: the
    student's file is graded alone, with no module of this repository importable. -> (import lines, blocks)."""
    with open(os.path.join(root, part.source)) as f:
        node = find(ast.parse(f.read()), part.target, part.source)
    blocks, outside = [], set()
    definitions(root, module_name(part.source), loaded_names(node) - {node.name}, set(), blocks, outside)
    return outside, blocks


def import_block(lines):
    """Standard library, then numpy, then the rest; `from m import a`, `from m import b` merged."""
    plain = sorted(x for x in lines if x.startswith("import "))
    froms = {}
    for x in lines:
        if x.startswith("from "):
            module, name = x[5:].split(" import ")
            froms.setdefault(module, []).append(name)
    def order(line):  # the standard library, numpy, then the rest
        name = line.split()[1].split(".")[0]
        return (0 if name in sys.stdlib_module_names else 1 if name == "numpy" else 2, line)
    block = plain + [f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(froms.items())]
    return "\n".join(sorted(block, key=order)) + "\n"


def numpy_student(root, parts):
    """A new file: the NumPy parts' functions, blanked, with the imports of their helpers and a main
    that trains bam_numpy with the student's backward passes in place of its own."""
    parts = [p for p in parts if p.track == "numpy"]
    imports, blocks, patches, shared = {"import sys"}, [], [], []
    for part in parts:
        with open(os.path.join(root, part.source)) as f:
            text, _ = blank(segment(f.read(), part.target, part.source), [part], part.source)
        module = module_name(part.source)
        outside, needed = helpers(root, part)
        imports |= outside
        shared += [b for b in needed if b not in shared]
        blocks.append(f"# {'-' * 77}\n# Part {part.number}: {part.title} (reference: {part.source})\n\n\n{text}")
        patches.append(f"    import {module}\n    {module}.{part.key} = {part.key}")
    numbers = ", ".join(str(p.number) for p in parts)
    doc = (f'"""\nbam_numpy_student.py: the NumPy track, Parts {numbers}: hand-written backward passes of\n'
           "ComiRec-SA + BaM, checked against golden gradients and by finite differences. Written by\n"
           "`python cli.py course make --track numpy`; HANDOUT.md has the parts and the grading.\n\n"
           "    python cli.py course check bam_numpy_student.py         # the public self-check\n"
           "    python bam_numpy_student.py --synthetic --max_iters=2000  # bam_numpy trains with your gradients\n"
           '"""\n')
    main = ("# " + "-" * 77 + "\n# Train the NumPy twin with these functions in place of its own.\n\n\n"
            "def main(argv):\n" + "\n".join(patches) + "\n    from bam_numpy.training import main as train_main\n"
            "    train_main(argv)\n\n\nif __name__ == \"__main__\":\n    main(sys.argv[1:])\n")
    helper = (f"# {'-' * 77}\n# Helpers: copies of bam_numpy's, yours to use (your file is graded alone, "
              "without bam_numpy)\n\n\n" + "\n\n\n".join(shared) + "\n\n\n") if shared else ""
    text = doc + import_block(imports) + "\n\n" + helper + "\n\n".join(blocks) + "\n\n" + main
    ast.parse(text)
    return text
