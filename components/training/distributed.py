"""The process group and seeds of a training process. Under ``torchrun``/``deepspeed`` the launcher's
environment is used; launched as a plain ``python`` process, a 1-process group is set up on 127.0.0.1
and a free port, so the same code path (and the same ZeRO partitioning code) runs on a laptop."""

from __future__ import annotations

import os
import random
import socket

import numpy as np
import torch
import torch.distributed as dist

_LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


_SELF_WORLD_VAR = "MOSA_SELF_WORLD"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _inherited_self_world() -> bool:
    """True if the launcher variables were inherited from a parent that made itself a 1-rank world.

    They point at the parent's store; a real launcher (torchrun, deepspeed) always sets its own
    MASTER_PORT, which cannot be the port the parent still holds.
    """
    mark = os.environ.get(_SELF_WORLD_VAR, "")
    pid, _, port = mark.partition(":")
    return bool(mark) and pid != str(os.getpid()) and os.environ.get("MASTER_PORT") == port


def ensure_distributed() -> tuple[int, int]:
    """Initialise DeepSpeed's process group once; returns ``(rank, world_size)``.

    Without launcher variables this process becomes a 1-rank world on 127.0.0.1 and a free port:
    ``RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR MASTER_PORT`` are set in its environment (DeepSpeed
    reads ``LOCAL_RANK`` from there during training), marked with ``MOSA_SELF_WORLD=<pid>:<port>``
    so a child process that inherits them makes its own world instead of joining this one.
    """
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    if not dist.is_initialized():
        if _inherited_self_world():
            for key in (*_LAUNCH_ENV, _SELF_WORLD_VAR):
                os.environ.pop(key, None)
        present = [k for k in _LAUNCH_ENV if k in os.environ]
        if len(present) not in (0, len(_LAUNCH_ENV)):
            missing = [k for k in _LAUNCH_ENV if k not in os.environ]
            raise RuntimeError(
                f"launcher environment is incomplete: {', '.join(present)} set but {', '.join(missing)} "
                "missing; launch with torchrun/deepspeed, or unset them all for a single process"
            )
        if not present:
            _init_self_world(deepspeed, get_accelerator().communication_backend_name())
            return dist.get_rank(), dist.get_world_size()
    deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name(), verbose=False)
    return dist.get_rank(), dist.get_world_size()


SELF_WORLD_ATTEMPTS = 5


def _init_self_world(deepspeed, backend: str, attempts: int = SELF_WORLD_ATTEMPTS) -> None:
    """A 1-rank world on 127.0.0.1 and a free port. The port is free when probed, but on a busy
    machine an outgoing connection can take it before the store binds it (EADDRINUSE): then another
    port is tried, ``attempts`` times in all."""
    for attempt in range(1, attempts + 1):
        port = str(_free_port())
        os.environ.update(
            {
                "RANK": "0",
                "WORLD_SIZE": "1",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
            }
        )
        os.environ[_SELF_WORLD_VAR] = f"{os.getpid()}:{port}"
        try:
            deepspeed.init_distributed(dist_backend=backend, verbose=False)
            return
        except (RuntimeError, OSError) as exc:  # torch's DistNetworkError is a RuntimeError
            if "EADDRINUSE" not in str(exc) and "address already in use" not in str(exc).lower():
                raise
            if attempt == attempts:
                raise RuntimeError(
                    f"could not start a 1-process group on 127.0.0.1: {attempts} free ports were taken "
                    "before the store bound them; set MASTER_PORT with RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR"
                ) from exc


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
