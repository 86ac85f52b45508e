"""Data-parallel helpers over :mod:`torch.distributed` (gloo on CPU, NCCL on GPU).

A run started by ``torchrun --nproc_per_node N mne-mmnet train ...`` (or any
launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``) joins a process group; every rank holds a full copy of the
model, draws its own share of each global batch (a
:class:`torch.utils.data.DistributedSampler`), and the gradients are averaged
across ranks before each optimiser step. Gradients are averaged by hand with
``all_reduce`` rather than through ``DistributedDataParallel`` because the
forward pass itself differentiates (the energy gradient inside every MM
iteration), which DDP's hooks do not support.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from mne.utils import logger


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self):
        """Whether this process logs and writes files (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self):
        """Whether gradients must be averaged across processes."""
        return self.world_size > 1


def setup_distributed(device):
    """Join the process group described by the environment, if any.

    Parameters
    ----------
    device : torch.device
        The device this rank computes on; CUDA selects NCCL (and the GPU
        ``LOCAL_RANK``), anything else gloo.

    Returns
    -------
    context : DistributedContext
        Rank and world size (0 and 1 when not distributed).
    """
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", 0)),
            False,
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_available():
        raise RuntimeError(
            f"WORLD_SIZE={world_size} asks for a distributed run but this torch "
            "build has no torch.distributed support."
        )
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    logger.info(f"Joined {backend} process group: rank {rank} of {world_size}")
    return DistributedContext(rank, world_size, local_rank, True)


def cleanup_distributed(context):
    """Leave the process group if :func:`setup_distributed` created it."""
    if context.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_parameters(module, context):
    """Copy rank 0's parameters and buffers to every rank."""
    if not context.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(module, context):
    """Average ``.grad`` of every parameter across ranks (in place).

    Parameters without a gradient on this rank contribute zeros, so all ranks
    always take part in the same collectives.
    """
    if not context.enabled:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= context.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_reduce_sum(tensor, context):
    """Sum a tensor across ranks (returns it; a no-op when not distributed)."""
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(context):
    """Wait for every rank."""
    if context.enabled:
        dist.barrier()
