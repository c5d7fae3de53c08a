"""serve_config.yaml, with its models swapped for tiny local ones, deployed with `serve run`
on the session's Ray cluster (which declares two GPUs it does not have)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import requests
import yaml
from ray import serve

from deployments.embedder.sentence_transformers import SentenceTransformerEmbedder
from deployments.reranker.cross_encoder import sigmoid
from tests.conftest import TinyModels, tiny_embedder_config
from tests.integration.conftest import ServeCluster
from tests.support import REPO, parse_sse

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
APP = "prod"
GPU_SHARES = {"embedder": 0.1, "reranker": 0.1, "generator": 0.7}


def production_with_tiny_models(models: TinyModels, index: Path, port: int) -> dict[str, Any]:
    """serve_config.yaml as shipped, except: local tiny models (on whatever device the
    replica has: the GPUs are only declared), a transformers generator in vLLM's place,
    the test index, and the session's HTTP port."""
    data: dict[str, Any] = yaml.safe_load((REPO / "serve_config.yaml").read_text("utf-8"))
    data["http_options"] = {"host": "127.0.0.1", "port": port}
    app = data["applications"][0]
    app.update(name=APP, route_prefix=f"/{APP}")
    args = app["args"]
    args["index"]["path"] = str(index)
    args["embedder"].update(model=str(models.embedder), device="auto", dtype="auto")
    args["embedder"]["max_seq_length"] = 128
    args["reranker"].update(model=str(models.cross_encoder), device="auto", dtype="auto")
    args["reranker"]["max_seq_length"] = 128
    args["generator"] = {
        "backend": "transformers",
        "model": str(models.chat_model),
        "max_model_len": 1024,
        "sampling": {"max_tokens": 16, "temperature": 0.0},
    }
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def jarag_check(config: Path, address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "jarag", "check", str(config), "--address", address],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def config_file(
    tiny_models: TinyModels, st_index: Path, serve_cluster: ServeCluster, tmp_path_factory: Any
) -> Path:
    data = production_with_tiny_models(tiny_models, st_index, serve_cluster.port)
    return write(tmp_path_factory.mktemp("prod") / "serve_config.yaml", data)


@pytest.fixture(scope="module")
def production_graph(config_file: Path, serve_cluster: ServeCluster) -> Iterator[str]:
    """Deployed the way an operator does it: `serve run` of the config file."""
    address = ray.get_runtime_context().gcs_address
    subprocess.run(
        [BIN / "serve", "run", "--non-blocking", "--address", address, str(config_file)],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            status = serve.status().applications.get(APP)
            if status is not None and status.status == "RUNNING":
                break
            assert status is None or status.status != "DEPLOY_FAILED", status
            assert time.monotonic() < deadline, f"{APP} not running after 240 s: {status}"
            time.sleep(1)
        yield serve_cluster.url(f"/{APP}")
    finally:
        serve.delete(APP)


def test_check_says_the_graph_fits_before_it_is_deployed(config_file: Path) -> None:
    result = jarag_check(config_file, ray.get_runtime_context().gcs_address)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Generator 0.7 + Embedder 0.1 + Reranker 0.1" in result.stdout
    assert "built with the configured embedder" in result.stdout


def test_check_refuses_a_graph_the_cluster_cannot_hold(config_file: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    generator = data["applications"][0]["deployments"][-1]
    generator["ray_actor_options"]["num_gpus"] = 3
    result = jarag_check(write(tmp_path / "big.yaml", data), ray.get_runtime_context().gcs_address)
    assert result.returncode == 1
    assert "needs 3 GPUs on one node; the nodes have at most 2" in result.stdout


def test_each_stage_has_its_gpu_fraction_and_they_share_one_gpu(production_graph: str) -> None:
    body = requests.get(f"{production_graph}/healthz", timeout=60).json()
    assert body["status"] == "ok", body
    stages = body["stages"]
    for stage, share in GPU_SHARES.items():
        assert stages[stage]["placement"]["resources"]["GPU"] == pytest.approx(share), stage
    gpu_ids = {tuple(stages[stage]["placement"]["gpu_ids"]) for stage in GPU_SHARES}
    assert len(gpu_ids) == 1 and len(next(iter(gpu_ids))) == 1, gpu_ids
    # The same, asked of a replica through its handle.
    handle = serve.get_deployment_handle("Generator", app_name=APP)
    placement = handle.describe.remote().result(timeout_s=60)["placement"]
    assert placement["resources"] == {"CPU": 2.0, "GPU": 0.7}


def test_chat_streams_from_the_model_with_numbered_sources(production_graph: str) -> None:
    question = {"messages": [{"role": "user", "content": "香川県の県庁所在地はどこですか？"}]}
    with requests.post(
        f"{production_graph}/v1/chat/completions",
        json={**question, "stream": True, "stream_options": {"include_usage": True}},
        stream=True,
        timeout=120,
    ) as response:
        assert response.status_code == 200
        events = parse_sse("".join(c.decode() for c in response.iter_content(chunk_size=None)))
    assert events[-1] == "[DONE]"
    finish = events[-3]
    assert finish["choices"][0]["finish_reason"] == "length"
    assert [s["index"] for s in finish["sources"]] == [1, 2, 3, 4, 5]
    assert events[-2]["usage"]["completion_tokens"] == 16
    assert events[-2]["usage"]["prompt_tokens"] > 100, "the passages are in the prompt"
    models = requests.get(f"{production_graph}/v1/models", timeout=30).json()["data"]
    assert {m["id"]: m["kind"] for m in models}["chat"] == "chat"


def test_embeddings_and_rerank_come_from_the_models(
    production_graph: str, tiny_models: TinyModels
) -> None:
    texts = ["香川県の県庁所在地は高松市である。", "沖縄県"]
    body = requests.post(
        f"{production_graph}/v1/embeddings",
        json={"input": texts, "input_type": "query"},
        timeout=60,
    ).json()
    served = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    local = SentenceTransformerEmbedder(tiny_embedder_config(tiny_models)).embed_queries(texts)
    assert np.allclose(served, local, atol=1e-5)
    rerank = requests.post(
        f"{production_graph}/v1/rerank",
        json={"query": "香川県の県庁所在地", "documents": texts},
        timeout=60,
    ).json()
    for result in rerank["results"]:
        raw = np.array([result["raw_score"]], dtype=np.float32)
        assert result["relevance_score"] == pytest.approx(float(sigmoid(raw)[0]), abs=1e-6)
