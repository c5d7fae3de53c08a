"""The machine and library versions a benchmark ran on, and its load while it ran."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

PACKAGES = (
    "ray",
    "fastapi",
    "uvicorn",
    "pydantic",
    "faiss-cpu",
    "numpy",
    "torch",
    "transformers",
    "sentence-transformers",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None where it is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(memory_gib(), 1),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_summary(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Machine and library versions, as printed above every report."""
    m = machine()
    installed = ", ".join(f"{name} {v}" for name, v in versions(packages).items() if v is not None)
    return [
        f"machine: {m['platform']}, {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{m['memory_gib']:.1f} GiB RAM",
        f"versions: {installed}",
    ]


def format_load(values: list[float] | tuple[float, ...]) -> str:
    return " ".join(f"{x:.1f}" for x in values)
