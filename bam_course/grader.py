"""
bam_course/grader.py: grade a student's file, part by part, each in a subprocess of its own (the harness, in
a fresh folder where the reference and the grader are not importable), on hidden cases or the public vectors.

    tests, info = grader.grade("kit/bam_student.py", parts="select_interest,target_rank", seed=1)
    grader.print_table(tests, info); grader.write_json(tests, [info], "results.json")

docs/course.md, "How grading works", has the rules and what the isolation leaves open.
"""
import ast
import contextlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import site
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace

import numpy as np

from bam_course import common, e2e, harness, spec
from bam_course.spec import CourseError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the repository
TIMEOUT = 60          # seconds per function part
E2E_TIMEOUT = 300     # seconds for the end-to-end part (e2e.SECONDS on one core)
TAIL_BYTES = 4000     # how much of the end of a part's log a failure quotes


@dataclass
class Test:
    name: str         # "<function>: <subtest>", Gradescope's test name
    score: float
    max_score: float
    output: str


# -----------------------------------------------------------------------------
# The input file


def read_source(path):
    """The file's text, or CourseError (exit code 2) when it is missing or not Python source."""
    if not os.path.exists(path):
        raise CourseError(f"{path}: no such file (fix: check the path)")
    if not os.path.isfile(path):
        raise CourseError(f"{path}: not a file (fix: pass the student's .py file)")
    if path.endswith(".ipynb"):  # the notebook's code cells: the .py file that grade() grades
        from bam_course import notebook
        return notebook.extract(path)
    if not path.endswith(".py"):
        raise CourseError(f"{path}: not a Python file (fix: pass a .py file, e.g. bam_student.py, or a notebook)")
    with open(path, "rb") as f:
        raw = f.read()
    if b"\0" not in raw:
        with contextlib.suppress(UnicodeDecodeError):
            return raw.decode("utf-8")
    raise CourseError(f"{path}: binary data, not Python source (fix: pass the student's .py file)")


def track_of(source):
    """numpy when the file defines a NumPy-track function, else torch."""
    try:
        names = {n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    except SyntaxError:
        return "torch"
    return "numpy" if any(p.key in names for p in spec.parts_of("numpy")) else "torch"


def imports_of(tree):
    """(module, line) of every import, and of every string constant (importlib.import_module("x"))."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [(node.module, node.lineno)] + [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[\w.]+", node.value):
            out.append((node.value, node.lineno))
    return out


def borrowed(tree, track, path):
    """Cheap checks, with a clearer reason, for a file that takes the answer key (none of it is importable while
    the file is graded). -> (a reason that zeroes every part, or None; {part key: the reason that zeroes it})."""
    name = os.path.basename(path)
    # the NumPy track's file may name bam_numpy: its main() trains bam_numpy with the student's functions
    banned = ("bam_minimal", "bam_course") + (("bam_numpy",) if track == "torch" else ())
    for module, line in imports_of(tree):
        hit = [b for b in banned if module == b or module.startswith(b + ".")]
        if hit:
            return (f"line {line} of {name} uses {hit[0]}, the reference implementation (the answer key) or the "
                    f"grader; a file that imports it is not graded (fix: remove that import and write the parts "
                    f"yourself)"), {}
    per_part = {}
    if track == "numpy":  # bam_numpy's graded functions, named anywhere, cost their part
        keys = {p.key for p in spec.parts_of("numpy")}
        for node in ast.walk(tree):
            used = (node.attr if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) else
                    next((a.name for a in node.names if a.name in keys), None) if isinstance(node, ast.ImportFrom)
                    else None)
            if used in keys and used not in per_part:
                per_part[used] = (f"line {node.lineno} of {name} uses the reference's {used} (the answer key); "
                                  f"that part is not graded (fix: write {used} yourself)")
    return None, per_part

# -----------------------------------------------------------------------------
# One part in a subprocess


HARNESS = "grading_harness.py"   # its name in the student's folder


def site_paths():
    """The folders the student's process takes packages from: those of numpy, torch and numba (and the
    environment's site-packages), none of which may hold a module of this repository."""
    found = [os.path.dirname(os.path.dirname(importlib.util.find_spec(m).origin)) for m in ("numpy", "torch", "numba")
             if importlib.util.find_spec(m)]
    paths = []
    for p in site.getsitepackages() + found:
        p = os.path.realpath(p)
        if os.path.isdir(p) and p not in paths and p != os.path.realpath(ROOT):
            paths.append(p)
    for p in paths:
        leak = next((m for m in harness.REPOSITORY if importlib.machinery.PathFinder.find_spec(m, [p])), None)
        if leak:
            raise CourseError(f"{p} holds {leak}: the student's process could import it (fix: grade from an "
                              "environment where this repository is not installed)")
    return os.pathsep.join(paths)


def clean_env(folder):
    """No PYTHON* variable, no path to the repository: the thread counts, a PATH, a HOME in the folder."""
    keep = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "LANG", "LC_ALL")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PATH=os.defpath, HOME=folder, TMPDIR=folder, NUMBA_CACHE_DIR=os.path.join(folder, ".numba"))
    return env


def run_part(part, path, cases, timeout, workdir):
    """-> (per-case outputs [dict or {"#error": str}], None) or (None, the reason there are none).
    `cases` hold only what the student's process may see. It runs in a fresh folder of its own."""
    log_path = os.path.join(workdir, f"{part.key}.log")   # the grader's folder, not the student's
    folder = tempfile.mkdtemp(prefix="bam-part-")
    try:
        name = os.path.basename(path) if os.path.basename(path) != HARNESS else "student.py"
        student = os.path.join(folder, name)
        shutil.copyfile(path, student)
        shutil.copyfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness.py"),
                        os.path.join(folder, HARNESS))
        cases_path, out_path = os.path.join(folder, "cases.npz"), os.path.join(folder, "out.npz")
        np.savez(cases_path, **common.case_arrays(cases))
        own = spec.parts_of(part.track) if part.key == "train" else [part]  # whose code must be the student's
        cmd = [sys.executable, "-I", "-S", os.path.join(folder, HARNESS), part.key, student, cases_path, out_path,
               site_paths(), ",".join(p.target for p in own if p.target)]
        timed_out = False
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=clean_env(folder), start_new_session=True)
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            with contextlib.suppress(ProcessLookupError):  # its own session: the part and what it left running (a
                os.killpg(proc.pid, signal.SIGKILL)        # fork); one that called setsid() escapes: docs/course.md
            rc = proc.wait()
        if timed_out:
            return None, (f"timed out after {timeout:g} s (an endless loop, or far too slow); the other parts "
                          "were graded")
        if rc == -signal.SIGXFSZ:
            return None, (f"stopped: the part's process wrote more than {harness.FSIZE_LIMIT >> 20} MB (printing in "
                          "a loop?); the other parts were graded")
        try:
            with np.load(out_path, allow_pickle=False) as z:
                flat = {k: z[k] for k in z.files}
        except Exception:
            return None, f"the part's process exited with code {rc} and left no readable results{tail(log_path)}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return read_outputs(flat, len(cases), rc)


def read_outputs(flat, n, rc):
    """The harness's flat outputs -> per-case dicts, refusing keys and values that the harness never writes."""
    if "#fatal" in flat:
        fatal = flat["#fatal"]
        return None, str(fatal)[:2000] if fatal.dtype.kind == "U" else "the part's process left malformed results"
    outputs = [{} for _ in range(n)]
    for key, v in flat.items():
        i, _, name = key.partition("/")
        if not (i.isdigit() and int(i) < n and name) or (name == "#error") != (v.dtype.kind == "U"):
            return None, (f"the part's process (exit code {rc}) left malformed results (an entry {key[:60]!r}); "
                          "the grader writes them, not your code")
        outputs[int(i)][name] = str(v)[:2000] if name == "#error" else v
    return outputs, None


def tail(log_path, n=3):
    """The last lines of the log, read from its last TAIL_BYTES only (a log may be huge)."""
    with open(log_path, "rb") as f:
        f.seek(max(0, os.path.getsize(log_path) - TAIL_BYTES))
        lines = [x for x in f.read(TAIL_BYTES).decode("utf-8", "replace").splitlines() if x.strip()]
    return (": " + " | ".join(lines[-n:]))[:500] if lines else ""


def prepared(graded, ref, case):
    """The case with what the reference computes for the student's process (a stand-in's recorded
    outputs, the NumPy forward pass's cache)."""
    return replace(case, args={**case.args, **graded.prepare(ref, case.args)})

# -----------------------------------------------------------------------------
# Judging the outputs


def find_hint(part, ref, case, got, keys, failing):
    """The hint of the first known bug whose outputs equal the student's on this subtest."""
    for outputs, hint in part.variants(ref, case.args):
        outputs = dict(outputs)
        outputs.update(part.derive(case.args, outputs))
        shared = [k for k in keys if k in outputs]
        if set(shared) & set(failing) and all(
                k in got and common.matches(got[k], outputs[k], *part.tol(k)) for k in shared):
            return hint
    return None


def judge(part, graded, ref, cases, expected, outputs):
    """-> [Test] for one function part: each subtest all or nothing over its cases."""
    fails = {sub: [] for sub in part.points}  # subtest -> failure messages
    for case, want, got in zip(cases, expected, outputs):
        if "#error" in got:
            for sub in case.checks:
                fails[sub].append(f"{case.note}: {got['#error']}")
            continue
        got = {**got, **graded.derive(case.args, got)}
        wrong = {sub: [(k, w) for k in keys if (w := common.first_wrong(k, got.get(k), want[k], *graded.tol(k)))]
                 for sub, keys in case.checks.items()}  # subtest -> [(output, message)] of this case
        failed = [sub for sub in case.checks if wrong[sub]]
        for sub in failed:
            hint = (find_hint(graded, ref, case, got, case.checks[sub], [k for k, _ in wrong[sub]])
                    or graded.fallback_hint(sub, got, want, set(failed)))
            fails[sub].append(f"{case.note}: {wrong[sub][0][1]}" + (f"\nhint: {hint}" if hint else ""))
    tests = []
    for sub, points in part.points.items():
        n = sum(sub in c.checks for c in cases)
        ran = f"{n} case{'s' * (n != 1)}"
        output = f"failed {len(fails[sub])} of {ran}; the first:\n{fails[sub][0]}" if fails[sub] else f"passed ({ran})"
        tests.append(Test(f"{part.key}: {sub}", 0.0 if fails[sub] else float(points), float(points), output))
    return tests


def zero(part, reason):
    return [Test(f"{part.key}: {sub}", 0.0, float(points), reason) for sub, points in part.points.items()]


def reference(part):
    """The reference module of a part, imported in the grader's process (never the student's)."""
    from bam_course.skeleton import module_name
    return importlib.import_module(module_name(part.source))


def graded_part(part):
    """The grading object of a function part: its cases, hints and known-wrong variants."""
    module = "bam_course.cases" if part.track == "torch" else "bam_course.numpy_cases"
    return importlib.import_module(module).GRADED[part.key]


def check_variants(parts, read=None):
    """Every known-wrong variant (Bug) of `parts` derives from the reference's current source, else CourseError
    naming the edit that no longer applies. read: a source's path in the repository -> its text."""
    read = read or (lambda rel: open(os.path.join(ROOT, rel)).read())
    for part in (p for p in parts if p.target):
        for bug in graded_part(part).bugs:
            common.derive(read(part.source), part.target, bug.edits, part.source)

# -----------------------------------------------------------------------------
# Grading a file


def grade(path, parts=None, track=None, seed=None, timeout=TIMEOUT, e2e_timeout=E2E_TIMEOUT, vectors=None, log=None):
    """Grade `path`. vectors: a public_vectors.npz to check against instead of hidden cases.
    Returns ([Test], info). A notebook (.ipynb) is graded as the .py file of its code cells (notebook.extract)."""
    if path.endswith(".ipynb"):
        from bam_course import notebook
        with tempfile.TemporaryDirectory(prefix="bam-notebook-") as folder:
            tests, info = grade(notebook.write_py(path, folder), parts, track, seed, timeout, e2e_timeout, vectors, log)
        return tests, dict(info, file=path)
    source = read_source(path)
    track = track or track_of(source)
    selected = spec.select(parts, track)  # several files: each grades the parts of its own track
    hidden = vectors is None
    seed = (secrets.randbelow(10 ** 6) + 1 if seed is None else seed) if hidden else 0
    info = dict(file=path, track=track, seed=seed, cases="hidden" if hidden else f"public ({vectors})",
                timeout=timeout, e2e_timeout=e2e_timeout)
    try:
        compile(source, path, "exec")
        refused, per_part = borrowed(ast.parse(source), track, path)
    except SyntaxError as e:
        refused = f"SyntaxError: {e.msg} (line {e.lineno} of {os.path.basename(path)}); nothing can run until it parses"
    if refused:
        return [t for p in selected for t in zero(p, refused)], info
    tests = []
    with tempfile.TemporaryDirectory(prefix="bam-grade-") as workdir:
        for part in selected:  # each part's process group is dead before the next starts
            if part.key in per_part:
                tests += zero(part, per_part[part.key])
                continue
            if log:
                log(f"grading {part.key} ...")
            tests += grade_part(part, path, seed, timeout, e2e_timeout, vectors, workdir)
    return tests, info


def grade_part(part, path, seed, timeout, e2e_timeout, vectors, workdir):
    ref = reference(part)
    if part.key == "train":
        outputs, reason = run_part(part, path, [common.Case(e2e.inputs(seed), "end to end")], e2e_timeout, workdir)
        if reason or "#error" in outputs[0]:
            return zero(part, (reason or outputs[0]["#error"]) + f"\nhint: {e2e.HINT}")
        try:  # measured here, with the reference's model class, never by the student's process
            verdicts = e2e.grade(e2e.measure(ref, outputs[0], seed))
        except e2e.BadWeights as e:
            return zero(part, f"{e}\nhint: {e2e.HINT}")
        return [Test(f"{part.key}: {sub}", float(points) if verdicts[sub][0] else 0.0, float(points),
                     ("passed: " if verdicts[sub][0] else "failed: ") + verdicts[sub][1])
                for sub, points in part.points.items()]
    graded = graded_part(part)
    if vectors:
        cases, expected = common.load_cases(vectors, prefix=f"{part.key}/")
        if not cases or expected is None:
            raise CourseError(f"{vectors}: no public vectors for {part.key} (fix: `course make` writes them)")
    else:
        rng = np.random.default_rng([seed, part.number])
        cases = [prepared(graded, ref, c) for c in graded.cases(rng, public=False)]
        expected = [expected_outputs(graded, ref, c) for c in cases]
    seen = [replace(c, args={k: v for k, v in c.args.items() if k not in graded.private}) for c in cases]
    outputs, reason = run_part(part, path, seen, timeout, workdir)  # private arguments stay in the grader
    if reason:
        return zero(part, reason)
    return judge(part, graded, ref, cases, expected, outputs)


def expected_outputs(graded, ref, case):
    """The reference's outputs, with the real functions (a replay is for the student's process only)."""
    out = graded.call(ref, {k: v for k, v in case.args.items() if k != "replay"})
    out.update(graded.expected_extra(ref, case.args))
    return {k: np.asarray(v) for k, v in out.items()}


def public_vectors(path, parts):
    """Write the public cases of the function parts in `parts`, with the reference's outputs, as one .npz:
    <part>/<case>/args/..., <part>/<case>/expected/..., <part>/<case>/meta."""
    flat = {}
    for part in (p for p in parts if p.target):
        ref, graded = reference(part), graded_part(part)
        cases = [prepared(graded, ref, c) for c in graded.cases(np.random.default_rng([0, part.number]), public=True)]
        flat.update(common.case_arrays(cases, [expected_outputs(graded, ref, c) for c in cases], f"{part.key}/"))
    np.savez(path, **flat)
    return path

# -----------------------------------------------------------------------------
# Reports


def print_table(tests, info, echo=print):
    echo(f"{info['file']}: {info['track']} track, {info['cases']} cases"
         + (f" (seed {info['seed']})" if info["cases"] == "hidden" else "")
         + f"; every part runs in its own subprocess (limit {info['timeout']:g} s, "
           f"end to end {info['e2e_timeout']:g} s)")
    width = max([len(t.name) for t in tests] + [20])
    echo(f"{'test':<{width}}  {'points':>6}  {'max':>4}")
    for t in tests:
        echo(f"{t.name:<{width}}  {t.score:>6g}  {t.max_score:>4g}  {'ok' if t.score == t.max_score else 'FAIL'}")
        if t.score != t.max_score:
            for line in t.output.splitlines():
                echo(f"    {line}")
    total, most = sum(t.score for t in tests), sum(t.max_score for t in tests)
    echo(f"{'total':<{width}}  {total:>6g}  {most:>4g}")


def write_json(tests, infos, path):
    """Gradescope's autograder results format: score, and tests as {name, score, max_score, output}."""
    from bam_data.files import atomic_text
    result = dict(score=sum(t.score for t in tests), tests=[asdict(t) for t in tests],
                  output="; ".join(f"{os.path.basename(i['file'])}: {i['track']} track, {i['cases']} cases, "
                                   f"seed {i['seed']}" for i in infos))
    atomic_text(path, json.dumps(result, indent=2))
