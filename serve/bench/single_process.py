"""The single-process baseline: the same stage deployment classes and the same FastAPI
app as the graph, all in one uvicorn process (the seed's layout), started on a loopback port.

Run as ``python -m serve.bench.single_process CONFIG_JSON INDEX_DIR PORT``; the suite
starts it as a subprocess so that it has a process of its own, as the graph's
deployments do, and stops it when done. Like a Ray replica with less than 2 CPUs, it
runs OpenMP (FAISS) with one thread unless OMP_NUM_THREADS says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from deployments.ingress.app import create_app
from serve.app import in_process_stages
from serve.config import AppConfig


@contextlib.contextmanager
def serving(config: AppConfig, version_dir: Path, port: int) -> Iterator[int]:
    """The baseline server running on ``127.0.0.1:port``; yields its process id."""
    # Its error output goes to a file, which never fills up and stalls it as a pipe can.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serve.bench.single_process",
                config.model_dump_json(),
                str(version_dir),
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env={"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            _wait_healthy(process, errors, f"http://127.0.0.1:{port}/healthz")
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(
    process: subprocess.Popen[bytes], errors: IO[bytes], url: str, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors.seek(0)
            output = errors.read().decode(errors="replace")
            raise RuntimeError(f"the single-process server exited:\n{output[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the single-process server did not answer {url} in {timeout_s:g} s")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", help="AppConfig as JSON")
    parser.add_argument("index", type=Path, help="index version directory")
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    config = AppConfig.model_validate_json(args.config)
    index = config.index.model_copy(update={"path": str(args.index), "version": None})
    config = config.model_copy(update={"index": index})
    app = create_app(in_process_stages(config), config.ingress, config.retrieval_defaults())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
