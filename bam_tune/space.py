"""
bam_tune/space.py: a study's search space, from the command line or a TOML file, checked before any work.

    --space "tau=log:0.1:10"          log-uniform float in [0.1, 10]
    --space "lr=float:1e-4:1e-2"      uniform float
    --space "dim=int:16:64"           integer, both ends included (logint: log-uniform integer)
    --space "n_interests=choice:2,4,8"  one of the values (any Config field: numbers, true/false, names)

    [space]                           # the same in a TOML file (--space-file), a string or a list (choice)
    tau = "log:0.1:10"
    n_interests = [2, 4, 8]

    from bam_tune import space
    knobs = space.parse(["tau=log:0.1:10"], None, base_cfg, fixed=METHODS["BaM"])
    space.distributions(knobs)        # {name: optuna distribution}
"""
import json
import math
import tomllib
from dataclasses import fields, replace

import bam_minimal as bm

KINDS = ("log", "float", "int", "logint", "choice")
NOT_TUNED = ("seed", "device")  # seeds are the grid's own axis and the final step's; the device is no knob
FIX = "fix: NAME=log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH, logint:LOW:HIGH or choice:A,B,C (docs/tune.md)"


def bad(spec, why):
    return bm.InputError(f"--space {spec}: {why} ({FIX})")


def convert(spec, field_type, text):
    """One value of a knob in its Config field's type."""
    if isinstance(text, str):
        text = text.strip()
    try:
        if field_type is bool:
            if isinstance(text, bool):
                return text
            if str(text).lower() in ("true", "1", "yes"):
                return True
            if str(text).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if field_type is int:
            if isinstance(text, float) and not text.is_integer():
                raise ValueError
            return int(text) if not isinstance(text, str) else int(text, 10)
        if field_type is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        return str(text)
    except (TypeError, ValueError):
        raise bad(spec, f"`{text}` is not a {field_type.__name__}") from None


def knob(name, rule, base, fixed=()):
    """One knob -> (name, dict(kind=..., low/high or choices)), checked."""
    spec = f"{name}={rule}" if isinstance(rule, str) else f"{name}={rule!r}"
    types = {f.name: f.type for f in fields(bm.Config)}
    types = {k: {"int": int, "float": float, "bool": bool, "str": str}.get(t, t) for k, t in types.items()}
    if name not in types:
        raise bad(spec, f"`{name}` is not a Config field (one of: {', '.join(types)})")
    if name in NOT_TUNED:
        raise bad(spec, f"`{name}` is not a knob to tune (seeds: --seeds with --grid, --final-seeds)")
    if name in fixed:
        raise bad(spec, f"`{name}` is set by the method ({name}={fixed[name]!r}): tune another method instead")
    if isinstance(rule, list):
        kind, parts = "choice", rule
    elif isinstance(rule, str) and ":" in rule:
        kind, _, rest = rule.partition(":")
        kind = kind.strip()
        parts = rest.split(",") if kind == "choice" else rest.split(":")
    else:
        raise bad(spec, "no distribution")
    if kind not in KINDS:
        raise bad(spec, f"unknown distribution `{kind}`")
    ftype = types[name]
    if kind == "choice":
        parts = [p for p in parts if not (isinstance(p, str) and not p.strip())]
        if not parts:
            raise bad(spec, "an empty choice")
        values = [convert(spec, ftype, p) for p in parts]
        if len(set(values)) != len(values):
            raise bad(spec, "a value given twice")
        out = dict(kind="choice", choices=values)
    else:
        if len(parts) != 2 or not all(str(p).strip() for p in parts):
            raise bad(spec, f"{kind} needs LOW:HIGH")
        if ftype not in (int, float):
            raise bad(spec, f"`{name}` is a {ftype.__name__}: only choice:A,B")
        if ftype is int and kind in ("log", "float"):
            raise bad(spec, f"`{name}` is an integer: int:LOW:HIGH or logint:LOW:HIGH")
        if ftype is float and kind in ("int", "logint"):
            raise bad(spec, f"`{name}` is a float: float:LOW:HIGH or log:LOW:HIGH")
        low, high = (convert(spec, ftype, p) for p in parts)
        if low >= high:
            raise bad(spec, f"an empty range: low {low} >= high {high}")
        if kind in ("log", "logint") and low <= 0:
            raise bad(spec, f"a log range needs bounds above 0 (low is {low})")
        values = [low, high]
        out = dict(kind=kind, low=low, high=high)
    for v in values:  # every end and choice must be a valid config: a negative tau, a 0 dim, an unknown selection
        if name in bm.NON_NEGATIVE and v < 0:
            raise bad(spec, f"{name} cannot be negative ({v})")
        if name in bm.POSITIVE and v <= 0:
            raise bad(spec, f"{name} must be above 0 ({v})")
        try:
            bm.check_config(replace(base, **{name: v}))
        except bm.InputError as e:
            raise bad(spec, f"{name}={v!r} is not a valid config: {e}") from None
    return name, out


def parse(specs=(), toml_path=None, base=None, fixed=()):
    """--space strings and a TOML file's [space] table -> {name: knob}, in order; InputError on any bad one."""
    base = base or bm.Config()
    rules = []
    if toml_path:
        try:
            with open(toml_path, "rb") as f:
                table = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise bm.InputError(f"{toml_path}: not TOML ({e}) (fix: a [space] table, e.g. "
                                'tau = "log:0.1:10")') from None
        if not isinstance(table.get("space"), dict) or not table["space"]:
            raise bm.InputError(f"{toml_path}: no [space] table (fix: [space] then e.g. tau = \"log:0.1:10\")")
        rules += list(table["space"].items())
    for spec in specs:
        name, eq, rule = spec.partition("=")
        if not eq:
            raise bad(spec, "no `=`")
        rules.append((name.strip(), rule.strip()))
    if not rules:
        raise bm.InputError(f"tune: no search space ({FIX}; or --space-file FILE.toml)")
    out = {}
    for name, rule in rules:
        if name in out:
            raise bad(f"{name}=...", f"`{name}` given twice")
        name, k = knob(name, rule, base, fixed)
        out[name] = k
    return out


def distributions(knobs):
    """{name: optuna distribution}."""
    import optuna.distributions as d
    out = {}
    for name, k in knobs.items():
        if k["kind"] == "choice":
            out[name] = d.CategoricalDistribution(k["choices"])
        elif k["kind"] in ("int", "logint"):
            out[name] = d.IntDistribution(k["low"], k["high"], log=k["kind"] == "logint")
        else:
            out[name] = d.FloatDistribution(k["low"], k["high"], log=k["kind"] == "log")
    return out


def canonical(knobs, grid=False):
    """The space as one string: what a study stores, and refuses a changed one against."""
    return json.dumps(dict(grid=grid, knobs=knobs), sort_keys=True)


def grid_values(knobs):
    """--grid: every knob a choice -> {name: choices}; InputError otherwise."""
    ranges = [n for n, k in knobs.items() if k["kind"] != "choice"]
    if ranges:
        raise bm.InputError(f"--grid: {', '.join(ranges)} is a range; a grid needs choice:A,B,... knobs "
                            "(fix: e.g. --space \"tau=choice:0.1,1,10\")")
    return {n: k["choices"] for n, k in knobs.items()}
