"""An index made with the FAISS API from the built-in embedder's vectors, imported with
`jarag index import`, served by the real graph and asked over HTTP: the same passages in
the same order with the same scores as the index `jarag index build` made of the same
corpus. The served import refuses another embedder, as a build does; its IVF copy is
searched with the nprobe a Dify /retrieval request sets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
import requests
from ray import serve

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.index.format import read_manifest, resolve_version_dir
from deployments.index.passages import PassageStore
from serve.app import DEPLOYMENT_DEFAULTS, build_graph
from serve.cli import main
from serve.config import AppConfig
from serve.demo import DEMO_CORPUS
from tests.integration.conftest import ServeCluster
from tests.support import demo_questions

pytestmark = pytest.mark.integration

LIGHT = {name: {"ray_actor_options": {"num_cpus": 0}} for name in DEPLOYMENT_DEFAULTS}
"""Every deployment without a CPU reservation: two graphs share the session's Ray."""
NLIST = 4
"""Inverted lists of the IVF copy (trained on the 188 demo passages)."""
QUESTIONS = [q["question"] for q in demo_questions()[::8]]
SCORES = ("retrieval_score", "rerank_score")


@dataclass(frozen=True)
class Indexes:
    built: Path
    imported: Path
    imported_ivf: Path


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Indexes:
    """The demo corpus built by `jarag index build`; its passages' vectors by the built-in
    embedder put in a FAISS Flat index and an IVF index (nprobe 1) with the FAISS API,
    each imported by `jarag index import`."""
    folder = tmp_path_factory.mktemp("imported-index")
    built = folder / "built"
    assert main(["index", "build", str(DEMO_CORPUS), "--out", str(built), "--quiet"]) == 0
    version_dir = resolve_version_dir(built)
    store = PassageStore(version_dir)
    try:
        passages = list(store)
    finally:
        store.close()
    rows = folder / "passages.jsonl"
    with rows.open("w", encoding="utf-8") as f:
        for p in passages:
            record = {"id": p.id, "title": p.title, "text": p.text, "url": p.url, **p.metadata}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    vectors = create_embedder(HashingEmbedderConfig(), version_dir).embed_passages(
        [p.document_text for p in passages]
    )
    dimension = vectors.shape[1]
    flat = faiss.IndexFlatIP(dimension)
    flat.add(vectors)
    faiss.write_index(flat, str(folder / "flat.faiss"))
    ivf: Any = faiss.index_factory(dimension, f"IVF{NLIST},Flat", faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.add(vectors)
    ivf.nprobe = 1  # kept in the file: what the server searches with unless asked otherwise
    faiss.write_index(ivf, str(folder / "ivf.faiss"))
    found = Indexes(built, folder / "imported", folder / "imported-ivf")
    for faiss_file, out in (("flat.faiss", found.imported), ("ivf.faiss", found.imported_ivf)):
        argv = ["index", "import", str(rows), "--out", str(out), "--quiet"]
        faiss_args = ["--faiss", str(folder / faiss_file), "--dimension", str(dimension)]
        assert main([*argv, *faiss_args]) == 0
    return found


@dataclass(frozen=True)
class Graphs:
    built: str
    imported: str


@pytest.fixture(scope="module")
def graphs(serve_cluster: ServeCluster, indexes: Indexes) -> Iterator[Graphs]:
    """The build served alone (knowledge base 'default'); the imports served together
    (knowledge bases 'imported' and 'imported-ivf'), each graph with the built-in stages."""
    built = AppConfig.model_validate({"index": {"path": str(indexes.built)}})
    imported = AppConfig.model_validate(
        {
            "knowledge_bases": [
                {"name": "imported", "path": str(indexes.imported)},
                {"name": "imported-ivf", "path": str(indexes.imported_ivf)},
            ]
        }
    )
    serve.run(build_graph(built, options=LIGHT), name="built", route_prefix="/built")
    try:
        serve.run(build_graph(imported, options=LIGHT), name="imported", route_prefix="/imported")
        try:
            yield Graphs(serve_cluster.url("/built"), serve_cluster.url("/imported"))
        finally:
            serve.delete("imported")
    finally:
        serve.delete("built")


def retrieve(base_url: str, knowledge_id: str, query: str, **setting: Any) -> requests.Response:
    """POST /retrieval with the body Dify's external knowledge API sends."""
    body = {
        "knowledge_id": knowledge_id,
        "query": query,
        "retrieval_setting": {"top_k": 5, "score_threshold": 0.0, **setting},
    }
    return requests.post(
        f"{base_url}/retrieval", json=body, headers={"Authorization": "Bearer any"}, timeout=60
    )


def records(base_url: str, knowledge_id: str, query: str, **setting: Any) -> list[Any]:
    response = retrieve(base_url, knowledge_id, query, **setting)
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()["records"]
    return found


def same_records(found: list[Any], expected: list[Any]) -> bool:
    """The same passages in the same order, with the same scores within float error."""

    def fixed(record: Any) -> tuple[Any, ...]:
        meta = {k: v for k, v in record["metadata"].items() if k not in {"knowledge_base", *SCORES}}
        return record["title"], record["content"], meta

    def scores(record: Any) -> list[float]:
        return [record["score"], *(record["metadata"][k] for k in SCORES)]

    return [fixed(r) for r in found] == [fixed(r) for r in expected] and all(
        np.allclose(scores(a), scores(b), rtol=1e-5, atol=1e-6)
        for a, b in zip(found, expected, strict=True)
    )


def test_the_import_is_the_builds_index(indexes: Indexes) -> None:
    built = read_manifest(resolve_version_dir(indexes.built))
    imported = read_manifest(resolve_version_dir(indexes.imported))
    assert imported.embedder == built.embedder
    assert imported.num_passages == built.num_passages == 188
    assert imported.faiss_factory == "imported IndexFlatIP"


def test_dify_retrieval_from_the_import_matches_the_build(graphs: Graphs) -> None:
    assert len(QUESTIONS) >= 10
    for question in QUESTIONS:
        expected = records(graphs.built, "default", question)
        found = records(graphs.imported, "imported", question)
        assert len(expected) == 5
        assert [r["metadata"]["knowledge_base"] for r in found] == ["imported"] * 5
        assert same_records(found, expected), question


def test_chat_sources_from_the_import_match_the_build(graphs: Graphs) -> None:
    def sources(base_url: str, model: str, question: str) -> list[Any]:
        chat = {"model": model, "messages": [{"role": "user", "content": question}]}
        response = requests.post(f"{base_url}/v1/chat/completions", json=chat, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
        return [body["choices"][0]["message"]["content"], body["sources"]]

    for question in QUESTIONS[:5]:
        answer, expected = sources(graphs.built, "ja-rag", question)
        found_answer, found = sources(graphs.imported, "ja-rag/imported", question)
        assert found_answer == answer
        assert [(s["passage_id"], s["title"], s["cited"]) for s in found] == [
            (s["passage_id"], s["title"], s["cited"]) for s in expected
        ]
        for a, b in zip(found, expected, strict=True):
            assert a["score"] == pytest.approx(b["score"], rel=1e-5, abs=1e-6)
            assert a["relevance"] == pytest.approx(b["relevance"], rel=1e-5, abs=1e-6)


def test_dify_retrieval_searches_with_the_nprobe_it_sets(graphs: Graphs) -> None:
    """The IVF import probes one list of four unless a request sets nprobe: with every
    list probed it finds what the exact build finds; with one, not always."""
    probed_one = 0
    for question in QUESTIONS:
        expected = records(graphs.built, "default", question)
        every = records(graphs.imported, "imported-ivf", question, nprobe=NLIST)
        assert same_records(every, expected), question
        one = records(graphs.imported, "imported-ivf", question, nprobe=1)
        assert one == records(graphs.imported, "imported-ivf", question), "nprobe 1 is the default"
        probed_one += not same_records(one, expected)
    assert probed_one > 0, "one list of four held every answer: the test shows nothing"
    response = retrieve(graphs.imported, "imported-ivf", QUESTIONS[0], nprobe=0)
    assert response.status_code == 400
    assert response.json()["error_code"] == 400 and "nprobe" in response.json()["error_msg"]
    ef = retrieve(graphs.imported, "imported-ivf", QUESTIONS[0], ef_search=0)
    assert ef.status_code == 400 and "ef_search" in ef.json()["error_msg"]


def test_the_served_import_refuses_another_embedder(
    serve_cluster: ServeCluster, indexes: Indexes
) -> None:
    """The import declares the built-in embedder with its default settings; a graph
    running it with another k1 fails its deploy, naming the difference."""
    config = AppConfig.model_validate(
        {"index": {"path": str(indexes.imported)}, "embedder": {"k1": 2.0}}
    )
    try:
        with pytest.raises(RuntimeError, match="Embedder"):
            serve.run(build_graph(config, options=LIGHT), name="other", route_prefix="/other")
        status = serve.status().applications["other"]
        assert status.status == "DEPLOY_FAILED"
        message = status.deployments["Embedder"].message
        assert "different embedder" in message and "k1" in message
    finally:
        serve.delete("other")
