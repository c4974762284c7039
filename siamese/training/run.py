"""A run's set-up: device, precision, processes (torchrun) and output folder, decided once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from siamese.data.datasets import Splits
from siamese.runtime import distributed
from siamese.runtime.precision import configure_backends, pick_device, pick_precision
from siamese.training.config import TrainConfig
from siamese.training.datasets import load_splits


@dataclass(frozen=True)
class Run:
    device: torch.device
    precision: str
    topology: distributed.Topology
    out: Path

    @property
    def is_main(self) -> bool:
        """The process that prints, evaluates and saves (the only one without torchrun)."""
        return self.topology.is_main

    def wrap(self, step_module: nn.Module) -> nn.Module:
        """The step module, under DistributedDataParallel when several processes train."""
        if not self.topology.distributed:
            return step_module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(step_module, device_ids=device_ids)

    def barrier(self) -> None:
        if self.topology.distributed:
            torch.distributed.barrier()


def start_run(config: TrainConfig) -> Run:
    device = pick_device(config.device)
    topology = distributed.setup(device.type)
    if topology.distributed and device.type == "cuda":
        device = torch.device("cuda", topology.local_rank)
    precision = pick_precision(device, config.precision)
    configure_backends(device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    return Run(device, precision, topology, out)


def load_run_splits(config: TrainConfig, run: Run) -> Splits:
    """The splits, loaded by one process per machine first (which builds any decoded-image cache); the
    others then find the cache complete instead of decoding the same folder side by side."""
    first_on_machine = run.topology.local_rank == 0
    if not first_on_machine:
        run.barrier()
    splits = load_splits(config)
    if first_on_machine:
        run.barrier()
    return splits
