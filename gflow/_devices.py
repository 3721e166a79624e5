"""CPU devices: splitting the host into one JAX device per core (before JAX starts)."""

from __future__ import annotations

import os

_FLAG = "--xla_force_host_platform_device_count"


def cpu_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def host_devices_flag(xla_flags: str | None, devices: int) -> str:
    """``xla_flags`` with the forced host device count set to ``devices`` (XLA reads it when
    the CPU backend starts; it adds CPU devices and leaves GPUs as they are)."""
    kept = [f for f in (xla_flags or "").split() if not f.startswith(_FLAG)]
    return " ".join(kept + [f"{_FLAG}={devices}"])


def sets_host_devices(xla_flags: str | None) -> bool:
    return _FLAG in (xla_flags or "")
