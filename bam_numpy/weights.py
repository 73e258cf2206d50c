"""
bam_numpy/weights.py: model weights as a .npz file, under the official parameter names, without torch.

`python cli.py export --checkpoint runs/x/checkpoint.pt --out weights.npz` writes one from a torch
checkpoint; `python -m bam_numpy --out=...` writes one too. The file holds one array per parameter, keyed by
bam_minimal's state_dict name (`embeddings.weight`, `position_embedding`, `linear1.0.weight`,
`linear2.weight`, `capsule_network.linear.weight`, ...), plus three metadata entries:
`__format__` ("bam-npz-1"), `__n_items__` (the item count I; the table has I + 1 rows) and
`__config__` (the Config as JSON). Loading needs numpy only (np.load with allow_pickle=False).

    from bam_numpy.weights import load_weights
    params, cfg, n_items = load_weights("weights.npz")
"""
import json
import os
import zipfile
from dataclasses import asdict, fields

import numpy as np

from bam_data.files import atomic_write
from bam_data.formats import printable
from bam_numpy.config import Config, InputError, check_config
from bam_numpy.encoders import param_shapes

FORMAT = "bam-npz-1"


def atomic_savez(path, arrays):
    """np.savez into a temporary file in the same folder, then rename: never half a file; mode 0644."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_weights(path, params, cfg, n_items):
    meta = {"__format__": np.array(FORMAT), "__n_items__": np.array(int(n_items)),
            "__config__": np.array(json.dumps(asdict(cfg)))}
    atomic_savez(path, {**meta, **{k: np.asarray(v) for k, v in params.items()}})


def read_npz(path, what="a .npz file"):
    """{key: array} of an .npz file, or an InputError that names the file and the fix."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file (fix: check the path)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not {what} ({type(e).__name__}) (fix: pass a file written by "
                         "`cli.py export` or `cli.py golden`)") from None


def load_weights(path, dtype=None):
    """-> (params {name: array}, Config, n_items). `dtype` converts every parameter (default: as saved)."""
    z = read_npz(path, "a weights file")
    if str(z.get("__format__", "")) != FORMAT:
        raise InputError(f"{path}: no `__format__ = {FORMAT}` entry, so not a bam_numpy weights file "
                         "(fix: write it with `cli.py export --checkpoint X --out weights.npz`)")
    names = {f.name for f in fields(Config)}
    try:
        cfg = Config(**{k: v for k, v in json.loads(str(z["__config__"])).items() if k in names})
        n_items = int(z["__n_items__"])
    except (ValueError, KeyError, AttributeError, TypeError, OverflowError):  # Overflow: an infinite item count
        raise InputError(f"{path}: a damaged `__config__` or `__n_items__` entry "
                         "(fix: write it with `cli.py export --checkpoint X --out weights.npz`)") from None
    try:
        check_config(cfg)
    except InputError as e:  # the file's config: say which file, and echo none of its control codes
        raise InputError(f"{path}: {printable(str(e))}") from None
    params = {k: v for k, v in z.items() if not k.startswith("__")}
    want = param_shapes(cfg, n_items)
    missing = sorted(set(want) - set(params))
    wrong = [f"{k} {params[k].shape} != {want[k]}" for k in want if k in params and params[k].shape != want[k]]
    wrong += [f"{k} holds {params[k].dtype}, not floats" for k in want if k in params and params[k].dtype.kind != "f"]
    if missing or wrong:
        raise InputError(f"{path}: the weights do not fit a {cfg.model} model: "
                         f"{', '.join(missing + wrong)[:160]} (fix: export the checkpoint again)")
    bad = [k for k, v in params.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise InputError(f"{path}: the weights are not all finite (NaN or inf in {', '.join(bad[:3])}): the "
                         "training diverged (fix: retrain with a lower --lr)")
    if dtype is not None:
        params = {k: v.astype(dtype) for k, v in params.items()}
    return params, cfg, n_items
