"""
bam_runs/distributed.py: running under torchrun. bam_minimal.py does the data-parallel part itself
(a batch stream per process, gradients averaged over processes, users split across processes for
evaluation); this module joins the process group that torchrun describes, and tells the rest of
cli.py which process it is, so that only process 0 writes files and prints.

    torchrun --standalone --nproc_per_node=2 cli.py train            # 2 processes on this machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_endpoint=host:29500 cli.py train ...

Across machines, the run folder (--out) must be on a file system that they all share: every process
reads last.pt to resume, and a run whose processes see different states is refused. Decisions that
must be the same everywhere (the run folder's lock) are taken by process 0 and broadcast, and
cli.py ends each worker with its own exit code (run_and_leave).

The backend is gloo on the CPU and nccl on CUDA. With one process (plain `python cli.py`, or torchrun
with --nproc_per_node=1) nothing is joined, and every number is the same as without torchrun.

Why bam_minimal.train_step averages the gradients itself (four lines) rather than wrapping the model
in DistributedDataParallel: the wrapper treats a parameter that gets no gradient as an error, and
MIND's unused `relu` (kept for the official checkpoints) and BaM_l's maps (no gradient, as in the
official code) are such parameters; the wrapper's way out, find_unused_parameters=True, walks the
autograd graph on every step. What it computes is the same: the mean of every process's gradients.
"""
import atexit
import datetime
import os
import sys

import torch
import torch.distributed as dist

# -----------------------------------------------------------------------------
# The process group


def join(device="auto"):
    """Join torchrun's process group when there is more than one process. -> (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        if cuda:  # one GPU per process on each machine
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return rank(), size()


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def size():
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main():
    """Process 0, the one that writes files and prints; the only process without torchrun."""
    return rank() == 0


def barrier():
    if dist.is_initialized():
        dist.barrier()


def gather(obj):
    """Every process's `obj`, in rank order (a list of one without torchrun)."""
    if not dist.is_initialized():
        return [obj]
    objs = [None] * size()
    dist.all_gather_object(objs, obj)
    return objs


def broadcast(obj):
    """Process 0's `obj`, in every process (`obj` itself without torchrun): one decision for all."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def leave():
    if dist.is_initialized():
        dist.destroy_process_group()


def run_and_leave(entry):
    """Run `entry` (cli.py's click group), leave the process group, and under torchrun end the process
    at once with its exit code. torchrun looks at its workers every 0.1 s and stops the others as soon
    as one has exited, while the interpreter's teardown after torch takes from a few to about a hundred
    ms: a worker whose refusal every process shares (a busy --out) was often reported killed by SIGTERM
    (-15) instead of with its own exit code 2. So the teardown is skipped, after the atexit handlers
    and a flush (every file bam writes is closed by then)."""
    try:
        entry()
    except SystemExit as e:  # click ends every command so, with 0 too
        if not dist.is_initialized():
            raise
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)  # as the interpreter would
        leave()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(e.code if isinstance(e.code, int) else int(e.code is not None))
    finally:
        leave()
