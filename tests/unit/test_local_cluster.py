"""Starting the local cluster's head node: a start that times out is cleaned up and
tried again; any other failure is raised at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import ray.cluster_utils

from serve.ops import local_cluster

TIMED_OUT = (
    "The current node timed out during startup. This could happen because some of the "
    "raylet failed to startup or the GCS has become overloaded."
)


class FlakyCluster:
    """Stands in for ``ray.cluster_utils.Cluster``: the first start fails with
    ``error``, leaving a process behind that names its temporary directory, as a
    GCS or raylet would."""

    starts: ClassVar[int] = 0
    error: ClassVar[Exception] = Exception(TIMED_OUT)
    left_running: ClassVar[list[subprocess.Popen[bytes]]] = []

    def __init__(self, initialize_head: bool, head_node_args: dict[str, Any]) -> None:
        type(self).starts += 1
        self.temp_dir = os.environ["RAY_TMPDIR"]
        self.env = os.environ.get("JARAG_TEST_VARIABLE")
        if type(self).starts == 1:
            sleeper = "import time; print('up', flush=True); time.sleep(60)"
            process = subprocess.Popen(
                [sys.executable, "-c", sleeper, self.temp_dir], stdout=subprocess.PIPE
            )
            # Running the sleeper (not still the forked copy of this process) before the
            # failure, as a GCS or raylet would be: its command line names the directory.
            assert process.stdout is not None and process.stdout.readline() == b"up\n"
            self.left_running.append(process)
            raise self.error


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> type[FlakyCluster]:
    monkeypatch.setattr(FlakyCluster, "starts", 0)
    monkeypatch.setattr(FlakyCluster, "left_running", [])
    monkeypatch.setattr(ray.cluster_utils, "Cluster", FlakyCluster)
    return FlakyCluster


def test_a_start_that_timed_out_is_stopped_and_started_afresh(
    flaky: type[FlakyCluster],
) -> None:
    cluster, temp_dir = local_cluster._start_head({}, {"JARAG_TEST_VARIABLE": "set"})
    try:
        assert flaky.starts == 2
        assert cluster.temp_dir == str(temp_dir) and temp_dir.is_dir()
        assert cluster.env == "set"  # the nodes' processes inherit the environment
        (leftover,) = flaky.left_running
        # The failed start's process was killed and its directory removed.
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        first_dir = Path(str(leftover.args[-1]))  # type: ignore[index]
        assert first_dir != temp_dir and not first_dir.exists()
        assert "RAY_TMPDIR" not in os.environ or os.environ["RAY_TMPDIR"] != str(temp_dir)
    finally:
        temp_dir.rmdir()


def test_any_other_failure_is_raised_at_once(
    flaky: type[FlakyCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FlakyCluster, "error", ValueError("object_store_memory is too small"))
    with pytest.raises(ValueError, match="too small"):
        local_cluster._start_head({}, {})
    assert flaky.starts == 1
    (leftover,) = flaky.left_running
    assert leftover.wait(timeout=10) == -signal.SIGKILL
    assert not Path(str(leftover.args[-1])).exists()  # type: ignore[index]
