"""
Loading checkpoints: ours (a dict that carries its config), and the official code's bare
state_dicts (`torch.save(model.state_dict())`), whose architecture is read from the tensor shapes.
A MIND state_dict does not tell its number of interests or its window: they come from flags
(`--n-interests`, `--seq-len`), and the loader says which values it assumed.

    from bam_tools import checkpoints
    model, cfg, n_items, info = checkpoints.load("runs/x/checkpoint.pt")
"""
import json
import os
from dataclasses import asdict, fields, replace

import torch

import bam_minimal as bm

# -----------------------------------------------------------------------------
# Reading and recognising


def read(path):
    if not os.path.isfile(path):
        raise bm.InputError(f"{path}: no such checkpoint (fix: check the path; `cli.py train` writes "
                            "runs/<name>/checkpoint.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise bm.InputError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}) "
                            "(fix: pass checkpoint.pt from a run, or an official model.pt)") from None


def config_from_state_dict(path, sd, base):
    """The architecture of an official state_dict, from its tensor names and shapes.
    Returns (cfg, n_items, notes)."""
    if "embeddings.weight" not in sd:
        raise bm.InputError(f"{path}: no `embeddings.weight` (fix: pass a BaM, ComiRec or MIND model)")
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
        names = {f.name for f in fields(bm.Config)}
        cfg = bm.Config(**{k: v for k, v in obj["config"].items() if k in names})
        sd, n_items = obj["model"], obj["n_items"]
        info = dict(kind="bam", data=obj.get("data"), fingerprint=obj.get("fingerprint"), notes=[])
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        cfg, n_items, notes = config_from_state_dict(path, obj, base)
        sd, info = obj, dict(kind="state_dict", data=None, fingerprint=None, notes=notes)
    else:
        raise bm.InputError(f"{path}: not a model checkpoint (fix: pass checkpoint.pt from a run, or an "
                            "official model.pt state_dict)")
    if expect_model and expect_model != cfg.model:
        raise bm.InputError(f"{path}: holds a {cfg.model} model, not {expect_model} (fix: drop --model, "
                            "or pass the right checkpoint)")
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


def finished_run(folder, cfg, data):
    """The results of a run in `folder` that finished with this config on this data, or None.
    A run made with another config or on other data is refused (bam_minimal.check_same_run)."""
    done = os.path.join(folder, "metrics.json")
    if not os.path.exists(done):
        return None
    with open(done) as f:
        result = json.load(f)
    bm.check_same_run(done, result["config"], result["data"].get("fingerprint"), cfg, data)
    return result if result.get("finished") and result["config"] == asdict(cfg) else None


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
