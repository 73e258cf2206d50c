"""
bam_runs/records.py: the two records of a run folder that hold tensors, on the base of bam_evidence.records (which
defines the third, the result in metrics.json): a checkpoint (checkpoint.pt) and the resume state (last.pt). Each is
defined once, here, with its version; the run folder fills each once (bam_runs.run_folder: save_best, save_state)
and reads each back through it, so that a field renamed in a writer fails in that writer (RecordError), and a file
with a field renamed, missing or mistyped is one line naming the file and the field.

    from bam_runs import records, run_folder
    state = records.State.from_dict(run_folder.load("runs/x/last.pt"), "runs/x/last.pt")   # -> State, checked
    state.state.it, state.processes[0].gen, state.config["seed"]

A file of an older bam (no `schema`) is read as before (bam_evidence.records, "legacy"): released checkpoints and
bam_minimal.py's own standalone run (which writes the reference's dict, `format: "bam-1"`, and no schema) load.
"""
from dataclasses import dataclass, field
from typing import ClassVar

import torch

import bam_minimal as bm
from bam_evidence.records import Record

Weights = dict[str, torch.Tensor]  # a state_dict: tensors only (loaded with weights_only=True)

# -----------------------------------------------------------------------------
# checkpoint.pt: the best model


@dataclass
class Checkpoint(Record):
    """checkpoint.pt: bam_minimal.checkpoint's dict (the model and what rebuilding and evaluating it needs), with the
    checksum of its weights and the data's fingerprint (bam_runs.run_folder.RunFolder.save_best)."""
    SCHEMA: ClassVar[str] = "bam-checkpoint"
    VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "checkpoint.pt"
    LEGACY: ClassVar[tuple] = ("format", "config", "n_items", "model")  # what bam read back before the schema
    FIX: ClassVar[str] = "pass checkpoint.pt from a run; for a run's own file, rerun with --fresh"
    ERROR: ClassVar[type] = bm.InputError
    FORMAT: ClassVar[str] = "bam-1"  # bam_minimal.checkpoint's `format`: how a legacy file is told from a state_dict
    # from bam_minimal.checkpoint
    format: str
    config: dict                    # bam_minimal.Config as a dict (bam_runs.checkpoints.typed_config checks it)
    n_items: int
    iter: int                       # the iteration it was saved at
    data: str                       # the data's name (its path): evaluate's default --data
    model: Weights
    # from the run folder
    checksum: str | None            # bam_runs.run_folder.checksum of the weights; None from bam_minimal.py alone
    fingerprint: str | None         # the data's (bam_runs.run_folder.fingerprint); None from bam_minimal.py alone

    @classmethod
    def ours(cls, obj):
        """Whether a loaded file is a checkpoint of bam (this record, or the reference's dict of an older bam)
        rather than a bare state_dict."""
        return isinstance(obj, dict) and ("schema" in obj or obj.get("format") == cls.FORMAT)

# -----------------------------------------------------------------------------
# last.pt: everything a run resumes from


@dataclass
class Generators:
    """One process's random generators (a run under torchrun keeps every process's)."""
    LEGACY: ClassVar[tuple] = ("rng", "gen", "torch_rng")   # an older bam read cuda_rng with .get
    rng: dict                       # numpy's bit generator state: batches, validation users
    gen: torch.Tensor               # torch.Generator's state: negatives, BaM's draws, routing
    torch_rng: torch.Tensor         # torch's global generator: no bam draw uses it; kept for code that does
    cuda_rng: torch.Tensor | None   # CUDA's, where there is a GPU


@dataclass
class State(Record):
    """last.pt: the weights, Adam, every process's generators and the loop's bam_minimal.TrainState, with what the
    run is (config, data, device, threads, code), so that a resumed run goes on exactly where it stopped."""
    SCHEMA: ClassVar[str] = "bam-state"
    VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "last.pt"
    LEGACY: ClassVar[tuple] = ("model", "optimizer", "processes", "state", "config")  # as bam asserted before
    FIX: ClassVar[str] = "rerun with --fresh"
    ERROR: ClassVar[type] = bm.InputError
    model: Weights
    checksum: str | None            # None in a file of an older bam: not verified
    optimizer: dict                 # Adam's state_dict
    processes: list[Generators]     # one per process, in rank order
    state: bm.TrainState            # saved by field name: a field it lacks or adds is refused
    config: dict                    # bam_minimal.Config as a dict
    data: str | None                # the data's fingerprint
    device: str = "cpu"             # the generators differ between devices (an older bam's ran on the CPU)
    threads: int | None = None      # torch threads (`table`, `tune`; None from `train`): numbers depend on it
    code: list[dict] = field(default_factory=list)  # every code version that trained it, oldest first
