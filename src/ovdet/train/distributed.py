"""Several processes training one model (torchrun): the process group, gradient averaging, and
which process writes.

`torchrun --nproc-per-node N -m ovdet train vild ...` sets RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT; `init_distributed` joins the group (NCCL on GPUs, gloo on CPUs).
Each process computes the losses of its share of the global batch; after the backward pass
`average_gradients` all-reduces every gradient (one flat buffer) and divides by N, which is what
DistributedDataParallel's reducer does. ovdet does it itself because a method's step calls
several of the model's methods (propose, head losses, distillation), not one `forward`, and DDP
only hooks `forward`. Rank 0 alone writes checkpoints, the loss log and the progress bar;
every rank resumes from the same state file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """This process's place: `rank` of `world`, and the device it trains on."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str = "cpu") -> Distributed:
    """Join torchrun's process group when WORLD_SIZE > 1 (once per process); a single process
    otherwise. On CUDA each process takes the GPU of its LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank, world, device)


def average_gradients(parameters: Iterable[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients of `parameters` (missing on some processes: zero there) and
    divide by `world`: every process then holds the gradient of the mean of the processes'
    losses. A parameter no process's loss reached keeps no gradient, as in one process (the
    optimizer skips it: a step that does not use a head leaves it, its moments and its weight
    decay alone)."""
    params = [p for p in parameters if p.requires_grad]
    if not params or world <= 1:
        return
    reached = _wire(torch.tensor([p.grad is not None for p in params], dtype=torch.float32))
    dist.all_reduce(reached)
    params = [p for p, r in zip(params, reached.tolist(), strict=True) if r > 0]
    if not params:
        return
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    )
    dist.all_reduce(flat)
    flat /= world
    start = 0
    for p in params:
        n = p.numel()
        p.grad = flat[start : start + n].view_as(p).clone()
        start += n


def global_sum(x: torch.Tensor | float, world: int) -> torch.Tensor:
    """The sum of `x` over the `world` processes (no gradient): a loss normalised by a count
    that differs between processes (objects per image) divides by this sum, times `world`,
    so that averaged gradients are one process's gradient of the whole batch."""
    total = torch.as_tensor(x, dtype=torch.float64).detach().clone().reshape(())
    if world > 1:
        total = _wire(total)
        dist.all_reduce(total)
    return total


def _wire(t: torch.Tensor) -> torch.Tensor:
    """`t` where the process group's collectives take it: this process's GPU under NCCL, the
    CPU under gloo."""
    if dist.get_backend() == "nccl":
        return t.to(torch.device("cuda", torch.cuda.current_device()))
    return t.cpu()


def mean_values(losses: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """Named scalar losses -> their values, averaged over the `world` processes (one
    all-reduce; every process names the same losses in the same order)."""
    if world <= 1 or not losses:
        return {k: v.item() for k, v in losses.items()}
    stacked = _wire(torch.stack([v.float().reshape(()) for v in losses.values()]))
    dist.all_reduce(stacked)
    return dict(zip(losses, (stacked / world).tolist(), strict=True))


def barrier(where: Distributed) -> None:
    if where.active:
        dist.barrier()


def main_first(where: Distributed, build: Callable[[], T]) -> T:
    """`build()` on rank 0, then on the other ranks once rank 0 is done: a shared, resumable
    cache is written by one process and read (found complete) by the rest."""
    result = build() if where.main else None
    barrier(where)
    if not where.main:
        result = build()
    barrier(where)
    return result


def share_of_mean(loss: torch.Tensor, count: int, where: Distributed) -> torch.Tensor:
    """A mean over this process's `count` items, reweighted so that the processes' averaged
    gradients are those of the mean over all processes' items (counts may differ between
    processes: pseudo-boxes, cached regions). Unchanged in one process."""
    if not where.active:
        return loss
    total = float(global_sum(count, where.world))
    return loss * (count * where.world / total) if total else loss


def all_rows(x: torch.Tensor, where: Distributed) -> torch.Tensor:
    """(n, ...) rows of this process -> (world * n, ...) rows of every process in rank order
    (each process gives n). This process's rows keep their graph, the others' are constants: a
    loss over them that every process computes alike gets its whole gradient through
    `whole_gradient`."""
    if not where.active:
        return x
    rows = [torch.empty_like(x) for _ in range(where.world)]
    dist.all_gather(rows, x.detach().contiguous())
    rows[where.rank] = x
    return torch.cat(rows)


def whole_gradient(loss: torch.Tensor, where: Distributed) -> torch.Tensor:
    """`loss` (computed alike on every process over `all_rows`) with its value kept and its
    gradient multiplied by the number of processes: averaged over them, each process's part of
    the gradient (through its own rows) adds up to the one-process gradient."""
    if not where.active:
        return loss
    return loss + (where.world - 1) * (loss - loss.detach())
