"""
bam_tools/course/runner.py: runs ONE part of a student's file, in the subprocess the grader starts.

    python -m bam_tools.course.runner PART STUDENT.py CASES.npz OUT.npz

Imports the student's file as a module, replaces its OTHER graded functions with the reference's
(so that a bug elsewhere does not cost this part anything; the end-to-end part runs the file as it
is), calls the part's function on every case and writes the outputs, or the error of each case, to
OUT.npz. The end-to-end part writes the two trained models' weights instead; the grader measures
them. The expected outputs and the finite-difference directions never enter this process. It runs
the student's code with no sandbox: the subprocess, the grader's time limit, a cap on the size of the
files it writes and the grader killing its process group afterwards are the only isolation. The
reference is importable from here; a graded function defined outside the student's file is refused.
"""
import importlib
import importlib.util
import os
import resource
import signal
import sys
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FSIZE_LIMIT = 64 << 20   # bytes any file written here may reach (its log included): SIGXFSZ past it


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


def outsider(mod, part, path):
    """The first graded name the part runs whose code was not written in the student's file, or None.
    Catches `from bam_minimal import select_interest`; a determined student can get around it."""
    from bam_tools.course import spec
    parts = spec.parts_of(part.track) if part.key == "train" else [part]
    for p in parts:
        if not p.target:
            continue
        obj = mod
        for name in p.target.split("."):
            obj = getattr(obj, name, None)
        if obj is None:
            continue  # missing: calling it says so
        code = getattr(getattr(obj, "__func__", obj), "__code__", None)
        if code is None or os.path.realpath(code.co_filename) != os.path.realpath(path):
            return p.target
    return None


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
    foreign = outsider(mod, part, path)
    if foreign:
        np.savez(out_path, **{"#fatal": np.asarray(
            f"{foreign} is defined outside your file (imported or borrowed from the reference?); it scores 0 "
            "(fix: write it in your file)")})
        return
    ref = reference_of(part)
    patch(mod, part)
    cases, _ = common.load_cases(cases_path)
    for i, case in enumerate(cases):
        try:
            if key == "train":
                outputs = e2e.train_models(mod, int(case.args["seed"]))
            else:
                outputs = graded(part, ref).call(mod, ref, case.args)
            for name, value in outputs.items():
                flat[f"{i}/{name}"] = plain(name, value)
        except BaseException as e:
            flat = {k: v for k, v in flat.items() if not k.startswith(f"{i}/")}
            flat[f"{i}/#error"] = np.asarray(describe(e, path))
    np.savez(out_path, **flat)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))  # hard too: the student cannot raise it
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it (writes fail); killed says why more plainly
    sys.path.insert(0, ROOT)
    run(*sys.argv[1:5])
