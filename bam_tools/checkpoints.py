"""
Loading checkpoints: ours (a dict with the config), and the official code's bare state_dicts, whose
architecture is read from the tensor shapes (MIND's interest count and window come from flags).
"""
import os
from dataclasses import fields, replace

import torch

import bam_minimal as bm


def read(path):
    if not os.path.isfile(path):
        raise bm.InputError(f"{path}: no such checkpoint (fix: check the path; `cli.py train` writes "
                            "runs/<name>/checkpoint.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise bm.InputError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}) "
                            "(fix: pass checkpoint.pt from a run, or an official model.pt)") from None


def config_from_state_dict(sd, base):
    """The architecture of an official state_dict, from its tensor names and shapes."""
    if "embeddings.weight" not in sd:
        raise bm.InputError("the checkpoint has no `embeddings.weight` (fix: pass a BaM, ComiRec or MIND model)")
    n_items, dim = sd["embeddings.weight"].shape
    cfg = replace(base, dim=int(dim))
    if "capsule_network.linear.weight" in sd:
        cfg = replace(cfg, model="mind")
    elif "position_embedding" in sd and "linear2.weight" in sd:
        cfg = replace(cfg, model="comirec", seq_len=int(sd["position_embedding"].shape[1]),
                      n_interests=int(sd["linear2.weight"].shape[0]))
    else:
        raise bm.InputError("the checkpoint is neither ComiRec-SA nor MIND: no `linear2.weight` or "
                            "`capsule_network.linear.weight` (fix: pass an official model.pt)")
    if "l1.weight" in sd:
        cfg = replace(cfg, selection="bam-l", linear_size=int(sd["l1.weight"].shape[0]))
    elif cfg.selection == "bam-l":
        cfg = replace(cfg, selection="bam")
    return cfg, int(n_items) - 1


def load(path, base=None, device="cpu"):
    """-> (model, cfg, n_items, info). `base` supplies what a bare state_dict cannot tell."""
    obj = read(path)
    base = base or bm.Config()
    if isinstance(obj, dict) and obj.get("format") == "bam-1":
        names = {f.name for f in fields(bm.Config)}
        cfg = bm.Config(**{k: v for k, v in obj["config"].items() if k in names})
        sd, n_items, info = obj["model"], obj["n_items"], dict(kind="bam", data=obj.get("data"))
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        cfg, n_items = config_from_state_dict(obj, base)
        sd, info = obj, dict(kind="state_dict", data=None)
    else:
        raise bm.InputError(f"{path}: not a model checkpoint (fix: pass checkpoint.pt from a run, or an "
                            "official model.pt state_dict)")
    model = bm.build_model(cfg, n_items)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise bm.InputError(f"{path}: the weights do not fit a {cfg.model} model: {first[:160]} "
                            "(fix: pass --model, --n-interests and --seq-len to match it)") from None
    return model.to(device).eval(), cfg, n_items, info


def check_items(path, n_items, data):
    if n_items != data.n_items:
        raise bm.InputError(f"{path}: the checkpoint has {n_items} items but {data.name} has {data.n_items} "
                            "(fix: pass the --data the model was trained on)")
