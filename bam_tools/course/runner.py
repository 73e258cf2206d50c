"""
bam_tools/course/runner.py: runs ONE part of a student's file, in the subprocess the grader starts.

    python -m bam_tools.course.runner PART STUDENT.py CASES.npz OUT.npz

Imports the student's file as a module, replaces its OTHER graded functions with the reference's
(so that a bug elsewhere does not cost this part anything; the end-to-end part runs the file as it
is), calls the part's function on every case and writes the outputs, or the error of each case, to
OUT.npz. The expected outputs never enter this process. It runs the student's code with no sandbox:
the subprocess and the grader's time limit are the only isolation.
"""
import importlib
import importlib.util
import os
import sys
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def describe(e, path):
    """One line: the error, and the line of the student's file where it happened."""
    if isinstance(e, NotImplementedError):
        return f"not implemented yet (NotImplementedError: {e})"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) == path]
    where = f" (line {frames[-1].lineno} of your file: {frames[-1].line})" if frames else ""
    if isinstance(e, SyntaxError):
        where = f" (line {e.lineno} of {os.path.basename(e.filename or path)})"
    text = str(e).splitlines()[0][:300] if str(e) else ""
    return f"{type(e).__name__}: {text}{where}"


def load_student(path):
    spec = importlib.util.spec_from_file_location("student_under_grading", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def plain(name, value):
    """A returned value as a numeric array that .npz stores without pickle, or a TypeError."""
    a = np.asarray(value)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: got {type(value).__name__}, expected numbers (a tensor, an array or a float)")
    return a


def reference_of(part):
    from bam_tools.course.skeleton import module_name
    return importlib.import_module(module_name(part.source))


def patch(mod, part):
    """Every other graded name of the part's track becomes the reference's."""
    from bam_tools.course import spec
    if part.key == "train":
        return
    for other in spec.parts_of(part.track):
        ref = reference_of(other)
        if other.key != part.key and other.target and hasattr(mod, other.key) and hasattr(ref, other.key):
            setattr(mod, other.key, getattr(ref, other.key))


def graded(part, ref):
    if part.track == "torch":
        from bam_tools.course.cases import torch_parts
        return torch_parts(ref)[part.key]
    from bam_tools.course.numpy_cases import numpy_parts
    return numpy_parts()[part.key]


def run(key, path, cases_path, out_path):
    from bam_tools.course import common, e2e, spec
    part = spec.BY_KEY[key]
    path = os.path.abspath(path)
    flat = {}
    try:
        mod = load_student(path)
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: the file's own code runs here
        np.savez(out_path, **{"#fatal": np.asarray(f"importing your file failed: {describe(e, path)}")})
        return
    ref = reference_of(part)
    patch(mod, part)
    cases, _ = common.load_cases(cases_path)
    for i, case in enumerate(cases):
        try:
            if key == "train":
                outputs = e2e.run(mod, ref, int(case.args["seed"]))
            else:
                outputs = graded(part, ref).call(mod, ref, case.args)
            for name, value in outputs.items():
                flat[f"{i}/{name}"] = plain(name, value)
        except BaseException as e:
            flat = {k: v for k, v in flat.items() if not k.startswith(f"{i}/")}
            flat[f"{i}/#error"] = np.asarray(describe(e, path))
    np.savez(out_path, **flat)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    run(*sys.argv[1:5])
