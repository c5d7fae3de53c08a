"""A build killed at any moment never damages the served index."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from deployments.index.format import list_versions, read_manifest, resolve_version_dir
from serve.demo import DEMO_CORPUS

BUILD = [sys.executable, "-m", "serve.cli", "index", "build", str(DEMO_CORPUS), "--quiet"]


def test_killed_builds_leave_served_version_whole(tmp_path: Path) -> None:
    root = tmp_path / "index"
    subprocess.run([*BUILD, "--out", str(root)], check=True, capture_output=True)
    served = resolve_version_dir(root).name
    rng = random.Random(7)
    outcomes = []
    for _ in range(6):
        process = subprocess.Popen([*BUILD, "--out", str(root)], stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        outcomes.append(process.returncode)
        current = resolve_version_dir(root)
        read_manifest(current, verify=True)
        assert current.name == served or current.name in list_versions(root)
        served = current.name
        for version in list_versions(root):
            read_manifest(root / "versions" / version, verify=True)
    assert -signal.SIGKILL in outcomes, "at least one build must have been killed mid-way"
    # Debris of killed builds is cleared by the next build, which then publishes.
    subprocess.run([*BUILD, "--out", str(root)], check=True, capture_output=True)
    assert not list(root.glob(".building-*"))
    assert resolve_version_dir(root).name == max(list_versions(root))
