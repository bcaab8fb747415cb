"""Device resolution and CPU thread budgeting (resolved once, at the entry point)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def cpu_quota() -> int:
    """CPUs this process may really use: affinity mask, capped by a cgroup v2/v1 CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        try:
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            if q > 0:
                n = min(n, max(1, q // p))
        except (OSError, ValueError):
            pass
    return max(1, n)


def configure_threads(n: int | None = None) -> int:
    """Match torch's intra-op threads to the CPU quota (oversubscription slowed training ~25x)."""
    n = n or cpu_quota()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cuda' without a GPU is an error naming the fix."""
    name = name.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name} was asked for but torch sees no CUDA GPU; use --device cpu or auto")
        return torch.device(name)
    raise ValueError(f"unknown device '{name}'; use auto, cpu or cuda")
