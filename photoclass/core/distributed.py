"""Data-parallel processes under `torchrun`: who am I, and the few collectives photoclass uses.

A single process is world size 1: every helper here is then a no-op, so there is one code
path. torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; the process group
uses NCCL between GPUs and gloo between CPU processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from .errors import PhotoclassError


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Only the main process writes files, tracks and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, count: int) -> slice:
        """This process's share of `count` items, strided: items rank, rank + world, ..."""
        return slice(self.rank, count, self.world)


def processes() -> Processes:
    """This process's place, from torchrun's environment (world size 1 without it)."""
    try:
        return Processes(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
        )
    except ValueError:
        raise PhotoclassError(
            "RANK, WORLD_SIZE, LOCAL_RANK must be integers (torchrun sets them). "
            f"Received: RANK={os.environ.get('RANK')!r} WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}"
        ) from None


def init(device: torch.device) -> Processes:
    """Join the process group (NCCL for CUDA devices, gloo otherwise) once; the place."""
    place = processes()
    if place.active and not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        tdist.init_process_group(backend)
    return place


def barrier() -> None:
    if tdist.is_initialized():
        tdist.barrier()


def gather_rows(part: torch.Tensor, count: int, place: Processes) -> torch.Tensor:
    """The (count, ...) tensor whose rows rank::world each process holds in `part`, in order."""
    if not place.active:
        return part
    longest = (count + place.world - 1) // place.world
    padded = torch.zeros((longest, *part.shape[1:]), dtype=part.dtype, device=part.device)
    padded[: len(part)] = part
    pieces = [torch.empty_like(padded) for _ in range(place.world)]
    tdist.all_gather(pieces, padded)
    whole = torch.empty((count, *part.shape[1:]), dtype=part.dtype, device=part.device)
    for rank, piece in enumerate(pieces):
        rows = len(range(rank, count, place.world))
        whole[rank :: place.world] = piece[:rows]
    return whole


def agree(text: str, place: Processes, device: torch.device) -> str:
    """The main process's `text` on every process (sent as bytes: nothing is unpickled)."""
    if not place.active:
        return text
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8, device=device)
    size = torch.tensor([len(data)], dtype=torch.long, device=device)
    tdist.broadcast(size, src=0)
    buffer = data if place.main else torch.empty(int(size), dtype=torch.uint8, device=device)
    tdist.broadcast(buffer, src=0)
    return bytes(buffer.cpu().tolist()).decode("utf-8")


def sum_across(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over the processes (per-epoch totals: loss, correct, seen)."""
    if not tdist.is_initialized():
        return values
    totals = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(totals)
    return totals.tolist()
