"""Training on several processes with torchrun: process groups, global batches, and losses over them.

Every rank draws the same global P x K batch order (same seed), embeds its own contiguous share,
and the batch loss sees the whole global batch through an all-gather that keeps gradients, as
pytorch-metric-learning's DistributedLossWrapper does: a contrastive loss needs the pairs across
ranks, not only those within one rank's share.

    torchrun --nproc_per_node=4 train.py ...                      # one machine
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 train.py ...   # several
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Topology:
    """This process's place: its rank among `world_size`, its local rank on the machine, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def setup(device_type: str) -> Topology:
    """Join the process group torchrun describes (gloo on the CPU, nccl on CUDA); one process otherwise."""
    if not launched_by_torchrun():
        return Topology()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        if device_type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(
                    f"torchrun started process {local_rank} on this machine, but it has "
                    f"{torch.cuda.device_count()} GPU(s): use --nproc_per_node at most the GPU count, or "
                    f"--device cpu to train on the CPU with gloo"
                )
            torch.cuda.set_device(local_rank)
        # A long timeout: the other processes wait at a barrier while the first on each machine decodes
        # a large folder into its cache (an hour for a million photos).
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=datetime.timedelta(hours=3))
    return Topology(rank, world_size, local_rank)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: torch.Tensor, topology: Topology) -> torch.Tensor:
    """This rank's contiguous share of a global batch (the global batch must split evenly)."""
    if not topology.distributed:
        return indices
    if len(indices) % topology.world_size:
        raise ValueError(
            f"a global batch of {len(indices)} does not split over {topology.world_size} processes: choose "
            f"--classes-per-batch x --samples-per-class (or --batch-size) as a multiple of the process count"
        )
    size = len(indices) // topology.world_size
    return indices[topology.rank * size : (topology.rank + 1) * size]


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of its own slice, summed over ranks."""

    @staticmethod
    def forward(context, tensor: torch.Tensor) -> torch.Tensor:
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered)  # (world * B, ...)

    @staticmethod
    def backward(context, gradient: torch.Tensor) -> torch.Tensor:
        gradient = gradient.contiguous()
        # Every rank computed the same global loss, so each holds a gradient for every slice:
        # the sum over ranks is the gradient of the sum of their losses.
        dist.all_reduce(gradient, op=dist.ReduceOp.SUM)
        size = gradient.shape[0] // dist.get_world_size()
        return gradient[dist.get_rank() * size : (dist.get_rank() + 1) * size]


def all_gather_with_gradient(tensor: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each rank -> (world * B, ...) in rank order; gradients flow back to each rank's slice."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGradient.apply(tensor)


def all_gather_labels(labels: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return labels
    gathered = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, labels.contiguous())
    return torch.cat(gathered)


class GlobalBatchLoss(nn.Module):
    """A batch loss over the global batch of all ranks.

    Each of the W ranks computes the same loss L over the gathered embeddings. Backward sums the
    gathered gradients over ranks (W times dL/de for this rank's slice), and DDP averages the
    parameter gradients over ranks (dividing by W): the network gets exactly the gradient of one
    process running the whole global batch. A loss's own parameters (CosFace proxies) get dL/dp
    on every rank, which DDP's average leaves as it is. A test checks both on two processes.
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        all_embeddings = all_gather_with_gradient(embeddings)  # (world * B, D)
        all_labels = all_gather_labels(labels)  # (world * B,)
        return self.loss(all_embeddings, all_labels)


class ModelAndLoss(nn.Module):
    """The network and a loss with parameters (CosFace proxies) as one module, so DDP syncs both."""

    def __init__(self, model: nn.Module, loss: nn.Module):
        super().__init__()
        self.model = model
        self.loss = GlobalBatchLoss(loss)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, precision_context=None) -> torch.Tensor:
        """The global-batch loss of this rank's images (b, C, H, W); the network under `precision_context()`."""
        if precision_context is None:
            embeddings = self.model(images)  # (b, D)
        else:
            with precision_context():
                embeddings = self.model(images)  # (b, D)
        return self.loss(embeddings.float(), labels)
