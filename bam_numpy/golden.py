"""
bam_numpy/golden.py: check any BaM implementation against golden test vectors, without torch.

`python cli.py golden --out vectors.npz` writes the vectors from the PyTorch reference (one small
model, one batch, fixed negatives, a fixed uniform draw for BaM's sampler, a small full-ranking
evaluation, and every expected output). An implementation is a function `fn(inputs) -> outputs`:

  inputs  {"config": dict, "weights": {name: array}, "batch": {name: array}, "eval": {name: array},
           "ties": {"scores": array, "target": array}}
  outputs {"interests": ..., "attention": ..., "logits": ..., "probs": ..., "index": ..., "loss": ...,
           "grad/<parameter name>": ..., "eval/scores": ..., "eval/ranks": ..., "eval/top20": ...,
           "eval/recall@10": ..., ..., "ties/ranks": ..., "ties/top20": ...}
          -- one entry per `expected/...` key of the file

docs/golden.md documents every key. Check one with either of
    python cli.py golden --check vectors.npz --impl my_bam:golden
    python -m bam_numpy.golden vectors.npz my_bam.py:golden          # numpy only
`reference` below is bam_numpy's own implementation, in that form.
"""
import importlib
import importlib.util
import json
import os
import sys
from dataclasses import fields

import numpy as np

from bam_data.formats import printable
from bam_numpy.config import Config, InputError, check_config
from bam_numpy.encoders import param_shapes
from bam_numpy.ranking import mask_history, metrics_from_ranks, model_scorer, target_rank, top_k
from bam_numpy.loss import loss_and_grads
from bam_numpy.weights import read_npz

FORMAT = "bam-golden-1"
EXACT = ("index", "eval/ranks", "eval/top20", "ties/ranks", "ties/top20")  # integers: must be equal
HINTS = {
    "interests": "the encoder's output differs: check the masking (padded positions get 0 attention) and "
                 "that the position embedding enters the attention MLP only",
    "logits": "M_u^T e_target differs ([KDD24] Eq. (1))",
    "probs": "softmax(tau * logits) over the interests differs: is tau applied?",
    "index": "the selected interests differ: BaM samples by inverting the CDF at u, "
             "index = #{n : cumsum(probs)_n <= u}; `hard` takes the first argmax",
    "loss": "the loss differs: sampled softmax over [target, negatives], mean over the batch",
    "eval/scores": "the full-item scores differ: max over interests, then the history mask",
    "eval/ranks": "the ranks differ: higher score first, equal score lower id first, a non-finite target never a "
                  "hit, another item's NaN or +inf above the target",
    "eval/top20": "the top-20 lists differ: higher score first, equal score lower id first",
    "ties/ranks": "the tie rule: a target's rank counts the higher scores (NaN counts as +inf) plus the equal "
                  "ones with a lower id; a NaN, +inf or -inf target gets rank n_items + 1",
    "ties/top20": "the tie rule: among equal scores the lower item id comes first; NaN and +inf first (as one "
                  "value), -inf last",
}

# -----------------------------------------------------------------------------
# Reading the file into inputs and expected outputs.


REQUIRED = ("config", "batch/history", "batch/mask", "batch/target", "batch/negatives", "batch/u", "eval/history",
            "eval/mask", "eval/target", "eval/full_history", "ties/scores", "ties/target")
REQUIRED_CONFIG = ("n_items", "top_k")  # beside the Config fields, which default when absent


def load(path):
    """-> (inputs, expected). inputs as above; expected {key: array} without the `expected/` prefix.
    A file that lacks an entry, or whose config cannot run, is an InputError naming the first problem."""
    z = read_npz(path, "a golden vectors file")
    fix = "(fix: write the file again with `cli.py golden --out vectors.npz`)"
    if str(z.get("format", "")) != FORMAT:
        raise InputError(f"{path}: no `format = {FORMAT}` entry, so not a golden vectors file {fix}")
    missing = [k for k in REQUIRED if k not in z]
    if missing:
        raise InputError(f"{path}: no `{missing[0]}` entry {fix}")
    try:
        config = json.loads(str(z["config"]))
    except ValueError:
        raise InputError(f"{path}: the `config` entry is not JSON {fix}") from None
    if not isinstance(config, dict) or any(k not in config for k in REQUIRED_CONFIG):
        raise InputError(f"{path}: the `config` entry needs {' and '.join(REQUIRED_CONFIG)} {fix}")
    inputs = {"config": config, "weights": {}, "batch": {}, "eval": {}, "ties": {}}
    expected = {}
    text = [k for k, v in z.items() if k.startswith("expected/") and v.dtype.kind not in "iuf"]
    if text:  # compared as numbers (the differences of booleans or strings are an error in numpy)
        raise InputError(f"{path}: `{text[0]}` is {z[text[0]].dtype}, not numbers {fix}")
    for key, value in z.items():
        group, _, name = key.partition("/")
        if group in ("weights", "batch", "eval", "ties"):
            inputs[group][name] = value
        elif group == "expected":
            expected[name] = value
    check_inputs(path, inputs, fix)
    return inputs, expected


def check_inputs(path, inputs, fix):
    """The config runs, and the weights are those of its model (the names and shapes)."""
    try:
        cfg = config_of(inputs)
        check_config(cfg)
        want = param_shapes(cfg, int(inputs["config"]["n_items"]))
    except (InputError, TypeError, ValueError, OverflowError) as e:  # Overflow: an infinite n_items
        raise InputError(f"{path}: {printable(str(e))}") from None
    have = inputs["weights"]
    wrong = [k for k in want if k not in have or have[k].shape != want[k] or have[k].dtype.kind != "f"]
    if wrong:
        raise InputError(f"{path}: `weights/{wrong[0]}` is missing or has the wrong shape or type (floats) for a "
                         f"{cfg.model} model {fix}")
    top_k = inputs["config"]["top_k"]
    if type(top_k) is not int or top_k < 1:
        raise InputError(f"{path}: the config's top_k={top_k!r} is not a positive integer {fix}")
    check_arrays(path, inputs, cfg, int(inputs["config"]["n_items"]), fix)


# (entry, kind, shape): B, U, T, S, K and J are fixed by the first entry that has them; "ids" are item ids 0..I,
# except the tie table's targets, which index its J columns.
ARRAYS = (("batch/target", "ids", "B"), ("batch/history", "ids", "B L"), ("batch/mask", "floats", "B L"),
          ("batch/negatives", "ids", "S"), ("batch/u", "floats", "B"), ("batch/noise", "floats", "B N L"),
          ("eval/target", "ids", "U"), ("eval/history", "ids", "U L"), ("eval/mask", "floats", "U L"),
          ("eval/full_history", "ids", "U K"), ("eval/noise", "floats", "U N L"),
          ("ties/scores", "floats", "T J"), ("ties/target", "ids", "T"))


def check_arrays(path, inputs, cfg, n_items, fix):
    """Every input has the type and shape that its config implies, and ids within the item table: an
    implementation (the reference too) is handed arrays it can run on, never an IndexError from a file."""
    sizes = {"L": cfg.seq_len, "N": cfg.n_interests}
    for key, kind, shape in ARRAYS:
        group, _, name = key.partition("/")
        if name not in inputs[group]:  # load has checked the required ones; MIND's noise may be absent
            continue
        a, dims = inputs[group][name], shape.split()
        want = tuple(sizes.setdefault(d, a.shape[i] if i < a.ndim else 0) for i, d in enumerate(dims))
        top = sizes["J"] - 1 if key == "ties/target" else n_items
        ok = a.shape == want and min(want) >= 1 and a.dtype.kind in ("iu" if kind == "ids" else "f")
        if not ok or (kind == "ids" and not 0 <= a.min() <= a.max() <= top):
            raise InputError(f"{path}: `{key}` is {a.dtype} of shape {a.shape}, expected {kind} of shape "
                             f"({', '.join(dims)}) = {want}{f' in 0..{top}' if kind == 'ids' else ''} {fix}")

# -----------------------------------------------------------------------------
# bam_numpy's implementation, in the golden form.


def config_of(inputs):
    names = {f.name for f in fields(Config)}
    return Config(**{k: v for k, v in inputs["config"].items() if k in names})


def reference(inputs):
    cfg, params = config_of(inputs), inputs["weights"]
    b, e = inputs["batch"], inputs["eval"]
    loss, grads, info = loss_and_grads(params, cfg, b["history"], b["mask"], b["target"], b["negatives"],
                                       b["u"], cfg.tau, b.get("noise"))
    out = {k: info[k] for k in ("interests", "attention", "logits", "probs", "index")}
    out["loss"] = np.asarray(loss)
    out.update({f"grad/{k}": v for k, v in grads.items()})
    scores = model_scorer(params, cfg)(e["history"], e["mask"], e.get("noise"))   # (U, I + 1)
    scores = mask_history(scores, e["full_history"], e["history"], cfg.history_mask)
    ranks = target_rank(scores, e["target"])                                      # (U,)
    out.update({"eval/scores": scores, "eval/ranks": ranks,
                "eval/top20": top_k(scores, inputs["config"]["top_k"])})
    out.update({f"eval/{k}": np.asarray(v) for k, v in metrics_from_ranks(ranks).items()})
    ties = inputs["ties"]["scores"]                                               # (T, I + 1) exact ties
    out["ties/ranks"] = target_rank(ties, inputs["ties"]["target"])
    out["ties/top20"] = top_k(ties, inputs["config"]["top_k"])
    return out

# -----------------------------------------------------------------------------
# The check.


def resolve(spec):
    """`module:function` or `path/to/file.py:function` -> the function."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise InputError(f"--impl {spec}: expected module:function or file.py:function "
                         "(fix: e.g. --impl bam_numpy.golden:reference)")
    try:
        if target.endswith(".py"):
            if not os.path.isfile(target):
                raise InputError(f"--impl {spec}: no such file {target} (fix: check the path)")
            mod_spec = importlib.util.spec_from_file_location(os.path.basename(target)[:-3], target)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())
            module = importlib.import_module(target)
    except ImportError as e:
        raise InputError(f"--impl {spec}: cannot import {target}: {e} (fix: run from the folder that holds "
                         "it, or pass file.py:function)") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise InputError(f"--impl {spec}: {target} has no function `{name}` (fix: check the name)")
    return fn


def nonfinite_differ(got, want):
    """Where got and want are not finite alike or hold different non-finite values (NaN never matches NaN)."""
    finite = np.isfinite(want)
    return (np.isfinite(got) != finite) | (~finite & (got != want))


def max_errors(got, want, dtype=np.float64):
    """(max abs err, normwise rel err = max|got - want| / max|want|) over the finite entries, computed in
    `dtype`: normwise, so that near-zero entries do not dominate; a zero scale gives the abs err. Infinities
    must coincide: (inf, inf) where they do not. bam_crosscheck.agreement measures with it too, in float64."""
    got, want = np.asarray(got, dtype), np.asarray(want, dtype)
    if nonfinite_differ(got, want).any():
        return np.inf, np.inf
    finite = np.isfinite(want)
    if not finite.any():
        return 0.0, 0.0
    err = float(np.abs(got[finite] - want[finite]).max())
    scale = float(np.abs(want[finite]).max())
    return err, err / scale if scale else err


def compare(key, got, want, rtol):
    """-> (max abs err, max rel err, ok, message): EXACT keys must be equal, the rest pass max_errors's
    rel err <= rtol, computed in the expected array's dtype."""
    want = np.asarray(want)
    try:
        got = np.broadcast_to(np.asarray(got, dtype=want.dtype), want.shape)
    except (ValueError, TypeError):
        shape = getattr(got, "shape", type(got).__name__)
        return np.nan, np.nan, False, f"shape {shape}, expected {want.shape}"
    if key in EXACT:
        bad = got != want
        if bad.any():
            first = np.argwhere(bad)[0]
            where = tuple(int(i) for i in first)
            return (float(np.abs(got - want).max()), np.nan, False,
                    f"{int(bad.reshape(len(want), -1).any(1).sum())} of {len(want)} rows differ; first at "
                    f"{where}: expected {want[where]}, got {got[where]}")
        return 0.0, 0.0, True, ""
    bad = nonfinite_differ(got, want)
    if bad.any():  # counted here for the message; max_errors would say (inf, inf)
        return np.inf, np.inf, False, f"{int(bad.sum())} entries differ in their infinities or NaNs"
    abs_err, rel = max_errors(got, want, want.dtype)
    return abs_err, rel, rel <= rtol, "" if rel <= rtol else f"max rel err {rel:.3g} > {rtol:g}"


def check(path, impl, rtol=1e-8, log=print):
    """Run `impl` on the inputs of `path` and compare every expected output. Returns True if all pass."""
    inputs, expected = load(path)
    fn = resolve(impl) if isinstance(impl, str) else impl
    got = fn(inputs)
    log(f"{'output':<34}{'max abs err':>13}{'max rel err':>13}  result")
    failed = []
    for key in sorted(expected, key=lambda k: (k.startswith(("eval/", "ties/")), k.startswith("grad/"), k)):
        if key not in got:
            log(f"{key:<34}{'':>13}{'':>13}  FAIL: missing from the implementation's outputs")
            failed.append(key)
            continue
        abs_err, rel, ok, msg = compare(key, got[key], expected[key], rtol)
        log(f"{key:<34}{abs_err:>13.3g}{rel:>13.3g}  {'pass' if ok else 'FAIL: ' + msg}")
        if not ok:
            failed.append(key)
    if failed:
        hints = [HINTS[k] for k in failed if k in HINTS]
        log(f"FAILED {len(failed)} of {len(expected)}: {', '.join(failed[:6])}{' ...' if len(failed) > 6 else ''}"
            + (f"; first hint: {hints[0]}" if hints else ""))
    else:
        log(f"all {len(expected)} outputs match (rtol {rtol:g})")
    return not failed


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(print("usage: python -m bam_numpy.golden vectors.npz [module:function | file.py:function]",
                       file=sys.stderr) or 2)
    try:
        ok = check(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else reference)
    except InputError as e:
        sys.exit(print(f"error: {e}", file=sys.stderr) or 2)
    sys.exit(0 if ok else 1)
