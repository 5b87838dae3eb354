"""Data-parallel training under `torchrun`: process-group setup and teardown, rank discovery, sharding of an
epoch's row order by rank, and the rank-0-only helpers the two-tower trainer uses.

One process per rank, every rank holding the whole model. `torchrun` starts the processes and gives each its
identity in environment variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
`process_group()` reads them and initializes the default process group (`init_method="env://"`), or does nothing
for a process started without torchrun (rank 0 of 1). Inside it, `current()` says where this process stands.

Per step every rank trains on its own rows (`shard_positions`: a strided, disjoint share of the epoch order, the
same length on every rank so that every rank takes the same number of steps and no collective waits forever;
`per_rank_batch`: the configured batch is the global one, each rank takes its share) and DistributedDataParallel
averages the gradients. DDP is applied to the whole per-batch loss function
(`DistContext.wrap_loss`): the towers are called several times per step (queries, docs, rewrite queries), and
one DDP forward around all of them lets its reducer see every use of a parameter before the backward pass. The
sparse embedding tables' gradients stay sparse: gloo all-reduces sparse tensors (checked by
tests/train/test_ddp.py against the average of the ranks' gradients), so SparseAdam and AdaGrad keep their sparse
steps. NCCL does not reduce sparse tensors and needs CUDA tensors; the two-tower input path builds CPU tensors,
so the trainer runs on gloo (`backend="auto"` picks NCCL only for a CUDA device).

torch is imported inside functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from torch import nn

T = TypeVar("T")
BACKENDS = ("auto", "gloo", "nccl")
DEFAULT_TIMEOUT_S = 1800.0


class DistributedSetupError(RuntimeError):
    """The launch environment or the requested backend cannot start a process group; the message says why."""


@dataclass(frozen=True)
class LaunchEnv:
    """This process's place in the job as torchrun describes it (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None


def _int_env(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DistributedSetupError(f"environment variable {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise DistributedSetupError(f"environment variable {name}={value} must be >= {minimum}")
    return value


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """Read torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT."""
    env = os.environ if environ is None else environ
    world = _int_env(env, "WORLD_SIZE", 1, 1)
    rank = _int_env(env, "RANK", 0, 0)
    if rank >= world:
        raise DistributedSetupError(f"environment variable RANK={rank} must be < WORLD_SIZE={world}")
    local_world = _int_env(env, "LOCAL_WORLD_SIZE", 1 if world == 1 else world, 1)
    local_rank = _int_env(env, "LOCAL_RANK", 0, 0)
    if local_rank >= local_world:
        raise DistributedSetupError(
            f"environment variable LOCAL_RANK={local_rank} must be < LOCAL_WORLD_SIZE={local_world}")
    addr = env.get("MASTER_ADDR") or None
    port = _int_env(env, "MASTER_PORT", 0, 1) or None
    if world > 1 and (addr is None or port is None):
        missing = [n for n, v in (("MASTER_ADDR", addr), ("MASTER_PORT", port)) if v is None]
        raise DistributedSetupError(
            f"WORLD_SIZE={world} but {' and '.join(missing)} not set: start the trainer with torchrun "
            "(it sets them), or set them to the address and a free port of rank 0")
    if port is not None and port > 65535:
        raise DistributedSetupError(f"environment variable MASTER_PORT={port} is not a TCP port")
    return LaunchEnv(rank, world, local_rank, local_world, addr, port)


def resolve_backend(backend: str, device: str = "cpu") -> str:
    """The process-group backend for `device`: `auto` = NCCL on a CUDA device, else gloo."""
    if backend not in BACKENDS:
        raise DistributedSetupError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    cuda = device.startswith("cuda")
    if backend == "auto":
        import torch

        return "nccl" if cuda and torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not cuda:
        raise DistributedSetupError(
            f"backend 'nccl' reduces CUDA tensors only, and the model trains on {device!r}: use backend 'gloo' "
            "(the two-tower trainer's batches are CPU tensors)")
    return backend


def shard_positions(n: int, rank: int, world_size: int, min_rows: int = 1) -> np.ndarray:
    """Positions of rank `rank`'s shard of an epoch order of `n` rows: every `world_size`-th one from `rank`.

    Shards are disjoint and all `n // world_size` long (the last `n % world_size` positions are left out), so
    every rank takes the same number of steps; fewer than `min_rows` per rank is an error."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if n // world_size < min_rows:
        raise ValueError(f"an epoch of {n} row(s) shared by {world_size} ranks leaves {n // world_size} per rank, "
                         f"fewer than {min_rows}: train on more rows or fewer ranks")
    return np.arange(rank, n - n % world_size, world_size, dtype=np.int64)


def _loss_module(model: nn.Module, fn: Callable[..., Any]) -> nn.Module:
    from torch import nn

    class LossModule(nn.Module):
        """The model plus a per-batch loss function: one forward = one step's whole loss."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return fn(self.model, *args, **kwargs)

    return LossModule()


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, backend; helpers that are no-ops for one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, writes files and logs to MLflow."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """World size and backend, for a run's summary."""
        return {"world_size": self.world_size, "backend": self.backend}

    def seed_key(self, *key: int) -> list[int]:
        """A numpy seed sequence key: `key` itself for one process, `key + [rank]` for a rank of many."""
        return [*key, self.rank] if self.distributed else list(key)

    def torch_seed(self, seed: int) -> int:
        """A torch seed: `seed` for one process, a rank-specific one derived from it for a rank of many."""
        if not self.distributed:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1, dtype=np.uint64)[0] >> 1)

    def per_rank_batch(self, batch_size: int) -> int:
        """Rows per step on this rank: `batch_size` is the global batch, split evenly (remainder dropped)."""
        per_rank = batch_size // self.world_size
        if per_rank < 2:
            raise ValueError(f"train.batch_size = {batch_size} over {self.world_size} ranks leaves {per_rank} row(s) "
                             "per rank and step; a step needs 2: raise train.batch_size or use fewer ranks")
        return per_rank

    def shard(self, n: int) -> np.ndarray:
        """This rank's positions of an epoch order of `n` rows (all of them for one process); at least the two
        rows a batch needs."""
        return shard_positions(n, self.rank, self.world_size, min_rows=2)

    def broadcast(self, obj: T, src: int = 0) -> T:
        """`obj` of rank `src` on every rank (picklable objects)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on rank 0 only and give its result to every rank (e.g. validation)."""
        if not self.distributed:
            return fn(*args, **kwargs)
        return self.broadcast(fn(*args, **kwargs) if self.is_main else None)

    def sum_over_ranks(self, values: Mapping[str, float]) -> dict[str, float]:
        """Key-wise sums of every rank's `values` (a key missing on a rank counts 0)."""
        if not self.distributed:
            return dict(values)
        total: dict[str, float] = {}
        for part in self.all_gather(dict(values)):
            for k, v in part.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def wrap_loss(
        self, model: nn.Module, fn: Callable[..., T], find_unused_parameters: bool = True
    ) -> Callable[..., T]:
        """`fn(model, *args)` with DDP around it: the backward pass averages the gradients over the ranks.

        Returns `fn` itself for one process. The result takes the same arguments as `fn` (its first, the model,
        is ignored: the wrapped one is used). `find_unused_parameters` lets a step leave some parameters without
        a gradient (the reducer marks them ready from the loss's graph)."""
        if not self.distributed:
            return fn
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(_loss_module(model, fn), find_unused_parameters=find_unused_parameters)

        def step(_model: nn.Module, *args: Any, **kwargs: Any) -> T:
            return ddp(*args, **kwargs)

        step.ddp = ddp  # type: ignore[attr-defined]
        return step


SINGLE = DistContext()


def current() -> DistContext:
    """The default process group's rank and world size when one is initialized, else rank 0 of 1."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    local = _int_env(os.environ, "LOCAL_RANK", 0, 0)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, str(dist.get_backend()))


@contextmanager
def process_group(
    backend: str = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    environ: Mapping[str, str] | None = None,
    device: str = "cpu",
) -> Iterator[DistContext]:
    """Initialize the default process group from torchrun's variables for the block and destroy it after.

    A process started without torchrun (WORLD_SIZE unset or 1) gets rank 0 of 1 and no process group.
    `timeout_s` bounds every collective (a rank that never arrives fails the others instead of hanging)."""
    if timeout_s <= 0:
        raise DistributedSetupError(f"timeout_s must be > 0, got {timeout_s}")
    env = launch_env(environ)
    chosen = resolve_backend(backend, device)
    if env.world_size == 1:
        yield SINGLE
        return
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedSetupError("this torch build has no torch.distributed")
    if dist.is_initialized():
        raise DistributedSetupError("a default process group is already initialized in this process")
    if environ is not None:  # env:// reads os.environ
        os.environ.update({k: str(v) for k, v in environ.items()
                           if k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                    "MASTER_PORT")})
    dist.init_process_group(chosen, init_method="env://", rank=env.rank, world_size=env.world_size,
                            timeout=timedelta(seconds=timeout_s))
    try:
        yield DistContext(env.rank, env.world_size, env.local_rank, chosen)
    finally:
        dist.destroy_process_group()
