"""
bam_course/common.py: the grader's side of a case, torch-free: a test case, its .npz storage
(the flat layout is the harness's, loaded with allow_pickle=False), the interface of a graded part,
and the comparison that names the first wrong output.

A case is one call of the graded function. `checks` maps each subtest to the outputs it grades, so
one call can feed several subtests (ComiRecSA's attention, interests and gradients).
"""
import ast
import json
import math
import textwrap
import types
from dataclasses import dataclass, field

import numpy as np

from bam_course import harness
from bam_course.harness import flatten, unflatten
from bam_course.spec import BY_KEY, CourseError


@dataclass
class Case:
    args: dict                      # argument name -> array, number, string, or a dict of arrays
    note: str                       # the case in words, for the student: "selection=bam, tau=2.0, B=7"
    checks: dict = field(default_factory=dict)   # subtest -> output names it grades

# -----------------------------------------------------------------------------
# Random inputs, and the interface of a graded part


def size(rng, public, value, lo, hi):
    """`value` for the public cases; for the hidden ones a draw from [lo, hi] (other shapes)."""
    return value if public else int(rng.integers(lo, hi + 1))


def kaiming(rng, *shape):
    fan_in = shape[1] * int(np.prod(shape[2:]))
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def histories(rng, B, L, n_items, full_row=True):
    """Right-padded histories (B, L) and their masks; one row is full, one has a single item."""
    lengths = rng.integers(1, L + 1, B)
    lengths[0], lengths[-1] = (L, 1) if full_row else (lengths[0], lengths[-1])
    history = np.zeros((B, L), np.int64)
    for r, k in enumerate(lengths):
        history[r, :k] = rng.choice(np.arange(1, n_items + 1), k, replace=False)
    return history, (history > 0).astype(np.float32)


class Graded:
    """The interface every part implements (see the module docstring)."""
    key = ""
    rtol, atol = 1e-4, 1e-5
    hints = {}                  # subtest -> the hint when no known bug matches
    private = ()                # argument names that never leave the grader's process

    def cases(self, rng, public):
        raise NotImplementedError

    def call(self, mod, args):
        """The outputs of module `mod`'s function on one case: the harness's call, the same code in the
        grader (mod = the reference) and in the student's process (mod = the student's file)."""
        return harness.CALLS[self.key](mod, args)

    def prepare(self, ref, args):
        """Extra arguments for the student's process, computed with the reference in the grader (the
        recorded outputs that a stand-in replays)."""
        return {}

    bugs = ()                   # the known-wrong variants, [Bug], in the order their hints are tried

    def variants(self, ref, args):
        """[(outputs of a known bug, hint)], computed in the grader's process only: each Bug's variant of
        the reference's function, called by the harness's own call on this case."""
        args = {k: v for k, v in args.items() if k != "replay"}   # the variant calls the reference's parts
        out = []
        for bug in self.bugs:
            if bug.when is None or bug.when(args):
                with np.errstate(all="ignore"):
                    got = self.call(patched(ref, BY_KEY[self.key].target, bug.edits), args)
                out.append(({k: v for k, v in got.items() if not bug.only or k in bug.only}, bug.hint))
        return out

    def derive(self, args, outputs):
        """Extra outputs computed in the grader from the returned ones (finite-difference dot products)."""
        return {}

    def expected_extra(self, ref, args):
        """Extra expected outputs that are not the reference's return value (finite differences)."""
        return {}

    def tol(self, key):
        return self.rtol, self.atol

    def fallback_hint(self, sub, got, want, failed):
        """The hint when no known bug matches. failed: the subtests this case failed."""
        return self.hints.get(sub, "")

# -----------------------------------------------------------------------------
# Known-wrong variants, derived from the reference's current source by recorded edits


@dataclass(frozen=True)
class Bug:
    """A known bug: the reference's function with `edits` applied to the text of its current source. Each
    edit (old, new) replaces the one occurrence of `old` in the function ((old, new, n): its n occurrences);
    a count that differs fails loudly (CourseError), so a change to the reference cannot leave a stale copy."""
    hint: str
    edits: tuple
    only: tuple = ()            # the outputs it is compared on (default: every output of the call)
    when: object = None         # args -> bool: the cases it applies to (default: every case)


def function_source(source, target, path):
    """The text of `target` ("name" or "Class.method") in `source`, dedented, decorators included."""
    from bam_course.skeleton import find
    node = find(ast.parse(source), target, path)
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return textwrap.dedent("\n".join(source.splitlines()[first - 1:node.end_lineno])) + "\n"


def derive(source, target, edits, path):
    """The variant's source: `target`'s text in `source` with `edits` applied, each found exactly as often
    as recorded, else CourseError."""
    text = function_source(source, target, path)
    for old, new, *n in edits:
        if text.count(old) != (n[0] if n else 1):
            raise CourseError(f"{path}: {target} holds {text.count(old)} copies of {old!r} where a known-wrong variant "
                              f"expects {n[0] if n else 1} (fix: the reference changed; update the edit in bam_course)")
        text = text.replace(old, new)
    return text


_PATCHED = {}


def patched(ref, target, edits):
    """A copy of module `ref` whose `target` is the variant (compiled once per source text and edits); the
    variant's other names are the reference's own."""
    with open(ref.__file__) as f:
        source = f.read()
    key = (ref.__name__, source, target, edits)
    if key not in _PATCHED:
        text = derive(source, target, edits, ref.__file__)
        mod = types.ModuleType(f"{ref.__name__}_variant")
        mod.__dict__.update({k: v for k, v in vars(ref).items() if not k.startswith("__")})
        defined = {}
        exec(compile(text, f"<a known-wrong variant of {target}>", "exec"), mod.__dict__, defined)
        cls, _, name = target.rpartition(".")
        if cls:  # a method: a subclass of the reference's class with the variant in its place
            setattr(mod, cls, type(cls, (getattr(ref, cls),), {name: defined[name]}))
        else:
            setattr(mod, name, defined[name])
        _PATCHED[key] = mod
    return _PATCHED[key]

# -----------------------------------------------------------------------------
# Flat storage: {"a": {"b": x}} <-> {"a/b": x}, the harness's own (the student's process reads it too).


def save_cases(path, cases, expected=None):
    """cases (and their expected outputs) -> one .npz: i/args/..., i/expected/..., i/meta (JSON)."""
    flat = {}
    for i, case in enumerate(cases):
        flat.update(flatten(case.args, f"{i}/args/"))
        flat[f"{i}/meta"] = np.asarray(json.dumps(dict(note=case.note, checks=case.checks)))
        if expected is not None:
            flat.update(flatten(expected[i], f"{i}/expected/"))
    np.savez(path, **flat)


def load_cases(path, prefix=""):
    """-> (cases, expected outputs or None). Only arrays: np.load(allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as z:
        flat = {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
    groups = {}
    for key, v in flat.items():
        i, rest = key.split("/", 1)
        groups.setdefault(int(i), {})[rest] = v
    cases, expected = [], []
    for i in sorted(groups):
        g = groups[i]
        meta = json.loads(str(g["meta"]))
        args = unflatten({k[5:]: v for k, v in g.items() if k.startswith("args/")})
        cases.append(Case(args, meta["note"], meta["checks"]))
        expected.append({k[9:]: v for k, v in g.items() if k.startswith("expected/")})
    return cases, (expected if any(expected) else None)

# -----------------------------------------------------------------------------
# Comparing one output with its expected value


def show(a):
    """8 significant digits: near misses must not print as equal numbers."""
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.ndim == 0:
        return f"{float(a):.8g}"
    if a.dtype.kind == "f":
        return np.array2string(a, precision=8, floatmode="maxprec", threshold=8, edgeitems=3, separator=", ")
    return np.array2string(a, threshold=8, edgeitems=3, separator=", ")


def error_of(got, want, rtol, atol):
    """How far a float entry is, against the tolerance it had to meet."""
    got, want = float(got), float(want)
    if not (math.isfinite(got) and math.isfinite(want)):
        return ""
    err = abs(got - want)
    rel = f", rel {err / abs(want):.3g}" if want else ""
    allowed = atol + rtol * abs(want)
    return f"; abs error {err:.3g}{rel}, allowed {allowed:.3g} (atol {atol:g} + rtol {rtol:g} |expected|)"


def first_wrong(name, got, want, rtol, atol):
    """None when `got` matches `want`, else one line that names the first wrong entry."""
    if got is None:
        return f"{name}: missing from your outputs"
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"{name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    exact = want.dtype.kind in "iu"
    if exact:
        if got.dtype.kind not in "iu":
            return f"{name}: dtype {got.dtype}, expected an integer tensor ({want.dtype})"
        bad = got != want
    elif got.dtype.kind not in "fiub":
        return f"{name}: dtype {got.dtype}, expected numbers"
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        bad = ~np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    if want.ndim == 0:
        return f"{name} = {show(got)}, expected {show(want)}" + ("" if exact else error_of(got, want, rtol, atol))
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    where = ", ".join(map(str, at))
    return (f"{name}[{where}] = {show(got[at])}, expected {show(want[at])} "
            f"({int(bad.sum())} of {bad.size} entries wrong"
            + ("" if exact else error_of(got[at], want[at], rtol, atol)) + ")")


def matches(got, want, rtol, atol):
    return first_wrong("", got, want, rtol, atol) is None
