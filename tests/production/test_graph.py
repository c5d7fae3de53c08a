"""serve_config.yaml deployed with `serve run` on a Ray instance with one GPU, over real
HTTP with the OpenAI client: RAG chat, the generator's model alone, embeddings and
rerank from the model stages, per-request sampling reaching vLLM."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import ray
import requests
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from ray import serve
from ray.util.state import list_actors

from serve.bench.tiny_production import APP, MAX_MODEL_LEN, Models
from tests.production.conftest import Deployed, jarag

GPU_SHARES = {"Embedder": 0.1, "Reranker": 0.1, "Generator": 0.7}
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "香川県の県庁所在地はどこですか？"}
]
CHAT_MODEL = "chat"
"""The generator's served model id: the last part of the tiny model's path."""


@pytest.fixture(scope="module")
def client(production_graph: Deployed) -> OpenAI:
    return OpenAI(base_url=f"{production_graph.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def handle_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread of its own for handle calls: in Ray Serve's
    high-throughput mode a handle's router lives on the loop that first uses it, and a
    blocking ``.result()`` outside a loop is refused."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def generator_stats(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    async def describe() -> dict[str, Any]:
        handle = serve.get_deployment_handle("Generator", app_name=APP)
        details: dict[str, Any] = await handle.describe.remote()
        return details

    return asyncio.run_coroutine_threadsafe(describe(), loop).result(timeout=60)


def test_check_accepts_the_overlaid_config(production_graph: Deployed) -> None:
    address = production_graph.ray.address
    result = jarag("check", production_graph.config.path, "--address", address)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Generator 0.7 + Embedder 0.1 + Reranker 0.1" in result.stdout


def test_the_three_model_stages_share_the_one_gpu(
    production_graph: Deployed, handle_loop: asyncio.AbstractEventLoop
) -> None:
    assert {n["Resources"].get("GPU") for n in _alive_nodes()} == {1.0}
    body = requests.get(f"{production_graph.url}/healthz", timeout=60).json()
    assert body["status"] == "ok", body
    stages = body["stages"]
    gpu_ids = set()
    for name, share in GPU_SHARES.items():
        placement = stages[name.lower()]["placement"]
        assert placement["resources"]["GPU"] == pytest.approx(share), name
        gpu_ids.add(tuple(placement["gpu_ids"]))
    assert gpu_ids == {("0",)}, gpu_ids
    # Ray's own view of the replica actors: what each asked for.
    replicas = {
        a.class_name.rsplit(":", 1)[-1]: a
        for a in list_actors(
            address=production_graph.ray.dashboard, filters=[("state", "=", "ALIVE")], detail=True
        )
        if a.class_name.startswith(f"ServeReplica:{APP}:")
    }
    for name, share in GPU_SHARES.items():
        assert replicas[name].required_resources.get("GPU") == pytest.approx(share), name
    for name in ("Ingress", "Retriever"):
        assert "GPU" not in replicas[name].required_resources, name
    assert generator_stats(handle_loop)["model"] == CHAT_MODEL


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n["Alive"]]


def test_rag_chat_streams_with_sources(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=APP,
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=16,
        temperature=0.0,
    )
    chunks = list(stream)
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "length"
    sources = (finish[0].model_extra or {})["sources"]
    assert [s["index"] for s in sources] == [1, 2, 3, 4, 5]
    assert all(s["relevance"] is not None for s in sources), "ranked by the cross-encoder"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 16
    assert usage.prompt_tokens > 100, "the passages are in the prompt"


def test_rag_chat_answers_in_one_response_with_sources(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=APP,
        messages=QUESTION,
        max_tokens=8,
        temperature=0.0,
    )
    assert completion.model == APP
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 8
    sources = (completion.model_extra or {})["sources"]
    assert len(sources) == 5 and sources[0]["title"]


def test_a_follow_up_is_rewritten_by_the_model_and_answered(production_graph: Deployed) -> None:
    """serve_config.yaml has the generator rewrite follow-ups (ingress.follow_ups): one
    more vLLM generation before retrieval."""
    conversation = [
        *QUESTION,
        {"role": "assistant", "content": "高松市です。"},
        {"role": "user", "content": "そこの人口は？"},
    ]
    response = requests.post(
        f"{production_graph.url}/v1/chat/completions",
        json={"messages": conversation, "max_tokens": 4, "temperature": 0.0},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert "X-RAG-Degraded" not in response.headers
    body = response.json()
    assert body["usage"]["completion_tokens"] == 4
    assert len(body["sources"]) == 5


def test_the_generator_model_answers_without_retrieval(client: OpenAI) -> None:
    models = {m.id: (m.model_extra or {}).get("kind") for m in client.models.list()}
    assert models[CHAT_MODEL] == "chat" and models[APP] == "rag"
    completion = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=QUESTION,
        max_tokens=8,
        temperature=0.0,
    )
    assert completion.model == CHAT_MODEL
    assert not (completion.model_extra or {}).get("sources")
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 8
    rag = client.chat.completions.create(
        model=APP, messages=QUESTION, max_tokens=1, temperature=0.0
    )
    assert rag.usage is not None
    assert completion.usage.prompt_tokens + 200 < rag.usage.prompt_tokens, "no passages"


def test_a_long_answer_request_drops_passages_instead_of_failing(client: OpenAI) -> None:
    """A max_tokens that leaves no room for all the passages in max_model_len: passages
    are dropped from the end until the prompt fits beside the answer (docs: Prompts)."""

    def ask(max_tokens: int) -> tuple[int, int, str]:
        completion = client.chat.completions.create(
            model=APP, messages=QUESTION, max_tokens=max_tokens, temperature=0.0
        )
        assert completion.usage is not None and (completion.model_extra or {})["sources"]
        usage = completion.usage
        return (
            usage.prompt_tokens,
            usage.completion_tokens,
            str(completion.choices[0].finish_reason),
        )

    full, _, _ = ask(1)
    assert full > MAX_MODEL_LEN // 2 + 100, "the passages fill most of the context"
    wanted = MAX_MODEL_LEN - full + 100  # 100 tokens more than the full prompt leaves
    prompt, answer, finish = ask(wanted)
    assert prompt <= full - 100, "a passage or more was left out"
    assert (answer, finish) == (wanted, "length"), "the whole answer was generated"
    assert prompt + answer <= MAX_MODEL_LEN


def test_a_question_longer_than_the_context_is_a_client_error(
    production_graph: Deployed,
) -> None:
    question = "香川県の県庁所在地はどこですか？" * 200  # about 3,000 characters
    response = requests.post(
        f"{production_graph.url}/v1/chat/completions",
        json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": question}]},
        timeout=120,
    )
    assert response.status_code == 400, response.text
    assert "prompt tokens" in response.json()["error"]["message"]


def test_embeddings_and_rerank_come_from_the_model_stages(
    client: OpenAI, production_graph: Deployed, production_models: Models
) -> None:
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from torch import nn

    texts = ["香川県の県庁所在地は高松市である。", "沖縄県"]
    models = {(m.model_extra or {}).get("kind"): m.id for m in client.models.list()}
    assert models["embedding"] == str(production_models.embedder)
    served = client.embeddings.create(
        model=models["embedding"], input=texts, extra_body={"input_type": "query"}
    )
    vectors = np.array([d.embedding for d in served.data], dtype=np.float32)
    local = SentenceTransformer(str(production_models.embedder), device="cpu").encode(
        [f"クエリ: {t}" for t in texts], normalize_embeddings=True
    )
    assert vectors.shape == (2, 32)
    assert np.allclose(vectors, local, atol=1e-5)

    query = "香川県の県庁所在地"
    rerank = requests.post(
        f"{production_graph.url}/v1/rerank",
        json={"model": models["rerank"], "query": query, "documents": texts},
        timeout=60,
    )
    assert rerank.status_code == 200, rerank.text
    raw = {r["index"]: r["raw_score"] for r in rerank.json()["results"]}
    expected = CrossEncoder(str(production_models.cross_encoder), device="cpu").predict(
        [(query, t) for t in texts], activation_fn=nn.Identity()
    )
    assert [raw[0], raw[1]] == pytest.approx([float(x) for x in expected], abs=1e-4)


def chat(client: OpenAI, **sampling: Any) -> tuple[str, str, int]:
    completion = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=QUESTION,
        **sampling,
    )
    choice = completion.choices[0]
    assert completion.usage is not None
    return (
        choice.message.content or "",
        str(choice.finish_reason),
        completion.usage.completion_tokens,
    )


def test_per_request_sampling_reaches_vllm(client: OpenAI) -> None:
    greedy, reason, tokens = chat(client, max_tokens=12, temperature=0.0)
    assert (reason, tokens) == ("length", 12)
    assert len(greedy.strip()) >= 2, f"greedy output too short to test stop: {greedy!r}"
    # seed: the same seed samples the same answer, another seed another one.
    sampled = {seed: chat(client, max_tokens=12, temperature=1.0, seed=seed)[0] for seed in (1, 2)}
    assert chat(client, max_tokens=12, temperature=1.0, seed=1)[0] == sampled[1]
    assert sampled[1] != sampled[2]
    assert sampled[1] != greedy
    # top_p: a nucleus that holds only the likeliest token is greedy decoding.
    assert chat(client, max_tokens=12, temperature=1.0, top_p=1e-6, seed=3)[0] == greedy
    # stop: the answer ends before the stop string, with finish_reason stop.
    stop = next(c for c in greedy[1:] if not c.isspace() and c != "\ufffd")
    text, reason, _ = chat(client, max_tokens=12, temperature=0.0, stop=[stop])
    assert (text, reason) == (greedy[: greedy.index(stop)], "stop")
    # max_tokens: exactly that many tokens; the config's own default otherwise.
    assert chat(client, max_tokens=3, temperature=0.0)[1:] == ("length", 3)


def test_a_client_that_disconnects_mid_stream_cancels_the_generation(
    production_graph: Deployed, handle_loop: asyncio.AbstractEventLoop
) -> None:
    before = generator_stats(handle_loop)
    body = {
        "model": CHAT_MODEL,
        "messages": QUESTION,
        "stream": True,
        "max_tokens": MAX_MODEL_LEN - 100,
        "temperature": 0.0,
    }
    with requests.post(
        f"{production_graph.url}/v1/chat/completions", json=body, stream=True, timeout=60
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith(b"data: {"))
    deadline = time.monotonic() + 30
    while True:
        stats = generator_stats(handle_loop)
        cancelled = stats["generations_cancelled"] > before["generations_cancelled"]
        # vLLM's own count: the aborted request is no longer running or waiting.
        if cancelled and stats["engine"]["unfinished_requests"] == 0:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.2)
    assert stats["generations_in_flight"] == 0
