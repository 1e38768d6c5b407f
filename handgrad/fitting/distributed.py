"""Several processes, one fit: torch.distributed from the environment torchrun sets.

    torchrun --nproc-per-node 2 cli.py fit logistic --newton --distributed ...

Each process (rank) reads its own contiguous block of rows; the sums a solver needs
(loss, gradient, Hessian; the covariance's sums) are computed locally over those rows
and ``all_reduce``d, so every rank holds the same totals, solves the same d x d system
and takes the same step.  Per Newton iteration one message of 1 + p + p^2 float64
numbers (p = d + 1 with an intercept) goes through the all-reduce, whatever n is: the
rows never move.  gloo on CPU, nccl on CUDA (rank r uses cuda:LOCAL_RANK).  Only rank 0
prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from handgrad.errors import UserError


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = "none"
    messages: int = 0  # all-reduce calls made
    numbers: int = 0  # numbers sent through them

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over every process (in place on a contiguous copy); every rank gets it."""
        self.messages += 1
        self.numbers += t.numel()
        if self.world == 1:
            return t
        import torch.distributed as dist

        t = t.contiguous().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def info(self) -> dict:
        return {"world_size": self.world, "rank": self.rank, "backend": self.backend,
                "all_reduce_calls": self.messages, "numbers_sent": self.numbers}


def launched() -> bool:
    """True inside a torchrun (or torch.distributed.run) launch."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


NOT_LAUNCHED = ("--distributed needs a torchrun launch (RANK and WORLD_SIZE are not set, so "
                "this is one process with nothing to share its rows with): run torchrun "
                "--nproc-per-node N handgrad fit ... --distributed, or drop --distributed to fit "
                "in this one process")


def init(device: str = "auto") -> Context:
    """Join the process group torchrun describes (env://).

    Without a torchrun launch this refuses (a UserError) rather than fit in one process
    unannounced: whoever asked for several processes would otherwise wait on one, with
    the whole data set in it.  (``init_tcp`` joins a group without torchrun.)

    Device: CPU -> gloo; CUDA ('auto' with a GPU, or 'cuda') -> nccl on cuda:LOCAL_RANK.
    """
    import torch.distributed as dist

    want = (device or "auto").lower()
    cuda = torch.cuda.is_available() and want != "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} with --distributed, but CUDA is not available.")
    if not launched():
        raise UserError(NOT_LAUNCHED + ".")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if cuda:
        dev = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        kw = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, **kw)
    return Context(rank, world, local, dev, backend)


def init_tcp(rank: int, world: int, port: int, host: str = "127.0.0.1") -> Context:
    """Join a CPU (gloo) group on host:port without torchrun (tests, notebooks)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank,
                            world_size=world)
    return Context(rank, world, rank, torch.device("cpu"), "gloo")


def shutdown(ctx: Context | None) -> None:
    if ctx is not None and ctx.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
