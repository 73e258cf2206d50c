"""
bam_course/skeleton.py: the student files, cut out of the reference source with `ast`.

    from bam_course import skeleton
    text = skeleton.torch_student(open("bam_minimal.py").read(), parts)    # bam_student.py
    text = skeleton.numpy_student(root, parts)                              # bam_numpy_student.py

Each graded body (a function, or ComiRecSA's forward) is replaced by comments that give the part,
the equation and what to return, and `raise NotImplementedError("Part k: ...")`. The signature and
the docstring stay; the cut uses the nodes' line ranges on the source text, so every comment
outside the graded bodies survives, and the skeleton follows whatever the reference is today.
"""
import ast
import os
import sys
import textwrap

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


def replacement(node, part, lines):
    """The lines that take the body's place: docstring (when there was none), what to do, the raise."""
    indent = " " * node.body[0].col_offset
    out = []
    if ast.get_docstring(node) is None:  # the equation becomes the docstring
        doc = textwrap.wrap(f"{part.title[0].upper() + part.title[1:]}: {part.equation}.", 108 - len(indent))
        out += [f'{indent}"""{doc[0]}'] + [f"{indent}{line}" for line in doc[1:]]
        out[-1] += '"""'
    out += [f"{indent}# Part {part.number} ({part.max_points} points): {part.title}."]
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
        cuts.append((first, last, replacement(node, part, lines), part.key))
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
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name] = f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for a in node.names:
                alias = f" as {a.asname}" if a.asname else ""
                out[a.asname or a.name] = f"from {node.module} import {a.name}{alias}"
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = f"from {module} import {node.name}"
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = f"from {module} import {t.id}"
    return out


def loaded_names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def definitions(root, module, names, seen=None):
    """The module-level definitions of `module` that `names` refer to, with everything they use in turn
    (definitions first), as source text, and the import lines of what comes from outside this repository.
    A name imported from another repository module is followed into it."""
    seen = set() if seen is None else seen
    path = os.path.join(root, module.replace(".", "/") + ".py")
    with open(path) as f:
        source = f.read()
    tree = ast.parse(source)
    known = bindings(tree, module)
    lines = source.splitlines()
    blocks, outside = [], set()
    for name in sorted(names):
        if (module, name) in seen or name not in known:
            continue
        seen.add((module, name))
        line = known[name]
        if line.startswith("import ") or not line.startswith(f"from {module} import "):
            origin = line[5:].split(" import ")[0] if line.startswith("from ") else ""
            if origin.split(".")[0] in REPOSITORY:  # another module of this repository: its definition
                sub_blocks, sub_outside = definitions(root, origin, {line.split(" import ")[1].split(" as ")[0]}, seen)
                blocks += sub_blocks
                outside |= sub_outside
            else:
                outside.add(line)
            continue
        node = next(n for n in tree.body if getattr(n, "name", None) == name or (
            isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)))
        sub_blocks, sub_outside = definitions(root, module, loaded_names(node) - {name}, seen)
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        blocks += sub_blocks + ["\n".join(lines[first - 1:node.end_lineno])]
        outside |= sub_outside
    return blocks, outside


REPOSITORY = ("bam_minimal", "bam_numpy", "bam_data", "bam_evidence", "bam_runs", "bam_experiments", "bam_crosscheck",
              "bam_bench", "bam_cli", "bam_course", "bam_protocols", "bam_read", "bam_tune", "cli", "bench")


def helpers(root, part):
    """The helpers the reference's body uses (softmax, embedding_grad, ...), written out in full: the
    student's file is graded alone, with no module of this repository importable. -> (import lines, blocks)."""
    with open(os.path.join(root, part.source)) as f:
        tree = ast.parse(f.read())
    node = find(tree, part.target, part.source)
    return definitions(root, module_name(part.source), loaded_names(node) - {node.name})[::-1]


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
            source = f.read()
        tree = ast.parse(source)
        node = find(tree, part.target, part.source)
        module = module_name(part.source)
        outside, needed = helpers(root, part)
        imports |= outside
        shared += [b for b in needed if b not in shared]
        one = "\n".join(source.splitlines()[node.lineno - 1 - len(node.decorator_list):node.end_lineno])
        text, _ = blank(textwrap.dedent(one), [part], part.source)
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
