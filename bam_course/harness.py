"""
bam_course/harness.py: the only code of the kit that runs in the student's process, standalone (stdlib,
numpy, torch). The grader copies it into a fresh, empty folder beside a copy of the student's file and runs

    python -I -S harness.py PART STUDENT.py CASES.npz OUT.npz SITE_PATHS TARGETS

with a scrubbed environment: neither the reference nor the grader is importable here. It holds no graded
algorithm: each part's `call_*` (the grader runs the same on the reference) and the stand-ins that replay the
reference's recorded outputs where a part calls another. docs/course.md, "No answer key in the student's process".
"""
import importlib.util
import json
import os
import resource
import signal
import sys
import traceback

if __name__ == "__main__":  # before numpy: the grader passes the only folders to take packages from
    sys.path[:] = [p for p in sys.path if os.path.isdir(p) or p.endswith(".zip")] + sys.argv[5].split(os.pathsep)

import numpy as np  # noqa: E402

FSIZE_LIMIT = 64 << 20   # bytes any file written here may reach (its log included): SIGXFSZ past it
REPOSITORY = ("bam_minimal", "bam_numpy", "bam_data", "bam_evidence", "bam_runs", "bam_experiments", "bam_crosscheck",
              "bam_bench", "bam_cli", "bam_course", "bam_protocols", "bam_read", "bam_tune", "cli",
              "bench")  # not importable here
MATCH = dict(rtol=1e-4, atol=1e-5)   # how close a stand-in's input must be to the recorded one


class StandInError(ValueError):
    """A stand-in for another part was called with inputs that the reference's call never used."""

# -----------------------------------------------------------------------------
# Flat .npz storage: {"a": {"b": x}} <-> {"a/b": x}; numbers and strings as 0-d arrays (common.py's too)


def flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, (tuple, list)):
            out[key] = np.asarray(v, dtype=np.int64)
        else:
            out[key] = np.asarray(v)
    return out


def unflatten(flat):
    tree = {}
    for key, v in flat.items():
        *path, last = key.split("/")
        node = tree
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v if v.ndim else str(v) if v.dtype.kind == "U" else v.item()  # 0-d: the number or string
    return tree


def read_cases(path, prefix=""):
    """A cases file -> one {"args/...": array, "meta": ..., ...} per case, in order (allow_pickle=False)."""
    groups = {}
    with np.load(path, allow_pickle=False) as z:
        for key in (k for k in z.files if k.startswith(prefix)):
            i, rest = key[len(prefix):].split("/", 1)
            groups.setdefault(int(i), {})[rest] = z[key]
    return [groups[i] for i in sorted(groups)]


def subtree(group, name):
    """The entries of `group` under name/, as the tree they were."""
    return unflatten({k[len(name) + 1:]: v for k, v in group.items() if k.startswith(name + "/")})


def tensor_out(x):
    """A torch result as numpy; a Python number as a 0-d array."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)

# -----------------------------------------------------------------------------
# Parts 1-7: call the student's function (or, in the grader, the reference's) on one case


def call_ComiRecSA(mod, args):
    import torch
    cfg = mod.Config(model="comirec", dim=args["dim"], n_interests=args["n_interests"], seq_len=args["seq_len"],
                     device="cpu")
    model = mod.ComiRecSA(cfg, args["n_items"])
    model.load_state_dict({k: torch.as_tensor(v) for k, v in args["weights"].items()})
    interests, attention = model(torch.as_tensor(args["history"]), torch.as_tensor(args["mask"]))
    loss = (interests * torch.as_tensor(args["d_interests"])).sum() \
        + (attention * torch.as_tensor(args["d_attention"])).sum()
    loss.backward()
    out = dict(interests=tensor_out(interests), attention=tensor_out(attention))
    for name, p in model.named_parameters():
        if name in args["weights"] and p.grad is not None:
            out[f"grad/{name}"] = tensor_out(p.grad)
    return out


def call_select_interest(mod, args):
    import torch
    index, probs = mod.select_interest(torch.as_tensor(args["logits"]), args["selection"], args["tau"],
                                       torch.as_tensor(args["u"]))
    return dict(index=tensor_out(index), probs=tensor_out(probs))


def call_softmax_loss(mod, args):
    import torch
    pos = torch.as_tensor(args["pos"]).requires_grad_()
    neg = torch.as_tensor(args["neg"]).requires_grad_()
    loss = mod.softmax_loss(pos, neg, args["beta"])
    (loss * torch.as_tensor(args["d_loss"])).sum().backward()
    out = dict(loss=tensor_out(loss))
    out.update({f"grad/{k}": tensor_out(v.grad) for k, v in (("pos", pos), ("neg", neg)) if v.grad is not None})
    return out


def call_bam_loss(mod, args):
    import torch
    cfg = mod.Config(model="comirec", device="cpu", **args["cfg"])
    model = torch.nn.Module()  # what bam_loss reads of the model: `embeddings` (row 0 is padding), no encoder
    model.embeddings = torch.nn.Embedding.from_pretrained(torch.as_tensor(args["embeddings"]), freeze=False,
                                                          padding_idx=0)
    interests = torch.as_tensor(args["interests"]).requires_grad_()
    attention = torch.as_tensor(args["attention"]).requires_grad_()
    saved = {name: getattr(mod, name) for name in args.get("replay", {}) if hasattr(mod, name)}
    try:
        for name, calls in args.get("replay", {}).items():  # in the student's process only
            setattr(mod, name, STAND_INS[name](calls))
        loss = mod.bam_loss(model, cfg, interests, attention, torch.as_tensor(args["target"]),
                            torch.as_tensor(args["negatives"]), torch.as_tensor(args["u"]), args["tau"])
        loss.backward()
    finally:
        for name, value in saved.items():
            setattr(mod, name, value)
    leaves = dict(interests=interests, embeddings=model.embeddings.weight, attention=attention)
    return dict(loss=tensor_out(loss), **{f"grad/{k}": tensor_out(torch.zeros_like(x) if x.grad is None else x.grad)
                                          for k, x in leaves.items()})  # no gradient reached it: 0


def call_mask_history(mod, args):
    import torch
    scores = mod.mask_history(torch.as_tensor(args["scores"]).clone(), torch.as_tensor(args["full_history"]),
                              torch.as_tensor(args["window"]), args["mode"])
    return dict(scores=tensor_out(scores))


def call_target_rank(mod, args):
    import torch
    scores = torch.as_tensor(args["scores"]).clone()  # target_rank may work in place; keep the case intact
    return dict(rank=tensor_out(mod.target_rank(scores, torch.as_tensor(args["target"]))))


def call_metrics_from_ranks(mod, args):
    out = mod.metrics_from_ranks(args["rank"], tuple(int(k) for k in args["ks"]))
    return {k: np.float64(v) for k, v in out.items()}

# -----------------------------------------------------------------------------
# Part 8 (the whole file trains; the grader measures the weights) and Parts 9-10 (NumPy)


def call_train(mod, args):
    """Train every selection with the student's own Config, Dataset and train. -> the weights only."""
    ends = np.cumsum(args["lengths"])
    seqs = {int(u): args["items"][e - n:e].tolist() for u, n, e in zip(args["users"], args["lengths"], ends)}
    out = {}
    for selection in args["selections"].split(","):
        cfg = mod.Config(selection=selection, seed=int(args["seed"]), **json.loads(args["config"]))
        model = mod.train(cfg, mod.Dataset(seqs, name="synthetic"))[0]
        out.update({f"{selection}/{k}": tensor_out(v) for k, v in model.state_dict().items()})
    return out


def call_softmax_loss_backward(mod, args):
    d_pos, d_neg = mod.softmax_loss_backward(args["pos"], args["neg"], args["beta"], args["d_loss"])
    return dict(d_pos=np.asarray(d_pos), d_neg=np.asarray(d_neg))


def call_comirec_backward(mod, args):
    """cache: what the reference's comirec_forward stored, computed in the grader."""
    params = {k: v.copy() for k, v in args["params"].items()}
    cache = {k: v.copy() for k, v in args["cache"].items()}
    grads = mod.comirec_backward(params, cache, args["d_interests"], args.get("d_attention"))
    return {f"grad/{k}": np.asarray(v) for k, v in grads.items() if k in args["params"]}


CALLS = {k[5:]: v for k, v in list(globals().items()) if k.startswith("call_")}

# -----------------------------------------------------------------------------
# Stand-ins: another part's outputs, recorded in the grader, replayed with their derivatives


def close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.isclose(a, b, equal_nan=True, **MATCH).all())


def replayed(value, backward, *inputs):
    """A recorded `value` as a function of `inputs` for autograd: backward(g) -> their recorded gradients."""
    import torch

    class Replay(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value, *inputs):
            return value.clone()

        @staticmethod
        def backward(ctx, g):
            return None, *backward(g)
    return Replay.apply(value, *inputs)


def replay_select_interest(calls):
    """select_interest for bam_loss's part: the recorded (index, probs) of the call with these inputs;
    probs carry the recorded Jacobian d probs / d logits, so a gradient through them is the reference's."""
    import torch
    calls = list(calls.values())

    def stand_in(logits, selection, tau, u):
        why = ["inputs the reference's bam_loss never used"]
        for c in calls:
            why = [w for bad, w in (
                (selection != c["selection"], f"selection={selection!r}, but cfg.selection is {c['selection']!r}"),
                (not close(float(tau), c["tau"]), f"tau={float(tau):g}, but bam_loss was given tau={c['tau']:g}"),
                (not close(tensor_out(u), c["u"]), "u is not the u that bam_loss was given"),
                (not close(tensor_out(logits), c["logits"]), "the logits are not interest_logits(model, "
                 "cfg.selection, interests, item_emb[target].detach())")) if bad]
            if not why:
                jac = torch.as_tensor(c["jac"])                                  # (B, N, N): d probs_n / d logits_m
                return torch.as_tensor(c["index"]), replayed(torch.as_tensor(c["probs"]).to(logits.dtype), lambda g: (
                    torch.einsum("bn,bnm->bm", g, jac.to(g.dtype)),), logits)
        raise StandInError(f"select_interest (the grader's stand-in, which replays the reference's outputs) was "
                           f"called with {why[0]}")
    return stand_in


def replay_softmax_loss(calls):
    """softmax_loss for bam_loss's part, row by row: each row (pos, neg[..., :], beta) that the reference's
    bam_loss scored gets its recorded loss and the recorded d loss / d pos and d loss / d neg. Any
    shape of the call works ((B, 1) or (B,), one call or one per interest), as long as its rows are
    rows the reference scored."""
    import torch
    calls = list(calls.values())

    def stand_in(pos, neg, beta=0.0):
        if tuple(neg.shape[:-1]) != tuple(pos.shape):
            raise StandInError(f"softmax_loss (the grader's stand-in) got pos {tuple(pos.shape)} and neg "
                               f"{tuple(neg.shape)}: neg must be pos.shape + (S,)")
        p = tensor_out(pos).reshape(-1).astype(np.float64)                     # (R,)
        n = tensor_out(neg).reshape(len(p), -1).astype(np.float64)             # (R, S)
        found = np.full(len(p), -1)
        which = np.zeros(len(p), np.int64)
        for ci, c in enumerate(calls):
            if c["neg"].shape[1] != n.shape[1] or not close(float(beta), c["beta"]):
                continue
            same = np.isclose(p[:, None], c["pos"][None], equal_nan=True, **MATCH) & \
                np.isclose(n[:, None], c["neg"][None], equal_nan=True, **MATCH).all(-1)   # (R, R_c)
            hit = (found < 0) & same.any(1)
            found[hit], which[hit] = same[hit].argmax(1), ci
        if (found < 0).any():
            r = int(np.argmax(found < 0))
            betas = sorted({float(c["beta"]) for c in calls})
            raise StandInError(f"softmax_loss (the grader's stand-in, which replays the reference's outputs) got a "
                               f"row the reference's bam_loss never scores (row {r}: pos {p[r]:.6g}, {n.shape[1]} "
                               f"negatives, beta={float(beta):g}; the reference used beta {betas}): check the "
                               "scores from item_scores and the beta you pass (cfg.remi_beta)")

        def pick(key, shape):
            rows = np.stack([calls[ci][key][j] for ci, j in zip(which, found)])
            return torch.as_tensor(rows.reshape(shape)).to(pos.dtype)
        d_pos, d_neg = pick("d_pos", pos.shape), pick("d_neg", neg.shape)
        return replayed(pick("loss", pos.shape), lambda g: (g * d_pos, g[..., None] * d_neg), pos, neg)
    return stand_in


STAND_INS = dict(select_interest=replay_select_interest, softmax_loss=replay_softmax_loss)

# -----------------------------------------------------------------------------
# Running one part on the student's file


def describe(e, path):
    """One line: the error, and the line of the student's file where it happened."""
    if isinstance(e, NotImplementedError):
        return f"not implemented yet (NotImplementedError: {e})"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) == path]
    where = f" (line {frames[-1].lineno} of your file: {frames[-1].line})" if frames else ""
    if isinstance(e, SyntaxError):
        where = f" (line {e.lineno} of {os.path.basename(e.filename or path)})"
    text = str(e).splitlines()[0][:300] if str(e) else ""
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in REPOSITORY:
        text += " (your file runs alone while it is graded: the reference and the kit are not importable)"
    return f"{type(e).__name__}: {text}{where}"


def plain(name, value):
    """A returned value as a numeric array that .npz stores without pickle, or a TypeError."""
    a = np.asarray(value)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: got {type(value).__name__}, expected numbers (a tensor, an array or a float)")
    return a


def outsider(mod, targets, path):
    """The first graded name whose code was not written in the student's file, or None."""
    for target in targets:
        obj = mod
        for name in target.split("."):
            obj = getattr(obj, name, None)
        if obj is None:
            continue  # missing: calling it says so
        code = getattr(getattr(obj, "__func__", obj), "__code__", None)
        if code is None or os.path.realpath(code.co_filename) != os.path.realpath(path):
            return target
    return None


def fatal(out_path, text):
    np.savez(out_path, **{"#fatal": np.asarray(text)})


def run(key, path, cases_path, out_path, targets):
    path = os.path.abspath(path)
    leaked = [n for n in REPOSITORY if importlib.util.find_spec(n) is not None]
    if leaked:  # the grader checks the paths it passes; this is the second check, before the student's code runs
        return fatal(out_path, f"grader error: {leaked[0]} is importable in the student's process")
    spec = importlib.util.spec_from_file_location("student_under_grading", path)
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: the file's own code runs here
        return fatal(out_path, f"importing your file failed: {describe(e, path)}")
    foreign = outsider(mod, [t for t in targets.split(",") if t], path)
    if foreign:
        return fatal(out_path, f"{foreign} is defined outside your file (imported or borrowed?); it scores 0 "
                               "(fix: write it in your file)")
    flat = {}
    for i, args in enumerate(subtree(g, "args") for g in read_cases(cases_path)):
        try:
            flat.update({f"{i}/{name}": plain(name, value) for name, value in CALLS[key](mod, args).items()})
        except BaseException as e:
            flat[f"{i}/#error"] = np.asarray(describe(e, path))
    np.savez(out_path, **flat)


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # the folder holds what the grader put there, no __pycache__
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))  # hard too: the student cannot raise it
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it (writes fail); killed says why more plainly
    run(*sys.argv[1:5], sys.argv[6])
