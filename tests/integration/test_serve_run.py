"""What `make demo` does, as subprocesses: build the demo index, `serve run` the demo config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from serve.demo import DEMO_CONFIG, DEMO_CORPUS
from tests.support import free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def test_serve_run_demo_config_answers(tmp_path: Path) -> None:
    subprocess.run(
        [BIN / "jarag", "index", "build", str(DEMO_CORPUS), "--out", "indexes/demo", "--quiet"],
        cwd=tmp_path,
        check=True,
    )
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    port = free_port()
    config["http_options"]["port"] = port
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    env = {**os.environ, "RAY_DASHBOARD_PORT": str(free_port())}
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [BIN / "serve", "run", "demo.yaml"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if requests.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still starting up
                pass
            time.sleep(1)
        else:
            pytest.fail("the demo graph did not become healthy within 120 s")
        body = requests.post(
            f"{base}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "沖縄県の県庁所在地はどこですか？"}]},
            timeout=30,
        ).json()
        assert "那覇市" in body["choices"][0]["message"]["content"]
        assert any(s["doc_id"] == "okinawa-overview" and s["cited"] for s in body["sources"])
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
