"""
bam_crosscheck/numpy_engine.py: a torch model handed to the NumPy twin (bam_numpy): its weights as the twin's
arrays (`export`, the .npz that bam_numpy loads), and `evaluate --engine numpy`, the production path that ranks
a checkpoint with the twin's numba engine. The cross-check (agreement.py) and the golden vectors
(golden_vectors.py) build on it. This file imports torch; bam_numpy never does.

    python cli.py export --checkpoint runs/x/checkpoint.pt --out weights.npz
    python cli.py evaluate --checkpoint X --engine numpy

    from bam_crosscheck import numpy_engine
    metrics, ranks, tops = numpy_engine.evaluate_numpy(model, cfg, data, "test", k_top=20)

Errors: bad input raises bam_minimal.InputError, or bam_data.InputError (bam_numpy's) when it comes from the
twin; the command line (bam_cli/options.py, Group) turns both into one line and exit code 2.
"""
from dataclasses import asdict, replace

import numpy as np
import torch

import bam_minimal as bm
import bam_numpy as bn
from bam_numpy import weights as bw
import bam_protocols
from bam_runs import checkpoints


# -----------------------------------------------------------------------------
# Weights: torch model <-> {official name: numpy array}.


def export_arrays(model):
    """Every parameter (and buffer) of the state_dict, under its official name, as a numpy array."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def numpy_config(cfg):
    return bn.Config(**asdict(cfg))


def import_arrays(params, cfg, n_items):
    """The torch model of numpy weights (for round trips, and to evaluate a bam_numpy run in torch)."""
    model = bm.build_model(replace(bm.Config(**asdict(cfg)), device="cpu"), n_items)
    dtype = torch.float64 if next(iter(params.values())).dtype == np.float64 else torch.float32
    model.to(dtype).load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in params.items()}, strict=True)
    return model.eval()


def check_twinned(cfg, path="the model"):
    if cfg.model not in ("comirec", "mind"):
        raise bm.InputError(f"{path}: a {cfg.model} model; bam_numpy twins comirec and mind only "
                            "(fix: cross-check a ComiRec-SA or MIND checkpoint)")


def export(checkpoint, out, base=None, log=print, data=None, other_data=False):
    """checkpoint.pt (ours or an official state_dict) -> weights.npz that bam_numpy loads. The file
    keeps the name and fingerprint of the checkpoint's data (`__data__`, `__data_fingerprint__`; empty
    when it has none), which bam_numpy.load_weights leaves aside like its other `__` entries. With
    `data` (a bm.Dataset the weights are meant for), the checkpoint is checked against it first
    (checkpoints.check_data; `other_data` is --other-data)."""
    model, cfg, n_items, info = checkpoints.load(checkpoint, base)
    for note in info["notes"]:
        log(f"note: {note}")
    check_twinned(cfg, checkpoint)
    if data is not None:
        checkpoints.check_items(checkpoint, n_items, data)
        checkpoints.check_data(checkpoint, info, data, other_data, log)
    provenance = {"__data__": np.array(str(info.get("data") or "")),
                  "__data_fingerprint__": np.array(str(info.get("fingerprint") or ""))}
    bw.save_weights(out, {**export_arrays(model), **provenance}, numpy_config(cfg), n_items)
    return out

# -----------------------------------------------------------------------------
# MIND's evaluation noise, exactly as bam_minimal.evaluate draws it.


def eval_noise(cfg, data, split="test", rows=None):
    """The (U, N, L) routing logits that bam_minimal.evaluate gives MIND for these rows (counter-based,
    keyed by (seed, row), whatever the block size). bam_numpy.evaluate draws the same ones itself."""
    return bm.routing_noise(cfg, np.arange(len(data.users)) if rows is None else np.asarray(rows))


def evaluate_numpy(model, cfg, data, split, rows=None, k_top=0):
    """The protocol's evaluate's numbers, computed by its twin (bam_numpy's engine) on the model's weights."""
    check_twinned(cfg)
    protocol = bam_protocols.get(cfg.protocol)
    if protocol.twin is None:
        raise bm.InputError(f"--engine numpy: protocol {cfg.protocol} has no twin in bam_numpy (fix: --engine torch)")
    return protocol.twin(export_arrays(model), data, split, numpy_config(cfg), rows=rows, k_top=k_top)
