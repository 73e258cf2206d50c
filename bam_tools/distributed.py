"""
bam_tools/distributed.py: running under torchrun. bam_minimal.py does the data-parallel part itself
(a batch stream per process, gradients averaged over processes, users split across processes for
evaluation); this module joins the process group that torchrun describes, and tells the rest of
cli.py which process it is, so that only process 0 writes files and prints.

    torchrun --standalone --nproc_per_node=2 cli.py train            # 2 processes on this machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_endpoint=host:29500 cli.py train ...

Across machines, the run folder (--out) must be on a file system that they all share: every process
reads last.pt to resume, and a run whose processes see different states is refused.

The backend is gloo on the CPU and nccl on CUDA. With one process (plain `python cli.py`, or torchrun
with --nproc_per_node=1) nothing is joined, and every number is the same as without torchrun.

Why bam_minimal.train_step averages the gradients itself (four lines) rather than wrapping the model
in DistributedDataParallel: the wrapper treats a parameter that gets no gradient as an error, and
MIND's unused `relu` (kept for the official checkpoints) and BaM_l's maps (no gradient, as in the
official code) are such parameters; the wrapper's way out, find_unused_parameters=True, walks the
autograd graph on every step. What it computes is the same: the mean of every process's gradients.
"""
import datetime
import os

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


def leave():
    if dist.is_initialized():
        dist.destroy_process_group()
