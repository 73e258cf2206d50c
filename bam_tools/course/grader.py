"""
bam_tools/course/grader.py: grade a student's file, part by part, each in its own subprocess.

    from bam_tools.course import grader
    tests, info = grader.grade("kit/bam_student.py", parts="select_interest,target_rank", seed=1)
    grader.print_table(tests, info); grader.write_json(tests, info, "results.json")

Hidden cases (grade): drawn at grade time from `seed` (random unless given) with other shapes than
the public ones, and their expected outputs computed by the reference at the repository root,
so hard-coding the public outputs earns nothing. Public cases (check): read from the kit's
public_vectors.npz. A part runs in `python -m bam_tools.course.runner` under a time limit; one that
raises, hangs, dies or returns something that is not numbers gets 0 for its subtests, with the
reason, and grading goes on. A failure names the first wrong output and, when the wrong answer is
the answer of a known bug, the hint for that bug.

The student's code is imported and run with the grader's permissions: a subprocess per part and a
time limit are the only isolation. Grade untrusted files inside a container (Gradescope does).
"""
import ast
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

from bam_tools.course import common, e2e, spec
from bam_tools.course.spec import CourseError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 60          # seconds per function part
E2E_TIMEOUT = 300     # seconds for the end-to-end part (about 40 s on a free core)


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
    if not path.endswith(".py"):
        raise CourseError(f"{path}: not a Python file (fix: pass a .py file, e.g. bam_student.py)")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CourseError(f"{path}: binary data, not Python source (fix: pass the student's .py file)") from None


def track_of(source):
    """numpy when the file defines a NumPy-track function, else torch."""
    try:
        names = {n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    except SyntaxError:
        return "torch"
    return "numpy" if any(p.key in names for p in spec.parts_of("numpy")) else "torch"

# -----------------------------------------------------------------------------
# One part in a subprocess


def run_part(part, path, cases, timeout, workdir):
    """-> (per-case outputs [dict or {"#error": str}], None) or (None, the reason there are none)."""
    cases_path = os.path.join(workdir, f"{part.key}-cases.npz")
    out_path = os.path.join(workdir, f"{part.key}-out.npz")
    log_path = os.path.join(workdir, f"{part.key}.log")
    common.save_cases(cases_path, cases)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    cmd = [sys.executable, "-m", "bam_tools.course.runner", part.key, os.path.abspath(path), cases_path, out_path]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the part and anything it started
            proc.wait()
            return None, f"timed out after {timeout:g} s (an endless loop, or far too slow); the other parts were graded"
    try:
        with np.load(out_path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except Exception:
        return None, f"the part's process exited with code {rc} and left no readable results{tail(log_path)}"
    if "#fatal" in flat:
        return None, str(flat["#fatal"])
    outputs = [{} for _ in cases]
    for key, v in flat.items():
        i, name = key.split("/", 1)
        outputs[int(i)][name] = str(v) if name == "#error" else v
    return outputs, None


def tail(log_path, n=3):
    with open(log_path, "rb") as f:
        lines = [x for x in f.read()[-4000:].decode("utf-8", "replace").splitlines() if x.strip()]
    return (": " + " | ".join(lines[-n:]))[:500] if lines else ""

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
    """-> [Test] for one function part."""
    results = {sub: [] for sub in part.points}  # subtest -> failure messages
    counts = {sub: 0 for sub in part.points}
    for case, want, got in zip(cases, expected, outputs):
        if "#error" not in got:
            got = dict(got)
            got.update(graded.derive(case.args, got))
        for sub, keys in case.checks.items():
            counts[sub] += 1
            if "#error" in got:
                results[sub].append(f"{case.note}: {got['#error']}")
                continue
            wrong = [(k, common.first_wrong(k, got.get(k), want[k], *graded.tol(k))) for k in keys]
            wrong = [(k, w) for k, w in wrong if w]
            if wrong:
                hint = find_hint(graded, ref, case, got, keys, [k for k, _ in wrong]) or graded.hints.get(sub, "")
                results[sub].append(f"{case.note}: {wrong[0][1]}" + (f"\nhint: {hint}" if hint else ""))
    tests = []
    for sub, points in part.points.items():
        fails = results[sub]
        output = (f"passed ({counts[sub]} case{'s' * (counts[sub] != 1)})" if not fails else
                  f"failed {len(fails)} of {counts[sub]} case{'s' * (counts[sub] != 1)}; the first:\n{fails[0]}")
        tests.append(Test(f"{part.key}: {sub}", 0.0 if fails else float(points), float(points), output))
    return tests


def zero(part, reason):
    return [Test(f"{part.key}: {sub}", 0.0, float(points), reason) for sub, points in part.points.items()]


def reference(part):
    from bam_tools.course.runner import reference_of
    return reference_of(part)


def graded_part(part, ref):
    from bam_tools.course.runner import graded
    return graded(part, ref)

# -----------------------------------------------------------------------------
# Grading a file


def grade(path, parts=None, track=None, seed=None, timeout=TIMEOUT, e2e_timeout=E2E_TIMEOUT, vectors=None, log=None):
    """Grade `path`. vectors: a public_vectors.npz to check against instead of hidden cases.
    Returns ([Test], info)."""
    source = read_source(path)
    track = track or track_of(source)
    selected = [p for p in spec.select(parts, track) if p.track == track]  # several files: each its own parts
    hidden = vectors is None
    seed = (secrets.randbelow(10 ** 6) + 1 if seed is None else seed) if hidden else 0
    info = dict(file=path, track=track, seed=seed, cases="hidden" if hidden else f"public ({vectors})",
                timeout=timeout, e2e_timeout=e2e_timeout)
    try:
        compile(source, path, "exec")
    except SyntaxError as e:
        reason = f"SyntaxError: {e.msg} (line {e.lineno} of {os.path.basename(path)}); nothing can run until it parses"
        return [t for p in selected for t in zero(p, reason)], info
    tests = []
    with tempfile.TemporaryDirectory(prefix="bam-grade-") as workdir:
        for part in selected:
            if log:
                log(f"grading {part.key} ...")
            tests += grade_part(part, path, seed, timeout, e2e_timeout, vectors, workdir)
    return tests, info


def grade_part(part, path, seed, timeout, e2e_timeout, vectors, workdir):
    if part.key == "train":
        outputs, reason = run_part(part, path, [common.Case(dict(seed=seed), "end to end")], e2e_timeout, workdir)
        if reason or "#error" in outputs[0]:
            return zero(part, (reason or outputs[0]["#error"]) + f"\nhint: {e2e.HINT}")
        verdicts = e2e.grade({k: float(v) for k, v in outputs[0].items()})
        return [Test(f"{part.key}: {sub}", float(points) if verdicts[sub][0] else 0.0, float(points),
                     ("passed: " if verdicts[sub][0] else "failed: ") + verdicts[sub][1])
                for sub, points in part.points.items()]
    ref = reference(part)
    graded = graded_part(part, ref)
    if vectors:
        cases, expected = common.load_cases(vectors, prefix=f"{part.key}/")
        if not cases or expected is None:
            raise CourseError(f"{vectors}: no public vectors for {part.key} (fix: `course make` writes them)")
    else:
        rng = np.random.default_rng([seed, part.number])
        cases = graded.cases(rng, public=False)
        expected = [expected_outputs(graded, ref, c) for c in cases]
    outputs, reason = run_part(part, path, cases, timeout, workdir)
    if reason:
        return zero(part, reason)
    return judge(part, graded, ref, cases, expected, outputs)


def expected_outputs(graded, ref, case):
    out = graded.call(ref, ref, case.args)
    out.update(graded.expected_extra(ref, case.args))
    return {k: np.asarray(v) for k, v in out.items()}


def public_vectors(path, parts):
    """Write the public cases of the function parts in `parts`, with the reference's outputs, as one .npz:
    <part>/<case>/args/..., <part>/<case>/expected/..., <part>/<case>/meta."""
    flat = {}
    with tempfile.TemporaryDirectory(prefix="bam-vectors-") as tmp:
        for part in parts:
            if not part.target:
                continue
            ref = reference(part)
            graded = graded_part(part, ref)
            cases = graded.cases(np.random.default_rng([0, part.number]), public=True)
            one = os.path.join(tmp, f"{part.key}.npz")
            common.save_cases(one, cases, [expected_outputs(graded, ref, c) for c in cases])
            with np.load(one, allow_pickle=False) as z:
                flat.update({f"{part.key}/{k}": z[k] for k in z.files})
    np.savez(path, **flat)
    return path


# -----------------------------------------------------------------------------
# Reports


def print_table(tests, info, echo=print):
    echo(f"{info['file']}: {info['track']} track, {info['cases']} cases"
         + (f" (seed {info['seed']})" if info["cases"] == "hidden" else "")
         + f"; every part runs in its own subprocess (limit {info['timeout']:g} s, end to end {info['e2e_timeout']:g} s)")
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
