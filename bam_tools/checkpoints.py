"""
Loading checkpoints: ours (a dict that carries its config), and the official code's bare
state_dicts (`torch.save(model.state_dict())`), whose architecture is read from the tensor shapes.
A MIND state_dict does not tell its number of interests or its window: they come from flags
(`--n-interests`, `--seq-len`), and the loader says which values it assumed. The official model.pt
files also hold the sampled-softmax module's buffers (OFFICIAL_BUFFERS): they are recognised by name
and shape, left out, and named in a note. Loading never runs code from the file (runs.load), our own
checkpoints carry a checksum of their weights, and weights that are not all finite are refused.

    from bam_tools import checkpoints
    model, cfg, n_items, info = checkpoints.load("runs/x/checkpoint.pt")
"""
import os
from dataclasses import fields, replace

import torch

import bam_minimal as bm
import bam_tools.sasrec  # noqa: F401  (adds SASRec to bam_minimal.MODELS, for our SASRec checkpoints)
from bam_tools import runs

# Non-parameter buffers that the official classes register and save with the weights: the sampled
# softmax's log noise distribution (snudatalab/BaM, src/SSLoss.py) and the alias table of its sampler
# (jlunits2/BaM), each of shape (I + 1,). They hold no learned state (all uniform), so they are left out.
OFFICIAL_BUFFERS = ("sample_loss.logprob_noise", "sample_loss.alias.prob", "sample_loss.alias.alias")

# -----------------------------------------------------------------------------
# Reading and recognising


def read(path):
    """The checkpoint's contents; a run folder stands for its checkpoint.pt."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "checkpoint.pt")):
        path = os.path.join(path, "checkpoint.pt")
    return runs.load(path)


def drop_official_buffers(sd):
    """-> (the state_dict without the official sampler's buffers, a note naming them or None)."""
    n_rows = sd["embeddings.weight"].shape[0] if "embeddings.weight" in sd else None
    found = [k for k in OFFICIAL_BUFFERS if k in sd and tuple(sd[k].shape) == (n_rows,)]
    if not found:
        return sd, None
    note = f"ignored the official sampler's buffers {', '.join(found)} (no learned weights)"
    return {k: v for k, v in sd.items() if k not in found}, note


def typed_config(saved):
    """A Config from a checkpoint's dict, each value of its field's type (an int may stand for a float),
    so that a crafted file gets one line, not a traceback from deep inside torch."""
    defaults = {f.name: f.default for f in fields(bm.Config)}
    values = {k: v for k, v in saved.items() if k in defaults}
    for k, v in values.items():
        kind = type(defaults[k])
        if not (type(v) is kind or (kind is float and type(v) is int)):
            raise TypeError(f"{k}={v!r}")
    return bm.Config(**values)


def check_finite(path, sd):
    """Weights with a NaN or an infinity would give meaningless ranks: refuse them before evaluating."""
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise bm.InputError(f"{path}: the weights are not all finite (NaN or inf in {', '.join(bad[:3])}): the "
                            "training diverged (fix: retrain with a lower --lr)")


def config_from_state_dict(path, sd, base):
    """The architecture of an official state_dict, from its tensor names and shapes.
    Returns (cfg, n_items, notes)."""
    if "embeddings.weight" not in sd:
        raise bm.InputError(f"{path}: no `embeddings.weight` (fix: pass a BaM, ComiRec or MIND model)")
    if sd["embeddings.weight"].dim() != 2:
        raise bm.InputError(f"{path}: `embeddings.weight` is not a matrix (fix: pass a BaM, ComiRec or MIND model)")
    n_items, dim = sd["embeddings.weight"].shape
    cfg, notes = replace(base, dim=int(dim)), []
    if "capsule_network.linear.weight" in sd:
        cfg = replace(cfg, model="mind")
        notes.append(f"an official MIND state_dict does not record N or L: assuming --n-interests "
                     f"{cfg.n_interests} and --seq-len {cfg.seq_len}")
    elif "position_embedding" in sd and "linear2.weight" in sd:
        cfg = replace(cfg, model="comirec", seq_len=int(sd["position_embedding"].shape[1]),
                      n_interests=int(sd["linear2.weight"].shape[0]))
    else:
        raise bm.InputError(f"{path}: neither ComiRec-SA nor MIND (no `linear2.weight` or "
                            "`capsule_network.linear.weight`) (fix: pass an official model.pt)")
    if "l1.weight" in sd:
        cfg = replace(cfg, selection="bam-l", linear_size=int(sd["l1.weight"].shape[0]))
    elif cfg.selection == "bam-l":
        cfg = replace(cfg, selection="bam")
    return cfg, int(n_items) - 1, notes

# -----------------------------------------------------------------------------
# Loading


def load(path, base=None, device="cpu", expect_model=None):
    """-> (model, cfg, n_items, info). `base` supplies what a bare state_dict cannot tell;
    `expect_model` (a --model flag) must agree with what the checkpoint holds."""
    obj = read(path)
    base = base or bm.Config()
    if isinstance(obj, dict) and obj.get("format") == "bam-1":
        try:
            cfg = typed_config(obj["config"])
            sd, n_items = obj["model"], int(obj["n_items"])
            assert runs.tensors_only(sd)
        except (KeyError, TypeError, AttributeError, ValueError, AssertionError):
            raise bm.InputError(f"{path}: a bam checkpoint without its config, weights or item count "
                                "(fix: pass checkpoint.pt from a run)") from None
        bm.check_config(bm.Config(**{**vars(cfg), "device": "auto"}))
        runs.verify(path, sd, obj.get("checksum"))
        info = dict(kind="bam", data=obj.get("data"), fingerprint=obj.get("fingerprint"), notes=[])
        if obj.get("checksum") is None:
            info["notes"].append("this checkpoint has no checksum (bam_minimal.py's standalone run, or an older "
                                 "bam): its bytes are not verified")
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, note = drop_official_buffers(obj)
        cfg, n_items, notes = config_from_state_dict(path, sd, base)
        info = dict(kind="state_dict", data=None, fingerprint=None, notes=([note] if note else []) + notes)
    else:
        raise bm.InputError(f"{path}: not a model checkpoint (fix: pass checkpoint.pt from a run, or an "
                            "official model.pt state_dict)")
    if expect_model and expect_model != cfg.model:
        raise bm.InputError(f"{path}: holds a {cfg.model} model, not {expect_model} (fix: drop --model, "
                            "or pass the right checkpoint)")
    check_finite(path, sd)
    model = bm.build_model(cfg, n_items)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise bm.InputError(f"{path}: the weights do not fit a {cfg.model} model: {first[:160]} "
                            "(fix: pass --n-interests and --seq-len to match it)") from None
    return model.to(device).eval(), cfg, n_items, info


def official_options(f):
    """--n-interests and --seq-len, for official MIND state_dicts (click decorator)."""
    import click
    f = click.option("--seq-len", type=int, default=50, show_default=True, help="official MIND state_dicts: L")(f)
    return click.option("--n-interests", type=int, default=4, show_default=True,
                        help="official MIND state_dicts: N")(f)


def official_base(n_interests, seq_len):
    if min(n_interests, seq_len) < 1:
        raise bm.InputError(f"--n-interests {n_interests}, --seq-len {seq_len}: must be 1 or more")
    return replace(bm.Config(), n_interests=n_interests, seq_len=seq_len)


def load_with_data(path, data_path, read_data, base, expect_model=None, log=print):
    """A checkpoint and the data to evaluate it on (by default the data it was trained on), read by
    `read_data(path) -> bm.Dataset`. Says what it assumed. -> (model, cfg, dataset)."""
    model, cfg, n_items, info = load(path, base, expect_model=expect_model)
    for note in info["notes"]:
        log(f"note: {note}")
    data_path = data_path or info.get("data")
    if not data_path:
        raise bm.InputError(f"{path}: an official state_dict does not say its data (fix: pass --data)")
    dataset = read_data(data_path)
    check_items(path, n_items, dataset)
    return model, cfg, dataset


def check_items(path, n_items, data):
    """A checkpoint's item table must fit the data it is evaluated on."""
    if n_items != data.n_items:
        raise bm.InputError(f"{path}: the checkpoint has {n_items} items but {data.name} has {data.n_items} "
                            "(fix: pass the --data the model was trained on)")
