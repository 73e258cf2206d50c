"""
bam_course/harness.py: the only code of the kit that runs in the student's process. Standalone
(stdlib, numpy, and torch for the PyTorch parts): the grader copies it into a fresh, empty temporary
folder beside a copy of the student's file and runs

    python -I -S harness.py PART STUDENT.py CASES.npz OUT.npz SITE_PATHS TARGETS

there, with a scrubbed environment. `-I -S` keep the repository, the current folder, PYTHONPATH and
every .pth file off sys.path; SITE_PATHS adds only the folders that hold numpy and torch, which the
grader has checked hold none of the repository's modules. So neither the reference (bam_minimal,
bam_numpy) nor the grader (bam_course) is imported, patched in or importable here: the student's code
meets its inputs as arrays, and nothing else of the kit.

The harness holds no graded algorithm. Each part's `call_*` builds the inputs, calls the student's
function and returns its outputs as arrays; the grader runs the same `call_*` on the reference, in
its own process, for the expected outputs. Where a part calls another part (bam_loss calls
select_interest and softmax_loss), the other part is a stand-in that replays the outputs the
reference computed on these inputs in the grader (`replay` in the case), with their recorded
derivatives for autograd; called with other inputs, the stand-in raises and says which argument
differs. The expected outputs never enter this process.
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
# Flat .npz storage: {"a": {"b": x}} <-> {"a/b": x}; numbers and strings as 0-d arrays (common.py uses it)


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


def scalar(a):
    """A 0-d array back to the Python number or string it was; other arrays as they are."""
    if a.ndim:
        return a
    return str(a) if a.dtype.kind == "U" else a.item()


def unflatten(flat):
    tree = {}
    for key, v in flat.items():
        *path, last = key.split("/")
        node = tree
        for p in path:
            node = node.setdefault(p, {})
        node[last] = scalar(v)
    return tree


def read_args(path):
    """The cases file -> the arguments of each case, in order (np.load with allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    groups = {}
    for key, v in flat.items():
        i, rest = key.split("/", 1)
        if rest.startswith("args/"):
            groups.setdefault(int(i), {})[rest[5:]] = v
    return [unflatten(groups.get(i, {})) for i in range(1 + max(int(k.split("/")[0]) for k in flat))]


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


def embeddings_only(weights):
    """What bam_loss reads of the model: `embeddings` (row 0 is padding), nothing of the encoder."""
    import torch
    model = torch.nn.Module()
    model.embeddings = torch.nn.Embedding.from_pretrained(torch.as_tensor(weights), freeze=False, padding_idx=0)
    return model


def call_bam_loss(mod, args):
    import torch
    cfg = mod.Config(model="comirec", device="cpu", **args["cfg"])
    model = embeddings_only(args["embeddings"])
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
    weight = model.embeddings.weight

    def zero(x, g):  # no gradient reached it: 0
        return tensor_out(g if g is not None else torch.zeros_like(x))
    return {"loss": tensor_out(loss), "grad/interests": zero(interests, interests.grad),
            "grad/embeddings": zero(weight, weight.grad), "grad/attention": zero(attention, attention.grad)}


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


def replay_select_interest(calls):
    """select_interest for bam_loss's part: the recorded (index, probs) of the call with these inputs;
    probs carry the recorded Jacobian d probs / d logits, so a gradient through them is the reference's."""
    import torch

    class Probs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits, probs, jac):
            ctx.save_for_backward(jac)
            return probs.clone()

        @staticmethod
        def backward(ctx, g):
            (jac,) = ctx.saved_tensors                                         # (B, N, N): d probs_n / d logits_m
            return torch.einsum("bn,bnm->bm", g, jac.to(g.dtype)), None, None

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
                return (torch.as_tensor(c["index"]),
                        Probs.apply(logits, torch.as_tensor(c["probs"]).to(logits.dtype), torch.as_tensor(c["jac"])))
        raise StandInError(f"select_interest (the grader's stand-in, which replays the reference's outputs) was "
                           f"called with {why[0]}")
    return stand_in


def replay_softmax_loss(calls):
    """softmax_loss for bam_loss's part, row by row: each row (pos, neg[..., :], beta) that the reference's
    bam_loss scored gets its recorded loss and the recorded d loss / d pos and d loss / d neg. Any
    shape of the call works ((B, 1) or (B,), one call or one per interest), as long as its rows are
    rows the reference scored."""
    import torch

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, pos, neg, loss, d_pos, d_neg):
            ctx.save_for_backward(d_pos, d_neg)
            return loss.clone()

        @staticmethod
        def backward(ctx, g):
            d_pos, d_neg = ctx.saved_tensors
            return g * d_pos, g[..., None] * d_neg, None, None, None

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
        return Loss.apply(pos, neg, pick("loss", pos.shape), pick("d_pos", pos.shape), pick("d_neg", neg.shape))
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
    try:
        mod = load_student(path)
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: the file's own code runs here
        return fatal(out_path, f"importing your file failed: {describe(e, path)}")
    foreign = outsider(mod, [t for t in targets.split(",") if t], path)
    if foreign:
        return fatal(out_path, f"{foreign} is defined outside your file (imported or borrowed?); it scores 0 "
                               "(fix: write it in your file)")
    flat = {}
    for i, args in enumerate(read_args(cases_path)):
        try:
            for name, value in CALLS[key](mod, args).items():
                flat[f"{i}/{name}"] = plain(name, value)
        except BaseException as e:
            flat = {k: v for k, v in flat.items() if not k.startswith(f"{i}/")}
            flat[f"{i}/#error"] = np.asarray(describe(e, path))
    np.savez(out_path, **flat)


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # the folder holds what the grader put there, no __pycache__
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))  # hard too: the student cannot raise it
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it (writes fail); killed says why more plainly
    run(*sys.argv[1:5], sys.argv[6])
