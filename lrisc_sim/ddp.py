"""Distributed data-parallel training on PyTorch's engine: ``torchrun --nproc_per_node N -m lrisc_sim.cli train ...``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init` then joins the process group (NCCL when the
device is CUDA, gloo on CPUs), gives every rank its device (``cuda:LOCAL_RANK``) and returns a :class:`Dist`.
Without torchrun it returns a one-process ``Dist`` and nothing distributed happens, so the trainers have one
code path.

The trainers keep every rank on the same global batch stream (same seed), and each rank computes its
``B / world`` slice (:meth:`Dist.shard`): with DistributedDataParallel averaging the gradients, the loss curve
equals that of one process with the same global batch (up to float summation order). Logging, validation,
exported weights and the resumable state are rank 0's (:attr:`Dist.main`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    """Where this process stands: ``rank`` of ``world`` processes, its ``device``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def local_batch(self, global_batch: int) -> int:
        """Images per rank; a one-line ``ValueError`` unless ``global_batch`` (>= 1) divides evenly."""
        if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
            raise ValueError(f"--batch-size {global_batch!r}: must be an integer >= 1 (crops per step)")
        if global_batch % self.world:
            raise ValueError(f"--batch-size {global_batch} is the global batch and must be a multiple of the "
                             f"{self.world} processes: use {max(self.world, global_batch // self.world * self.world)}")
        return global_batch // self.world

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's slice (along dim 0) of a global batch tensor."""
        n = self.local_batch(t.shape[0])
        return t[self.rank * n:(self.rank + 1) * n]

    def batches(self, paths: list, crop: int, global_batch: int, workers: int = 0, seed: int = 0):
        """Endless training batches (``B / world x 3 x crop x crop``) of this rank: with ``workers`` = 0 every
        rank holds the images in memory and draws the same global batch of random crops (seeded by ``seed``),
        keeping its slice; with ``workers`` > 0 the files are streamed by DataLoader workers, each rank and
        worker reading its own shard (a COCO-sized folder)."""
        from lrisc_sim.data import RandomCrops, streaming_loader

        if workers > 0:
            return streaming_loader(paths, crop, self.local_batch(global_batch), workers, seed=seed,
                                    rank=self.rank, world=self.world)
        crops = RandomCrops(None, crop, seed=seed, paths=paths)
        it = iter(crops)
        return (self.shard(crops.batch(global_batch, it)) for _ in iter(int, 1))

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (the value itself with one process)."""
        if not self.active:
            return value
        import torch.distributed as td

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        td.all_reduce(t)
        return float(t[0]) / self.world

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (e.g. a time limit seen by one)."""
        if not self.active:
            return flag
        import torch.distributed as td

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        td.all_reduce(t, op=td.ReduceOp.MAX)
        return bool(t[0] > 0)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def wrap(self, model: torch.nn.Module, find_unused: bool = False) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` when distributed, else the model itself. ``find_unused``: some
        trained parameters may get no gradient in a step (e.g. LRISC's SNR modules while they are off)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)

    def close(self) -> None:
        if self.active:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()


def init(device: str | torch.device = "cpu") -> Dist:
    """Join the torchrun process group if there is one (``WORLD_SIZE`` > 1); else a one-process ``Dist``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world <= 1:
        return Dist(device=dev)
    import torch.distributed as td

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda under torchrun: no CUDA GPU is visible; use --device cpu (gloo)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local, device=dev)
