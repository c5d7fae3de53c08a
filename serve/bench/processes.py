"""CPU time and memory of the processes that serve a request, grouped by role.

The suite starts its own Ray instance, so every Ray process of it (GCS, raylet, Serve
controller, proxy, replicas) descends from the suite's process; the single-process
server is a child too. Other users' processes are never looked at.
"""

from __future__ import annotations

import os
import re

import psutil

_REPLICA = re.compile(r"ServeReplica:([^:\s]+):(\w+)")


def role(process: psutil.Process, app: str | None = None) -> str | None:
    """A short name for what ``process`` does (a replica: its deployment's name), or
    None for one that is not ours or is a replica of another application than ``app``."""
    try:
        title = " ".join(process.cmdline()) or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if match := _REPLICA.search(title):
        return match.group(2) if app is None or match.group(1) == app else None
    if "ProxyActor" in title:
        return "proxy"
    if "ServeController" in title:
        return "controller"
    if "haproxy" in title.split(" ", 1)[0]:
        # Serve's HTTP proxy in its high-throughput mode (RAY_SERVE_ENABLE_HA_PROXY=1).
        return "haproxy"
    if "serve.bench.single_process" in title:
        return "single-process"
    if "raylet" in title or "gcs_server" in title or "ray::" in title or "ray/" in title:
        return "ray"
    return None


def our_processes(app: str | None = None) -> dict[str, list[psutil.Process]]:
    """This process (``client``) and its descendants, by role; with ``app``, only that
    application's replicas."""
    me = psutil.Process(os.getpid())
    groups: dict[str, list[psutil.Process]] = {"client": [me]}
    for child in me.children(recursive=True):
        name = role(child, app)
        if name is not None:
            groups.setdefault(name, []).append(child)
    return groups


def cpu_seconds(groups: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """User + system CPU seconds each group has used so far."""
    totals: dict[str, float] = {}
    for name, processes in groups.items():
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += times.user + times.system
        totals[name] = total
    return totals


class CpuWatch:
    """CPU milliseconds spent by each group between ``start`` and ``stop``."""

    def __init__(self, app: str | None = None) -> None:
        self._app = app
        self._groups = our_processes(app)
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._groups = our_processes(self._app)
        self._before = cpu_seconds(self._groups)

    def stop(self) -> dict[str, float]:
        after = cpu_seconds(self._groups)
        return {
            name: (after[name] - self._before.get(name, 0.0)) * 1000
            for name in after
            if name in self._before
        }


def resident_mib(groups: dict[str, list[psutil.Process]] | None = None) -> dict[str, float]:
    """Resident memory (RSS) of each group, in MiB."""
    resident: dict[str, float] = {}
    for name, processes in (groups or our_processes()).items():
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        resident[name] = total / 2**20
    return resident
