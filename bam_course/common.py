"""
bam_course/common.py: the grader's side of a case, torch-free: a test case and its .npz storage, the
interface of a graded part, the known-wrong variants (Bug) and the comparison that names the first wrong
output. docs/course.md has the details.
"""
import json
import math
import types
from dataclasses import dataclass, field

import numpy as np

from bam_course import harness
from bam_course.spec import BY_KEY, CourseError


@dataclass
class Case:
    args: dict                      # argument name -> array, number, string, or a dict of arrays
    note: str                       # the case in words, for the student: "selection=bam, tau=2.0, B=7"
    checks: dict = field(default_factory=dict)   # subtest -> output names it grades (one call, several subtests)

# -----------------------------------------------------------------------------
# Random inputs, and the interface of a graded part


PARAMS = ("embeddings.weight", "position_embedding", "linear1.0.weight", "linear2.weight")   # ComiRec-SA's


def size(rng, public, value, lo, hi):
    """`value` for the public cases; for the hidden ones a draw from [lo, hi] (other shapes)."""
    return value if public else int(rng.integers(lo, hi + 1))


def kaiming(rng, *shape):
    fan_in = shape[1] * int(np.prod(shape[2:]))
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def comirec_inputs(rng, B, L, d, N, n_items):
    """Right-padded histories (B, L), one row full and one of a single item, their masks, and ComiRec-SA's
    weights {PARAMS: float32}."""
    lengths = rng.integers(1, L + 1, B)
    lengths[0], lengths[-1] = L, 1
    history = np.zeros((B, L), np.int64)
    for r, k in enumerate(lengths):
        history[r, :k] = rng.choice(np.arange(1, n_items + 1), k, replace=False)
    shapes = ((n_items + 1, d), (1, L, d), (4 * d, d), (N, 4 * d))
    return history, (history > 0).astype(np.float32), {k: kaiming(rng, *s) for k, s in zip(PARAMS, shapes)}


class Graded:
    """What every function part defines: its cases, hints and known bugs; the rest has defaults."""
    key = ""
    rtol, atol = 1e-4, 1e-5
    hints = {}                  # subtest -> the hint when no known bug matches
    private = ()                # argument names that never leave the grader's process
    bugs = ()                   # the known-wrong variants, [Bug], in the order their hints are tried

    def cases(self, rng, public):
        raise NotImplementedError

    def call(self, mod, args):
        """The outputs of `mod`'s function (the reference's, a variant's, the student's): the harness's call."""
        return harness.CALLS[self.key](mod, args)

    def prepare(self, ref, args):
        """Extra arguments for the student's process, computed with the reference (what a stand-in replays)."""
        return {}

    def variants(self, ref, args):
        """[(outputs of a known bug, hint)] on this case, in the grader's process only."""
        args = {k: v for k, v in args.items() if k != "replay"}   # the variant calls the reference's parts
        out = []
        for bug in self.bugs:
            if bug.when is None or bug.when(args):
                with np.errstate(all="ignore"):
                    got = self.call(patched(ref, BY_KEY[self.key].target, bug.edits), args)
                out.append(({k: v for k, v in got.items() if not bug.only or k in bug.only}, bug.hint))
        return out

    def derive(self, args, outputs):
        """Outputs computed in the grader from the returned ones (finite-difference dot products)."""
        return {}

    def expected_extra(self, ref, args):
        """Expected outputs that are not the reference's return value (finite differences)."""
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
    """The reference's function with `edits` applied to its current source: (old, new) replaces the one
    occurrence of `old`, (old, new, n) its n occurrences; any other count is a CourseError."""
    hint: str
    edits: tuple
    only: tuple = ()            # the outputs it is compared on (default: every output of the call)
    when: object = None         # args -> bool: the cases it applies to (default: every case)


def given(name, *values):
    """A Bug's `when`: the cases whose argument `name` ("cfg.x": cfg's) is one of `values`; none: set and not 0."""
    def test(args):
        for key in name.split("."):
            args = args.get(key)
        return args in values if values else args is not None and (np.ndim(args) > 0 or bool(args))
    return test


def derive(source, target, edits, path):
    """The variant's source: `target`'s text in `source` (dedented, decorators included) with `edits` applied,
    each found exactly as often as recorded, else CourseError."""
    from bam_course.skeleton import segment
    text = segment(source, target, path)
    for old, new, *n in edits:
        if text.count(old) != (n[0] if n else 1):
            raise CourseError(f"{path}: {target} holds {text.count(old)} copies of {old!r} where a known-wrong variant "
                              f"expects {n[0] if n else 1} (fix: the reference changed; update the edit in bam_course)")
        text = text.replace(old, new)
    return text


_PATCHED = {}


def patched(ref, target, edits):
    """A copy of module `ref` whose `target` is the variant (a method: in a subclass of the reference's class),
    compiled once per source text and edits; everything else it calls is the reference's."""
    with open(ref.__file__) as f:
        source = f.read()
    key = (ref.__name__, source, target, edits)
    if key not in _PATCHED:
        mod = types.ModuleType(f"{ref.__name__}_variant")
        mod.__dict__.update({k: v for k, v in vars(ref).items() if not k.startswith("__")})
        defined = {}
        exec(compile(derive(source, target, edits, ref.__file__), f"<a known-wrong variant of {target}>", "exec"),
             mod.__dict__, defined)
        cls, _, name = target.rpartition(".")
        setattr(mod, cls or name, type(cls, (getattr(ref, cls),), {name: defined[name]}) if cls else defined[name])
        _PATCHED[key] = mod
    return _PATCHED[key]

# -----------------------------------------------------------------------------
# Storage: <prefix><i>/args/..., <prefix><i>/expected/..., <prefix><i>/meta (JSON), the harness's layout


def case_arrays(cases, expected=None, prefix=""):
    flat = {}
    for i, case in enumerate(cases):
        flat.update(harness.flatten(case.args, f"{prefix}{i}/args/"))
        flat[f"{prefix}{i}/meta"] = np.asarray(json.dumps(dict(note=case.note, checks=case.checks)))
        if expected is not None:
            flat.update(harness.flatten(expected[i], f"{prefix}{i}/expected/"))
    return flat


def load_cases(path, prefix=""):
    """-> (cases, expected outputs or None)."""
    cases, expected = [], []
    for group in harness.read_cases(path, prefix):
        meta = json.loads(str(group["meta"]))
        cases.append(Case(harness.subtree(group, "args"), meta["note"], meta["checks"]))
        expected.append({k[9:]: v for k, v in group.items() if k.startswith("expected/")})
    return cases, (expected if any(expected) else None)

# -----------------------------------------------------------------------------
# Comparing one output with its expected value


def show(a):
    """8 significant digits: near misses must not print as equal numbers."""
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.ndim == 0:
        return f"{float(a):.8g}"
    precision = dict(precision=8, floatmode="maxprec") if a.dtype.kind == "f" else {}
    return np.array2string(a, threshold=8, edgeitems=3, separator=", ", **precision)


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
    if exact and got.dtype.kind not in "iu":
        return f"{name}: dtype {got.dtype}, expected an integer tensor ({want.dtype})"
    if got.dtype.kind not in "fiub":
        return f"{name}: dtype {got.dtype}, expected numbers"
    bad = (got != want) if exact else ~np.isclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                                                  atol=atol, equal_nan=True)
    if not bad.any():
        return None
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    error = "" if exact else error_of(got[at], want[at], rtol, atol)
    if want.ndim == 0:
        return f"{name} = {show(got)}, expected {show(want)}{error}"
    return (f"{name}[{', '.join(map(str, at))}] = {show(got[at])}, expected {show(want[at])} "
            f"({int(bad.sum())} of {bad.size} entries wrong{error})")


def matches(got, want, rtol, atol):
    return first_wrong("", got, want, rtol, atol) is None
