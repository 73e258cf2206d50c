"""
Loading checkpoints: ours (a dict that carries its config), and the official code's bare
state_dicts (`torch.save(model.state_dict())`), whose architecture is read from the tensor shapes.
A MIND state_dict does not tell its number of interests or its window: they come from flags
(`--n-interests`, `--seq-len`), and the loader says which values it assumed. The official model.pt
files also hold the sampled-softmax module's buffers (OFFICIAL_BUFFERS): they are recognised by name
and shape, left out, and named in a note. Loading never runs code from the file (run_folder.load), our own
checkpoints carry a checksum of their weights, and weights that are not all finite are refused.
Wherever a model meets data, check_data compares the checkpoint's data fingerprint with that data:
other data stops with one line, unless --other-data says it is meant.

    from bam_runs import checkpoints
    model, cfg, n_items, info = checkpoints.load("runs/x/checkpoint.pt")
    model, cfg, data, data_check = checkpoints.load_with_data("runs/x/checkpoint.pt", None, read_data, base)
"""
import os
import warnings
from dataclasses import fields, replace

import torch

import bam_minimal as bm
from bam_data.formats import printable
import bam_protocols  # noqa: F401  registers the protocols, so that a checkpoint of any of them loads
from bam_runs import run_folder
from bam_runs.records import Checkpoint

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
    return run_folder.load(path)


def drop_official_buffers(sd):
    """-> (the state_dict without the official sampler's buffers, a note naming them or None)."""
    n_rows = sd["embeddings.weight"].shape[0] if "embeddings.weight" in sd and sd["embeddings.weight"].dim() else None
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
    for name, dims in (("position_embedding", 3), ("linear2.weight", 2), ("l1.weight", 2)):
        if name in sd and sd[name].dim() != dims:  # their shapes are read below
            raise bm.InputError(f"{path}: `{name}` has {sd[name].dim()} dimensions, not {dims} (fix: pass a BaM, "
                                "ComiRec or MIND model)")
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
    if Checkpoint.ours(obj):
        record = Checkpoint.from_dict(obj, path)  # a checkpoint of an older bam, or of bam_minimal.py alone, too
        sd, n_items = record.model, record.n_items
        try:
            cfg = typed_config(record.config)
        except (TypeError, ValueError) as e:
            raise bm.InputError(f"{path}: a bam checkpoint whose config has {printable(str(e))[:60]} "
                                "(fix: pass checkpoint.pt from a run)") from None
        try:
            bm.check_config(bm.Config(**{**vars(cfg), "device": "auto"}))
        except bm.InputError as e:  # the file's config: say which file, and echo none of its control codes
            raise bm.InputError(f"{path}: {printable(str(e))}") from None
        run_folder.verify(path, sd, record.checksum)
        info = dict(kind="bam", data=record.data, fingerprint=record.fingerprint, notes=[])
        if record.checksum is None:
            info["notes"].append("this checkpoint has no checksum (bam_minimal.py's standalone run, or an older "
                                 "bam): its bytes are not verified")
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, note = drop_official_buffers(obj)
        cfg, n_items, notes = config_from_state_dict(path, sd, base)
        try:  # sizes of 0 read from the shapes
            bm.check_config(cfg)
        except bm.InputError as e:
            raise bm.InputError(f"{path}: {printable(str(e))}") from None
        info = dict(kind="state_dict", data=None, fingerprint=None, notes=([note] if note else []) + notes)
    else:
        raise bm.InputError(f"{path}: not a model checkpoint (fix: pass checkpoint.pt from a run, or an "
                            "official model.pt state_dict)")
    if expect_model and expect_model != cfg.model:
        raise bm.InputError(f"{path}: holds a {cfg.model} model, not {expect_model} (fix: drop --model, "
                            "or pass the right checkpoint)")
    check_finite(path, sd)
    fit(path, cfg, n_items, sd, on_meta=True)  # the sizes come from the file: check them before allocating
    return fit(path, cfg, n_items, sd).to(device).eval(), cfg, n_items, info


def fit(path, cfg, n_items, sd, on_meta=False):
    """The model of `cfg` with the weights `sd`, strictly: the same names and shapes, floating point where
    the model is. `on_meta`: on torch's meta device, which allocates nothing, so that an item count or a
    --dim from a crafted file is refused before a table of terabytes is asked for."""
    try:
        with torch.device("meta" if on_meta else "cpu"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # copying into a meta tensor is a no-op, and torch says so
            model = bm.build_model(cfg, n_items)
            model.load_state_dict(sd, strict=True)
    except (RuntimeError, TypeError, OverflowError, IndexError, ValueError) as e:  # Index: an item count below 0
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise bm.InputError(f"{path}: the weights do not fit a {cfg.model} model with {n_items} items: {first[:160]} "
                            "(fix: pass --n-interests and --seq-len to match it)") from None
    kinds = [k for k, v in model.state_dict().items() if v.is_floating_point() and not sd[k].is_floating_point()]
    if kinds:
        raise bm.InputError(f"{path}: {kinds[0]} holds {sd[kinds[0]].dtype} numbers, not floating point "
                            "(fix: pass checkpoint.pt from a run or an official model.pt)")
    return model


def official_base(n_interests, seq_len):
    if min(n_interests, seq_len) < 1:
        raise bm.InputError(f"--n-interests {n_interests}, --seq-len {seq_len}: must be 1 or more")
    return replace(bm.Config(), n_interests=n_interests, seq_len=seq_len)


def load_with_data(path, data_path, read_data, base, expect_model=None, log=print, other_data=False):
    """A checkpoint and the data to evaluate it on (by default the data it was trained on), read by
    `read_data(path) -> bm.Dataset`, checked to be that data (check_data). Says what it assumed.
    -> (model, cfg, dataset, what check_data found: {data_check, other_data}, for the JSON output)."""
    model, cfg, n_items, info = load(path, base, expect_model=expect_model)
    for note in info["notes"]:
        log(f"note: {note}")
    data_path = data_path or info.get("data")
    if not data_path:
        raise bm.InputError(f"{path}: an official state_dict does not say its data (fix: pass --data)")
    dataset = read_data(data_path)
    check_items(path, n_items, dataset)
    return model, cfg, dataset, check_data(path, info, dataset, other_data, log)


def check_data(path, info, data, other_data=False, log=print):
    """The one check that a checkpoint meets the data it was trained on, called by every command that
    puts a model to data (evaluate with either engine, export --data, balance, crosscheck). Other data
    stops with one line naming both, unless `other_data` (--other-data) says it is meant: then a note.
    By the checkpoint's fingerprint (run_folder.fingerprint_version):
      v2       compared exactly
      none     an official state_dict or bam_minimal.py's standalone run: a note that it cannot be checked
      v1       bam before issue 14: equal to this data's old hash, a note that it is probably, not
               certainly, its data (refusing would leave the checkpoint unusable); unequal, other data
               for certain
      unknown  refused like other data, saying why
    -> {data_check: "same" | "unchecked" | "same-v1" | "other", other_data: the flag as given}, for the JSON."""
    saved, version = info.get("fingerprint"), run_folder.fingerprint_version(info.get("fingerprint"))
    report = dict(data_check="same", other_data=bool(other_data))
    if version is None:
        log(f"note: {path} has no data fingerprint (an official state_dict, or bam_minimal.py's standalone run): "
            f"whether {data.name} is the data it was trained on cannot be checked")
        return dict(report, data_check="unchecked")
    if version == "v1" and saved == run_folder.fingerprint_v1(data):
        log(f"note: {path} {run_folder.fingerprint_problem(saved)}: it matches {data.name}, so this is probably, not "
            "certainly, the data it was trained on (a run of this bam records a one-to-one fingerprint)")
        return dict(report, data_check="same-v1")
    if saved == run_folder.fingerprint(data):
        return report
    mine = run_folder.fingerprint_v1(data) if version == "v1" else run_folder.fingerprint(data)  # like for like
    trained = info.get("data") if isinstance(info.get("data"), str) else "data it does not name"
    other = "has changed since" if trained == str(data.name) else "is other data"
    why = (f"{run_folder.fingerprint_problem(saved)}, so {data.name} cannot be checked" if version == "unknown" else
           f"was trained on {trained} (fingerprint {str(saved)[:15]}), and {data.name} {other} "
           f"(fingerprint {mine[:15]})")
    if not other_data:
        raise bm.InputError(f"{path}: {why} (fix: pass the --data it was trained on, or --other-data to use "
                            "this data on purpose)")
    log(f"note: --other-data: {path} {why}; used on purpose")
    return dict(report, data_check="other")


def check_items(path, n_items, data):
    """A checkpoint's item table must fit the data it is evaluated on."""
    if n_items != data.n_items:
        raise bm.InputError(f"{path}: the checkpoint has {n_items} items but {data.name} has {data.n_items} "
                            "(fix: pass the --data the model was trained on)")
